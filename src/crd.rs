//! The `LambdaDeployment` resource. The CRD in `crds/` is generated from these types (`cargo run --bin crdgen`);
//! `///` comments on spec fields are user documentation (`kubectl explain ld.spec`).

mod release;

pub use release::{ALIAS_PATTERN, Analysis, ReleaseRecord, Rollout, RolloutState, Strategy};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "lambda-deployer.dev";
/// Tag the deployer puts on every function it deploys, naming the owning LambdaDeployment (`namespace/name`).
pub const OWNER_TAG: &str = "lambda-deployer.dev/owner";
/// Tag naming the cluster the owning LambdaDeployment lives in: only that cluster's deployer can tell when the
/// claim ends.
pub const CLUSTER_TAG: &str = "lambda-deployer.dev/cluster";
/// Annotation that asks the deployer to try again what it gave up on (an update Lambda failed): any new value.
pub const RETRY_ANNOTATION: &str = "lambda-deployer.dev/retry";
/// Pattern shared by the schema and the deployer's own re-validation (objects can reach us without schema checks).
pub const FUNCTION_ARN_PATTERN: &str =
    r"^arn:aws[a-z-]*:lambda:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}$";
pub const FUNCTION_NAME_PATTERN: &str = r"^[A-Za-z0-9_-]{1,64}$";
pub const COMMIT_PATTERN: &str = r"^[0-9a-f]{7,40}$";

/// Deploys one Lambda function from an artifact in S3: the zip at `s3://<bucket>/<functionName>/<commit>.zip`
/// (the key template is configurable) is deployed to `functionARN` whenever the function runs different code.
/// Change `commit` to deploy or roll back.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
// kube's printcolumn(...) repeats `type_ = "string"` per column, which this lint mistakes for duplicate attributes.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "lambda-deployer.dev",
    version = "v1",
    kind = "LambdaDeployment",
    namespaced,
    shortname = "ld",
    category = "lambda-deployer",
    status = "LambdaDeploymentStatus",
    doc = "Deploys one Lambda function from a zip artifact in S3, chosen by commit.",
    printcolumn(name = "Function", type_ = "string", json_path = ".spec.functionName"),
    printcolumn(name = "Commit", type_ = "string", json_path = ".spec.commit"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Deployed", type_ = "string", json_path = ".status.deployedCommit"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.rollout.weight"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.functionName",
    selectable = ".spec.commit"
)]
#[serde(rename_all = "camelCase")]
pub struct LambdaDeploymentSpec {
    /// ARN of the Lambda function to deploy to, unqualified (no version or alias), e.g.
    /// `arn:aws:lambda:us-east-1:123456789012:function:orders-production`. Change it to promote the same
    /// artifact to another environment.
    #[serde(rename = "functionARN")]
    #[schemars(pattern(FUNCTION_ARN_PATTERN))]
    pub function_arn: String,

    /// Name of the artifact, as CI uploads it: the `{functionName}` part of the artifact key (default key
    /// `<functionName>/<commit>.zip`). May differ from the function's own name (one artifact, many environments).
    #[schemars(pattern(FUNCTION_NAME_PATTERN))]
    pub function_name: String,

    /// Git commit whose artifact should run: 7 to 40 lowercase hex characters. Set it to an older commit to roll back.
    #[schemars(pattern(COMMIT_PATTERN))]
    pub commit: String,

    /// Where the artifact is, when it is not at the configured bucket and key template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactLocation>,

    /// Stop deploying this function (drift is left alone, a rollout pauses where it is) until set back to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Release through published versions and this alias (e.g. `live`; created if missing): each commit's code is
    /// published as a version and the alias is moved to it — all at once, or step by step (`strategy`), judged by
    /// `analysis` and rolled back by itself. A commit whose version was released before is released again by
    /// moving the alias alone, at once: rolling back is changing `commit`. Without an alias, the function's
    /// `$LATEST` code is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(ALIAS_PATTERN))]
    pub alias: Option<String>,

