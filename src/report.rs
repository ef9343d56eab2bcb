//! The report step: turns an outcome into the status the resource should show, and the Event worth recording.
//! Pure, so "nothing changed → nothing written" is decided in one place: an in-sync sweep writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

use crate::crd::{
    ArtifactStatus, FailedUpdate, LambdaDeploymentStatus, Phase, RETRY_ANNOTATION, ReleaseRecord, Rollout,
    RolloutState, UpdateRecord,
};
use crate::release::HISTORY;

/// What happened to one LambdaDeployment in this invocation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// The deployer changed the code and verified the function now runs the artifact.
    Deployed {
        artifact: ArtifactStatus,
        drift: bool,
    },
    UpToDate {
        artifact: ArtifactStatus,
    },
    /// An update is running (ours, past the wait, or someone else's). `started`: the artifact of the update this
    /// invocation sent (or may have sent: its answer was lost) and could not confirm.
    Deploying {
        message: String,
        started: Option<ArtifactStatus>,
    },
    /// Lambda failed the update to `artifact`; the function runs its previous code.
    UpdateFailed {
        artifact: ArtifactStatus,
        reason: String,
    },
    /// A release through the alias: where it stands is in the [`Released`] reported with it.
    Released {
        artifact: ArtifactStatus,
    },
    WaitingForArtifact {
        bucket: String,
        key: String,
    },
    Failed {
        message: String,
    },
    Invalid {
        message: String,
    },
    Blocked {
        message: String,
    },
    Suspended,
    /// Not started: the invocation's deadline was too close. The next sweep picks it up.
    Skipped,
    /// Dry run: the deploy a sweep would make.
    Planned {
        decision: String,
    },
}

/// One line for a dry run's answer: what a sweep would do for this resource.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Planned { decision } => decision.clone(),
        Outcome::Deployed { .. } | Outcome::UpToDate { .. } | Outcome::Released { .. } => "up to date".into(),
        Outcome::Deploying { message, .. } => format!("would wait: {message}"),
        Outcome::UpdateFailed { reason, .. } => format!("failed: Lambda failed the last update: {reason}"),
        Outcome::WaitingForArtifact { bucket, key } => format!("waiting for s3://{bucket}/{key}"),
        Outcome::Failed { message } => format!("failed: {message}"),
        Outcome::Invalid { message } => format!("invalid: {message}"),
        Outcome::Blocked { message } => format!("blocked: {message}"),
        Outcome::Suspended => "suspended".into(),
        Outcome::Skipped => "skipped: the invocation's deadline was too close".into(),
    }
}

/// What a dry run says instead of deploying.
pub fn would_deploy(artifact: &ArtifactStatus, drift: bool) -> String {
    format!(
        "would {} s3://{}/{} (version {}, sha256 {})",
        if drift { "restore drifted code from" } else { "deploy" },
        artifact.bucket,
        artifact.key,
        artifact.version_id.as_deref().unwrap_or("-"),
        artifact.sha256
    )
}

/// What a release did in this invocation (alias mode), reported with the outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Released {
    pub alias: String,
    /// The version the alias's main share goes to now.
    pub version: String,
    pub rollout: Option<Rollout>,
    /// Releases that ended in this invocation, oldest first.
    pub finished: Vec<ReleaseRecord>,
    pub events: Vec<ReleaseEvent>,
}

/// What happened to a release, each worth an Event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ReleaseEvent {
    Started,
    StepAdvanced,
    Promoted,
    RolledBack,
    Superseded,
    /// The alias had been moved out of band from the released version and was put back.
    AliasRestored,
    /// Status and alias disagreed; the alias was believed.
    AliasDisagreed(String),
}

/// What a status describes: the resource's generation, its commit, and its retry annotation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    pub generation: Option<i64>,
    pub commit: Option<&'a str>,
    /// The `lambda-deployer.dev/retry` annotation.
    pub retry: Option<&'a str>,
    /// The deployer's cluster: a resource that may deploy has verified (or made) its claim in it.
    pub cluster: Option<&'a str>,
}

