//! Scripted faults: which requests they hit and what the client gets instead of the response, worded the way
//! kube-apiserver (and the network in front of it) fails.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RequestRecord;
use super::errors::ApiError;

/// A scripted fault. Matches requests by the fields that are set; the first matching fault fires.
/// JSON (for `POST /_testbed/faults`): `{"verbs":["patch"],"resource":"lambdadeployments","subresource":"status",
/// "status":409,"times":2}`, `{"status":500,"afterApply":true}`, `{"status":429,"retryAfterSeconds":3}`,
/// `{"reset":true}`, `{"hangMs":5000,"afterApply":true}`, `{"status":500,"probability":0.1,"seed":7}`,
/// `{"latencyMs":50}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct KubeFault {
    /// Verbs it applies to (empty: any).
    pub verbs: Vec<String>,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Answer with this HTTP status instead of the response: a `Status` like kube-apiserver's for the code, except
    /// 429, which is the flow-control filter's plain-text answer unless `storage_initializing`.
    pub status: Option<u16>,
    /// Serve the request first (a write is stored, an Event created), then answer with the fault anyway: the client
    /// cannot tell whether its request took effect.
    pub after_apply: bool,
    /// Close the connection without any response.
    pub reset: bool,
    /// Hold the connection this long without answering, then close it (a client with a shorter timeout gives up first).
    pub hang_ms: u64,
    /// Seconds in `Retry-After` (and in `details.retryAfterSeconds` of a `Status`); a 429 defaults to 1.
    pub retry_after_seconds: Option<u64>,
    /// Makes a 429 the `Status` the watch cache answers while it (re)initializes, instead of flow control's.
    pub storage_initializing: bool,
    /// Delay before answering (or serving).
    pub latency_ms: u64,
    /// Fire this many times, then disappear (None: forever).
    pub times: Option<u32>,
    /// Fire with this probability per matching request, drawn from a generator seeded with `seed`.
    pub probability: Option<f64>,
    pub seed: u64,
}

impl KubeFault {
    /// Every matching request gets `code`.
    pub fn status(code: u16) -> Self {
        KubeFault { status: Some(code), ..Default::default() }
    }

    /// Every matching request is delayed.
    pub fn latency(delay: Duration) -> Self {
        KubeFault { latency_ms: millis(delay), ..Default::default() }
    }

    /// Every matching request's connection is closed without a response.
    pub fn reset() -> Self {
        KubeFault { reset: true, ..Default::default() }
    }

    /// Every matching request gets no answer for `time`, then its connection is closed.
    pub fn hang(time: Duration) -> Self {
        KubeFault { hang_ms: millis(time), ..Default::default() }
    }

    /// 429 `storage is (re)initializing`, as kube-apiserver answers reads while a resource's watch cache starts.
    pub fn storage_initializing() -> Self {
        KubeFault { status: Some(429), storage_initializing: true, ..Default::default() }
    }

    /// The request is served before the fault answers (see `after_apply`).
    pub fn after_apply(mut self) -> Self {
        self.after_apply = true;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// Restricts to status writes (PUT/PATCH of `<resource>/status`).
    pub fn on_status_writes(mut self, resource: &str) -> Self {
        self.verbs = vec!["update".into(), "patch".into()];
        self.resource = Some(resource.into());
        self.subresource = Some("status".into());
        self
    }

    pub fn on_verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|v| v.to_string()).collect();
        self
    }

    pub fn on_resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn on_name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub fn with_probability(mut self, probability: f64, seed: u64) -> Self {
        self.probability = Some(probability);
        self.seed = seed;
        self
    }

    fn matches(&self, r: &RequestRecord) -> bool {
        let opt = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        (self.verbs.is_empty() || self.verbs.contains(&r.verb))
            && opt(&self.resource, &r.resource)
            && opt(&self.subresource, &r.subresource)
            && opt(&self.namespace, &r.namespace)
            && opt(&self.name, &r.name)
    }

    /// What the client gets instead of the response (None: the response, only delayed). Dropping the connection
    /// wins over a status.
    pub(crate) fn answer(&self, r: &RequestRecord) -> Option<Answer> {
        if self.hang_ms > 0 || self.reset {
            return Some(Answer::Drop(Duration::from_millis(self.hang_ms)));
        }
        let code = self.status?;
        let (error, default_retry) = match code {
            429 if !self.storage_initializing => {
                return Some(Answer::Throttled { retry_after: self.retry_after_seconds.unwrap_or(1) });
            }
            // The watch cache's NewTooManyRequests.
            429 => (ApiError::new(429, "TooManyRequests", "storage is (re)initializing"), Some(1)),
            // The handlers' NewTimeoutError (empty details) when a request outlives its deadline; the write may land.
            504 => (
                ApiError::new(
                    504,
                    "Timeout",
                    "Timeout: request did not complete within requested timeout - context deadline exceeded",
                ),
                Some(0),
            ),
            409 => (ApiError::stale(&r.group, &r.resource, &r.name), None),
            500 => (ApiError::internal("injected fault"), None),
            503 => {
                (ApiError::new(503, "ServiceUnavailable", "the server is currently unable to handle the request"), None)
            }
            404 => (ApiError::not_found(&r.group, &r.resource, &r.name), None),
            403 => (ApiError::new(403, "Forbidden", "injected fault"), None),
            401 => (ApiError::unauthorized(), None),
            _ => (ApiError::new(code, "", format!("injected fault {code}")), None),
        };
        Some(Answer::Status(match self.retry_after_seconds.or(default_retry) {
            Some(seconds) => error.with_retry_after(seconds),
            None => error,
        }))
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// What a fired fault sends instead of the response.
pub(crate) enum Answer {
    /// A `kind: Status` error, as kube-apiserver's handlers write them.
    Status(ApiError),
    /// The 429 of kube-apiserver's flow control (API Priority and Fairness, or max-in-flight): `http.Error`'s plain
    /// text and `Retry-After`, no `Status` body.
    Throttled { retry_after: u64 },
    /// No response: the connection is closed after this long.
    Drop(Duration),
}

/// The scripted faults, each with its remaining count and random stream.
#[derive(Default)]
pub(crate) struct Faults(Vec<ActiveFault>);

struct ActiveFault {
    fault: KubeFault,
    rng: fastrand::Rng,
}

impl Faults {
    pub fn push(&mut self, fault: KubeFault) {
        let rng = fastrand::Rng::with_seed(fault.seed);
        self.0.push(ActiveFault { fault, rng });
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The first fault that fires for this request (consuming one of its `times`).
    pub fn fire(&mut self, r: &RequestRecord) -> Option<KubeFault> {
        let hit = self.0.iter_mut().find_map(|f| f.fire(r));
        self.0.retain(|f| f.fault.times != Some(0));
        hit
    }
}

impl ActiveFault {
    fn fire(&mut self, r: &RequestRecord) -> Option<KubeFault> {
        if self.fault.times == Some(0) || !self.fault.matches(r) {
            return None;
        }
        if let Some(p) = self.fault.probability
            && self.rng.f64() >= p
        {
            return None;
        }
        if let Some(t) = self.fault.times.as_mut() {
            *t -= 1;
        }
        Some(self.fault.clone())
    }
}
