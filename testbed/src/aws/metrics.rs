//! Lambda's CloudWatch metrics as Lambda reports them (docs: monitoring-metrics-types): each invocation counts in
//! namespace `AWS/Lambda`, `Invocations` (1) and `Errors` (1 if the code failed, else 0), under the dimension sets
//! {FunctionName}, {FunctionName, Resource=FN:QUALIFIER} when the call named a qualifier, and {FunctionName,
//! Resource=FN:ALIAS, ExecutedVersion=N} when it went through an alias. Counts are summed per second and dimension
//! set, stamped with that second, and put into moto's CloudWatch (PutMetricData) `metrics_delay_ms` after the
//! second ends, so they become visible late, with their own timestamps, as Lambda's do — in the function's own
//! account and region. A second without invocations puts nothing: Lambda emits no zeros.

use std::collections::BTreeMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};

use super::accounts::Place;
use super::lambda::Invocation;
use super::moto_client::LAYER_KEY;
use super::{Shared, lock};

/// Names and values, in the order Lambda lists them.
type Dimensions = Vec<(&'static str, String)>;

#[derive(Default)]
struct Counts {
    invocations: u64,
    errors: u64,
}

/// Counts not yet put into CloudWatch, by account and region, epoch second and dimension set.
#[derive(Default)]
pub(crate) struct Metrics {
    pending: Mutex<BTreeMap<(Place, i64, Dimensions), Counts>>,
}

/// How often due counts are looked for: well under the one-second resolution they are summed at.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// PutMetricData takes at most 1,000 datums a call (CloudWatch quotas).
const DATUMS_PER_CALL: usize = 500;

fn dimension_sets(invocation: &Invocation) -> Vec<Dimensions> {
    let function = || ("FunctionName", invocation.function.clone());
    let mut sets = vec![vec![function()]];
    if let Some(q) = &invocation.qualifier {
        let resource = ("Resource", format!("{}:{q}", invocation.function));
        sets.push(vec![function(), resource.clone()]);
        if invocation.through_alias {
            sets.push(vec![function(), resource, ("ExecutedVersion", invocation.executed_version.clone())]);
        }
    }
    sets
}

impl Metrics {
    pub(crate) fn record(&self, place: &Place, invocation: &Invocation, at: jiff::Timestamp) {
        let mut pending = lock(&self.pending);
        for dimensions in dimension_sets(invocation) {
            let counts = pending.entry((place.clone(), at.as_second(), dimensions)).or_default();
            counts.invocations += 1;
            counts.errors += u64::from(invocation.failed);
        }
    }

    /// Takes the counts of the seconds that ended at least `delay` before `now`, as PutMetricData datums per
    /// account and region.
    fn take_due(&self, now: jiff::Timestamp, delay: Duration) -> BTreeMap<Place, Vec<Value>> {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let due = |second: i64| (second + 1).saturating_mul(1000).saturating_add(delay_ms) <= now.as_millisecond();
        let mut pending = lock(&self.pending);
        let keys: Vec<(Place, i64, Dimensions)> =
            pending.keys().filter(|(_, second, _)| due(*second)).cloned().collect();
        let mut datums: BTreeMap<Place, Vec<Value>> = BTreeMap::new();
        for key in keys {
            let Some(counts) = pending.remove(&key) else { continue };
            let (place, second, dimensions) = key;
            let dimensions: Vec<Value> =
                dimensions.iter().map(|(name, value)| json!({ "Name": name, "Value": value })).collect();
            for (metric, value) in [("Invocations", counts.invocations), ("Errors", counts.errors)] {
                datums.entry(place.clone()).or_default().push(json!({
                    "MetricName": metric,
                    "Dimensions": dimensions,
                    "Timestamp": second,
                    "Value": value as f64,
                    "Unit": "Count",
                }));
            }
        }
        datums
    }
}

/// Puts due counts into moto until the layer is gone.
pub(super) async fn flush_forever(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let delay = Duration::from_millis(lock(&shared.config).metrics_delay_ms);
        let due = shared.metrics.take_due(jiff::Timestamp::now(), delay);
        for (place, datums) in due {
            let moto = shared.moto.at(&place.account, &place.region);
            for chunk in datums.chunks(DATUMS_PER_CALL) {
                let body = json!({ "Namespace": "AWS/Lambda", "MetricData": chunk });
                let target = "GraniteServiceVersion20100801.PutMetricData";
                match moto.call_json(LAYER_KEY, "monitoring", target, &body).await {
                    Ok((status, _)) if status.is_success() => {}
                    Ok((status, answer)) => {
                        tracing::warn!(%status, answer = %String::from_utf8_lossy(&answer), "PutMetricData refused");
                    }
                    Err(e) => tracing::warn!(error = %e, "PutMetricData failed: the datapoints are lost"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(qualifier: Option<&str>, through_alias: bool, failed: bool) -> Invocation {
        Invocation {
            function: "f".into(),
            qualifier: qualifier.map(str::to_string),
            through_alias,
            executed_version: "2".into(),
            failed,
        }
    }

    #[test]
    fn an_invocation_through_an_alias_counts_under_three_dimension_sets_and_a_version_under_two() {
        let sets = dimension_sets(&invocation(Some("live"), true, false));
        assert_eq!(sets.len(), 3);
        assert_eq!(
            sets[2],
            vec![("FunctionName", "f".into()), ("Resource", "f:live".into()), ("ExecutedVersion", "2".into())]
        );
        assert_eq!(dimension_sets(&invocation(Some("2"), false, false)).len(), 2);
        assert_eq!(dimension_sets(&invocation(None, false, false)), vec![vec![("FunctionName", "f".to_string())]]);
    }

    #[test]
    fn counts_are_summed_per_second_and_put_only_once_the_delay_after_their_second_has_passed() {
        let metrics = Metrics::default();
        let at = jiff::Timestamp::from_second(1_000).unwrap();
        let (here, there) = (Place::default(), Place::new("210987654321", "us-west-2"));
        metrics.record(&here, &invocation(None, false, true), at);
        metrics.record(&here, &invocation(None, false, false), at + Duration::from_millis(900));
        metrics.record(&there, &invocation(None, false, false), at);
        let delay = Duration::from_secs(2);
        assert!(metrics.take_due(jiff::Timestamp::from_millisecond(1_002_999).unwrap(), delay).is_empty());
        let due = metrics.take_due(jiff::Timestamp::from_millisecond(1_003_000).unwrap(), delay);
        assert_eq!(due[&there].len(), 2, "another account's invocations are put there");
        let values: Vec<(&str, f64, i64)> = due[&here]
            .iter()
            .map(|d| {
                (d["MetricName"].as_str().unwrap(), d["Value"].as_f64().unwrap(), d["Timestamp"].as_i64().unwrap())
            })
            .collect();
        assert_eq!(values, [("Invocations", 2.0, 1_000), ("Errors", 1.0, 1_000)]);
        assert!(metrics.take_due(jiff::Timestamp::from_millisecond(2_000_000).unwrap(), delay).is_empty(), "once");
    }
}
