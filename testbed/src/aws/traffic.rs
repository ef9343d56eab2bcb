//! Simulated traffic: invocations of an alias, version or `$LATEST` at a steady rate, split by the alias's weights
//! of the moment and failing as each version's code markers script, counted in CloudWatch as real invocations are.
//! They are not logged one by one; each stream keeps a summary per executed version. Streams run against the
//! deployer's account in the main region.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::accounts::Place;
use super::{Shared, lock};

/// What one stream of simulated traffic did so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSummary {
    pub function: String,
    /// The alias, version or `$LATEST` invoked.
    pub qualifier: String,
    pub per_second: f64,
    /// By executed version (`$LATEST` or the number).
    pub versions: BTreeMap<String, VersionCounts>,
    /// Invocations Lambda refused (function or qualifier gone, function Pending): nothing ran, nothing counted.
    pub refused: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCounts {
    pub invocations: u64,
    pub errors: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid traffic: {0}")]
pub struct InvalidTraffic(pub String);

/// Invocations are run in small batches at this interval.
const TICK: Duration = Duration::from_millis(20);
/// Enough for any canary test; bounds what one stream can cost the machine.
const MAX_PER_SECOND: f64 = 10_000.0;

struct Stream {
    summary: Arc<Mutex<TrafficSummary>>,
    task: tokio::task::AbortHandle,
}

/// The running streams, by function and qualifier.
#[derive(Default)]
pub(crate) struct Traffic {
    streams: Mutex<BTreeMap<(String, String), Stream>>,
}

impl Traffic {
    /// Starts a stream, or sets the rate of the one already running (its counts go on).
    pub(super) fn start(
        &self,
        shared: &Arc<Shared>,
        function: &str,
        qualifier: &str,
        per_second: f64,
    ) -> Result<(), InvalidTraffic> {
        if !(per_second > 0.0 && per_second <= MAX_PER_SECOND) {
            return Err(InvalidTraffic(format!("per_second must be within (0, {MAX_PER_SECOND}], got {per_second}")));
        }
        shared.lambda.invocable(&Place::default(), function, Some(qualifier)).map_err(|e| InvalidTraffic(e.message))?;
        let mut streams = lock(&self.streams);
        let key = (function.to_string(), qualifier.to_string());
        if let Some(stream) = streams.get(&key) {
            lock(&stream.summary).per_second = per_second;
            return Ok(());
        }
        let summary = Arc::new(Mutex::new(TrafficSummary {
            function: function.to_string(),
            qualifier: qualifier.to_string(),
            per_second,
            ..TrafficSummary::default()
        }));
        let task = shared.runtime.spawn(run(Arc::downgrade(shared), summary.clone())).abort_handle();
        streams.insert(key, Stream { summary, task });
        Ok(())
    }

    /// Stops a stream and returns its final summary.
    pub(super) fn stop(&self, function: &str, qualifier: &str) -> Option<TrafficSummary> {
        let stream = lock(&self.streams).remove(&(function.to_string(), qualifier.to_string()))?;
        stream.task.abort();
        Some(lock(&stream.summary).clone())
    }

    pub(super) fn stop_all(&self) -> Vec<TrafficSummary> {
        let streams = std::mem::take(&mut *lock(&self.streams));
        streams
            .into_values()
            .map(|stream| {
                stream.task.abort();
                lock(&stream.summary).clone()
            })
            .collect()
    }

    pub(super) fn summaries(&self) -> Vec<TrafficSummary> {
        lock(&self.streams).values().map(|stream| lock(&stream.summary).clone()).collect()
    }
}

/// Runs the stream's invocations until aborted or the layer is gone: the rate's worth of invocations is accrued
/// every tick, and each whole one runs.
async fn run(shared: Weak<Shared>, summary: Arc<Mutex<TrafficSummary>>) {
    let (function, qualifier) = {
        let s = lock(&summary);
        (s.function.clone(), s.qualifier.clone())
    };
    let place = Place::default();
    let mut tick = tokio::time::interval(TICK);
    let mut last = Instant::now();
    let mut owed = 0.0;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        owed += lock(&summary).per_second * now.duration_since(last).as_secs_f64();
        last = now;
        let at = jiff::Timestamp::now();
        while owed >= 1.0 {
            owed -= 1.0;
            // Counted under the same lock: a reader never sees an invocation that ran but is not counted yet.
            let mut s = lock(&summary);
            match shared.lambda.invoke(&place, &function, Some(&qualifier)) {
                Ok(invocation) => {
                    shared.metrics.record(&place, &invocation, at);
                    let counts = s.versions.entry(invocation.executed_version).or_default();
                    counts.invocations += 1;
                    counts.errors += u64::from(invocation.failed);
                }
                Err(_) => s.refused += 1,
            }
        }
    }
}