    /// How traffic moves to a new version (with `alias`). Default: all at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,

    /// What judges a new version before traffic moves to it and before each promotion (with `alias`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,

    /// Versions the deployer published to keep (1–100, default 10) besides the stable and current ones and any an
    /// alias points to; older ones are deleted (Lambda's code storage is finite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub keep_versions: Option<u32>,
}

/// An explicit artifact location, overriding the deployer's bucket and key template.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactLocation {
    /// S3 bucket holding the artifact (default: the deployer's `ARTIFACT_BUCKET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 63))]
    pub bucket: Option<String>,
    /// Full S3 key of the zip (default: rendered from the key template). Only a scheduled sweep picks up an upload
    /// to an override key that does not match the key template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub key: Option<String>,
}

/// What the deployer observed and did, written only when it changes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LambdaDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Commit whose artifact the function runs, as verified by its CodeSha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_commit: Option<String>,
    /// The function's CodeSha256 (base64 SHA-256 of the zip) when last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
    /// The exact artifact object the desired commit resolves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,
    /// When the deployer last changed the function's code (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deployed_at: Option<String>,
    /// Human-readable explanation of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// An update the deployer started (or may have started: the answer was lost) and has not yet seen finish.
    /// The next invocation confirms it (`Deployed`) or finds it failed, instead of starting it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_update: Option<UpdateRecord>,
    /// The last update Lambda accepted and then failed (the function kept its previous code). The deployer does not
    /// try this artifact again until `spec.commit` changes or the `lambda-deployer.dev/retry` annotation does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_update: Option<FailedUpdate>,
    /// The cluster named by this resource's claim on the function (tags `lambda-deployer.dev/owner` and
    /// `lambda-deployer.dev/cluster`), as last verified. Until it is recorded, sweeps read the function's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_in: Option<String>,
    /// The version the alias sends all traffic to, as last verified (`spec.alias`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The release in progress, or the last one (`spec.alias`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// The last releases, newest first (at most 10): what ran when, and what to roll back to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ReleaseRecord>,
    /// `Ready` (the function runs the desired commit) and `ArtifactAvailable` (the artifact exists in S3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// The artifact for the desired commit is not in S3 yet; the upload's event or the next sweep deploys it.
    WaitingForArtifact,
    /// An update was started and has not finished yet.
    Deploying,
    /// The function runs the desired commit's artifact.
    Deployed,
    /// The deploy failed or the resource is invalid; see `message`.
    Failed,
    /// The deployer may not deploy to this function (not allowed, or owned by another LambdaDeployment).
    Blocked,
    /// `spec.suspend` is true.
    Suspended,
    /// A release is moving traffic to the new version step by step (`status.rollout.weight` percent so far).
    Progressing,
    /// The new version failed its judgment and all traffic is back on the stable version; see `message`.
    RolledBack,
}

/// The artifact object that was verified in S3. `sha256` is remembered by version/ETag so sweeps do not download again.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Base64 SHA-256 of the zip, comparable with the function's CodeSha256.
    pub sha256: String,
}

/// An update of the function's code to one artifact.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRecord {
    pub commit: String,
    /// The artifact's CodeSha256.
    pub sha256: String,
    /// When the deployer sent the update (RFC 3339).
    pub started_at: String,
}

/// An update Lambda failed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedUpdate {
    pub commit: String,
    /// The artifact's CodeSha256.
    pub sha256: String,
    /// Lambda's `LastUpdateStatusReasonCode` and `LastUpdateStatusReason`.
    pub reason: String,
    /// The `lambda-deployer.dev/retry` annotation's value when it failed; a different value retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

impl LambdaDeployment {
    /// `namespace/name`: how logs, Events and the owner tag name this resource.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

/// The CRD as YAML, exactly as committed in `crds/lambdadeployment.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = LambdaDeployment::crd();
    serde_saphyr::to_string(&crd).expect("a CRD always serialises to YAML")
}
