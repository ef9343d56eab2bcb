//! The invocation's metrics, from its [`Summary`]: one CloudWatch Embedded Metric Format (EMF) document printed
//! as its own log line, from which CloudWatch Logs extracts the metrics — no PutMetricData call, no latency, no
//! permission. Dimensions are the deployer (its function name, one per stack) and the trigger: cardinality is
//! bounded, no resource is a dimension (per-resource detail is in the status, the Events and the log lines).
//!
//! Hand-written rather than `metrics_cloudwatch_embedded`: the figures already exist in one struct, reported once
//! per invocation, so a global recorder would only copy them; the document is ~40 lines of `serde_json`, which
//! the binary links anyway (see the README's Operations section for the comparison).

use serde_json::{Map, Value, json};

use crate::deployer::Summary;

/// The metrics' CloudWatch namespace.
pub const NAMESPACE: &str = "LambdaDeployer";
/// Dimension naming the deployer (its Lambda function name): alarms and the dashboard select one stack by it.
pub const DEPLOYER_DIMENSION: &str = "Deployer";
/// Dimension naming what woke the deployer (`schedule`, `artifact`, `wakeup`, `sweep`).
pub const TRIGGER_DIMENSION: &str = "Trigger";

/// A metric: its name, CloudWatch unit, and its value in a summary.
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    /// What it counts (the README's Operations table says the same).
    pub meaning: &'static str,
    value: fn(&Summary) -> u64,
}

/// Every metric each invocation emits, in this order.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "Considered",
        unit: "Count",
        meaning: "LambdaDeployments the invocation looked at",
        value: |s| s.considered as u64,
    },
    Metric {
        name: "Deployed",
        unit: "Count",
        meaning: "functions whose code (or alias) the invocation changed to the declared commit, drift included",
        value: |s| s.deployed as u64,
    },
    Metric {
        name: "DriftCorrected",
        unit: "Count",
        meaning: "of those, functions or aliases changed out of band and put back",
        value: |s| s.drift_corrected as u64,
    },
    Metric {
        name: "UpToDate",
        unit: "Count",
        meaning: "already running the declared commit",
        value: |s| s.up_to_date as u64,
    },
    Metric {
        name: "Deploying",
        unit: "Count",
        meaning: "updates started and not yet finished when the invocation stopped waiting",
        value: |s| s.deploying as u64,
    },
    Metric {
        name: "WaitingForArtifact",
        unit: "Count",
        meaning: "LambdaDeployments whose artifact is not in S3 yet",
        value: |s| s.waiting as u64,
    },
    Metric {
        name: "Failed",
        unit: "Count",
        meaning: "LambdaDeployments left Failed (invalid, deploy refused, update failed by Lambda)",
        value: |s| s.failed as u64,
    },
    Metric {
        name: "Blocked",
        unit: "Count",
        meaning: "LambdaDeployments not allowed to deploy (policy, or another owner)",
        value: |s| s.blocked as u64,
    },
    Metric {
        name: "Progressing",
        unit: "Count",
        meaning: "releases moving traffic step by step",
        value: |s| s.progressing as u64,
    },
    Metric {
        name: "Promoted",
        unit: "Count",
        meaning: "releases that gave their new version all the traffic in this invocation",
        value: |s| s.promoted as u64,
    },
    Metric {
        name: "RolledBack",
        unit: "Count",
        meaning: "releases rolled back in this invocation",
        value: |s| s.rollbacks as u64,
    },
    Metric {
        name: "Skipped",
        unit: "Count",
        meaning: "LambdaDeployments not reached before the deadline (the next sweep takes them)",
        value: |s| s.skipped as u64,
    },
    Metric {
        name: "Retries",
        unit: "Count",
        meaning: "AWS and Kubernetes calls retried (throttling, conflicts, 5xx, lost answers)",
        value: |s| s.retries,
    },
    Metric {
        name: "Throttles",
        unit: "Count",
        meaning: "answers that were 429 (Lambda's quotas, an overloaded API server)",
        value: |s| s.throttled,
    },
    Metric {
        name: "Duration",
        unit: "Milliseconds",
        meaning: "the invocation's wall time, from decoding the trigger to the summary",
        value: |s| s.duration_ms,
    },
];

/// The EMF document for one invocation's summary, as one JSON line. `deployer`: the function's name
/// (`AWS_LAMBDA_FUNCTION_NAME`); `request_id` is kept as a property (searchable, not a dimension). Dry runs change
/// nothing and report nothing: `None`.
pub fn emf_line(summary: &Summary, deployer: &str, request_id: &str, timestamp_ms: u64) -> Option<String> {
    if summary.dry_run {
        return None;
    }
    let definitions: Vec<Value> = METRICS.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect();
    let mut document = Map::new();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DEPLOYER_DIMENSION], [DEPLOYER_DIMENSION, TRIGGER_DIMENSION]],
                "Metrics": definitions,
            }],
        }),
    );
    document.insert(DEPLOYER_DIMENSION.into(), deployer.into());
    document.insert(TRIGGER_DIMENSION.into(), summary.trigger.clone().into());
    document.insert("requestId".into(), request_id.into());
    for metric in METRICS {
        document.insert(metric.name.into(), (metric.value)(summary).into());
    }
    serde_json::to_string(&document).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            trigger: "schedule".into(),
            considered: 12,
            deployed: 3,
            drift_corrected: 1,
            failed: 2,
            rolled_back: 4,
            rollbacks: 1,
            retries: 7,
            throttled: 5,
            duration_ms: 812,
            ..Summary::default()
        }
    }

    #[test]
    fn an_invocation_is_one_emf_document_with_bounded_dimensions() {
        let line = emf_line(&summary(), "lambda-deployer", "req-1", 1_700_000_000_000).unwrap();
        assert!(!line.contains('\n'), "one log line");
        let doc: Value = serde_json::from_str(&line).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], "LambdaDeployer");
        assert_eq!(directive["Dimensions"], json!([["Deployer"], ["Deployer", "Trigger"]]));
        // Every dimension and metric the directive names is a member of the root, as EMF requires.
        for dimension in ["Deployer", "Trigger"] {
            assert!(doc[dimension].is_string(), "{dimension}");
        }
        let names: Vec<&str> =
            directive["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        assert_eq!(names.len(), METRICS.len());
        for name in names {
            assert!(doc[name].is_u64(), "{name}");
        }
        assert_eq!((doc["Deployed"].as_u64(), doc["DriftCorrected"].as_u64()), (Some(3), Some(1)));
        assert_eq!(
            (doc["Failed"].as_u64(), doc["RolledBack"].as_u64()),
            (Some(2), Some(1)),
            "rolled back now, not still"
        );
        assert_eq!(
            (doc["Retries"].as_u64(), doc["Throttles"].as_u64(), doc["Duration"].as_u64()),
            (Some(7), Some(5), Some(812))
        );
        assert_eq!(doc["requestId"], "req-1");
        assert_eq!(doc["Trigger"], "schedule");
    }

    #[test]
    fn a_dry_run_emits_no_metrics() {
        let plan = Summary { dry_run: true, trigger: "plan".into(), ..summary() };
        assert_eq!(emf_line(&plan, "d", "r", 0), None);
    }
}
