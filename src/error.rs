//! The one error type. Every variant knows whether retrying the same work later can succeed, which decides
//! whether the invocation fails (so Lambda retries it) or the failure is reported on the resource.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration from the environment is unusable. Names the variable.
    #[error("invalid configuration: {variable}: {reason}")]
    Config { variable: &'static str, reason: String },

    /// The invocation payload is not an event the deployer understands. Retrying the same payload cannot help.
    #[error("unrecognised invocation payload: {0}")]
    Payload(String),

    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes API: {message}")]
    Kube { message: String, status: Option<u16>, retryable: bool },

    /// An AWS API call failed.
    #[error("{service} {operation}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        /// AWS's error code, e.g. `ResourceConflictException`.
        code: Option<String>,
        message: String,
        retryable: bool,
        /// Honoured before retrying (from `Retry-After` on 429).
        retry_after: Option<Duration>,
    },
}

impl Error {
    /// Whether the same work may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Config { .. } | Error::Payload(_) => false,
            Error::Kube { retryable, .. } | Error::Aws { retryable, .. } => *retryable,
        }
    }

    pub fn config(variable: &'static str, reason: impl Into<String>) -> Self {
        Error::Config { variable, reason: reason.into() }
    }

    /// AWS's error code, when this is an AWS error that carried one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the Lambda runtime reports for a failed invocation: `errorType` says which kind of failure it was.
impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        let error_type = match &err {
            Error::Config { .. } => "InvalidConfiguration",
            Error::Payload(_) => "UnrecognisedPayload",
            Error::Kube { status: Some(401 | 403), .. } => "ClusterAccessDenied",
            Error::Kube { .. } => "ClusterUnavailable",
            Error::Aws { .. } => "AwsError",
        };
        lambda_runtime::Diagnostic { error_type: error_type.into(), error_message: err.to_string() }
    }
}
