//! The executor of releases through versions and an alias (`spec.alias`): observe → [`release::decide`] → act
//! until the decision is final. Building a version reuses the `$LATEST` deploy ([`Worker::reconcile_spec`]) and
//! then publishes it; moving traffic is one UpdateAlias per step, guarded by the alias's RevisionId, so that two
//! invocations taking the same step at once move the alias once.

use std::collections::HashSet;

use crate::Error;
use crate::accounts::Account;
use crate::crd::{ArtifactStatus, LambdaDeployment, Rollout, RolloutState};
use crate::function::lost_race;
use crate::plan::{self, Observed, Refusal};
use crate::reconcile::{Finished, Step, Worker};
use crate::release::{self, Decision, Input, Release, Verdict};
use crate::report::{Outcome, ReleaseEvent, Released};
use crate::wakeup::Wakeup;

/// How many times one release may lose a race on the alias or on `$LATEST` before giving up for now.
const MAX_RACES: u32 = 4;
/// Versions kept by default (`spec.keepVersions`).
const KEEP_VERSIONS: u32 = 10;

/// What the release loop gathered: the alias's version now, the rollout, what ended, what to tell.
struct Progress {
    version: Option<String>,
    rollout: Option<Rollout>,
    finished: Vec<crate::crd::ReleaseRecord>,
    events: Vec<ReleaseEvent>,
}

