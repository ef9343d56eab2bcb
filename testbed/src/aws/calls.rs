//! The call log: every request the layer served, so tests and benchmarks can assert and count API calls.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Old entries are dropped beyond this many (counts stay exact), so a long benchmark cannot exhaust memory.
const MAX_CALLS: usize = 200_000;

/// One request as the layer saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub seq: u64,
    /// The SigV4 credential scope's service (`lambda`, `s3`, `iam`, `sts`, `eks`), or `unsigned`.
    pub service: String,
    pub operation: String,
    /// The function's short name, for Lambda calls about one function.
    pub function: Option<String>,
    /// Key parameters: `Bucket`, `Key`, `VersionId` (S3); `Qualifier`, `RevisionId`, `S3Bucket`, `S3Key`,
    /// `S3ObjectVersion`, `Publish` (Lambda); `Name` (EKS cluster).
    pub params: BTreeMap<String, String>,
    pub access_key_id: Option<String>,
    /// The account the call acted in (the access key's; a session's is its role's account), for signed calls.
    pub account: Option<String>,
    /// The credential scope's region, for signed calls.
    pub region: Option<String>,
    /// HTTP status the client received; 0 when the connection was dropped (a `connection_reset` or `timeout`
    /// fault) or the client went away first.
    pub status: u16,
    /// The service performed the operation (it answered 2xx), whatever the client received: an `after_apply`
    /// fault logs `applied` with status 500 or 0.
    pub applied: bool,
    /// For a call that started an update (UpdateFunctionCode, UpdateFunctionConfiguration; CreateFunction's
    /// Pending): how long it stays InProgress, in ms.
    pub in_progress_ms: Option<u64>,
    /// Response body bytes sent (for streamed S3 bodies: counted as they pass).
    pub response_bytes: u64,
    /// Milliseconds since the layer started.
    pub at_ms: u64,
    pub duration_ms: u64,
    /// The injected faults that fired for this call, if any; `competing_write: CHANGE` on a competitor's write
    /// (access key `competitor`), logged just before the call it preceded.
    pub fault: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallLog {
    pub calls: Vec<Call>,
    /// `service:Operation` → number of requests (exact even when old `calls` were dropped).
    pub counts: BTreeMap<String, u64>,
}

impl CallLog {
    pub fn count(&self, service: &str, operation: &str) -> u64 {
        self.counts.get(&format!("{service}:{operation}")).copied().unwrap_or(0)
    }

    pub fn of<'a>(&'a self, service: &'a str, operation: &'a str) -> impl Iterator<Item = &'a Call> + 'a {
        self.calls.iter().filter(move |c| c.service == service && c.operation == operation)
    }

    /// Response bytes of all logged calls of one operation, e.g. `("s3", "GetObject")` = bytes downloaded.
    pub fn bytes(&self, service: &str, operation: &str) -> u64 {
        self.of(service, operation).map(|c| c.response_bytes).sum()
    }
}

#[derive(Default)]
pub(crate) struct Recorder {
    next_seq: u64,
    calls: VecDeque<Call>,
    counts: BTreeMap<String, u64>,
}

impl Recorder {
    /// Stores the call and returns its sequence number.
    pub(crate) fn push(&mut self, mut call: Call) -> u64 {
        self.next_seq += 1;
        call.seq = self.next_seq;
        *self.counts.entry(format!("{}:{}", call.service, call.operation)).or_default() += 1;
        if self.calls.len() == MAX_CALLS {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
        self.next_seq
    }

    /// Adds streamed body bytes to a call logged earlier (a no-op if the log was cleared since).
    pub(crate) fn add_bytes(&mut self, seq: u64, bytes: u64) {
        if let Some(call) = self.calls.iter_mut().rev().find(|c| c.seq == seq) {
            call.response_bytes += bytes;
        }
    }

    pub(crate) fn snapshot(&self) -> CallLog {
        CallLog { calls: self.calls.iter().cloned().collect(), counts: self.counts.clone() }
    }

    pub(crate) fn clear(&mut self) {
        self.calls.clear();
        self.counts.clear();
    }
}
