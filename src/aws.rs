//! What every AWS call shares: client-side rate limits that match Lambda's quotas, and one way to turn SDK errors
//! into [`Error::Aws`] with AWS's error code (retries and deadlines: [`crate::retry`]).

use std::time::Duration;

use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Error;

/// A token bucket shared by every task of the container: Lambda's quotas are per account and region, so one
/// invocation's concurrency must not multiply them.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    /// The theoretical arrival time of the next request.
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn per_second(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            interval: Duration::from_secs(1) / rate.max(1),
            burst: burst.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for a slot (GCRA): one request per interval on average; up to `burst` may start at once after idling.
    /// False, at once, when the slot would come after `deadline`.
    pub async fn acquire(&self, deadline: Option<Instant>) -> bool {
        let start = {
            let mut theoretical_arrival = self.next.lock().await;
            let now = Instant::now();
            let tolerance = self.interval * (self.burst - 1);
            let arrival = (*theoretical_arrival).max(now);
            *theoretical_arrival = arrival + self.interval;
            arrival.checked_sub(tolerance).map_or(now, |earliest| earliest.max(now))
        };
        if deadline.is_some_and(|deadline| start >= deadline) {
            return false;
        }
        tokio::time::sleep_until(start).await;
        true
    }
}

/// Lambda's control-plane quotas: GetFunction has its own 100 requests/s; everything else shares 15/s (AWS's
/// documented account quotas). The deployer paces itself at exactly those rates, so a sweep sits at the floor they
/// set, and starts with one request less than a second's worth at once: the token of margin absorbs requests that
/// arrive closer together than they were sent, so a container alone in its account gets no 429. Other tools using
/// the same quota meanwhile can still cause 429s; they are retried after the server's `Retry-After`.
#[derive(Debug)]
pub struct LambdaLimits {
    pub get_function: RateLimiter,
    pub control_plane: RateLimiter,
    /// Polls confirming started updates also pass this share of the GetFunction rate, so that however many updates
    /// are in flight, observing the next functions to act on keeps the rest.
    pub confirm: RateLimiter,
    /// Whether the account and region answered lately: one that did not is not called again for a while.
    pub unreachable: Unreachable,
}

/// How long a place that could not be reached is left alone: its other resources fail at once with the reason
/// instead of each retrying until the deadline (and the place is tried again by the next invocation after this).
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// Whether a place can be reached: it is left alone once calls about two different functions found it
/// unreachable (no connection, no answer, a role that cannot be assumed) with no call answered in between — one
/// function that does not answer says nothing about the others.
#[derive(Debug, Default)]
pub struct Unreachable(std::sync::Mutex<Reachability>);

#[derive(Debug, Default)]
struct Reachability {
    /// Functions whose calls found the place unreachable since the last answer.
    failed: std::collections::HashSet<String>,
    /// Since when the place is left alone, and why.
    left_alone: Option<(Instant, String)>,
}

impl Unreachable {
    pub fn failed(&self, function: &str, err: &Error) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.failed.insert(function.to_string());
        if state.failed.len() >= 2 {
            state.left_alone = Some((Instant::now(), err.to_string()));
        }
    }

    pub fn answered(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !state.failed.is_empty() || state.left_alone.is_some() {
            *state = Reachability::default();
        }
    }

    /// Why the place is left alone now, if it is.
    pub fn reason(&self) -> Option<String> {
        let state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.left_alone.as_ref().filter(|(when, _)| when.elapsed() < UNREACHABLE_FOR).map(|(_, why)| why.clone())
    }
}

/// AWS's quotas: GetFunction 100/s; every other control-plane request 15/s across all APIs.
pub const GET_FUNCTION_RPS: u32 = 100;
pub const CONTROL_PLANE_RPS: u32 = 15;
/// Of the GetFunction rate, what polls confirming updates may use.
pub const CONFIRM_RPS: u32 = 60;

/// ListFunctions returns at most this many functions per page.
pub const LIST_FUNCTIONS_PAGE: usize = 50;

/// Whether paging through all the account's functions (one shared control-plane request per 50) finishes sooner
/// than one GetFunction per target (their own quota), at the rates the deployer allows itself.
pub fn listing_is_quicker(targets: usize, functions_in_account: usize) -> bool {
    let pages = functions_in_account.div_ceil(LIST_FUNCTIONS_PAGE).max(1);
    // pages / CONTROL_PLANE_RPS < targets / GET_FUNCTION_RPS, without floating point.
    pages * (GET_FUNCTION_RPS as usize) < targets * (CONTROL_PLANE_RPS as usize)
}

impl Default for LambdaLimits {
    fn default() -> Self {
        LambdaLimits {
            get_function: RateLimiter::per_second(GET_FUNCTION_RPS, GET_FUNCTION_RPS - 1),
            control_plane: RateLimiter::per_second(CONTROL_PLANE_RPS, CONTROL_PLANE_RPS - 1),
            confirm: RateLimiter::per_second(CONFIRM_RPS, 10),
            unreachable: Unreachable::default(),
        }
    }
}