impl Worker<'_> {
    pub(crate) async fn release(
        &self,
        ld: &LambdaDeployment,
        release: &Release,
        use_listing: bool,
        sent: &mut Option<ArtifactStatus>,
    ) -> Step {
        let account = self.accounts.of(&ld.spec.function_arn).await;
        let Some(slot) = self.start(&account).await else { return Step::Done(Outcome::Skipped.into()) };
        let mut slot = Some(slot);
        let arn = match plan::admit(ld, self.policy) {
            Ok(_) => ld.spec.function_arn.as_str(),
            Err(refusal) => return Step::Done(refused(refusal).into()),
        };
        let (bucket, key) = plan::artifact_location(ld, self.policy);
        let known = ld.status.as_ref().and_then(|s| s.artifact.as_ref());
        let artifact = match self.unchanged_artifact(ld, use_listing) {
            Some(known) => Observed::Found(known.clone()),
            None => self.accounts.store_for(&bucket).await.observe(&bucket, &key, known, self.work).await,
        };
        let artifact = match artifact {
            Observed::Found(artifact) => Some(artifact),
            Observed::Missing => None,
            Observed::NotObserved => return Step::Done(Outcome::Skipped.into()),
            Observed::Failed(reason) => {
                let message = format!("cannot read artifact s3://{bucket}/{key}: {reason}");
                return Step::Done(Outcome::Failed { message }.into());
            }
        };
        let me = ld.key();
        let rival = self.rivals.get(&me).map(String::as_str);
        // Full precision: a step is due `interval` after this moment, and its wake-up is timed to the second.
        let now = jiff::Timestamp::now();
        let mut progress = Progress {
            version: None,
            rollout: ld.status.as_ref().and_then(|s| s.rollout.clone()),
            finished: Vec::new(),
            events: Vec::new(),
        };
        let (mut view, mut detail, mut candidate) =
            (Observed::NotObserved, Observed::NotObserved, Observed::NotObserved);
        let (mut smoke, mut verdict): (Option<Result<(), String>>, Option<Verdict>) = (None, None);
        let mut unclaimed = false;
        let mut races = 0;
        loop {
            if self.work.expired() {
                return self.finish(ld, release, artifact, progress, Some(Outcome::Skipped));
            }
            let decision = release::decide(&Input {
                ld,
                release,
                code_sha256: artifact.as_ref().map(|a| a.sha256.as_str()),
                rollout: progress.rollout.as_ref(),
                view: &view,
                detail: &detail,
                candidate: &candidate,
                smoke: smoke.as_ref(),
                verdict: verdict.as_ref(),
                now,
            });
            tracing::debug!(resource = %me, ?decision, "release decision");
            if self.dry_run
                && let Some(plan) = planned(&decision, release)
            {
                return Step::Done(Outcome::Planned { decision: plan }.into());
            }
            match decision {
                Decision::ObserveAlias => {
                    self.hold(&account, &mut slot).await;
                    view = match account.versions.view(arn, &release.alias, self.work).await {
                        Observed::Found(viewed) => {
                            match self.owns(&me, arn, &viewed.claim, rival).await {
                                Ok(claim) => unclaimed = claim,
                                Err(Outcome::Skipped) => {
                                    return self.finish(ld, release, artifact, progress, Some(Outcome::Skipped));
                                }
                                Err(outcome) => return Step::Done(outcome.into()),
                            }
                            Observed::Found(viewed.view)
                        }
                        Observed::NotObserved => {
                            return self.finish(ld, release, artifact, progress, Some(Outcome::Skipped));
                        }
                        other => other.map_found(|viewed| viewed.view),
                    };
                }
                Decision::ObserveAliasDetail => {
                    self.hold(&account, &mut slot).await;
                    detail = account.versions.alias(arn, &release.alias, self.work).await;
                }
                Decision::FindVersion => {
                    self.hold(&account, &mut slot).await;
                    let code = artifact.as_ref().map(|a| a.sha256.as_str()).unwrap_or_default();
                    candidate = self.find_version(&account, ld, code).await;
                }
                Decision::BuildVersion => {
                    // The `$LATEST` deploy takes its own acting slot.
                    slot = None;
                    let built = match self.reconcile_spec(ld, use_listing, sent).await {
                        Step::Done(Finished {
                            outcome: Outcome::Deployed { artifact, .. } | Outcome::UpToDate { artifact },
                            ..
                        }) => artifact,
                        Step::Done(finished) => {
                            return self.finish(ld, release, artifact, progress, Some(finished.outcome));
                        }
                        superseded => return superseded,
                    };
                    self.hold(&account, &mut slot).await;
                    match self.publish_latest(&account, arn, &built).await {
                        Ok(version) => candidate = Observed::Found(version),
                        Err(err)
                            if races < MAX_RACES
                                && (lost_race(&err) || err.aws_code() == Some("InvalidParameterValueException")) =>
                        {
                            races += 1;
                            tracing::info!(resource = %me, error = %err, "$LATEST changed before it was published; building again");
                        }
                        Err(err) => {
                            let outcome =
                                Outcome::Failed { message: format!("cannot publish a version of {arn}: {err}") };
                            return self.finish(ld, release, artifact, progress, Some(outcome));
                        }
                    }
                }
                Decision::SmokeTest { version, payload } => {
                    match account.versions.smoke_test(arn, &version, &payload, self.work).await {
                        Ok(result) => smoke = Some(result),
                        Err(err) => {
                            let message = format!(
                                "the smoke test of version {version} could not run: {err}; no traffic was moved"
                            );
                            return self.finish(ld, release, artifact, progress, Some(Outcome::Failed { message }));
                        }
                    }
                }
                Decision::Judge { version, since } => {
                    let function = arn.rsplit(':').next().unwrap_or(arn);
                    verdict = Some(account.judge.judge(function, &version, release, since, self.work).await);
                }
                Decision::Move { main, additional, revision_id, rollout, finished, restores } => {
                    let starts = rollout.state == RolloutState::Progressing
                        && progress
                            .rollout
                            .as_ref()
                            .is_none_or(|r| r.state != RolloutState::Progressing || r.version != rollout.version);
                    if starts && let Some(missing) = self.missing_alarms(&account, release).await {
                        return self.finish(
                            ld,
                            release,
                            artifact,
                            progress,
                            Some(Outcome::Failed { message: missing }),
                        );
                    }
                    self.hold(&account, &mut slot).await;
                    if unclaimed || view == Observed::Missing {
                        match self.claim(&account, arn, &me).await {
                            Ok(()) => unclaimed = false,
                            Err(outcome) => return self.finish(ld, release, artifact, progress, Some(outcome)),
                        }
                    }
                    let additional = additional.as_ref().map(|(version, weight)| (version.as_str(), *weight));
                    let moved = account
                        .versions
                        .move_alias(arn, &release.alias, &main, additional, revision_id.as_deref(), self.work)
                        .await;
                    match moved.result {
                        Ok(()) => {
                            progress.events.extend(move_events(progress.rollout.as_ref(), &rollout, restores));
                            if let Some(due) = next_step(&rollout) {
                                self.wake(ld, due).await;
                            }
                            let superseded = rollout.state == RolloutState::Superseded;
                            progress.version = Some(main);
                            progress.rollout = Some(rollout);
                            progress.finished.extend(finished);
                            if !superseded {
                                break;
                            }
                            // The new commit's release starts from the stable version.
                            (view, detail, candidate, smoke, verdict) =
                                (Observed::NotObserved, Observed::NotObserved, Observed::NotObserved, None, None);
                        }
                        Err(err) if races < MAX_RACES && (lost_race(&err) || moved.maybe_applied) => {
                            races += 1;
                            tracing::info!(resource = %me, error = %err, "the alias changed (or our move's answer was lost); looking again");
                            (view, detail, verdict) = (Observed::NotObserved, Observed::NotObserved, None);
                        }
                        Err(err) if starts && err.aws_code() == Some("InvalidParameterValueException") => {
                            // Lambda refuses the first shift (e.g. provisioned concurrency on the alias): no traffic moved.
                            let reason = format!("Lambda refused to shift traffic on alias {}: {err}", release.alias);
                            let refused = Rollout {
                                weight: 0,
                                state: RolloutState::RolledBack,
                                reason: Some(reason),
                                next_step_at: None,
                                retry: retry_of(ld),
                                ..rollout
                            };
                            progress.events.push(ReleaseEvent::RolledBack);
                            progress.finished.push(release::finished_record(&refused, now));
                            progress.rollout = Some(refused);
                            break;
                        }
                        Err(Error::Deadline { .. }) => {
                            return self.finish(ld, release, artifact, progress, Some(Outcome::Skipped));
                        }
                        Err(err) => {
                            let outcome =
                                Outcome::Failed { message: format!("cannot move alias {}: {err}", release.alias) };
                            return self.finish(ld, release, artifact, progress, Some(outcome));
                        }
                    }
                }
                Decision::Record { rollout, finished, note } => {
                    let changed = progress.rollout.as_ref() != Some(&rollout);
                    if changed {
                        progress.events.extend(record_events(progress.rollout.as_ref(), &rollout));
                        if let Some(due) = next_step(&rollout)
                            .filter(|due| progress.rollout.as_ref().and_then(next_step) != Some(*due))
                        {
                            self.wake(ld, due).await;
                        }
                    }
                    progress.events.extend(note.map(ReleaseEvent::AliasDisagreed));
                    progress.finished.extend(finished);
                    progress.rollout = Some(rollout);
                    break;
                }
                Decision::InSync { version } => {
                    progress.version = Some(version);
                    break;
                }
                Decision::StaysRolledBack => break,
                Decision::NoArtifact => {
                    let outcome = Outcome::WaitingForArtifact { bucket, key };
                    return self.finish(ld, release, artifact, progress, Some(outcome));
                }
                Decision::Failed(message) => {
                    return self.finish(ld, release, artifact, progress, Some(Outcome::Failed { message }));
                }
            }
        }
        // In sync without a move: the claim is completed here (a move claims first).
        if unclaimed && !self.dry_run {
            self.hold(&account, &mut slot).await;
            if let Err(outcome) = self.claim(&account, arn, &me).await {
                return self.finish(ld, release, artifact, progress, Some(outcome));
            }
        }
        if progress.finished.iter().any(|f| f.outcome != RolloutState::Superseded) {
            self.prune(&account, arn, ld, &progress).await;
        }
        if progress.version.is_none() {
            progress.version = view_version(&view).or_else(|| ld.status.as_ref().and_then(|s| s.version.clone()));
        }
        self.finish(ld, release, artifact, progress, None)
    }

    /// The outcome (`None`: the release's), with what the release did so far.
    fn finish(
        &self,
        ld: &LambdaDeployment,
        release: &Release,
        artifact: Option<ArtifactStatus>,
        progress: Progress,
        outcome: Option<Outcome>,
    ) -> Step {
        let moved = !progress.events.is_empty() || !progress.finished.is_empty();
        let outcome = match (outcome, artifact) {
            (Some(outcome), _) => outcome,
            (None, Some(artifact)) => Outcome::Released { artifact },
            (None, None) => Outcome::Skipped,
        };
        let version = progress.version.or_else(|| ld.status.as_ref().and_then(|s| s.version.clone()));
        let released = match version {
            Some(version) if moved || matches!(outcome, Outcome::Released { .. }) => Some(Released {
                alias: release.alias.clone(),
                version,
                rollout: progress.rollout,
                finished: progress.finished,
                events: progress.events,
            }),
            _ => None,
        };
        Step::Done(Finished { outcome, released })
    }

    /// A published version with the artifact's code, from the history (newest first), checked to still exist.
    async fn find_version(&self, account: &Account, ld: &LambdaDeployment, code: &str) -> Observed<String> {
        let mut recorded: Vec<String> = Vec::new();
        if let Some(status) = &ld.status {
            let rollout = status.rollout.iter().map(|r| (&r.version, &r.code_sha256));
            let history = status.history.iter().map(|h| (&h.version, &h.code_sha256));
            for (version, sha) in rollout.chain(history) {
                if sha == code && !recorded.contains(version) {
                    recorded.push(version.clone());
                }
            }
        }
        for version in recorded {
            match account.versions.view(&ld.spec.function_arn, &version, self.work).await {
                Observed::Found(viewed) if viewed.view.code_sha256 == code => return Observed::Found(version),
                Observed::Found(_) | Observed::Missing => {
                    tracing::info!(resource = %ld.key(), version, "a version in the history is gone or changed; not reused");
                }
                other => return other.map_found(|viewed| viewed.view.version),
            }
        }
        Observed::Missing
    }

    /// Publishes `$LATEST`, which was just verified to run `built`.
    async fn publish_latest(&self, account: &Account, arn: &str, built: &ArtifactStatus) -> Result<String, Error> {
        let revision = match account.functions.observe(arn, self.work).await {
            Observed::Found(latest) if latest.code_sha256 == built.sha256 => latest.revision_id,
            Observed::Found(_) => {
                return Err(Error::Aws {
                    service: "lambda",
                    operation: "PublishVersion",
                    code: Some("PreconditionFailedException".into()),
                    status: None,
                    message: "$LATEST changed before it could be published".into(),
                    retryable: true,
                    retry_after: None,
                });
            }
            Observed::Failed(reason) => return Err(Error::Payload(reason)),
            _ => return Err(Error::Deadline { service: "lambda", operation: "GetFunction" }),
        };
        let published = account.versions.publish(arn, &built.sha256, &revision, self.work).await;
        match published.result {
            Ok(version) => Ok(version),
            // A publish whose answer was lost: Lambda returns the same version when nothing changed since.
            Err(_) if published.maybe_applied => {
                account.versions.publish(arn, &built.sha256, &revision, self.work).await.result
            }
            Err(err) => Err(err),
        }
    }

    /// The alarms that do not exist, as the message that stops a rollout before any traffic moves.
    async fn missing_alarms(&self, account: &Account, release: &Release) -> Option<String> {
        if release.alarms.is_empty() {
            return None;
        }
        match account.judge.missing_alarms(&release.alarms, self.work).await {
            Ok(missing) if missing.is_empty() => None,
            Ok(missing) => {
                Some(format!("spec.analysis.alarms: no alarm named {missing:?} exists; no traffic was moved"))
            }
            Err(err) => Some(format!("cannot check spec.analysis.alarms: {err}; no traffic was moved")),
        }
    }

    /// Asks to be woken when the step is due; without a queue (or if sending fails) a scheduled sweep takes it.
    async fn wake(&self, ld: &LambdaDeployment, due: jiff::Timestamp) {
        let namespace = ld.metadata.namespace.as_deref().unwrap_or_default();
        let name = ld.metadata.name.as_deref().unwrap_or_default();
        if let Err(err) = self.wakeups.schedule(&Wakeup::new(namespace, name, due), self.report).await {
            tracing::warn!(resource = %ld.key(), error = %err, "cannot schedule the next rollout step; the next sweep takes it");
        }
    }

    /// Deletes versions beyond the newest `keepVersions`, except those an alias points to and those of the rollout.
    async fn prune(&self, account: &Account, arn: &str, ld: &LambdaDeployment, progress: &Progress) {
        let keep_newest = ld.spec.keep_versions.unwrap_or(KEEP_VERSIONS) as usize;
        let published = match account.versions.published(arn, self.work).await {
            Ok(published) => published,
            Err(err) => {
                tracing::warn!(resource = %ld.key(), error = %err, "cannot list versions to delete old ones");
                return;
            }
        };
        if published.len() <= keep_newest {
            return;
        }
        let mut keep: HashSet<String> = published.iter().rev().take(keep_newest).cloned().collect();
        keep.extend(progress.version.clone());
        if let Some(rollout) = &progress.rollout {
            keep.insert(rollout.version.clone());
            keep.extend(rollout.stable_version.clone());
        }
        match account.versions.prune(arn, &published, &keep, self.work).await {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::info!(resource = %ld.key(), ?deleted, "deleted old versions")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(resource = %ld.key(), error = %err, "cannot delete old versions"),
        }
    }
}

