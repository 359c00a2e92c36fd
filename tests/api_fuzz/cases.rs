//! The fuzz cases: a deterministic generator of hostile requests as raw bytes (actions,
//! parameters and values; methods, paths and headers; framing: bad `Content-Length`, chunked,
//! huge and non-HTTP bodies).

use super::Daemon;

/// splitmix64: small, deterministic, good enough to pick cases.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const ACTIONS: &[&str] = &[
    "DescribeInstances",
    "DescribeTags",
    "DescribeSecurityGroups",
    "DescribeKeyPairs",
    "DescribeImages",
    "DescribeAddresses",
    "DescribeRegions",
    "DescribeAvailabilityZones",
    "DescribeInstanceTypes",
    "CreateTags",
    "DeleteTags",
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
    "ImportKeyPair",
    "DeleteKeyPair",
    "RunInstances",
    "StopInstances",
    "TerminateInstances",
    "ModifyInstanceAttribute",
    "GetConsoleOutput",
    "AssociateAddress",
    "ReleaseAddress",
    "NoSuchAction",
    "",
];

const PARAMS: &[&str] = &[
    "InstanceId.1",
    "InstanceId",
    "ImageId",
    "GroupName",
    "GroupId",
    "GroupDescription",
    "KeyName",
    "KeyPairId",
    "PublicKeyMaterial",
    "ResourceId.1",
    "Tag.1.Key",
    "Tag.1.Value",
    "Filter.1.Name",
    "Filter.1.Value.1",
    "TagSpecification.1.ResourceType",
    "TagSpecification.1.Tag.1.Key",
    "TagSpecification.1.Tag.1.Value",
    "IpPermissions.1.IpProtocol",
    "IpPermissions.1.FromPort",
    "IpPermissions.1.ToPort",
    "IpPermissions.1.IpRanges.1.CidrIp",
    "IpPermissions.1.IpRanges.1.Description",
    "UserData",
    "MinCount",
    "MaxCount",
    "InstanceType",
    "AllocationId",
    "MaxResults",
    "NextToken",
    "DryRun",
    "Version",
    "Attribute",
    "Value",
    "Filter.99999999999999999999.Name",
    "A.member.4294967296",
];

/// A hostile parameter value, already form-encoded (some on purpose not validly).
fn value(r: &mut Rng) -> String {
    match r.below(16) {
        0 => "a%01b".into(),
        1 => "%00%07%08%0B%0C%1B%7F".into(),
        2 => "%EF%BF%BE%EF%BF%BF".into(),
        3 => "%ZZ%G%".into(),
        4 => "%C3%28%FF%FE%80".into(),
        5 => "x".repeat(r.below(300_000)),
        6 => "i-0123456789abcdef0".into(),
        7 => "sg-%01".into(),
        8 => "-1".into(),
        9 => "99999999999999999999999".into(),
        10 => "%3Cscript%3E%26amp%3B%22%27".into(),
        11 => "true".into(),
        12 => "%F0%9F%92%A5".repeat(r.below(100)),
        13 => "ami-".to_string() + &"f".repeat(r.below(40)),
        14 => String::new(),
        _ => format!("{:x}", r.next()),
    }
}

/// A form body: an action and a handful of random parameters.
fn form(r: &mut Rng) -> String {
    let mut body = format!("Action={}", r.pick(ACTIONS));
    if !r.chance(5) {
        body.push_str("&Version=2016-11-15");
    }
    for _ in 0..r.below(8) {
        body.push('&');
        body.push_str(r.pick(PARAMS));
        body.push('=');
        body.push_str(&value(r));
    }
    if r.chance(10) {
        body.push_str("&&=&%&=%");
    }
    body
}

/// One request as raw bytes, and whether it ends the connection (framing the server cannot
/// continue after, or `Connection: close`).
pub struct Case {
    pub bytes: Vec<u8>,
    pub last: bool,
    /// A HEAD request: the answer has no body whatever its Content-Length says.
    pub head: bool,
    /// False for bytes that hold no request at all (empty lines): closing without an answer is
    /// then right.
    pub is_request: bool,
}

fn head(method: &str, path: &str, headers: &[(String, String)], framing: &str) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(framing);
    h.push_str("\r\n");
    h
}