/// The status the resource should have after `outcome`. Messages are stable (no timestamps or counters), so the
/// same situation always yields the same status and costs no write.
pub fn desired_status(
    old: Option<&LambdaDeploymentStatus>,
    subject: Subject,
    outcome: &Outcome,
    released: Option<&Released>,
    now: jiff::Timestamp,
) -> Option<LambdaDeploymentStatus> {
    let Subject { generation, commit, retry, cluster } = subject;
    let old_or_default = old.cloned().unwrap_or_default();
    let same_commit = |recorded: &str| commit == Some(recorded);
    let mut status = LambdaDeploymentStatus {
        observed_generation: generation,
        // Kept unless this outcome verified new facts: they describe what the function runs.
        deployed_commit: old_or_default.deployed_commit.clone(),
        code_sha256: old_or_default.code_sha256.clone(),
        last_deployed_at: old_or_default.last_deployed_at.clone(),
        artifact: None,
        // An unconfirmed update and a failed one stay known while the commit is the same.
        pending_update: old_or_default.pending_update.clone().filter(|p| same_commit(&p.commit)),
        failed_update: old_or_default.failed_update.clone().filter(|f| same_commit(&f.commit)),
        // Every outcome of a resource that may deploy follows a claim verified in this cluster (the plan reads the
        // tags until it is recorded); Blocked means it holds none.
        claimed_in: match outcome {
            Outcome::Deployed { .. } | Outcome::UpToDate { .. } | Outcome::Released { .. } => cluster.map(String::from),
            Outcome::Blocked { .. } => None,
            _ => old_or_default.claimed_in.clone(),
        },
        version: old_or_default.version.clone(),
        rollout: old_or_default.rollout.clone(),
        history: old_or_default.history.clone(),
        ..Default::default()
    };
    if let Some(released) = released {
        status.version = Some(released.version.clone());
        status.rollout = released.rollout.clone();
        for record in &released.finished {
            status.history.retain(|h| (&h.version, &h.started_at) != (&record.version, &record.started_at));
            status.history.insert(0, record.clone());
        }
        status.history.truncate(HISTORY);
    }
    let (phase, message, ready, artifact_available) = match outcome {
        Outcome::Deployed { artifact, .. } | Outcome::UpToDate { artifact } => {
            status.deployed_commit = commit.map(String::from);
            status.code_sha256 = Some(artifact.sha256.clone());
            status.artifact = Some(artifact.clone());
            status.pending_update = None;
            status.failed_update = None;
            if matches!(outcome, Outcome::Deployed { .. }) {
                status.last_deployed_at = Some(now.to_string());
            }
            let message = format!("function runs commit {}", commit.unwrap_or_default());
            (Phase::Deployed, message, ("True", "Deployed"), ("True", "Found"))
        }
        Outcome::Deploying { message, started } => {
            if let Some(artifact) = started {
                status.artifact = Some(artifact.clone());
                if status.pending_update.as_ref().is_none_or(|p| p.sha256 != artifact.sha256) {
                    status.pending_update = Some(UpdateRecord {
                        commit: commit.unwrap_or_default().to_string(),
                        sha256: artifact.sha256.clone(),
                        started_at: now.to_string(),
                    });
                }
            }
            (Phase::Deploying, message.clone(), ("False", "Deploying"), ("True", "Found"))
        }
        Outcome::UpdateFailed { artifact, reason } => {
            status.artifact = Some(artifact.clone());
            status.pending_update = None;
            status.failed_update = Some(FailedUpdate {
                commit: commit.unwrap_or_default().to_string(),
                sha256: artifact.sha256.clone(),
                reason: reason.clone(),
                retry: retry.map(String::from),
            });
            let message = format!(
                "Lambda failed the update to CodeSha256 {} and kept the function's previous code: {reason}. Not \
                 retried: change spec.commit, or set annotation {RETRY_ANNOTATION} to a new value to try again",
                artifact.sha256
            );
            (Phase::Failed, message, ("False", "UpdateFailed"), ("True", "Found"))
        }
        Outcome::Released { artifact } => {
            status.artifact = Some(artifact.clone());
            status.pending_update = None;
            status.failed_update = None;
            release_phase(&mut status, released, commit.unwrap_or_default(), artifact, now)
        }
        Outcome::WaitingForArtifact { bucket, key } => (
            Phase::WaitingForArtifact,
            format!("waiting for s3://{bucket}/{key}"),
            ("False", "WaitingForArtifact"),
            ("False", "NotFound"),
        ),
        Outcome::Failed { message } => {
            (Phase::Failed, message.clone(), ("False", "DeployFailed"), ("Unknown", "NotChecked"))
        }
        Outcome::Invalid { message } => {
            (Phase::Failed, message.clone(), ("False", "Invalid"), ("Unknown", "NotChecked"))
        }
        Outcome::Blocked { message } => {
            (Phase::Blocked, message.clone(), ("False", "Blocked"), ("Unknown", "NotChecked"))
        }
        Outcome::Suspended => {
            (Phase::Suspended, "spec.suspend is true".into(), ("False", "Suspended"), ("Unknown", "NotChecked"))
        }
        Outcome::Skipped | Outcome::Planned { .. } => return None,
    };
    // A failure after the artifact was found keeps what we know about the artifact.
    if status.artifact.is_none() && matches!(outcome, Outcome::Failed { .. } | Outcome::Deploying { .. }) {
        status.artifact = old_or_default.artifact.clone();
    }
    status.phase = Some(phase);
    status.message = Some(message.clone());
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let (reconciling, stalled) = kstatus(phase, ready.1);
    status.conditions = vec![
        condition(old_conditions, "Ready", ready, &message, generation, now),
        condition(old_conditions, "Reconciling", reconciling, &message, generation, now),
        condition(old_conditions, "Stalled", stalled, &message, generation, now),
        condition(old_conditions, "ArtifactAvailable", artifact_available, &artifact_message(outcome), generation, now),
    ];
    Some(status)
}

