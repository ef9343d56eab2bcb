//! The pure decision step: (desired LambdaDeployment, observed artifact, observed function, policy) → what to do.
//! No I/O here. The executor calls [`plan`] repeatedly: when the answer is "observe X", it observes and asks again,
//! so observations are made lazily and only when a decision depends on them (no Lambda call for a missing artifact).

use std::time::Duration;

use crate::accounts::{Place, TargetRoles};
use crate::arn::{ArnGlob, FunctionArn};
use crate::config::NamespacePolicy;
use crate::crd::{ArtifactStatus, LambdaDeployment, RETRY_ANNOTATION};
use crate::key::{self, KeyTemplate};
use crate::ownership::{self, Claim, OwnerCheck, Ownership};

/// The function as GetFunction (or ListFunctions) reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionState {
    pub code_sha256: String,
    pub revision_id: String,
    /// `Pending`, `Active`, `Inactive`, `Failed`.
    pub state: String,
    /// `InProgress`, `Successful`, `Failed`.
    pub last_update_status: String,
    pub last_update_reason: Option<String>,
    /// Lambda's `LastUpdateStatusReasonCode`, e.g. `InvalidZipFileException`.
    pub last_update_reason_code: Option<String>,
    /// How long before the observation the last update started (Lambda's `LastModified`), when known.
    pub last_modified_ago: Option<Duration>,
    /// The owner and cluster tags: which LambdaDeployment claims the function.
    pub claim: Claim,
    /// From GetFunction (state, tags and a fresh RevisionId). ListFunctions pages carry only code and revision, so
    /// such an observation is enough to confirm "up to date" but not to deploy or to judge ownership.
    pub detailed: bool,
}

/// An observation that may not have been made yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed<T> {
    NotObserved,
    Missing,
    Found(T),
    /// Observing failed; the message says why (for the status).
    Failed(String),
}

impl<T> Observed<T> {
    /// The same observation of something derived from what was found.
    pub fn map_found<U>(self, f: impl FnOnce(T) -> U) -> Observed<U> {
        match self {
            Observed::NotObserved => Observed::NotObserved,
            Observed::Missing => Observed::Missing,
            Observed::Found(found) => Observed::Found(f(found)),
            Observed::Failed(reason) => Observed::Failed(reason),
        }
    }

    /// What a failed attempt to observe found: nothing, when the deadline stopped it before it was made (the
    /// executor then stops too); a failure to report otherwise.
    pub fn failed(err: &crate::Error) -> Observed<T> {
        match err {
            crate::Error::Deadline { .. } => Observed::NotObserved,
            other => Observed::Failed(other.to_string()),
        }
    }
}

/// What the deployer may do, beyond the resource itself.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    /// `ARTIFACT_BUCKET`: artifacts of functions in the deployer's own region.
    pub default_bucket: &'a str,
    /// The artifact bucket of each other region (Lambda reads code only from a bucket in the function's region).
    pub regional_buckets: &'a [(String, String)],
    /// The deployer's own account and region; other accounts are reached through `roles`.
    pub own: &'a Place,
    pub roles: &'a TargetRoles,
    pub key_template: &'a KeyTemplate,
    /// Already resolved: the configured list, or the deployer's own account and region.
    pub allowed_function_arns: &'a [ArnGlob],
    pub namespace_policy: Option<&'a NamespacePolicy>,
}

