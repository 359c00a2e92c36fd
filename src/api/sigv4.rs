//! AWS Signature Version 4: verifying the requests the daemon receives and signing the ones the
//! `ec2lab` CLI sends. Pure functions over method, headers and body; no I/O.
//!
//! Verification order: parse the `Authorization` header → check the access key → check the
//! clock skew of `X-Amz-Date` → rebuild the canonical request from the signed headers → derive the
//! signing key from the secret and the credential scope → compare signatures in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// How far a request's `X-Amz-Date` may be from the server's clock (AWS allows 15 minutes).
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// Why a request's signature was not accepted. The API maps each to an AWS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("the request has no authorization header")]
    Missing,
    #[error("malformed authorization header: {0}")]
    Malformed(String),
    #[error("the access key id '{0}' is not known to this lab")]
    UnknownAccessKey(String),
    #[error("the request time {0} is more than 15 minutes from the server time")]
    Skewed(String),
    #[error("the request signature does not match the signature computed with the lab secret")]
    Mismatch,
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl AuthHeader {
    pub fn parse(value: &str) -> Result<AuthHeader, SigError> {
        let bad = |what: &str| SigError::Malformed(what.to_string());
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256")
            .ok_or_else(|| bad("algorithm is not AWS4-HMAC-SHA256"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let credential = credential.ok_or_else(|| bad("no Credential"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let well_formed = scope.len() == 5
            && scope[4] == "aws4_request"
            && !scope[0].is_empty()
            && scope[0].len() <= 128
            && scope[0].bytes().all(|b| b.is_ascii_alphanumeric())
            && scope[1].len() == 8
            && scope[1].bytes().all(|b| b.is_ascii_digit())
            && !scope[2].is_empty()
            && !scope[3].is_empty();
        if !well_formed {
            return Err(bad(
                "Credential is not key/date/region/service/aws4_request",
            ));
        }
        let signature = signature.ok_or_else(|| bad("no Signature"))?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("Signature is not 64 hex digits"));
        }
        let signed_headers: Vec<String> = signed
            .ok_or_else(|| bad("no SignedHeaders"))?
            .split(';')
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if signed_headers.len() > 64 || signed_headers.iter().any(|h| h.is_empty()) {
            return Err(bad("SignedHeaders is not a list of header names"));
        }
        if !signed_headers.iter().any(|h| h == "host") {
            return Err(bad("SignedHeaders does not include host"));
        }
        Ok(AuthHeader {
            access_key: scope[0].to_string(),
            date: scope[1].to_string(),
            region: scope[2].to_string(),
            service: scope[3].to_string(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }

    fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// A request as the signature sees it.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string (without `?`), empty for POST.
    pub query: &'a str,
    /// Header (name, value) pairs; names in any case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The checks that need only the request line and headers, run before the body is read:
/// the `Authorization` header (or presigned query) is present and well-formed, the access key is
/// the lab's, the clock skew is within bounds and every signed header is present. Returns the
/// parsed header and the request's `X-Amz-Date`.
pub fn precheck(
    req: &Request<'_>,
    access_key: &str,
    now: i64,
) -> Result<(AuthHeader, String), SigError> {
    let (auth, amz_date) = if let Some(value) = req.header("authorization") {
        let auth = AuthHeader::parse(value)?;
        let date = req
            .header("x-amz-date")
            .ok_or_else(|| SigError::Malformed("no X-Amz-Date header".into()))?
            .to_string();
        (auth, date)
    } else {
        presigned(req.query)?
    };
    if auth.access_key != access_key {
        return Err(SigError::UnknownAccessKey(auth.access_key));
    }
    let when = parse_amz_date(&amz_date)
        .ok_or_else(|| SigError::Malformed(format!("X-Amz-Date '{amz_date}'")))?;
    if (when - now).abs() > MAX_SKEW_SECS {
        return Err(SigError::Skewed(amz_date));
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(SigError::Malformed(
            "credential date differs from X-Amz-Date".into(),
        ));
    }
    if let Some(h) = auth.signed_headers.iter().find(|h| req.header(h).is_none()) {
        return Err(SigError::Malformed(format!(
            "signed header '{h}' is missing"
        )));
    }
    Ok((auth, amz_date))
}

/// Checks a request's signature against the lab credentials. `now` is seconds since the epoch.
pub fn verify(
    req: &Request<'_>,
    access_key: &str,
    secret: &str,
    now: i64,
) -> Result<AuthHeader, SigError> {
    let (auth, amz_date) = precheck(req, access_key, now)?;
    let query = strip_signature_param(req.query);
    let canonical = canonical_request(req, &query, &auth.signed_headers)?;
    let expected = signature(secret, &amz_date, &auth, &canonical);
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(auth)
    } else {
        Err(SigError::Mismatch)
    }
}

/// Signs a POST request for the CLI: returns the headers to add (`x-amz-date`, `authorization`).
pub fn sign(
    host: &str,
    body: &[u8],
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Vec<(String, String)> {
    let headers = vec![
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded; charset=utf-8".to_string(),
        ),
        ("host".to_string(), host.to_string()),
        ("x-amz-date".to_string(), amz_date.to_string()),
    ];
    let auth = AuthHeader {
        access_key: access_key.to_string(),
        date: amz_date[..8].to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: vec!["content-type".into(), "host".into(), "x-amz-date".into()],
        signature: String::new(),
    };
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let canonical =
        canonical_request(&req, "", &auth.signed_headers).expect("all signed headers present");
    let sig = signature(secret, amz_date, &auth, &canonical);
    let mut out = headers;
    out.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
            access_key,
            auth.scope(),
            auth.signed_headers.join(";"),
            sig
        ),
    ));
    out
}

/// Reads a presigned request's `X-Amz-*` query parameters (used by GET requests that carry the
/// signature in the URL).
fn presigned(query: &str) -> Result<(AuthHeader, String), SigError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(algorithm) = get("X-Amz-Algorithm") else {
        return Err(SigError::Missing);
    };
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(SigError::Malformed(
            "algorithm is not AWS4-HMAC-SHA256".into(),
        ));
    }
    let credential = get("X-Amz-Credential").ok_or(SigError::Missing)?;
    let signed = get("X-Amz-SignedHeaders").ok_or(SigError::Missing)?;
    let sig = get("X-Amz-Signature").ok_or(SigError::Missing)?;
    let date = get("X-Amz-Date").ok_or(SigError::Missing)?;
    let header = format!(
        "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={sig}"
    );
    Ok((AuthHeader::parse(&header)?, date))
}

