//! The report step: turns an outcome into the status the resource should show, and the Event worth recording.
//! Pure, so "nothing changed → nothing written" is decided in one place: an in-sync sweep writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

use crate::crd::{ArtifactStatus, LambdaDeploymentStatus, Phase};

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
    /// An update is running (ours, past the wait, or someone else's).
    Deploying {
        message: String,
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
        Outcome::Deployed { .. } | Outcome::UpToDate { .. } => "up to date".into(),
        Outcome::Deploying { message } => format!("would wait: {message}"),
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

/// The status the resource should have after `outcome`. Messages are stable (no timestamps or counters), so the
/// same situation always yields the same status and costs no write.
pub fn desired_status(
    old: Option<&LambdaDeploymentStatus>,
    generation: Option<i64>,
    commit: Option<&str>,
    outcome: &Outcome,
    now: jiff::Timestamp,
) -> Option<LambdaDeploymentStatus> {
    let old_or_default = old.cloned().unwrap_or_default();
    let mut status = LambdaDeploymentStatus {
        observed_generation: generation,
        // Kept unless this outcome verified new facts: they describe what the function runs.
        deployed_commit: old_or_default.deployed_commit.clone(),
        code_sha256: old_or_default.code_sha256.clone(),
        last_deployed_at: old_or_default.last_deployed_at.clone(),
        artifact: None,
        ..Default::default()
    };
    let (phase, message, ready, artifact_available) = match outcome {
        Outcome::Deployed { artifact, .. } | Outcome::UpToDate { artifact } => {
            status.deployed_commit = commit.map(String::from);
            status.code_sha256 = Some(artifact.sha256.clone());
            status.artifact = Some(artifact.clone());
            if matches!(outcome, Outcome::Deployed { .. }) {
                status.last_deployed_at = Some(now.to_string());
            }
            let message = format!("function runs commit {}", commit.unwrap_or_default());
            (Phase::Deployed, message, ("True", "Deployed"), ("True", "Found"))
        }
        Outcome::Deploying { message } => {
            (Phase::Deploying, message.clone(), ("False", "Deploying"), ("True", "Found"))
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
    status.conditions = vec![
        condition(old_conditions, "Ready", ready, &message, generation, now),
        condition(old_conditions, "ArtifactAvailable", artifact_available, &artifact_message(outcome), generation, now),
    ];
    Some(status)
}

fn artifact_message(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Deployed { artifact, .. } | Outcome::UpToDate { artifact } => {
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

/// The Event to record for this outcome, if any: every deploy, and each change into a waiting/failed/blocked
/// state (not every sweep that finds it unchanged).
pub fn event_for(
    old: Option<&LambdaDeploymentStatus>,
    new: &LambdaDeploymentStatus,
    outcome: &Outcome,
) -> Option<(&'static str, String, bool)> {
    let changed = old.map(|o| (o.phase, &o.message, o.observed_generation))
        != Some((new.phase, &new.message, new.observed_generation));
    let message = new.message.clone().unwrap_or_default();
    match outcome {
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
        Outcome::Blocked { .. } if changed => Some(("Blocked", message, true)),
        _ => None,
    }
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

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_790_000_000 + seconds).unwrap()
    }

    #[test]
    fn an_in_sync_resource_gets_the_same_status_again() {
        let deployed = Outcome::Deployed { artifact: artifact(), drift: false };
        let first = desired_status(None, Some(1), Some("abcdef1"), &deployed, at(0)).unwrap();
        let later = desired_status(
            Some(&first),
            Some(1),
            Some("abcdef1"),
            &Outcome::UpToDate { artifact: artifact() },
            at(300),
        );
        assert_eq!(later.as_ref(), Some(&first), "an up-to-date sweep must not need a status write");
    }

    #[test]
    fn waiting_keeps_the_previously_deployed_commit_visible() {
        let deployed = desired_status(
            None,
            Some(1),
            Some("abcdef1"),
            &Outcome::Deployed { artifact: artifact(), drift: false },
            at(0),
        )
        .unwrap();
        let waiting = Outcome::WaitingForArtifact { bucket: "b".into(), key: "f/1234567.zip".into() };
        let status = desired_status(Some(&deployed), Some(2), Some("1234567"), &waiting, at(10)).unwrap();
        assert_eq!(status.phase, Some(Phase::WaitingForArtifact));
        assert_eq!(status.deployed_commit.as_deref(), Some("abcdef1"));
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.last_transition_time.0), ("False", at(10)));
    }

    #[test]
    fn waiting_is_announced_once_not_on_every_sweep() {
        let waiting = Outcome::WaitingForArtifact { bucket: "b".into(), key: "k".into() };
        let first = desired_status(None, Some(1), Some("abcdef1"), &waiting, at(0)).unwrap();
        assert!(event_for(None, &first, &waiting).is_some());
        let again = desired_status(Some(&first), Some(1), Some("abcdef1"), &waiting, at(300)).unwrap();
        assert_eq!(again, first);
        assert!(event_for(Some(&first), &again, &waiting).is_none());
    }

    #[test]
    fn drift_correction_is_its_own_event() {
        let outcome = Outcome::Deployed { artifact: artifact(), drift: true };
        let status = desired_status(None, Some(1), Some("abcdef1"), &outcome, at(0)).unwrap();
        assert_eq!(event_for(None, &status, &outcome).unwrap().0, "DriftCorrected");
    }

    #[test]
    fn skipped_and_planned_outcomes_write_nothing() {
        assert!(desired_status(None, Some(1), None, &Outcome::Skipped, at(0)).is_none());
        assert!(desired_status(None, Some(1), None, &Outcome::Planned { decision: "x".into() }, at(0)).is_none());
    }
}