pub fn case(r: &mut Rng, d: &Daemon, creds: &(String, String)) -> Case {
    let body = form(r).into_bytes();
    let host = format!("127.0.0.1:{}", d.api_port);
    let mut headers: Vec<(String, String)> = if r.chance(2) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        ec2lab::api::sigv4::sign(
            &host,
            &body,
            &creds.0,
            &creds.1,
            "ap-northeast-2",
            "ec2",
            &ec2lab::api::sigv4::format_amz_date(now),
        )
    } else {
        vec![
            ("host".into(), host.clone()),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
        ]
    };
    match r.below(12) {
        // A broken Authorization header.
        0 => headers.push((
            "authorization".into(),
            r.pick(&[
                "AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=, Signature=zz",
                "AWS4-HMAC-SHA256 Credential=AKIA/20260101/x/ec2/aws4_request, SignedHeaders=host;nope, Signature=0000000000000000000000000000000000000000000000000000000000000000",
                "Basic YWRtaW46YWRtaW4=",
                "AWS4-HMAC-SHA256",
            ])
            .to_string(),
        )),
        // Hostile headers.
        1 => headers.push(("x-amz-date".into(), "\u{1}\u{7f}".into())),
        2 => headers.push(("x-junk".into(), "v".repeat(r.below(70_000)))),
        _ => {}
    }
    let method = r.pick(&[
        "POST", "POST", "POST", "GET", "PUT", "DELETE", "HEAD", "FOO",
    ]);
    let path = match r.below(8) {
        0 => "/..%2F..%2Fetc%2Fpasswd".to_string(),
        1 => format!("/?{}", form(r)),
        2 => format!("/{}", "p".repeat(r.below(20_000))),
        3 => "/%".into(),
        _ => "/".into(),
    };
    let mut last = method == "HEAD";
    let mut is_request = true;
    let request = |framing: &str, body: &[u8]| {
        let mut b = head(method, &path, &headers, framing).into_bytes();
        b.extend_from_slice(body);
        b
    };
    let bytes = match r.below(10) {
        // Content-Length that is not a number, or two that disagree.
        0 => {
            last = true;
            let cl = r.pick(&["-1", "abc", "1e3", "18446744073709551616", " 5", "0x10"]);
            request(&format!("Content-Length: {cl}\r\n"), &body)
        }
        1 => {
            last = true;
            let f = format!("Content-Length: {}\r\nContent-Length: 1\r\n", body.len());
            request(&f, &body)
        }
        // Announced far larger than the limit (answered from the head).
        2 => {
            last = true;
            request("Content-Length: 9999999999999\r\n", b"")
        }
        // Chunked: the body in random pieces, sometimes with a broken chunk size.
        3 => {
            let mut b = request("Transfer-Encoding: chunked\r\n", b"");
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = (1 + r.below(64)).min(rest.len());
                b.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                b.extend_from_slice(&rest[..n]);
                b.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            if r.chance(3) {
                last = true;
                b.extend_from_slice(r.pick(&[&b"zz\r\n"[..], b"fffffffffffffffff\r\n", b"-1\r\n"]));
            } else {
                b.extend_from_slice(b"0\r\n\r\n");
            }
            b
        }
        // A huge body (over the 256 KiB limit).
        4 if r.chance(8) => {
            last = true;
            let big = vec![b'A'; 300 * 1024 + r.below(1024 * 1024)];
            request(&format!("Content-Length: {}\r\n", big.len()), &big)
        }
        // Not HTTP at all, or a version the server does not speak.
        5 if r.chance(4) => {
            last = true;
            let junk = r.pick(&[
                &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
                b"GET / HTTP/9.9\r\n\r\n",
                b"\r\n\r\n\r\n",
                b"POST / HTTP/1.1\r\nbad header line\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: \x01\x02\r\n\r\n",
            ]);
            is_request = junk != b"\r\n\r\n\r\n";
            junk.to_vec()
        }
        _ => request(&format!("Content-Length: {}\r\n", body.len()), &body),
    };
    Case {
        bytes,
        last,
        head: method == "HEAD",
        is_request,
    }
}
