//! The AWS Query protocols on `--api-addr`: [`server`] owns connections and their limits; this
//! module owns one request.
//!
//! One request: method → the credentials, from the headers alone (a missing or wrong
//! `Authorization` is refused before any of the body is read) → the body, bounded in size and
//! time → the SigV4 signature over the body → decode the form into [`Params`] → pick the service
//! from the credential scope (`ec2`; later `elasticloadbalancing`, `autoscaling`) → dispatch the
//! `Action` on a blocking thread → write the success XML, or the error XML with the status from
//! [`error::status`]. A refusal before the body was read closes the connection.

pub mod ec2;
pub mod error;
pub mod params;
pub mod server;
pub mod sigv4;
pub mod sts;
pub mod xml;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

pub use params::Params;

use crate::cloud::{AwsError, Cloud, ids};
use crate::datadir::Credentials;
use crate::ratelimit::RateLimited;

/// Largest request body accepted. EC2's biggest legitimate bodies (16 KB user data as base64 plus
/// parameters) are far smaller.
pub const MAX_BODY: usize = 256 * 1024;
/// Bodies up to this size are read to the end before a too-large one is refused, so the client
/// gets its 413 instead of a broken pipe (which SDKs would retry); a body announced larger is
/// refused at once.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// The body of every API response.
pub type ResponseBody = Full<Bytes>;

pub struct ApiState {
    pub cloud: Arc<Cloud>,
    pub creds: Credentials,
    auth_log: RateLimited,
}

impl ApiState {
    pub fn new(cloud: Arc<Cloud>, creds: Credentials) -> Arc<ApiState> {
        Arc::new(ApiState {
            cloud,
            creds,
            auth_log: RateLimited::new(1.0, 10),
        })
    }
}

/// Which AWS API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ec2,
    Sts,
}

impl Service {
    /// The service a request is for, from its credential scope's signing name.
    fn from_scope(name: &str) -> Result<Service, AwsError> {
        match name {
            "ec2" => Ok(Service::Ec2),
            "sts" => Ok(Service::Sts),
            other => Err(AwsError::new(
                "InvalidAction",
                format!("The service '{other}' is not offered by this lab (only ec2 and sts)."),
            )),
        }
    }
}

/// An answer and whether the connection must close after it (the body was not read to its end).
/// `service` picks the error document's shape; `None` (not yet known) is EC2's.
struct Refusal {
    error: AwsError,
    close: bool,
    service: Option<Service>,
}

impl From<AwsError> for Refusal {
    fn from(error: AwsError) -> Refusal {
        Refusal {
            error,
            close: false,
            service: None,
        }
    }
}

fn closing(error: AwsError) -> Refusal {
    Refusal {
        error,
        close: true,
        service: None,
    }
}

/// Answers one request on an admitted connection.
pub async fn handle(
    st: &Arc<ApiState>,
    conn: &server::Conn,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let request_id = ids::request_id();
    let deadline = conn.request_started();
    let result = answer(st, conn, req, deadline, &request_id).await;
    conn.request_finished();
    match result {
        Ok(xml) => {
            let mut r = Response::new(Full::new(Bytes::from(xml)));
            set_headers(r.headers_mut(), &request_id, false);
            r
        }
        Err(Refusal {
            error,
            close,
            service,
        }) => error_response(&error, service, &request_id, close),
    }
}

