//! The HTTP server for the AWS Query protocols on `--api-addr`.
//!
//! One request: read the body (bounded) → verify the SigV4 signature against the lab credentials
//! → decode the form into [`Params`] → pick the service from the credential scope (`ec2`; later
//! `elasticloadbalancing`, `autoscaling`) → dispatch the `Action` on a blocking thread → write the
//! success XML, or the error XML with the status from [`error::status`].

pub mod ec2;
pub mod error;
pub mod params;
pub mod sigv4;
pub mod xml;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

pub use params::Params;

use crate::cloud::{AwsError, Cloud, ids};
use crate::datadir::Credentials;
use crate::ratelimit::RateLimited;

/// Largest request body accepted. EC2's biggest legitimate bodies (16 KB user data as base64 plus
/// parameters) are far smaller.
pub const MAX_BODY: usize = 256 * 1024;
/// Bodies up to this size are read to the end before a too-large one is refused, so the client
/// gets its 413 instead of a broken pipe (which SDKs would retry).
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

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

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Which AWS API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ec2,
}

async fn handle(
    State(st): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = ids::request_id();
    let body = match axum::body::to_bytes(body, DRAIN_LIMIT).await {
        Ok(b) if b.len() <= MAX_BODY => b,
        _ => {
            let e = AwsError::new(
                "RequestEntityTooLarge",
                format!("The request body is larger than the limit of {MAX_BODY} bytes."),
            );
            return error_response(&e, &request_id);
        }
    };
    match serve(&st, &method, &uri, &headers, body, &request_id).await {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
            [("x-amzn-requestid", request_id)],
            xml,
        )
            .into_response(),
        Err(e) => error_response(&e, &request_id),
    }
}

async fn serve(
    st: &Arc<ApiState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    request_id: &str,
) -> Result<String, AwsError> {
    if method != Method::POST && method != Method::GET {
        return Err(AwsError::new(
            "InvalidAction",
            format!("The HTTP method {method} is not supported."),
        ));
    }
    let query = uri.query().unwrap_or("");
    let header_list: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let req = sigv4::Request {
        method: method.as_str(),
        path: uri.path(),
        query,
        headers: &header_list,
        body: &body,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let auth = sigv4::verify(
        &req,
        &st.creds.access_key_id,
        &st.creds.secret_access_key,
        now,
    )
    .map_err(|e| auth_error(st, e))?;

    let mut params = Params::parse(&body);
    params.extend(Params::parse(query.as_bytes()));
    let service = match auth.service.as_str() {
        "ec2" => Service::Ec2,
        other => {
            return Err(AwsError::new(
                "InvalidAction",
                format!("The service '{other}' is not offered by this lab (only ec2 for now)."),
            ));
        }
    };
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

fn error_response(e: &AwsError, request_id: &str) -> Response {
    let status = error::status(&e.code);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(code = %e.code, message = %e.message, request_id, "internal error");
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        error::ec2_body(e, request_id),
    )
        .into_response()
}