/// Converts an SDK error. Transient failures (throttling, 5xx, timeouts, connection errors) are `retryable`;
/// conflicts and precondition failures are not retried blindly: the caller re-observes and re-plans.
pub fn aws_error<E>(service: &'static str, operation: &'static str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service_err) => {
            let raw = service_err.raw();
            let status = raw.status().as_u16();
            let code = service_err.err().code().map(String::from);
            let message = service_err.err().message().map(String::from).unwrap_or_else(|| format!("HTTP {status}"));
            let throttled = status == 429
                || matches!(code.as_deref(), Some("TooManyRequestsException" | "ThrottlingException" | "SlowDown"));
            // A session that expired early (revoked, a clock off): the retry signs with a renewed one.
            let expired = matches!(code.as_deref(), Some("ExpiredTokenException" | "ExpiredToken"));
            let retry_after = raw
                .headers()
                .get("retry-after")
                .and_then(|value| value.trim().parse::<f64>().ok())
                .filter(|secs| secs.is_finite() && *secs >= 0.0 && *secs < 300.0)
                .map(Duration::from_secs_f64);
            Error::Aws {
                service,
                operation,
                code: code.or_else(|| (status == 404).then(|| "NotFound".to_string())),
                status: Some(status),
                message,
                retryable: throttled || expired || status >= 500,
                retry_after,
            }
        }
        // The credentials of another account could not be had: the role refused (for good) or STS did not answer.
        SdkError::DispatchFailure(_) if let Some(failed) = assume_failure(&err) => Error::Aws {
            service,
            operation,
            code: Some("AssumeRoleFailed".into()),
            status: None,
            message: failed.to_string(),
            retryable: failed.transient,
            retry_after: None,
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Error::Aws {
            service,
            operation,
            code: None,
            status: None,
            message: aws_sdk_lambda::error::DisplayErrorContext(&err).to_string(),
            retryable: true,
            retry_after: None,
        },
        _ => Error::Aws {
            service,
            operation,
            code: None,
            status: None,
            message: aws_sdk_lambda::error::DisplayErrorContext(&err).to_string(),
            retryable: false,
            retry_after: None,
        },
    }
}

/// Why a role could not be assumed, carried through the SDK's credentials error to [`aws_error`].
#[derive(Debug)]
pub struct AssumeFailed {
    pub role: String,
    pub reason: String,
    /// STS throttled, failed or did not answer (worth retrying); `false`: it refused (the trust policy, the external
    /// id, a missing role).
    pub transient: bool,
}

impl std::fmt::Display for AssumeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot assume role {}: {}", self.role, self.reason)
    }
}

impl std::error::Error for AssumeFailed {}

/// The [`AssumeFailed`] somewhere in an error's sources.
fn assume_failure<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e AssumeFailed> {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(failed) = err.downcast_ref::<AssumeFailed>() {
            return Some(failed);
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests_after_the_burst() {
        let limiter = RateLimiter::per_second(10, 2);
        let start = Instant::now();
        for _ in 0..12 {
            assert!(limiter.acquire(None).await);
        }
        // 2 at once, then one every 100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[test]
    fn listing_is_chosen_only_when_its_pages_take_less_time_than_the_targets_get_function_calls() {
        // 1,000 targets: 10 s of GetFunction at 100/s against 23 pages at 15/s (1.5 s).
        assert!(listing_is_quicker(1_000, 1_150));
        // 150 targets in an account of 150: 3 pages (0.2 s) against 1.5 s.
        assert!(listing_is_quicker(150, 150));
        // A few targets in a big account: GetFunction.
        assert!(!listing_is_quicker(10, 1_000));
        assert!(!listing_is_quicker(1, 1));
        // Break-even for 20 pages (1,000 functions) is 20 × 100 / 15 ≈ 133.3 targets.
        assert!(!listing_is_quicker(133, 1_000));
        assert!(listing_is_quicker(134, 1_000));
    }

    fn no_answer() -> Error {
        Error::Timeout { service: "lambda", operation: "GetFunction", after: Duration::from_secs(10) }
    }

    #[test]
    fn a_place_is_left_alone_only_when_two_functions_found_it_unreachable_without_an_answer_between() {
        let place = Unreachable::default();
        place.failed("f1", &no_answer());
        place.failed("f1", &no_answer());
        assert_eq!(place.reason(), None, "one function that does not answer says nothing about the others");
        place.answered();
        place.failed("f2", &no_answer());
        assert_eq!(place.reason(), None, "an answer in between starts over");
        place.failed("f3", &no_answer());
        assert!(place.reason().is_some_and(|why| why.contains("GetFunction")));
        place.answered();
        assert_eq!(place.reason(), None);
    }
}
