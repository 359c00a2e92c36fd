//! The error every control-plane operation returns: an AWS error code and message. The API turns
//! it into the error XML and picks the HTTP status (see `api::error`).

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub code: Cow<'static, str>,
    pub message: String,
}

impl AwsError {
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> AwsError {
        AwsError {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn missing(param: &str) -> AwsError {
        AwsError::new(
            "MissingParameter",
            format!("The request must contain the parameter {param}"),
        )
    }

    pub fn invalid_value(param: &str, value: &str) -> AwsError {
        AwsError::new(
            "InvalidParameterValue",
            format!(
                "Value ({}) for parameter {param} is invalid.",
                super::validate::shown(value)
            ),
        )
    }

    pub fn unknown_parameter(param: &str) -> AwsError {
        AwsError::new(
            "UnknownParameter",
            format!("The parameter {param} is not recognized"),
        )
    }

    /// A member of the AWS model that the lab does not do.
    pub fn unsupported(param: &str) -> AwsError {
        AwsError::new(
            "InvalidParameterValue",
            format!("The parameter {param} is not supported by this lab"),
        )
    }

    /// A value of a member that the lab does only with some values.
    pub fn unsupported_value(param: &str, value: &str, allowed: &[&str]) -> AwsError {
        AwsError::new(
            "InvalidParameterValue",
            format!(
                "The value ({}) of parameter {param} is not supported by this lab (it supports: {})",
                super::validate::shown(value),
                allowed.join(", ")
            ),
        )
    }

    pub fn invalid(message: impl Into<String>) -> AwsError {
        AwsError::new("InvalidParameterValue", message)
    }

    pub fn combination(message: impl Into<String>) -> AwsError {
        AwsError::new("InvalidParameterCombination", message)
    }

    /// A failure of the lab itself (storage, the host): HTTP 500.
    pub fn internal(message: impl std::fmt::Display) -> AwsError {
        AwsError::new(
            "InternalError",
            format!("An internal error has occurred: {message}"),
        )
    }
}

impl From<crate::store::StoreError> for AwsError {
    fn from(e: crate::store::StoreError) -> AwsError {
        AwsError::internal(e)
    }
}