/// What a dry run says where a release would change something.
fn planned(decision: &Decision, release: &Release) -> Option<String> {
    let alias = &release.alias;
    match decision {
        Decision::BuildVersion => Some("would update $LATEST to the artifact and publish it as a version".into()),
        Decision::SmokeTest { version, .. } => Some(format!("would smoke-test version {version}")),
        Decision::Judge { version, .. } => Some(format!("would judge version {version} and take the next step")),
        Decision::Move { main, additional: Some((version, weight)), .. } => {
            Some(format!("would give version {version} {weight}% of alias {alias} (the rest to version {main})"))
        }
        Decision::Move { main, .. } => Some(format!("would point alias {alias} at version {main}")),
        _ => None,
    }
}

/// The Events a move makes.
fn move_events(before: Option<&Rollout>, after: &Rollout, restores: bool) -> Vec<ReleaseEvent> {
    if restores {
        return vec![ReleaseEvent::AliasRestored];
    }
    let same_release = before.is_some_and(|b| b.version == after.version && b.started_at == after.started_at);
    match after.state {
        RolloutState::Progressing if same_release => vec![ReleaseEvent::StepAdvanced],
        RolloutState::Progressing => vec![ReleaseEvent::Started],
        RolloutState::Promoted if same_release => vec![ReleaseEvent::Promoted],
        RolloutState::Promoted => vec![ReleaseEvent::Started, ReleaseEvent::Promoted],
        RolloutState::RolledBack => vec![ReleaseEvent::RolledBack],
        RolloutState::Superseded => vec![ReleaseEvent::Superseded],
    }
}