fn strip_signature_param(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("X-Amz-Signature="))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_request(
    req: &Request<'_>,
    query: &str,
    signed_headers: &[String],
) -> Result<String, SigError> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(if req.path.is_empty() { "/" } else { req.path });
    out.push('\n');
    out.push_str(&canonical_query(query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<&str> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            return Err(SigError::Malformed(format!(
                "signed header '{name}' is missing"
            )));
        }
        out.push_str(name);
        out.push(':');
        let joined: Vec<String> = values.iter().map(|v| collapse_spaces(v)).collect();
        out.push_str(&joined.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    match req.header("x-amz-content-sha256") {
        Some(h) => out.push_str(h),
        None => out.push_str(&hex::encode(Sha256::digest(req.body))),
    }
    Ok(out)
}

/// Sorted, re-encoded query parameters (RFC 3986 unreserved characters are left as they are).
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn uri_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn signature(secret: &str, amz_date: &str, auth: &AuthHeader, canonical: &str) -> String {
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{}\n{}",
        amz_date,
        auth.scope(),
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, to_sign.as_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Formats seconds since the epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .expect("valid timestamp")
        .format(fmt)
        .expect("formattable")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn signed(body: &[u8], date: &str) -> Vec<(String, String)> {
        sign(
            "127.0.0.1:8773",
            body,
            KEY,
            SECRET,
            "ap-northeast-2",
            "ec2",
            date,
        )
    }

    #[test]
    fn signed_request_verifies() {
        let body = b"Action=DescribeKeyPairs&Version=2016-11-15";
        let date = "20261122T101010Z";
        let headers = signed(body, date);
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let now = parse_amz_date(date).unwrap();
        let auth = verify(&req, KEY, SECRET, now).unwrap();
        assert_eq!(auth.service, "ec2");
        assert_eq!(auth.region, "ap-northeast-2");
    }

    #[test]
    fn tampered_body_wrong_secret_and_skew_fail() {
        let date = "20261122T101010Z";
        let now = parse_amz_date(date).unwrap();
        let headers = signed(b"Action=A", date);
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"Action=B",
        };
        assert_eq!(verify(&req, KEY, SECRET, now), Err(SigError::Mismatch));
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"Action=A",
        };
        assert_eq!(verify(&req, KEY, "other", now), Err(SigError::Mismatch));
        assert!(matches!(
            verify(&req, KEY, SECRET, now + 3600),
            Err(SigError::Skewed(_))
        ));
        assert!(matches!(
            verify(&req, "AKIDOTHER", SECRET, now),
            Err(SigError::UnknownAccessKey(_))
        ));
    }

    #[test]
    fn unsigned_and_garbage_headers() {
        let headers = vec![("host".to_string(), "x".to_string())];
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        assert_eq!(verify(&req, KEY, SECRET, 0), Err(SigError::Missing));
        assert!(AuthHeader::parse("AWS4-HMAC-SHA256 Credential=a/b").is_err());
        assert!(AuthHeader::parse("Basic abc").is_err());
    }

    /// The AWS SigV4 test-suite vector "get-vanilla-query-order-key-case".
    #[test]
    fn aws_test_suite_vector() {
        let headers = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
            ("Authorization".to_string(), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500".to_string()),
        ];
        let req = Request {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &headers,
            body: b"",
        };
        let now = parse_amz_date("20150830T123600Z").unwrap();
        verify(&req, KEY, SECRET, now).unwrap();
    }
}
