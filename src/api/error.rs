//! The one place that turns an [`AwsError`] into an HTTP response: the AWS error XML body and the
//! status code. Client mistakes are 4xx (never 5xx: the CLI retries 5xx for 10+ seconds).

use axum::http::StatusCode;

use crate::api::xml;
use crate::cloud::AwsError;

pub fn status(code: &str) -> StatusCode {
    match code {
        "AuthFailure" | "MissingAuthenticationToken" => StatusCode::UNAUTHORIZED,
        "UnauthorizedOperation" | "SignatureDoesNotMatch" | "OptInRequired" => {
            StatusCode::FORBIDDEN
        }
        "DryRunOperation" => StatusCode::PRECONDITION_FAILED,
        "RequestEntityTooLarge" => StatusCode::PAYLOAD_TOO_LARGE,
        "InternalError" => StatusCode::INTERNAL_SERVER_ERROR,
        "Unavailable" | "RequestLimitExceeded" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The EC2 error document: `<Response><Errors><Error>…</Error></Errors><RequestID>…`.
pub fn ec2_body(err: &AwsError, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        xml::escape(&err.code),
        xml::escape(&err.message),
        request_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_4xx() {
        for code in [
            "InvalidKeyPair.NotFound",
            "MissingParameter",
            "InvalidAction",
            "AuthFailure",
            "DryRunOperation",
        ] {
            assert!(status(code).is_client_error(), "{code}");
        }
        assert_eq!(status("DryRunOperation"), StatusCode::PRECONDITION_FAILED);
        assert_eq!(status("AuthFailure"), StatusCode::UNAUTHORIZED);
        assert!(status("InternalError").is_server_error());
    }
}
