//! One retry and deadline policy for every call the deployer makes, AWS or Kubernetes: each attempt waits for its
//! rate limit and is cut off after `attempt_timeout` (or at the deadline, whichever is first); transient failures
//! (throttling, 5xx, no answer) are retried with full jitter but never sooner than the server's `Retry-After`, and
//! never past the invocation's deadline. Nothing else in the deployer retries: kube's and the SDK's own retry
//! layers are off, because they know nothing of the deadline.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::RateLimiter;
use crate::{Error, Result};

/// Attempts per call, the first included.
const MAX_ATTEMPTS: u32 = 8;

/// Counts retries and throttled answers, for the invocation summary and benchmarks.
#[derive(Debug, Default)]
pub struct RetryStats {
    pub retries: AtomicU64,
    /// Answers that were 429 (Lambda's quotas, an overloaded API server).
    pub throttled: AtomicU64,
}

/// Names a call in errors and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub service: &'static str,
    pub operation: &'static str,
}

impl Call {
    pub const fn new(service: &'static str, operation: &'static str) -> Call {
        Call { service, operation }
    }
}

/// A retried write's result, and whether an attempt that failed may nevertheless have taken effect (its answer was
/// lost: no answer, a dropped connection, a 5xx).
#[derive(Debug)]
pub struct Attempted<T> {
    pub result: Result<T>,
    pub maybe_applied: bool,
}

/// What one invocation may spend on a call: until its deadline, `attempt_timeout` per attempt.
#[derive(Clone, Copy, Debug)]
pub struct Budget<'a> {
    pub deadline: Option<Instant>,
    pub attempt_timeout: Duration,
    pub stats: &'a RetryStats,
}

impl<'a> Budget<'a> {
    /// The same budget with an earlier deadline (e.g. keeping time to report).
    pub fn until(self, deadline: Option<Instant>) -> Budget<'a> {
        let deadline = match (self.deadline, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Budget { deadline, ..self }
    }

    pub fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    pub fn expired(&self) -> bool {
        self.time_left().is_some_and(|left| left.is_zero())
    }

    /// Runs `call` until it succeeds, fails for good, or the next attempt would not fit before the deadline.
    pub async fn run<T, F, Fut>(&self, what: Call, limiter: Option<&RateLimiter>, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_write(what, limiter, call).await.result
    }

