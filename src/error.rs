//! The one error type. Every variant knows two things: whether the same request may succeed if sent again at once
//! ([`Error::is_transient`], what [`crate::retry`] retries), and whether the same work may succeed later
//! ([`Error::is_retryable`], which decides whether the invocation fails so that Lambda retries it).

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
    Kube {
        message: String,
        /// The HTTP status; `None` when no response came (connection, TLS).
        status: Option<u16>,
        retryable: bool,
        /// Honoured before retrying (`details.retryAfterSeconds` of a 429 Status).
        retry_after: Option<Duration>,
    },

    /// An AWS API call failed.
    #[error("{service} {operation}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        /// AWS's error code, e.g. `ResourceConflictException`.
        code: Option<String>,
        /// The HTTP status; `None` when no response came.
        status: Option<u16>,
        message: String,
        retryable: bool,
        /// Honoured before retrying (from `Retry-After` on 429).
        retry_after: Option<Duration>,
    },

    /// A call got no answer in time: it may or may not have taken effect.
    #[error("{service} {operation}: no answer within {} ms", .after.as_millis())]
    Timeout { service: &'static str, operation: &'static str, after: Duration },

    /// The invocation's deadline came before the call could be made.
    #[error("{service} {operation}: not sent, the invocation's deadline is too close")]
    Deadline { service: &'static str, operation: &'static str },
}

impl Error {
    /// Whether the same work may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Config { .. } | Error::Payload(_) => false,
            Error::Kube { retryable, .. } | Error::Aws { retryable, .. } => *retryable,
            Error::Timeout { .. } | Error::Deadline { .. } => true,
        }
    }

    /// Whether sending the same request again now may succeed: throttling, server errors, no answer. Conflicts and
    /// precondition failures are not: the caller must look again and decide anew.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Aws { retryable, .. } => *retryable,
            Error::Kube { status, retryable, .. } => *retryable && status.is_none_or(|code| code == 429 || code >= 500),
            Error::Timeout { .. } => true,
            Error::Config { .. } | Error::Payload(_) | Error::Deadline { .. } => false,
        }
    }

    /// Whether a write that failed so may nevertheless have taken effect: the request may have reached the service
    /// and only its answer was lost (no answer, a dropped connection, a 5xx). A 429 or any other 4xx was refused.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Aws { status, retryable, .. } | Error::Kube { status, retryable, .. } => {
                *retryable && status.is_none_or(|code| code >= 500)
            }
            _ => false,
        }
    }

    /// How long the server asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Aws { retry_after, .. } | Error::Kube { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn config(variable: &'static str, reason: impl Into<String>) -> Self {
        Error::Config { variable, reason: reason.into() }
    }

    /// AWS's error code, when this is an AWS error that carried one.
    /// Whether the service could not be reached at all after every retry: no connection, no answer, or the
    /// credentials to reach it could not be had.
    pub fn unreachable(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Aws { status: None, code, retryable, .. } => {
                *retryable || code.as_deref() == Some("AssumeRoleFailed")
            }
            _ => false,
        }
    }

    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status of a Kubernetes API error.
    pub fn kube_status(&self) -> Option<u16> {
        match self {
            Error::Kube { status, .. } => *status,
            _ => None,
        }
    }
}

/// The `service` of Kubernetes API calls in [`Error::Timeout`] and [`Error::Deadline`].
pub const KUBERNETES: &str = "kubernetes";

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the Lambda runtime reports for a failed invocation: `errorType` says which kind of failure it was.
impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        let error_type = match &err {
            Error::Config { .. } => "InvalidConfiguration",
            Error::Payload(_) => "UnrecognisedPayload",
            Error::Kube { status: Some(401 | 403), .. } => "ClusterAccessDenied",
            Error::Kube { .. } => "ClusterUnavailable",
            Error::Timeout { service, .. } | Error::Deadline { service, .. } if *service == KUBERNETES => {
                "ClusterUnavailable"
            }
            Error::Aws { .. } | Error::Timeout { .. } | Error::Deadline { .. } => "AwsError",
        };
        lambda_runtime::Diagnostic { error_type: error_type.into(), error_message: err.to_string() }
    }
}
