//! The STS Query API (`Version=2011-06-15`, signing name `sts`): `GetCallerIdentity`, the call
//! tools make first to learn whether they are configured. The lab has one identity, the account's
//! root, so the answer is fixed by the account id. Errors are the Query protocol's
//! `ErrorResponse` document ([`error_body`]), not EC2's `Response/Errors`.
//!
//! One request: the action → its parameters read (`Params::finish` refuses the rest) → the
//! `…Response/…Result` document with `ResponseMetadata/RequestId`.

use super::Params;
use super::xml::{self, Xml};
use crate::cloud::{AwsError, Cloud};

/// XML namespace of STS responses.
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The only STS API version.
pub const VERSION: &str = "2011-06-15";

/// Runs one STS action and returns the response document.
pub fn dispatch(
    cloud: &Cloud,
    action: &str,
    p: &Params,
    request_id: &str,
) -> Result<String, AwsError> {
    if let Some(v) = p.get("Version")
        && v != VERSION
    {
        return Err(AwsError::new(
            "InvalidParameterValue",
            format!("Version {v} of STS is not supported by this lab (only {VERSION})."),
        ));
    }
    match action {
        "GetCallerIdentity" => {
            p.finish()?;
            let account = &cloud.cfg.account_id;
            let root = format!("{action}Response");
            let mut x = Xml::new(&root, STS_NS);
            x.nest(&format!("{action}Result"), |x| {
                x.elem("Arn", caller_arn(account))
                    .elem("UserId", account)
                    .elem("Account", account);
            });
            x.nest("ResponseMetadata", |x| {
                x.elem("RequestId", request_id);
            });
            Ok(x.finish(&root))
        }
        other => Err(AwsError::new(
            "InvalidAction",
            format!("The STS action {other} is not offered by this lab (only GetCallerIdentity)."),
        )),
    }
}

/// The caller: the account's root user (the lab's one set of credentials).
pub fn caller_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// The Query protocol's error document, as STS writes it.
pub fn error_body(err: &AwsError, request_id: &str) -> String {
    let kind = if super::error::status(&err.code).is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{STS_NS}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        xml::escape(&err.code),
        xml::escape(&err.message),
        xml::escape(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_query_shaped() {
        let body = error_body(&AwsError::new("InvalidAction", "no <such>"), "rid-1");
        assert!(
            body.contains("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">")
        );
        assert!(body.contains(
            "<Type>Sender</Type><Code>InvalidAction</Code><Message>no &lt;such&gt;</Message>"
        ));
        assert!(body.ends_with("<RequestId>rid-1</RequestId></ErrorResponse>"));
        assert_eq!(caller_arn("123456789012"), "arn:aws:iam::123456789012:root");
    }
}