/// `Reconciling` and `Stalled`, the conditions kstatus (Flux, `kubectl wait`) reads besides `Ready`: work under way
/// that will finish by itself is Reconciling (kstatus: InProgress); a state that waits for a person is Stalled
/// (kstatus: Failed). `ready_reason` becomes their reason, so each says why.
fn kstatus(phase: Phase, ready_reason: &'static str) -> ((&'static str, &'static str), (&'static str, &'static str)) {
    match phase {
        Phase::WaitingForArtifact | Phase::Deploying | Phase::Progressing => {
            (("True", ready_reason), ("False", ready_reason))
        }
        Phase::Failed | Phase::Blocked | Phase::RolledBack => (("False", ready_reason), ("True", ready_reason)),
        Phase::Deployed | Phase::Suspended => (("False", ready_reason), ("False", ready_reason)),
    }
}

/// Phase, message and conditions of a release; the function's verified code when the alias serves the artifact.
fn release_phase(
    status: &mut LambdaDeploymentStatus,
    released: Option<&Released>,
    commit: &str,
    artifact: &ArtifactStatus,
    now: jiff::Timestamp,
) -> (Phase, String, (&'static str, &'static str), (&'static str, &'static str)) {
    let found = ("True", "Found");
    let alias = released.map(|r| r.alias.as_str()).unwrap_or_default();
    let version = released.map(|r| r.version.as_str()).unwrap_or_default();
    let rollout = released.and_then(|r| r.rollout.as_ref()).filter(|r| r.commit == commit);
    match rollout.map(|r| (r, r.state)) {
        Some((r, RolloutState::Progressing)) => {
            let mut message = format!(
                "releasing commit {commit} as version {} on alias {alias}: {}% of the traffic (step {}), the rest on \
                 version {}",
                r.version,
                r.weight,
                r.step,
                r.stable_version.as_deref().unwrap_or("-")
            );
            if let Some(next) = &r.next_step_at {
                message.push_str(&format!("; next step at {next}"));
            }
            if let Some(reason) = &r.reason {
                message.push_str(&format!("; held: {reason}"));
            }
            (Phase::Progressing, message, ("False", "Progressing"), found)
        }
        Some((r, RolloutState::RolledBack)) => {
            let message = format!(
                "version {} (commit {commit}) was rolled back: {}. Alias {alias} sends all traffic to version {version}. \
                 Not retried: change spec.commit, or set annotation {RETRY_ANNOTATION} to a new value to try again",
                r.version,
                r.reason.as_deref().unwrap_or("no reason given")
            );
            (Phase::RolledBack, message, ("False", "RolledBack"), found)
        }
        _ => {
            let deployed = status.deployed_commit.as_deref() != Some(commit) || status.last_deployed_at.is_none();
            if released.is_some_and(|r| r.events.iter().any(|e| matches!(e, ReleaseEvent::Promoted))) || deployed {
                status.last_deployed_at = Some(now.to_string());
            }
            status.deployed_commit = Some(commit.to_string());
            status.code_sha256 = Some(artifact.sha256.clone());
            let message = format!("function runs commit {commit} (version {version} on alias {alias})");
            (Phase::Deployed, message, ("True", "Deployed"), found)
        }
    }
}