    /// [`Budget::run`] for a write: also says whether a failed attempt may have been applied.
    pub async fn run_write<T, F, Fut>(&self, what: Call, limiter: Option<&RateLimiter>, mut call: F) -> Attempted<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut maybe_applied = false;
        let mut attempt = 0;
        loop {
            let not_sent = || Error::Deadline { service: what.service, operation: what.operation };
            if let Some(limiter) = limiter
                && !limiter.acquire(self.deadline).await
            {
                return Attempted { result: Err(not_sent()), maybe_applied };
            }
            let timeout = match self.time_left() {
                Some(left) if left.is_zero() => return Attempted { result: Err(not_sent()), maybe_applied },
                Some(left) => left.min(self.attempt_timeout),
                None => self.attempt_timeout,
            };
            let answer = tokio::time::timeout(timeout, call()).await.unwrap_or_else(|_| {
                Err(Error::Timeout { service: what.service, operation: what.operation, after: timeout })
            });
            let err = match answer {
                Ok(value) => return Attempted { result: Ok(value), maybe_applied },
                Err(err) => err,
            };
            maybe_applied |= err.outcome_unknown();
            if is_throttle(&err) {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            }
            attempt += 1;
            if !err.is_transient() || attempt >= MAX_ATTEMPTS {
                return Attempted { result: Err(err), maybe_applied };
            }
            // Full jitter over an exponential ceiling, but never sooner than the server asked.
            let ceiling = Duration::from_millis(100 * 2u64.pow(attempt.min(6)));
            let jittered = ceiling.mul_f64(fastrand::f64());
            let wait = err.retry_after().map_or(jittered, |after| after.max(jittered));
            if self.deadline.is_some_and(|deadline| Instant::now() + wait >= deadline) {
                return Attempted { result: Err(err), maybe_applied };
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                service = what.service,
                operation = what.operation,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %err,
                "retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

fn is_throttle(err: &Error) -> bool {
    match err {
        Error::Kube { status, .. } => *status == Some(429),
        // S3 answers 503 to say "slow down" (a HEAD's 503 carries no code to tell).
        Error::Aws { service, status, code, .. } => {
            *status == Some(429)
                || (*service == "s3" && *status == Some(503))
                || matches!(code.as_deref(), Some("TooManyRequestsException" | "SlowDown"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    const CALL: Call = Call::new("lambda", "GetFunction");

    fn budget(stats: &RetryStats, deadline: Option<Instant>) -> Budget<'_> {
        Budget { deadline, attempt_timeout: Duration::from_secs(10), stats }
    }

    fn aws(status: u16, code: &str, retry_after: Option<Duration>) -> Error {
        Error::Aws {
            service: "lambda",
            operation: "UpdateFunctionCode",
            code: Some(code.into()),
            status: Some(status),
            message: code.into(),
            retryable: status == 429 || status >= 500,
            retry_after,
        }
    }

    fn throttled() -> Error {
        aws(429, "TooManyRequestsException", Some(Duration::from_secs(1)))
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_calls_wait_at_least_retry_after_then_succeed() {
        let stats = RetryStats::default();
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let result = budget(&stats, None)
            .run(CALL, None, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 { Err(throttled()) } else { Ok(7) }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
        assert_eq!(stats.throttled.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_that_would_pass_the_deadline_gives_up_with_the_error() {
        let stats = RetryStats::default();
        let deadline = Instant::now() + Duration::from_millis(500);
        let result: Result<()> = budget(&stats, Some(deadline)).run(CALL, None, || async { Err(throttled()) }).await;
        assert_eq!(result.unwrap_err().aws_code(), Some("TooManyRequestsException"));
    }

    #[tokio::test(start_paused = true)]
    async fn conflicts_are_returned_at_once_for_the_caller_to_look_again() {
        let stats = RetryStats::default();
        let calls = AtomicU32::new(0);
        let result: Result<()> = budget(&stats, None)
            .run(CALL, None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(aws(409, "ResourceConflictException", None))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_without_answer_is_cut_off_at_the_deadline_and_counts_as_maybe_applied() {
        let stats = RetryStats::default();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(3);
        let attempted: Attempted<()> = budget(&stats, Some(deadline))
            .run_write(CALL, None, || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
            .await;
        assert!(matches!(attempted.result, Err(Error::Timeout { .. })), "{attempted:?}");
        assert!(attempted.maybe_applied, "a request without answer may have been applied");
        assert!(start.elapsed() <= Duration::from_secs(3), "returned by the deadline: {:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_error_is_retried_and_remembered_as_maybe_applied_a_throttle_is_not() {
        let stats = RetryStats::default();
        let calls = AtomicU32::new(0);
        let attempted = budget(&stats, None)
            .run_write(CALL, None, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(aws(500, "ServiceException", None)),
                    1 => Err(aws(409, "ResourceConflictException", None)),
                    _ => Ok(()),
                }
            })
            .await;
        assert_eq!(attempted.result.unwrap_err().aws_code(), Some("ResourceConflictException"));
        assert!(attempted.maybe_applied);

        let calls = AtomicU32::new(0);
        let attempted = budget(&stats, None)
            .run_write(CALL, None, || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 { Err(throttled()) } else { Ok(()) }
            })
            .await;
        assert!(attempted.result.is_ok() && !attempted.maybe_applied, "a 429 was refused, not applied");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_sent_once_the_deadline_has_passed() {
        let stats = RetryStats::default();
        let calls = AtomicU32::new(0);
        let result: Result<()> = budget(&stats, Some(Instant::now()))
            .run(CALL, None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(result, Err(Error::Deadline { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