/// Everything one decision depends on.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub ld: &'a LambdaDeployment,
    pub artifact: &'a Observed<ArtifactStatus>,
    /// The artifact was confirmed unchanged from a bucket listing (same ETag as the status remembers), not read
    /// itself: enough for "up to date", but a deploy first verifies the exact object version.
    pub artifact_from_listing: bool,
    pub function: &'a Observed<FunctionState>,
    /// Another LambdaDeployment in this invocation targeting the same function, preferred to this one (created
    /// earlier). Decides ownership only while the function carries no claim that holds.
    pub preferred_rival: Option<&'a str>,
    /// Whether the LambdaDeployment the function's claim names still holds it.
    pub owner_check: &'a OwnerCheck,
    /// This deployer's cluster, as claims name it.
    pub cluster: &'a str,
    /// CodeSha256 of an update this invocation sent that may have been applied (accepted, or its answer was lost).
    /// An update an earlier invocation left unconfirmed is in the status (`pendingUpdate`).
    pub sent: Option<&'a str>,
    /// CodeSha256 an update in progress was applying when this invocation looked (another invocation's, say): if
    /// the function then shows a failed update, that code is what failed.
    pub witnessed: Option<&'a str>,
    pub policy: &'a Policy<'a>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    ObserveArtifact {
        bucket: String,
        key: String,
    },
    ObserveFunction,
    /// Find out whether the LambdaDeployment the function's claim names (`namespace/name`) still holds it.
    CheckOwner(String),
    /// Update the code to `artifact`, guarded by `revision_id`. `claim` = tag the function as ours first;
    /// `drift` = it ran our commit before and was changed out of band.
    Deploy {
        artifact: ArtifactStatus,
        revision_id: String,
        claim: bool,
        drift: bool,
    },
    /// Nothing to deploy; `claim` = tag the function as ours (it has no owner tag yet); `deployed` = it runs the
    /// artifact because of an update the deployer sent (now confirmed), not because it already did.
    UpToDate {
        artifact: ArtifactStatus,
        claim: bool,
        deployed: bool,
    },
    /// Lambda accepted an update to this artifact and then failed it (the function runs its previous code), now or
    /// before: not retried until the commit changes or the user asks for a retry.
    UpdateFailed {
        artifact: ArtifactStatus,
        reason: String,
    },
    WaitForArtifact {
        bucket: String,
        key: String,
    },
    /// The function is busy (an update or creation in progress): wait, or look again on the next sweep. `ours`:
    /// the update is the one the deployer sent.
    WaitForFunction {
        reason: String,
        ours: bool,
    },
    /// A failed update someone else sent moments ago: leave it to its sender to report (`Deploying` until then).
    AwaitReport(String),
    Blocked(String),
    Invalid(String),
    Suspended,
    Failed(String),
}

/// Where the desired artifact is: `spec.artifact` overrides, else the bucket of the function's region and the key
/// template.
pub fn artifact_location(ld: &LambdaDeployment, policy: &Policy) -> (String, String) {
    let spec = &ld.spec;
    let location = spec.artifact.as_ref();
    let region = FunctionArn::parse(&spec.function_arn).map(|arn| arn.region).ok();
    let bucket = location
        .and_then(|a| a.bucket.clone())
        .or_else(|| region.and_then(|region| policy.bucket_in(&region)).map(String::from))
        .unwrap_or_else(|| policy.default_bucket.to_string());
    let key = location
        .and_then(|a| a.key.clone())
        .unwrap_or_else(|| policy.key_template.render(&spec.function_name, &spec.commit));
    (bucket, key)
}

/// Checks the spec again: objects can be stored without schema validation (or under an older CRD).
pub fn validate(ld: &LambdaDeployment) -> Result<FunctionArn, String> {
    let spec = &ld.spec;
    key::validate_function_name(&spec.function_name).map_err(|e| format!("spec.functionName: {e}"))?;
    key::validate_commit(&spec.commit).map_err(|e| format!("spec.commit: {e}"))?;
    if let Some(location) = &spec.artifact
        && let Some(key) = &location.key
        && (key.is_empty() || key.len() > 1024 || key.split('/').any(|segment| segment == ".."))
    {
        return Err(format!("spec.artifact.key: {key:?} is not a usable S3 key"));
    }
    let arn = FunctionArn::parse(&spec.function_arn).map_err(|e| format!("spec.functionARN: {e}"))?;
    crate::release::validate(ld)?;
    Ok(arn)
}

/// Why a resource may not be acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Invalid(String),
    Suspended,
    Blocked(String),
}

/// Whether the resource may be acted on at all: valid, not suspended, allowed.
pub fn admit(ld: &LambdaDeployment, policy: &Policy) -> Result<FunctionArn, Refusal> {
    let arn = validate(ld).map_err(Refusal::Invalid)?;
    if ld.spec.suspend == Some(true) {
        return Err(Refusal::Suspended);
    }
    authorize(ld, &arn, policy).map_err(Refusal::Blocked)?;
    reach(ld, &arn, policy).map_err(Refusal::Blocked)?;
    Ok(arn)
}

/// Whether the deployer can reach the function: its own account, or one it has a role in; and a bucket in the
/// function's region (its own region's, one of `ARTIFACT_BUCKETS`, or the resource's own `spec.artifact.bucket`).
fn reach(ld: &LambdaDeployment, arn: &FunctionArn, policy: &Policy) -> Result<(), String> {
    if arn.account != policy.own.account && policy.roles.role_for(&arn.account).is_none() {
        return Err(format!(
            "{arn} is in account {}, where the deployer has no role to assume: set TARGET_ROLE_ARN or add \
             {}=<role ARN> to TARGET_ROLES",
            arn.account, arn.account
        ));
    }
    let own_bucket = ld.spec.artifact.as_ref().is_some_and(|a| a.bucket.is_some());
    if !own_bucket && policy.bucket_in(&arn.region).is_none() {
        return Err(format!(
            "{arn} is in region {}, which has no artifact bucket (Lambda reads code only from a bucket in the \
             function's region): add {}=<bucket> to ARTIFACT_BUCKETS",
            arn.region, arn.region
        ));
    }
    Ok(())
}

