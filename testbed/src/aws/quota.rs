//! Lambda's control-plane request quotas as token buckets (holding `burst_seconds` of requests, full at the start).

use std::time::{Duration, Instant};

pub(crate) struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(per_second: f64, burst_seconds: f64, now: Instant) -> TokenBucket {
        let capacity = (per_second * burst_seconds).max(1.0);
        TokenBucket { per_second, capacity, tokens: capacity, last: now }
    }

    /// Takes a token, or says how long until one is available.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        } else {
            Err(Duration::from_secs(1))
        }
    }
}

/// AWS's quotas of one account in one region: GetFunction has its own rate; every other control-plane call shares
/// one.
pub(crate) struct Quotas {
    get_function: TokenBucket,
    control_plane: TokenBucket,
}

impl Quotas {
    pub(crate) fn new(get_function_per_second: f64, control_plane_per_second: f64, burst_seconds: f64) -> Quotas {
        let now = Instant::now();
        Quotas {
            get_function: TokenBucket::new(get_function_per_second, burst_seconds, now),
            control_plane: TokenBucket::new(control_plane_per_second, burst_seconds, now),
        }
    }

    pub(crate) fn take(&mut self, operation: &str) -> Result<(), Duration> {
        let bucket = if operation == "GetFunction" { &mut self.get_function } else { &mut self.control_plane };
        bucket.take(Instant::now())
    }
}
