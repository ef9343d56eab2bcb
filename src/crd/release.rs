//! The parts of a LambdaDeployment that release through published versions and an alias: how traffic moves
//! (`spec.strategy`), what judges a new version (`spec.analysis`), and the rollout's state and history in status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Alias names as Lambda accepts them, but not a bare number (that names a version); up to 128 characters.
pub const ALIAS_PATTERN: &str = r"^[a-zA-Z0-9_-]*[a-zA-Z_-][a-zA-Z0-9_-]*$";

/// How traffic moves from the stable version to a new one. Neither `canary` nor `linear`: all at once.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// Canary: the percent of traffic the new version gets at each step (each 1–99, increasing; at most 10
    /// steps), each held for `interval`, then all of it. `[10]` is CodeDeploy's Canary10Percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10), inner(range(min = 1, max = 99)))]
    pub canary: Option<Vec<u32>>,
    /// Linear: the percent added every `interval` (1–50), then all of it: `10` moves 10, 20, … 90, 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub linear: Option<u32>,
    /// How long each step is held before it is judged and the next one begins: `30s`, `5m`, `1h30m` (2s–24h; Lambda reports metrics by the minute, so an error-rate gate wants minutes).
    /// Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// What judges a new version: before any traffic moves to it (the smoke test) and before each promotion (alarms
/// and its own error rate). A version that fails is rolled back: all traffic returns to the stable version.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// CloudWatch alarms (names, in the function's account and region): any in ALARM rolls back. Name alarms that
    /// watch the new version only (e.g. on `ExecutedVersion`), so that the stable version's errors do not judge it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// The highest error rate, in percent of the new version's own invocations through the alias (AWS/Lambda
    /// `Errors` / `Invocations` with `ExecutedVersion`), tolerated over a step. Unset: no error-rate gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_error_rate: Option<f64>,
    /// Invocations of the new version a step must see before its error rate counts (Lambda reports nothing
    /// without traffic, and late). Until then the step is held. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_invocations: Option<u32>,
    /// A JSON payload to invoke the new version with (qualifier = the version) before any traffic moves to it: a
    /// function error rolls back with no traffic shifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_test_payload: Option<String>,
}

/// Where a release stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutState {
    /// Traffic is moving to the new version, step by step.
    Progressing,
    /// The new version has all the traffic.
    Promoted,
    /// The new version failed its judgment; all traffic is back on the stable version.
    RolledBack,
    /// A newer commit replaced it before it was promoted; its traffic went back to the stable version.
    Superseded,
}

/// The release in progress (or the last one): what any invocation needs to resume it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub commit: String,
    pub code_sha256: String,
    /// The version being released.
    pub version: String,
    /// The version that had all the traffic before (none: the alias was created for this release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    /// Percent of the alias's traffic on `version` now.
    pub weight: u32,
    /// Steps taken so far (0: published, no traffic yet).
    pub step: u32,
    pub state: RolloutState,
    /// When the release started (RFC 3339).
    pub started_at: String,
    /// When the current weight was set: the start of the window the next judgment looks at.
    pub step_started_at: String,
    /// When the next step is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_at: Option<String>,
    /// Why it was rolled back, or why a step is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `lambda-deployer.dev/retry` annotation's value when it was rolled back: a new value releases again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

/// One release in the history (`kubectl get ld -o yaml`): what ran when, and the versions to roll back to.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    pub commit: String,
    pub version: String,
    pub code_sha256: String,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: RolloutState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