async fn answer(
    st: &Arc<ApiState>,
    conn: &server::Conn,
    req: Request<Incoming>,
    deadline: tokio::time::Instant,
    request_id: &str,
) -> Result<String, Refusal> {
    let (head, body) = req.into_parts();
    let (method, uri) = (&head.method, &head.uri);
    if method != Method::POST && method != Method::GET {
        return Err(closing(AwsError::new(
            "InvalidAction",
            format!("The HTTP method {} is not supported.", method.as_str()),
        )));
    }
    let header_list = header_list(&head.headers);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut req = sigv4::Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &header_list,
        body: &[],
    };
    sigv4::precheck(&req, &st.creds.access_key_id, now).map_err(|e| closing(auth_error(st, e)))?;
    let body = read_body(&head.headers, body, deadline).await?;
    req.body = &body;
    let auth = sigv4::verify(
        &req,
        &st.creds.access_key_id,
        &st.creds.secret_access_key,
        now,
    )
    .map_err(|e| auth_error(st, e))?;

    let _busy = conn.dispatching();
    let mut params = Params::parse(&body);
    params.extend(Params::parse(req.query.as_bytes()));
    let service = Service::from_scope(&auth.service)?;
    dispatch(st, service, params, request_id)
        .await
        .map_err(|error| Refusal {
            error,
            close: false,
            service: Some(service),
        })
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Reads the body: at most [`MAX_BODY`] bytes kept, by `deadline`. A larger body is read (and
/// dropped) up to [`DRAIN_LIMIT`] before the 413, so the client is not cut off mid-upload.
async fn read_body(
    headers: &HeaderMap,
    mut body: Incoming,
    deadline: tokio::time::Instant,
) -> Result<Bytes, Refusal> {
    let too_large = || {
        closing(AwsError::new(
            "RequestEntityTooLarge",
            format!("The request body is larger than the limit of {MAX_BODY} bytes."),
        ))
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut kept: Vec<u8> = Vec::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                closing(AwsError::new(
                    "IncompleteBody",
                    format!("The request body could not be read: {e}."),
                ))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if seen > DRAIN_LIMIT {
                return Err(too_large());
            }
            if seen <= MAX_BODY {
                kept.extend_from_slice(&data);
            }
        }
        if seen > MAX_BODY {
            return Err(too_large());
        }
        Ok(Bytes::from(kept))
    };
    tokio::time::timeout_at(deadline, read).await.map_err(|_| {
        closing(AwsError::new(
            "RequestTimeout",
            "Your socket connection to the server was not read from or written to within the timeout period.",
        ))
    })?
}

async fn dispatch(
    st: &Arc<ApiState>,
    service: Service,
    params: Params,
    request_id: &str,
) -> Result<String, AwsError> {
    let Some(action) = params.get("Action").map(str::to_string) else {
        return Err(AwsError::new(
            "MissingAction",
            "The request must contain the parameter Action.",
        ));
    };
    let span = tracing::debug_span!("api", %action, request_id);
    let cloud = st.cloud.clone();
    let rid = request_id.to_string();
    tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        match service {
            Service::Ec2 => ec2::dispatch(&cloud, &action, &params, &rid),
            Service::Sts => sts::dispatch(&cloud, &action, &params, &rid),
        }
    })
    .await
    .map_err(|e| AwsError::internal(format!("request handler failed: {e}")))?
}

fn auth_error(st: &ApiState, e: sigv4::SigError) -> AwsError {
    use sigv4::SigError::*;
    if let Some(suppressed) = st.auth_log.check() {
        tracing::warn!(error = %e, suppressed, "rejected an API request");
    }
    let hint = "Use the lab's credentials: eval \"$(ec2lab env)\" sets them for the aws CLI.";
    match e {
        Missing => AwsError::new(
            "MissingAuthenticationToken",
            format!("The request is not signed. {hint}"),
        ),
        Malformed(m) => AwsError::new(
            "IncompleteSignature",
            format!("The request signature is malformed: {m}."),
        ),
        UnknownAccessKey(k) => AwsError::new(
            "AuthFailure",
            format!(
                "AWS was not able to validate the provided access credentials (unknown access key '{k}'). {hint}"
            ),
        ),
        Skewed(d) => AwsError::new(
            "RequestExpired",
            format!(
                "Request has expired: its time {d} is more than 15 minutes from the lab's clock."
            ),
        ),
        Mismatch => AwsError::new(
            "AuthFailure",
            format!(
                "AWS was not able to validate the provided access credentials (signature mismatch). {hint}"
            ),
        ),
    }
}

fn set_headers(h: &mut HeaderMap, request_id: &str, close: bool) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

fn error_response(
    e: &AwsError,
    service: Option<Service>,
    request_id: &str,
    close: bool,
) -> Response<ResponseBody> {
    let status = error::status(&e.code);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(code = %e.code, message = %e.message, request_id, "internal error");
    }
    let body = match service {
        Some(Service::Sts) => sts::error_body(e, request_id),
        Some(Service::Ec2) | None => error::ec2_body(e, request_id),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    set_headers(r.headers_mut(), request_id, close);
    r
}