impl Policy<'_> {
    /// The artifact bucket for functions in `region`.
    pub fn bucket_in(&self, region: &str) -> Option<&str> {
        if region == self.own.region {
            return Some(self.default_bucket);
        }
        self.regional_buckets.iter().find(|(r, _)| r == region).map(|(_, bucket)| bucket.as_str())
    }
}

/// Whether this resource may deploy at all (valid and allowed). Only such resources compete for a function: one
/// that can never deploy must not block one that can.
pub fn eligible(ld: &LambdaDeployment, policy: &Policy) -> bool {
    validate(ld).is_ok_and(|arn| authorize(ld, &arn, policy).is_ok())
}

fn authorize(ld: &LambdaDeployment, arn: &FunctionArn, policy: &Policy) -> Result<(), String> {
    let arn_text = arn.to_string();
    if !policy.allowed_function_arns.iter().any(|glob| glob.matches(&arn_text)) {
        let allowed: Vec<&str> = policy.allowed_function_arns.iter().map(ArnGlob::as_str).collect();
        return Err(format!("{arn_text} is not in ALLOWED_FUNCTION_ARNS ({})", allowed.join(", ")));
    }
    if let Some(namespace_policy) = policy.namespace_policy {
        let namespace = ld.metadata.namespace.as_deref().unwrap_or_default();
        match namespace_policy.patterns_for(namespace) {
            None => return Err(format!("namespace {namespace:?} has no entry in NAMESPACE_POLICY")),
            Some(globs) if !globs.iter().any(|glob| glob.matches(&arn_text)) => {
                return Err(format!("namespace {namespace:?} may not target {arn_text} (NAMESPACE_POLICY)"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

pub fn plan(input: &Input) -> Decision {
    let ld = input.ld;
    let arn = match admit(ld, input.policy) {
        Ok(arn) => arn,
        Err(Refusal::Invalid(reason)) => return Decision::Invalid(reason),
        Err(Refusal::Suspended) => return Decision::Suspended,
        Err(Refusal::Blocked(reason)) => return Decision::Blocked(reason),
    };
    let (bucket, key) = artifact_location(ld, input.policy);
    let artifact = match input.artifact {
        Observed::NotObserved => return Decision::ObserveArtifact { bucket, key },
        Observed::Missing => return Decision::WaitForArtifact { bucket, key },
        Observed::Failed(reason) => {
            return Decision::Failed(format!("cannot read artifact s3://{bucket}/{key}: {reason}"));
        }
        Observed::Found(artifact) => artifact,
    };
    let function = match input.function {
        Observed::NotObserved => return Decision::ObserveFunction,
        Observed::Missing => return Decision::Failed(format!("function {arn} does not exist")),
        Observed::Failed(reason) => return Decision::Failed(format!("cannot read function {arn}: {reason}")),
        Observed::Found(function) => function,
    };
    let status = ld.status.as_ref();
    let sent = input.sent.or_else(|| status.and_then(|s| s.pending_update.as_ref()).map(|p| p.sha256.as_str()));
    let ours = sent == Some(artifact.sha256.as_str());
    // A listing shows neither tags nor whether an update is still running (or failed); a claim this resource has
    // not yet verified in this cluster is read too.
    let claim_verified = status.and_then(|s| s.claimed_in.as_deref()) == Some(input.cluster);
    if !function.detailed
        && (function.code_sha256 != artifact.sha256 || input.preferred_rival.is_some() || ours || !claim_verified)
    {
        return Decision::ObserveFunction;
    }
    let me = ld.key();
    let arn_text = arn.to_string();
    let claim = match ownership::decide(&ownership::Input {
        me: &me,
        arn: &arn_text,
        claim: &function.claim,
        cluster: input.cluster,
        rival: input.preferred_rival,
        check: input.owner_check,
        detailed: function.detailed,
    }) {
        Ownership::Mine { claim } => claim,
        Ownership::Blocked(message) => return Decision::Blocked(message),
        Ownership::Check(owner) => return Decision::CheckOwner(owner),
    };
    // Settle first: during an update CodeSha256 already names the new code, which may yet fail.
    if function.last_update_status == "InProgress" || function.state == "Pending" {
        let reason = if ours {
            format!("update of {arn} to CodeSha256 {} in progress", artifact.sha256)
        } else {
            format!("function {arn} is being updated by someone else")
        };
        return Decision::WaitForFunction { reason, ours };
    }
    if function.code_sha256 == artifact.sha256 {
        return Decision::UpToDate { artifact: artifact.clone(), claim, deployed: ours };
    }
    // Lambda keeps the previous code when an update fails: our update (or one of this very code we saw in
    // progress, another deployer's) did not take, and is not tried again.
    let failed_here = ours || input.witnessed == Some(artifact.sha256.as_str());
    if failed_here && function.last_update_status == "Failed" {
        let reason = match (&function.last_update_reason_code, &function.last_update_reason) {
            (Some(code), Some(reason)) => format!("{code}: {reason}"),
            (code, reason) => code.clone().or_else(|| reason.clone()).unwrap_or_else(|| "no reason given".into()),
        };
        return Decision::UpdateFailed { artifact: artifact.clone(), reason };
    }
    // A failed update no one here sent or saw and the status does not record, on a function this resource already
    // claims, started moments ago: most likely another deployer instance's attempt at this very code, its report on
    // the way. Sending it again would repeat the failure: wait for that report. An older one is deployed over.
    if function.last_update_status == "Failed"
        && !claim
        && status.and_then(|s| s.failed_update.as_ref()).is_none()
        && function.last_modified_ago.is_some_and(|ago| ago < UNREPORTED_FAILURE_WINDOW)
    {
        return Decision::AwaitReport(format!(
            "an update of {arn} that this invocation did not send failed moments ago; waiting for its sender to \
             report it (redeployed if it is not reported within {}s)",
            UNREPORTED_FAILURE_WINDOW.as_secs()
        ));
    }
    let retry = ld.metadata.annotations.as_ref().and_then(|a| a.get(RETRY_ANNOTATION));
    if let Some(failed) = status.and_then(|s| s.failed_update.as_ref())
        && failed.sha256 == artifact.sha256
        && failed.retry.as_ref() == retry
    {
        return Decision::UpdateFailed { artifact: artifact.clone(), reason: failed.reason.clone() };
    }
    if input.artifact_from_listing {
        return Decision::ObserveArtifact { bucket, key };
    }
    let drift = restores_drift(ld);
    Decision::Deploy { artifact: artifact.clone(), revision_id: function.revision_id.clone(), claim, drift }
}

/// How long a failed update nobody here sent is left to its sender to report: longer than an invocation waits for an
/// update to settle (`UPDATE_TIMEOUT_SECONDS`, 60 by default) and then writes the status.
pub const UNREPORTED_FAILURE_WINDOW: Duration = Duration::from_secs(120);

/// Whether deploying this resource's artifact puts back code changed out of band: the function ran this commit
/// before (as verified then).
pub fn restores_drift(ld: &LambdaDeployment) -> bool {
    ld.status.as_ref().and_then(|s| s.deployed_commit.as_deref()) == Some(ld.spec.commit.as_str())
}

/// Whether the function runs other code than this resource's status last recorded: someone changed it since (out
/// of band, or another invocation acting on a newer spec). A listed spec is then read again before deploying.
pub fn changed_since_recorded(ld: &LambdaDeployment, function: &FunctionState) -> bool {
    ld.status.as_ref().and_then(|s| s.code_sha256.as_deref()) != Some(function.code_sha256.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ArtifactLocation, FailedUpdate, LambdaDeploymentSpec, LambdaDeploymentStatus, UpdateRecord};

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:orders-prod";
    const COMMIT: &str = "8cc06dbec558fd94d9b40da92e347a34f454df61";
    const CLUSTER: &str = "arn:aws:eks:us-east-1:123456789012:cluster/prod";

    fn ld() -> LambdaDeployment {
        let mut ld = LambdaDeployment::new(
            "orders",
            LambdaDeploymentSpec {
                function_arn: ARN.into(),
                function_name: "orders".into(),
                commit: COMMIT.into(),
                ..Default::default()
            },
        );
        ld.metadata.namespace = Some("team-a".into());
        ld
    }

    fn artifact(sha: &str) -> ArtifactStatus {
        ArtifactStatus {
            bucket: "artifacts".into(),
            key: format!("orders/{COMMIT}.zip"),
            version_id: Some("v1".into()),
            etag: None,
            sha256: sha.into(),
        }
    }

    fn function(sha: &str, owner: Option<&str>) -> FunctionState {
        FunctionState {
            code_sha256: sha.into(),
            revision_id: "rev-1".into(),
            state: "Active".into(),
            last_update_status: "Successful".into(),
            last_update_reason: None,
            last_update_reason_code: None,
            last_modified_ago: Some(Duration::from_secs(3600)),
            claim: Claim { owner: owner.map(String::from), cluster: Some(CLUSTER.into()) },
            detailed: true,
        }
    }

    fn listed(sha: &str) -> FunctionState {
        FunctionState {
            claim: Claim::default(),
            detailed: false,
            state: String::new(),
            last_update_status: String::new(),
            ..function(sha, None)
        }
    }

    struct Case {
        name: &'static str,
        ld: LambdaDeployment,
        artifact: Observed<ArtifactStatus>,
        artifact_from_listing: bool,
        function: Observed<FunctionState>,
        rival: Option<&'static str>,
        sent: Option<&'static str>,
        witnessed: Option<&'static str>,
        allowed: &'static str,
        namespace_policy: Option<&'static str>,
        expect: Decision,
    }

    fn case(name: &'static str, expect: Decision) -> Case {
        Case {
            name,
            ld: ld(),
            artifact: Observed::Found(artifact("NEW")),
            artifact_from_listing: false,
            function: Observed::Found(function("OLD", Some("team-a/orders"))),
            rival: None,
            sent: None,
            witnessed: None,
            allowed: "arn:aws:lambda:us-east-1:123456789012:function:*",
            namespace_policy: None,
            expect,
        }
    }

    fn deploy(claim: bool, drift: bool) -> Decision {
        Decision::Deploy { artifact: artifact("NEW"), revision_id: "rev-1".into(), claim, drift }
    }

    fn up_to_date(claim: bool, deployed: bool) -> Decision {
        Decision::UpToDate { artifact: artifact("NEW"), claim, deployed }
    }

    /// A function whose last update failed: Lambda put its previous code back.
    fn failed_update(sha: &str) -> FunctionState {
        FunctionState {
            last_update_status: "Failed".into(),
            last_update_reason: Some("Could not unpack the zip".into()),
            last_update_reason_code: Some("InvalidZipFileException".into()),
            ..function(sha, Some("team-a/orders"))
        }
    }

    fn with_status(status: LambdaDeploymentStatus) -> LambdaDeployment {
        let mut ld = ld();
        ld.status = Some(status);
        ld
    }

    fn pending(sha: &str) -> LambdaDeploymentStatus {
        let pending_update = UpdateRecord { commit: COMMIT.into(), sha256: sha.into(), started_at: "t".into() };
        LambdaDeploymentStatus { pending_update: Some(pending_update), ..Default::default() }
    }

    fn failed_before(sha: &str, retry: Option<&str>) -> LambdaDeploymentStatus {
        let failed = FailedUpdate {
            commit: COMMIT.into(),
            sha256: sha.into(),
            reason: "InvalidZipFileException: Could not unpack the zip".into(),
            retry: retry.map(String::from),
        };
        LambdaDeploymentStatus { failed_update: Some(failed), ..Default::default() }
    }

    #[test]
    fn decisions_table() {
        let template = KeyTemplate::default();
        let key = format!("orders/{COMMIT}.zip");
        let blocked_owner = format!("function {ARN} is owned by LambdaDeployment team-b/orders");
        let cases = vec![
            Case { artifact: Observed::NotObserved, ..case("artifact is observed first", Decision::ObserveArtifact { bucket: "artifacts".into(), key: key.clone() }) },
            Case { function: Observed::NotObserved, ..case("function is observed once the artifact exists", Decision::ObserveFunction) },
            Case { artifact: Observed::Missing, function: Observed::NotObserved, ..case("missing artifact waits without looking at the function", Decision::WaitForArtifact { bucket: "artifacts".into(), key: key.clone() }) },
            case("different code is deployed", deploy(false, false)),
            Case { function: Observed::Found(function("NEW", Some("team-a/orders"))), ..case("same code is up to date", up_to_date(false, false)) },
            Case { function: Observed::Found(function("NEW", None)), ..case("same code on an unowned function is claimed", up_to_date(true, false)) },
            Case { function: Observed::Found(function("OLD", None)), ..case("an unowned function is claimed while deploying", deploy(true, false)) },
            Case {
                ld: { let mut ld = ld(); ld.status = Some(LambdaDeploymentStatus { deployed_commit: Some(COMMIT.into()), ..Default::default() }); ld },
                ..case("code changed under a deployed commit is drift", deploy(false, true))
            },
            Case { function: Observed::Found(function("OLD", Some("team-b/orders"))), ..case("a function claimed by another LD here is checked before anything else", Decision::CheckOwner("team-b/orders".into())) },
            Case { function: Observed::Found(FunctionState { claim: Claim { owner: Some("team-b/orders".into()), cluster: Some("elsewhere".into()) }, ..function("OLD", None) }), ..case("a function claimed in another cluster is blocked", Decision::Blocked(format!("{blocked_owner} of cluster elsewhere"))) },
            Case { function: Observed::Found(FunctionState { claim: Claim { owner: Some("team-a/orders".into()), cluster: None }, ..function("NEW", None) }), ..case("our claim without its cluster is completed", up_to_date(true, false)) },
            Case { ld: { let mut ld = ld(); ld.status = Some(LambdaDeploymentStatus { claimed_in: Some(String::new()), ..Default::default() }); ld }, function: Observed::Found(listed("NEW")), ..case("a listed function whose claim this resource never verified is read in detail", Decision::ObserveFunction) },
            Case { function: Observed::Found(function("OLD", None)), rival: Some("team-b/first"), ..case("an unowned function targeted by an older LD is blocked", Decision::Blocked(format!("function {ARN} is owned by LambdaDeployment team-b/first"))) },
            Case { function: Observed::Found(function("OLD", Some("team-a/orders"))), rival: Some("team-b/first"), ..case("the owner tag beats creation order", deploy(false, false)) },
            Case { function: Observed::Missing, ..case("a missing function fails", Decision::Failed(format!("function {ARN} does not exist"))) },
            Case { function: Observed::Found(FunctionState { last_update_status: "InProgress".into(), ..function("OLD", Some("team-a/orders")) }), ..case("a busy function is left for the next sweep", Decision::WaitForFunction { reason: format!("function {ARN} is being updated by someone else"), ours: false }) },
            Case { sent: Some("NEW"), function: Observed::Found(FunctionState { last_update_status: "InProgress".into(), ..function("NEW", Some("team-a/orders")) }), ..case("our own update in progress is waited for as ours", Decision::WaitForFunction { reason: format!("update of {ARN} to CodeSha256 NEW in progress"), ours: true }) },
            Case { sent: Some("NEW"), function: Observed::Found(function("NEW", Some("team-a/orders"))), ..case("our update confirmed is a deploy", up_to_date(false, true)) },
            Case { ld: with_status(pending("NEW")), function: Observed::Found(function("NEW", Some("team-a/orders"))), ..case("an update an earlier invocation left unconfirmed is confirmed as a deploy", up_to_date(false, true)) },
            Case { ld: with_status(pending("OTHER")), function: Observed::Found(function("NEW", Some("team-a/orders"))), ..case("an unconfirmed update of another artifact does not make this one ours", up_to_date(false, false)) },
            Case { sent: Some("NEW"), function: Observed::Found(failed_update("OLD")), ..case("our update that Lambda failed is reported, not retried", Decision::UpdateFailed { artifact: artifact("NEW"), reason: "InvalidZipFileException: Could not unpack the zip".into() }) },
            Case { ld: with_status(pending("NEW")), function: Observed::Found(failed_update("OLD")), ..case("an update an earlier invocation left unconfirmed and Lambda failed is reported", Decision::UpdateFailed { artifact: artifact("NEW"), reason: "InvalidZipFileException: Could not unpack the zip".into() }) },
            Case { sent: Some("NEW"), function: Observed::Found(failed_update("NEW")), ..case("a later failed update by someone else does not undo our confirmed deploy", up_to_date(false, true)) },
            Case { function: Observed::Found(failed_update("OLD")), ..case("someone else's failed update does not stop a deploy", deploy(false, false)) },
            Case { function: Observed::Found(FunctionState { last_modified_ago: Some(Duration::from_secs(5)), ..failed_update("OLD") }), ..case("a failed update of our function that no one here sent, seconds old, waits for its sender's report", Decision::AwaitReport(format!("an update of {ARN} that this invocation did not send failed moments ago; waiting for its sender to report it (redeployed if it is not reported within 120s)"))) },
            Case { function: Observed::Found(FunctionState { last_modified_ago: Some(Duration::from_secs(5)), claim: Claim::default(), ..failed_update("OLD") }), ..case("a fresh failed update on a function not yet claimed does not stop a deploy", deploy(true, false)) },
            Case { ld: with_status(failed_before("EARLIER", None)), function: Observed::Found(FunctionState { last_modified_ago: Some(Duration::from_secs(5)), ..failed_update("OLD") }), ..case("a fresh failed update the status records does not stop the next commit", deploy(false, false)) },
            Case { witnessed: Some("NEW"), function: Observed::Found(failed_update("OLD")), ..case("another deployer's update of this code seen in progress and then failed is reported, not tried again", Decision::UpdateFailed { artifact: artifact("NEW"), reason: "InvalidZipFileException: Could not unpack the zip".into() }) },
            Case { witnessed: Some("OTHER"), function: Observed::Found(failed_update("OLD")), ..case("a failed update of other code seen in progress does not stop a deploy", deploy(false, false)) },
            Case { ld: with_status(failed_before("NEW", None)), function: Observed::Found(function("OLD", Some("team-a/orders"))), ..case("an artifact Lambda failed before is not deployed again", Decision::UpdateFailed { artifact: artifact("NEW"), reason: "InvalidZipFileException: Could not unpack the zip".into() }) },
            Case { ld: { let mut ld = with_status(failed_before("NEW", Some("1"))); ld.metadata.annotations = Some([(RETRY_ANNOTATION.to_string(), "2".to_string())].into()); ld }, ..case("a new retry annotation deploys the failed artifact again", deploy(false, false)) },
            Case { ld: with_status(failed_before("EARLIER", None)), ..case("a new artifact deploys although an earlier one failed", deploy(false, false)) },
            Case { sent: Some("NEW"), function: Observed::Found(listed("NEW")), ..case("a listed function running our unconfirmed update is looked at in detail", Decision::ObserveFunction) },
            Case { artifact: Observed::Failed("AccessDenied".into()), ..case("an unreadable artifact fails", Decision::Failed(format!("cannot read artifact s3://artifacts/{key}: AccessDenied"))) },
            Case { ld: { let mut ld = ld(); ld.spec.suspend = Some(true); ld }, artifact: Observed::NotObserved, function: Observed::NotObserved, ..case("suspended does nothing", Decision::Suspended) },
            Case { allowed: "arn:aws:lambda:us-east-1:123456789012:function:payments-*", artifact: Observed::NotObserved, ..case("a function outside ALLOWED_FUNCTION_ARNS is blocked before any observation", Decision::Blocked(format!("{ARN} is not in ALLOWED_FUNCTION_ARNS (arn:aws:lambda:us-east-1:123456789012:function:payments-*)"))) },
            Case { namespace_policy: Some("team-b=arn:aws:lambda:*:*:function:*"), artifact: Observed::NotObserved, ..case("a namespace without a policy entry is blocked", Decision::Blocked("namespace \"team-a\" has no entry in NAMESPACE_POLICY".into())) },
            Case { namespace_policy: Some("team-a=arn:aws:lambda:*:*:function:payments-*"), artifact: Observed::NotObserved, ..case("a namespace may only target its patterns", Decision::Blocked(format!("namespace \"team-a\" may not target {ARN} (NAMESPACE_POLICY)"))) },
            Case { namespace_policy: Some("team-a=arn:aws:lambda:*:*:function:orders-*"), ..case("a namespace within its patterns deploys", deploy(false, false)) },
            Case { function: Observed::Found(listed("NEW")), ..case("a listed function with the same code is up to date without a tag lookup", up_to_date(false, false)) },
            Case { function: Observed::Found(listed("OLD")), ..case("a listed function with other code is looked at in detail before deploying", Decision::ObserveFunction) },
            Case { function: Observed::Found(listed("NEW")), rival: Some("team-b/first"), ..case("a listed function with a rival is looked at in detail for its owner", Decision::ObserveFunction) },
            Case { artifact_from_listing: true, function: Observed::Found(function("NEW", Some("team-a/orders"))), ..case("an artifact confirmed by a bucket listing is enough for up to date", up_to_date(false, false)) },
            Case { artifact_from_listing: true, ..case("an artifact confirmed by a bucket listing is read itself before deploying", Decision::ObserveArtifact { bucket: "artifacts".into(), key: key.clone() }) },
            Case { ld: { let mut ld = ld(); ld.spec.commit = "HEAD".into(); ld }, ..case("a non-hex commit is invalid", Decision::Invalid("spec.commit: commit \"HEAD\" contains 'H': only lowercase hex digits (0-9a-f) are allowed".into())) },
            Case { ld: { let mut ld = ld(); ld.spec.function_arn = "arn:aws:lambda:us-east-1:123456789012:function:orders:live".into(); ld }, ..case("a qualified ARN is invalid", Decision::Invalid("spec.functionARN: \"arn:aws:lambda:us-east-1:123456789012:function:orders:live\" has a qualifier (\"live\"); deploy to the unqualified function ARN".into())) },
        ];
        for c in cases {
            let allowed = vec![ArnGlob::new(c.allowed).unwrap()];
            let namespace_policy = c.namespace_policy.map(|p| NamespacePolicy::parse(p).unwrap());
            let policy = Policy {
                allowed_function_arns: &allowed,
                namespace_policy: namespace_policy.as_ref(),
                ..policy(&template)
            };
            // This resource's claim was verified before, unless the case says otherwise.
            let mut ld = c.ld.clone();
            let status = ld.status.get_or_insert_with(Default::default);
            if status.claimed_in.is_none() {
                status.claimed_in = Some(CLUSTER.into());
            } else if status.claimed_in.as_deref() == Some("") {
                status.claimed_in = None;
            }
            let input = Input {
                ld: &ld,
                artifact: &c.artifact,
                artifact_from_listing: c.artifact_from_listing,
                function: &c.function,
                preferred_rival: c.rival,
                owner_check: &OwnerCheck::NotChecked,
                cluster: CLUSTER,
                sent: c.sent,
                witnessed: c.witnessed,
                policy: &policy,
            };
            assert_eq!(plan(&input), c.expect, "case: {}", c.name);
        }
    }

    fn own() -> &'static Place {
        static OWN: std::sync::OnceLock<Place> = std::sync::OnceLock::new();
        OWN.get_or_init(|| Place { account: "123456789012".into(), region: "us-east-1".into() })
    }

    /// The deployer's own account and region, one other region's bucket, and no role in other accounts.
    fn policy(template: &KeyTemplate) -> Policy<'_> {
        static ROLES: TargetRoles = TargetRoles { template: None, explicit: Vec::new(), external_id: None };
        static BUCKETS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
        Policy {
            default_bucket: "artifacts",
            regional_buckets: BUCKETS.get_or_init(|| vec![("us-west-2".into(), "artifacts-usw2".into())]),
            own: own(),
            roles: &ROLES,
            key_template: template,
            allowed_function_arns: &[],
            namespace_policy: None,
        }
    }

    #[test]
    fn functions_of_other_accounts_and_regions_need_a_role_and_a_bucket_there() {
        let template = KeyTemplate::default();
        let allowed = [ArnGlob::new("arn:aws:lambda:*:*:function:*").unwrap()];
        let roles =
            TargetRoles::parse(None, Some("210987654321=arn:aws:iam::210987654321:role/deployer"), None).unwrap();
        let policy = Policy { allowed_function_arns: &allowed, roles: &roles, ..policy(&template) };
        let at = |arn: &str| {
            let mut ld = ld();
            ld.spec.function_arn = arn.into();
            ld
        };
        let refused = |arn: &str| match admit(&at(arn), &policy) {
            Err(Refusal::Blocked(reason)) => reason,
            other => panic!("{arn}: {other:?}"),
        };
        let no_role = refused("arn:aws:lambda:us-east-1:345678901234:function:orders");
        assert!(no_role.contains("account 345678901234, where the deployer has no role"), "{no_role}");
        assert!(no_role.contains("TARGET_ROLES"), "{no_role}");
        let no_bucket = refused("arn:aws:lambda:eu-west-1:210987654321:function:orders");
        assert!(no_bucket.contains("region eu-west-1, which has no artifact bucket"), "{no_bucket}");
        assert!(no_bucket.contains("ARTIFACT_BUCKETS"), "{no_bucket}");

        let elsewhere = at("arn:aws:lambda:us-west-2:210987654321:function:orders");
        assert!(admit(&elsewhere, &policy).is_ok());
        assert_eq!(artifact_location(&elsewhere, &policy), ("artifacts-usw2".into(), format!("orders/{COMMIT}.zip")));
        let mut own_bucket = at("arn:aws:lambda:eu-west-1:210987654321:function:orders");
        own_bucket.spec.artifact = Some(ArtifactLocation { bucket: Some("eu-artifacts".into()), key: None });
        assert!(admit(&own_bucket, &policy).is_ok(), "a bucket named by the resource itself is its own choice");
    }

    #[test]
    fn artifact_override_replaces_bucket_and_key() {
        let template = KeyTemplate::default();
        let policy = policy(&template);
        let mut ld = ld();
        ld.spec.artifact = Some(ArtifactLocation { bucket: Some("other".into()), key: None });
        assert_eq!(artifact_location(&ld, &policy), ("other".into(), format!("orders/{COMMIT}.zip")));
        ld.spec.artifact = Some(ArtifactLocation { bucket: None, key: Some("builds/orders.zip".into()) });
        assert_eq!(artifact_location(&ld, &policy), ("artifacts".into(), "builds/orders.zip".into()));
    }

    #[test]
    fn a_function_changed_since_the_recorded_deploy_is_noticed() {
        let mut ld = ld();
        let running = |sha: &str| function(sha, Some("team-a/orders"));
        assert!(changed_since_recorded(&ld, &running("OLD")), "nothing recorded yet");
        ld.status = Some(LambdaDeploymentStatus { code_sha256: Some("OLD".into()), ..Default::default() });
        assert!(!changed_since_recorded(&ld, &running("OLD")), "runs what the status says");
        assert!(changed_since_recorded(&ld, &running("OTHER")), "changed by someone else");
    }
}