/// The Events a rollout's change without a move makes (ended by what the alias says, or held).
fn record_events(before: Option<&Rollout>, after: &Rollout) -> Vec<ReleaseEvent> {
    if before.map(|b| b.state) == Some(after.state) {
        return Vec::new();
    }
    match after.state {
        RolloutState::Promoted => vec![ReleaseEvent::Promoted],
        RolloutState::RolledBack => vec![ReleaseEvent::RolledBack],
        _ => Vec::new(),
    }
}

fn next_step(rollout: &Rollout) -> Option<jiff::Timestamp> {
    (rollout.state == RolloutState::Progressing).then_some(())?;
    rollout.next_step_at.as_deref()?.parse().ok()
}

fn view_version(view: &Observed<release::AliasView>) -> Option<String> {
    match view {
        Observed::Found(view) => Some(view.version.clone()),
        _ => None,
    }
}

fn retry_of(ld: &LambdaDeployment) -> Option<String> {
    ld.metadata.annotations.as_ref().and_then(|a| a.get(crate::crd::RETRY_ANNOTATION)).cloned()
}

/// The outcome of a resource that may not be acted on.
fn refused(refusal: Refusal) -> Outcome {
    match refusal {
        Refusal::Invalid(message) => Outcome::Invalid { message },
        Refusal::Blocked(message) => Outcome::Blocked { message },
        Refusal::Suspended => Outcome::Suspended,
    }
}