fn artifact_message(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Deployed { artifact, .. }
        | Outcome::UpToDate { artifact }
        | Outcome::Released { artifact }
        | Outcome::UpdateFailed { artifact, .. } => {
            format!(
                "s3://{}/{} version {}",
                artifact.bucket,
                artifact.key,
                artifact.version_id.as_deref().unwrap_or("-")
            )
        }
        Outcome::WaitingForArtifact { bucket, key } => format!("s3://{bucket}/{key} does not exist"),
        Outcome::Deploying { .. } => "artifact found".into(),
        _ => "not checked".into(),
    }
}

/// A condition that keeps its lastTransitionTime while its status does not change.
fn condition(
    old: &[Condition],
    type_: &str,
    (status, reason): (&str, &str),
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    let previous = old.iter().find(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// An Event: its reason, note, and whether it is a warning.
pub type EventNote = (&'static str, String, bool);

/// The Events to record for this outcome: every deploy, each step of a release, and each change into a
/// waiting/failed/blocked state (not every sweep that finds it unchanged).
pub fn events_for(
    old: Option<&LambdaDeploymentStatus>,
    new: &LambdaDeploymentStatus,
    outcome: &Outcome,
    released: Option<&Released>,
) -> Vec<EventNote> {
    let mut events: Vec<EventNote> = released.map(release_events).unwrap_or_default();
    let changed = old.map(|o| (o.phase, &o.message, o.observed_generation))
        != Some((new.phase, &new.message, new.observed_generation));
    let message = new.message.clone().unwrap_or_default();
    let event = match outcome {
        Outcome::Deployed { artifact, drift } => {
            let note = format!(
                "deployed s3://{}/{} (version {}) with CodeSha256 {}",
                artifact.bucket,
                artifact.key,
                artifact.version_id.as_deref().unwrap_or("-"),
                artifact.sha256
            );
            Some(if *drift {
                ("DriftCorrected", format!("code was changed out of band; re-{note}"), false)
            } else {
                ("Deployed", note, false)
            })
        }
        Outcome::WaitingForArtifact { .. } if changed => Some(("WaitingForArtifact", message, false)),
        Outcome::Failed { .. } | Outcome::Invalid { .. } if changed => Some(("Failed", message, true)),
        Outcome::UpdateFailed { .. } if changed => Some(("UpdateFailed", message, true)),
        Outcome::Blocked { .. } if changed => Some(("Blocked", message, true)),
        _ => None,
    };
    events.extend(event);
    events
}

fn release_events(released: &Released) -> Vec<EventNote> {
    let alias = &released.alias;
    let rollout = released.rollout.as_ref();
    let version = rollout.map(|r| r.version.as_str()).unwrap_or(released.version.as_str());
    let commit = rollout.map(|r| r.commit.as_str()).unwrap_or_default();
    let finished = |state: RolloutState| released.finished.iter().rev().find(|f| f.outcome == state);
    released
        .events
        .iter()
        .map(|event| match event {
            ReleaseEvent::Started => (
                "ReleaseStarted",
                format!(
                    "releasing commit {commit} as version {version} on alias {alias}: {}% of the traffic first",
                    rollout.map_or(100, |r| r.weight)
                ),
                false,
            ),
            ReleaseEvent::StepAdvanced => (
                "StepAdvanced",
                format!("version {version} now gets {}% of alias {alias}'s traffic", rollout.map_or(0, |r| r.weight)),
                false,
            ),
            ReleaseEvent::Promoted => {
                ("Promoted", format!("version {version} (commit {commit}) has all of alias {alias}'s traffic"), false)
            }
            ReleaseEvent::RolledBack => {
                let record = finished(RolloutState::RolledBack);
                let (version, commit) = record.map_or((version, commit), |f| (f.version.as_str(), f.commit.as_str()));
                let reason = record.and_then(|f| f.reason.as_deref()).unwrap_or("no reason given");
                let note = format!(
                    "version {version} (commit {commit}) rolled back: {reason}; alias {alias} sends all traffic to \
                     version {}",
                    released.version
                );
                ("RolledBack", note, true)
            }
            ReleaseEvent::Superseded => {
                let record = finished(RolloutState::Superseded);
                let note = record.map_or_else(String::new, |f| {
                    format!("version {} (commit {}) {}", f.version, f.commit, f.reason.as_deref().unwrap_or_default())
                });
                ("Superseded", note, false)
            }
            ReleaseEvent::AliasRestored => (
                "AliasRestored",
                format!("alias {alias} was moved out of band; it sends all traffic to version {version} again"),
                true,
            ),
            ReleaseEvent::AliasDisagreed(note) => ("AliasDisagreed", note.clone(), true),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> ArtifactStatus {
        ArtifactStatus {
            bucket: "b".into(),
            key: "f/abcdef1.zip".into(),
            version_id: Some("v1".into()),
            etag: None,
            sha256: "SHA".into(),
        }
    }

    fn subject(generation: i64, commit: &str) -> Subject<'_> {
        Subject { generation: Some(generation), commit: Some(commit), retry: None, cluster: Some("test-cluster") }
    }

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_790_000_000 + seconds).unwrap()
    }

    #[test]
    fn an_in_sync_resource_gets_the_same_status_again() {
        let deployed = Outcome::Deployed { artifact: artifact(), drift: false };
        let first = desired_status(None, subject(1, "abcdef1"), &deployed, None, at(0)).unwrap();
        let later = desired_status(
            Some(&first),
            subject(1, "abcdef1"),
            &Outcome::UpToDate { artifact: artifact() },
            None,
            at(300),
        );
        assert_eq!(later.as_ref(), Some(&first), "an up-to-date sweep must not need a status write");
    }

    #[test]
    fn waiting_keeps_the_previously_deployed_commit_visible() {
        let deployed = desired_status(
            None,
            subject(1, "abcdef1"),
            &Outcome::Deployed { artifact: artifact(), drift: false },
            None,
            at(0),
        )
        .unwrap();
        let waiting = Outcome::WaitingForArtifact { bucket: "b".into(), key: "f/1234567.zip".into() };
        let status = desired_status(Some(&deployed), subject(2, "1234567"), &waiting, None, at(10)).unwrap();
        assert_eq!(status.phase, Some(Phase::WaitingForArtifact));
        assert_eq!(status.deployed_commit.as_deref(), Some("abcdef1"));
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.last_transition_time.0), ("False", at(10)));
    }

    #[test]
    fn waiting_is_announced_once_not_on_every_sweep() {
        let waiting = Outcome::WaitingForArtifact { bucket: "b".into(), key: "k".into() };
        let first = desired_status(None, subject(1, "abcdef1"), &waiting, None, at(0)).unwrap();
        assert_eq!(events_for(None, &first, &waiting, None).len(), 1);
        let again = desired_status(Some(&first), subject(1, "abcdef1"), &waiting, None, at(300)).unwrap();
        assert_eq!(again, first);
        assert!(events_for(Some(&first), &again, &waiting, None).is_empty());
    }

    #[test]
    fn drift_correction_is_its_own_event() {
        let outcome = Outcome::Deployed { artifact: artifact(), drift: true };
        let status = desired_status(None, subject(1, "abcdef1"), &outcome, None, at(0)).unwrap();
        assert_eq!(events_for(None, &status, &outcome, None)[0].0, "DriftCorrected");
    }

    /// A status of every phase, as the deployer writes it (generation 3, commit abcdef1).
    fn every_phase() -> Vec<LambdaDeploymentStatus> {
        let rollout = |state, weight, reason: Option<&str>| Rollout {
            commit: "abcdef1".into(),
            code_sha256: "SHA".into(),
            version: "2".into(),
            stable_version: Some("1".into()),
            weight,
            step: 1,
            state,
            started_at: at(0).to_string(),
            step_started_at: at(0).to_string(),
            next_step_at: (state == RolloutState::Progressing).then(|| at(300).to_string()),
            reason: reason.map(String::from),
            retry: None,
        };
        let released = |rollout: Rollout| Released {
            alias: "live".into(),
            version: "1".into(),
            rollout: Some(rollout),
            finished: vec![],
            events: vec![],
        };
        let progressing = released(rollout(RolloutState::Progressing, 10, None));
        let rolled_back = released(rollout(RolloutState::RolledBack, 0, Some("alarm errors is in ALARM")));
        let released_outcome = Outcome::Released { artifact: artifact() };
        let cases: Vec<(Outcome, Option<&Released>)> = vec![
            (Outcome::WaitingForArtifact { bucket: "b".into(), key: "f/abcdef1.zip".into() }, None),
            (Outcome::Deploying { message: "update in progress".into(), started: Some(artifact()) }, None),
            (Outcome::Deployed { artifact: artifact(), drift: false }, None),
            (Outcome::Failed { message: "function not found".into() }, None),
            (Outcome::Invalid { message: "spec.commit is not hex".into() }, None),
            (Outcome::UpdateFailed { artifact: artifact(), reason: "InvalidRuntime: no".into() }, None),
            (Outcome::Blocked { message: "function is owned by LambdaDeployment a/b".into() }, None),
            (Outcome::Suspended, None),
            (released_outcome.clone(), Some(&progressing)),
            (released_outcome, Some(&rolled_back)),
        ];
        cases
            .into_iter()
            .map(|(outcome, released)| desired_status(None, subject(3, "abcdef1"), &outcome, released, at(0)).unwrap())
            .collect()
    }

    /// kstatus's rules (sigs.k8s.io/cli-utils/pkg/kstatus, as Flux applies them), written out as the oracle.
    fn kstatus_of(generation: i64, status: &LambdaDeploymentStatus) -> &'static str {
        let is = |type_: &str, value: &str| status.conditions.iter().any(|c| c.type_ == type_ && c.status == value);
        if status.observed_generation != Some(generation) {
            "InProgress"
        } else if is("Stalled", "True") {
            "Failed"
        } else if is("Reconciling", "True") || is("Ready", "False") {
            "InProgress"
        } else if is("Ready", "True") {
            "Current"
        } else {
            "Unknown"
        }
    }

    #[test]
    fn every_phase_tells_kstatus_whether_it_is_done_in_progress_or_stuck() {
        let seen: Vec<(Phase, &str)> =
            every_phase().iter().map(|status| (status.phase.unwrap(), kstatus_of(3, status))).collect();
        use Phase::*;
        let expected = [
            (WaitingForArtifact, "InProgress"),
            (Deploying, "InProgress"),
            (Deployed, "Current"),
            (Failed, "Failed"),
            (Failed, "Failed"),
            (Failed, "Failed"),
            (Blocked, "Failed"),
            (Suspended, "InProgress"),
            (Progressing, "InProgress"),
            (RolledBack, "Failed"),
        ];
        assert_eq!(seen, expected);
        for status in every_phase() {
            assert_eq!(kstatus_of(4, &status), "InProgress", "a newer generation is not yet observed");
            for condition in &status.conditions {
                assert_eq!(condition.observed_generation, Some(3), "kubectl wait compares it: {}", condition.type_);
            }
        }
    }

    /// `tests/fixtures/status/*.json` are these statuses (the Argo CD health check is tested against them): a
    /// change to what the deployer writes fails here until they are rewritten with `UPDATE_FIXTURES=1`.
    #[test]
    fn the_status_fixtures_are_what_the_deployer_writes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/status");
        for status in every_phase() {
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
            let phase = format!("{:?}", status.phase.unwrap());
            let name =
                if phase == ready.reason { format!("{phase}.json") } else { format!("{phase}-{}.json", ready.reason) };
            let name = name.to_lowercase();
            let resource = serde_json::json!({
                "apiVersion": "lambda-deployer.dev/v1",
                "kind": "LambdaDeployment",
                "metadata": {"name": "orders", "namespace": "team-orders", "generation": 3},
                "spec": {
                    "functionARN": "arn:aws:lambda:us-east-1:123456789012:function:orders",
                    "functionName": "orders",
                    "commit": "abcdef1"
                },
                "status": status,
            });
            let text = serde_json::to_string_pretty(&resource).unwrap() + "\n";
            let path = dir.join(&name);
            if std::env::var_os("UPDATE_FIXTURES").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(committed, text, "{name} differs from what the deployer writes; rerun with UPDATE_FIXTURES=1");
        }
    }

    #[test]
    fn skipped_and_planned_outcomes_write_nothing() {
        let subject = Subject { generation: Some(1), ..Subject::default() };
        assert!(desired_status(None, subject, &Outcome::Skipped, None, at(0)).is_none());
        assert!(desired_status(None, subject, &Outcome::Planned { decision: "x".into() }, None, at(0)).is_none());
    }
}
