//! One LambdaDeployment's work in an invocation: observe → [`plan`] → act until the decision is final, then
//! write what happened (status, Event).
//!
//! Acting holds one of `MAX_CONCURRENCY` slots; waiting for an update to finish does not: a started update is
//! confirmed by polls that share their own rate limit, so that while updates take seconds the next functions are
//! already being observed and updated at the quota's rate. A status is written on the condition that the resource
//! did not change since it was read; when it did, the resource is decided anew from a fresh read, so an older
//! decision can never overwrite a newer status.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::Error;
use crate::accounts::{Account, Accounts, Place};
use crate::arn::FunctionArn;
use crate::config::Config;
use crate::crd::{ArtifactStatus, LambdaDeployment, RETRY_ANNOTATION};
use crate::function::lost_race;
use crate::ownership::{OwnerCheck, Seen};
use crate::plan::{self, Decision, FunctionState, Input, Observed, Policy};
use crate::report::{self, Outcome, Released, Subject};
use crate::resources::{self, EventRecord, Listed};
use crate::retry::Budget;
use crate::wakeup::Wakeups;

/// A resource listed less than this long ago is not read again before deploying. The re-read keeps a slow sweep
/// from deploying a commit the user has replaced meanwhile; a listing this fresh leaves no wider window than the
/// re-read would. After a lost race or a wait, or when the function no longer runs what the status recorded
/// (another invocation may have deployed a newer spec), the resource is always read again.
pub const FRESH_LISTING: Duration = Duration::from_secs(1);
/// How many times one LD may lose a race (conflict, stale revision, concurrent claim, someone else's update)
/// before giving up for now; also how often it is decided anew after a status write found it changed.
const MAX_RACES: u32 = 4;

/// What happened to one resource, for the invocation's summary.
#[derive(Debug)]
pub struct Reported {
    pub resource: String,
    /// The (account, region) of its function (`None`: the spec names no function ARN).
    pub place: Option<Place>,
    pub outcome: Outcome,
    /// What a release did (alias mode).
    pub released: Option<Released>,
    pub status_written: bool,
    pub events_recorded: usize,
    /// Writing the status or Event failed (the outcome itself is in `outcome`).
    pub errors: Vec<String>,
}

/// Everything one invocation's workers share.
pub struct Worker<'a> {
    pub config: &'a Config,
    pub policy: &'a Policy<'a>,
    /// Each (account, region)'s clients, quotas and acting slots; the artifact stores.
    pub accounts: &'a Accounts,
    pub wakeups: &'a Wakeups,
    pub client: &'a kube::Client,
    /// Observing and acting stop here, keeping time to report.
    pub work: Budget<'a>,
    /// Status writes and Events may use the invocation until its deadline.
    pub report: Budget<'a>,
    pub dry_run: bool,
    /// Functions from a ListFunctions listing and the bucket's ETags (sweeps).
    pub listed_functions: &'a HashMap<String, FunctionState>,
    pub objects: &'a HashMap<String, String>,
    /// For each resource that shares its function with an older one, the older one's key.
    pub rivals: &'a HashMap<String, String>,
    /// What this invocation's listing showed of each resource (by `namespace/name`): enough to tell whether a
    /// claim it makes on a function still holds.
    pub seen: &'a HashMap<String, Seen>,
    /// This deployer's cluster, as the claims it makes name it.
    pub cluster: &'a str,
    /// Resources listed before this instant count as fresh (see [`FRESH_LISTING`]).
    pub fresh_until: Instant,
}

/// The end of one resource's work: the outcome, and what a release did.
#[derive(Debug)]
pub(crate) struct Finished {
    pub outcome: Outcome,
    pub released: Option<Released>,
}

impl From<Outcome> for Finished {
    fn from(outcome: Outcome) -> Self {
        Finished { outcome, released: None }
    }
}

/// One pass over one resource's spec: what happened, or the newer spec to start again with.
// Made and moved once per resource: boxing the common variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Step {
    Done(Finished),
    Superseded(Box<Listed>),
}

/// The result of writing a status: done (with what was written), or the resource changed since it was read.
#[allow(clippy::large_enum_variant)] // as `Step`
enum Published {
    Done(Reported),
    Changed(Box<Listed>),
}

impl Worker<'_> {
    /// Decides and acts for one resource, then reports, deciding anew while the resource changes under us.
    pub async fn run(&self, target: Listed) -> Reported {
        let mut target = target;
        // An update this invocation sent: still ours when the resource is decided anew.
        let mut sent: Option<ArtifactStatus> = None;
        let mut use_listing = true;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let (current, finished) = self.reconcile(target, use_listing, &mut sent).await;
            let (resource, commit) = (resource_key(current.metadata()), current.commit());
            let outcome = serde_json::to_string(&finished.outcome).unwrap_or_default();
            let released = serde_json::to_string(&finished.released).unwrap_or_default();
            tracing::info!(%resource, commit, %outcome, %released, "decision");
            if self.dry_run {
                return Reported::nothing_written(&current, finished);
            }
            match self.publish(&current, finished).await {
                Published::Done(reported) => return reported,
                Published::Changed(fresh) if rounds < MAX_RACES => {
                    tracing::info!(resource = %resource_key(fresh.metadata()), "the resource changed before its status was written; deciding again");
                    target = *fresh;
                    use_listing = false;
                }
                Published::Changed(fresh) => {
                    let outcome = Outcome::Deploying {
                        message: "the resource kept changing during the invocation; the next sweep picks it up".into(),
                        started: sent,
                    };
                    let reported = Reported::nothing_written(&fresh, outcome.into());
                    return Reported {
                        errors: vec!["status not written: the resource kept changing".into()],
                        ..reported
                    };
                }
            }
        }
    }

    /// Observe → plan → act until the decision is final. Returns the resource as last read (it is re-read before
    /// deploying) with the outcome.
    async fn reconcile(
        &self,
        target: Listed,
        use_listing: bool,
        sent: &mut Option<ArtifactStatus>,
    ) -> (Listed, Finished) {
        let mut target = target;
        let mut use_listing = use_listing;
        for _ in 0..MAX_RACES {
            let ld = match &target {
                Listed::Valid(ld) => ld,
                Listed::Undecodable { reason, .. } => {
                    let outcome = Outcome::Invalid { message: reason.clone() };
                    return (target, outcome.into());
                }
            };
            let step = match crate::release::validate(ld) {
                Ok(Some(release)) => self.release(ld, &release, use_listing, sent).await,
                _ => self.reconcile_spec(ld, use_listing, sent).await,
            };
            match step {
                Step::Done(finished) => return (target, finished),
                Step::Superseded(fresh) => {
                    tracing::info!(resource = %ld.key(), "the resource changed during the invocation; deciding again");
                    target = *fresh;
                    use_listing = false;
                }
            }
        }
        let message = "the resource kept changing during the invocation; the next sweep picks it up".to_string();
        (target, Outcome::Deploying { message, started: sent.clone() }.into())
    }

    /// The `$LATEST` deploy: brings the function's code to the artifact.
    pub(crate) async fn reconcile_spec(
        &self,
        ld: &LambdaDeployment,
        use_listing: bool,
        sent: &mut Option<ArtifactStatus>,
    ) -> Step {
        let arn = ld.spec.function_arn.as_str();
        let account = self.accounts.of(arn).await;
        let Some(slot) = self.start(&account).await else { return Step::Done(Outcome::Skipped.into()) };
        let mut slot = Some(slot);
        let policy = self.policy;
        let me = ld.key();
        let listed = self.listed_functions.get(arn).filter(|_| use_listing);
        let mut function = listed.map_or(Observed::NotObserved, |listed| Observed::Found(listed.clone()));
        let known = ld.status.as_ref().and_then(|s| s.artifact.as_ref());
        let unchanged = self.unchanged_artifact(ld, use_listing);
        let mut artifact_from_listing = unchanged.is_some();
        let mut artifact = unchanged.map_or(Observed::NotObserved, |known| Observed::Found(known.clone()));
        let rival = self.rivals.get(&me).map(String::as_str);
        let mut owner_check = OwnerCheck::NotChecked;
        let mut races = 0;
        // Code seen being applied by an update in progress (another invocation's, say): its failure is this code's.
        let mut witnessed: Option<String> = None;
        let done = |outcome: Outcome| Step::Done(outcome.into());
        loop {
            if let Observed::Found(f) = &function
                && f.last_update_status == "InProgress"
            {
                witnessed = Some(f.code_sha256.clone());
            }
            let decision = plan::plan(&Input {
                ld,
                artifact: &artifact,
                artifact_from_listing,
                function: &function,
                preferred_rival: rival,
                owner_check: &owner_check,
                cluster: self.cluster,
                sent: sent.as_ref().map(|a| a.sha256.as_str()),
                witnessed: witnessed.as_deref(),
                policy,
            });
            tracing::debug!(resource = %me, ?decision, "planned");
            match decision {
                // A dry run observes like a sweep, and stops where a sweep would change something.
                Decision::Deploy { artifact, drift, .. } if self.dry_run => {
                    return done(Outcome::Planned { decision: report::would_deploy(&artifact, drift) });
                }
                Decision::UpToDate { artifact, .. } if self.dry_run => return done(Outcome::UpToDate { artifact }),
                Decision::WaitForFunction { reason, .. } if self.dry_run => {
                    return done(Outcome::Deploying { message: reason, started: None });
                }
                Decision::ObserveArtifact { bucket, key } => {
                    self.hold(&account, &mut slot).await;
                    artifact = self.accounts.store_for(&bucket).await.observe(&bucket, &key, known, self.work).await;
                    artifact_from_listing = false;
                    if artifact == Observed::NotObserved {
                        return done(out_of_time(sent));
                    }
                }
                Decision::ObserveFunction => {
                    self.hold(&account, &mut slot).await;
                    function = account.functions.observe(arn, self.work).await;
                    if function == Observed::NotObserved {
                        return done(out_of_time(sent));
                    }
                }
                Decision::CheckOwner(owner) => {
                    self.hold(&account, &mut slot).await;
                    match self.check_owner(&owner, arn).await {
                        Some(checked) => owner_check = checked,
                        None => return done(out_of_time(sent)),
                    }
                }
                // Out of time (an observation cut short is no finding): what was started is reported as such.
                _ if self.work.expired() => return done(out_of_time(sent)),
                Decision::UpToDate { artifact, claim, deployed } => {
                    if claim {
                        self.hold(&account, &mut slot).await;
                        match self.claim(&account, arn, &me).await {
                            Ok(()) => {}
                            Err(Outcome::Skipped) => return done(out_of_time(sent)),
                            Err(outcome) => return done(outcome),
                        }
                    }
                    return done(if deployed {
                        Outcome::Deployed { artifact, drift: plan::restores_drift(ld) }
                    } else {
                        Outcome::UpToDate { artifact }
                    });
                }
                Decision::UpdateFailed { artifact, reason } => return done(Outcome::UpdateFailed { artifact, reason }),
                Decision::Deploy { artifact: wanted, revision_id, claim, .. } => {
                    self.hold(&account, &mut slot).await;
                    if claim {
                        match self.claim(&account, arn, &me).await {
                            Ok(()) => {}
                            Err(Outcome::Skipped) => return done(out_of_time(sent)),
                            Err(outcome) => return done(outcome),
                        }
                        // Claimed: look again, so ownership and the revision are confirmed before deploying.
                        function = Observed::NotObserved;
                        continue;
                    }
                    // A spec listed seconds or minutes ago may be stale: never deploy a commit the user replaced.
                    let changed = match &function {
                        Observed::Found(running) => plan::changed_since_recorded(ld, running),
                        _ => true,
                    };
                    let stale = races > 0 || changed || !use_listing || Instant::now() >= self.fresh_until;
                    if stale && let Some(step) = self.superseded(ld).await {
                        return step;
                    }
                    let attempted = account.functions.update_code(arn, &wanted, &revision_id, self.work).await;
                    if attempted.result.is_ok() || attempted.maybe_applied {
                        *sent = Some(wanted.clone());
                    }
                    match attempted.result {
                        // Accepted: confirm without holding a slot, then decide on what Lambda says.
                        Ok(()) => {}
                        // Someone else changed the function, or our own lost answer was applied: look again.
                        Err(err) if (lost_race(&err) || attempted.maybe_applied) && races < MAX_RACES => {
                            races += 1;
                            tracing::info!(resource = %me, error = %err, "lost a race or an answer; looking again");
                        }
                        Err(Error::Deadline { .. }) => return done(out_of_time(sent)),
                        Err(err) => return done(Outcome::Failed { message: err.to_string() }),
                    }
                    slot = None;
                    match self.wait(&account, arn, sent, &mut witnessed).await {
                        Ok(observed) => function = observed,
                        Err(outcome) => return done(outcome),
                    }
                }
                Decision::WaitForFunction { reason, ours } => {
                    if !ours {
                        if races >= MAX_RACES {
                            return done(Outcome::Deploying { message: reason, started: None });
                        }
                        races += 1;
                    }
                    slot = None;
                    match self.wait(&account, arn, sent, &mut witnessed).await {
                        Ok(observed) => function = observed,
                        Err(outcome) => return done(outcome),
                    }
                }
                Decision::AwaitReport(message) => return done(Outcome::Deploying { message, started: None }),
                Decision::WaitForArtifact { bucket, key } => return done(Outcome::WaitingForArtifact { bucket, key }),
                Decision::Blocked(message) => return done(Outcome::Blocked { message }),
                Decision::Invalid(message) => return done(Outcome::Invalid { message }),
                Decision::Failed(message) => return done(Outcome::Failed { message }),
                Decision::Suspended => return done(Outcome::Suspended),
            }
        }
    }

    /// Takes one of the account's acting slots to start on a resource; `None` when the deadline is too close to
    /// start anything (one started goes on until the deadline).
    pub(crate) async fn start(&self, account: &Account) -> Option<OwnedSemaphorePermit> {
        let slot = account.acting.clone().acquire_owned().await.expect("the acting semaphore is never closed");
        let too_late =
            self.work.deadline.is_some_and(|deadline| Instant::now() + self.config.deadline_margin >= deadline);
        (!too_late).then_some(slot)
    }

    /// The artifact the status recorded, when the bucket's listing shows it unchanged (same ETag): known without
    /// reading it.
    pub(crate) fn unchanged_artifact<'l>(
        &self,
        ld: &'l LambdaDeployment,
        use_listing: bool,
    ) -> Option<&'l ArtifactStatus> {
        let (bucket, key) = plan::artifact_location(ld, self.policy);
        let known = ld.status.as_ref().and_then(|s| s.artifact.as_ref());
        known.filter(|known| {
            use_listing
                && bucket == self.config.artifact_bucket
                && (known.bucket.as_str(), known.key.as_str()) == (bucket.as_str(), key.as_str())
                && known.etag.is_some()
                && self.objects.get(&key) == known.etag.as_ref()
        })
    }

    /// Takes an acting slot again after a wait (or keeps the one held).
    pub(crate) async fn hold(&self, account: &Account, slot: &mut Option<OwnedSemaphorePermit>) {
        if slot.is_none() {
            *slot = Some(account.acting.clone().acquire_owned().await.expect("the acting semaphore is never closed"));
        }
    }

    /// Waits (without an acting slot) until the function is no longer busy. `Err` when it is still busy when the
    /// wait must end, or cannot be seen: the outcome to report.
    async fn wait(
        &self,
        account: &Account,
        arn: &str,
        sent: &Option<ArtifactStatus>,
        witnessed: &mut Option<String>,
    ) -> Result<Observed<FunctionState>, Outcome> {
        let settled = account.functions.wait_until_settled(arn, self.config.update_timeout, self.work).await;
        if settled.applying.is_some() {
            *witnessed = settled.applying;
        }
        let observed = settled.last;
        let started = sent.clone();
        let ours = started.is_some();
        match observed {
            Observed::Found(f) if f.last_update_status == "InProgress" || f.state == "Pending" => {
                let message = if ours {
                    format!("update of {arn} still in progress after {}s", self.config.update_timeout.as_secs())
                } else {
                    format!("function {arn} is being updated by someone else")
                };
                Err(Outcome::Deploying { message, started })
            }
            Observed::NotObserved if ours => Err(Outcome::Deploying {
                message: format!("update of {arn} started; not confirmed before the deadline"),
                started,
            }),
            Observed::NotObserved => Err(Outcome::Deploying {
                message: format!("function {arn} is being updated by someone else"),
                started: None,
            }),
            Observed::Failed(reason) if ours => Err(Outcome::Deploying {
                message: format!("update of {arn} started; could not confirm it finished: {reason}"),
                started,
            }),
            observed => Ok(observed),
        }
    }

    /// Re-reads the resource. `Some` when it changed (decide again on the new spec, or on a status another
    /// invocation wrote meanwhile, such as an update Lambda failed) or was deleted (do nothing); `None` when it is
    /// unchanged, or when it cannot be read (then the listed spec is all we know).
    pub(crate) async fn superseded(&self, ld: &LambdaDeployment) -> Option<Step> {
        match resources::get(self.client, &ld.metadata, self.work).await {
            Ok(Some(fresh))
                if fresh.metadata().generation != ld.metadata.generation || fresh.status() != ld.status.as_ref() =>
            {
                Some(Step::Superseded(Box::new(fresh)))
            }
            Ok(Some(_)) => None,
            Ok(None) => Some(Step::Done(Outcome::Skipped.into())),
            Err(err) => {
                tracing::warn!(resource = %ld.key(), error = %err, "cannot re-read the resource before deploying");
                None
            }
        }
    }

    /// Writes the status if it changed, records the Events that are due.
    async fn publish(&self, target: &Listed, finished: Finished) -> Published {
        let mut reported = Reported::nothing_written(target, finished);
        let status = target.status();
        let subject = subject(target.metadata(), target.commit(), self.cluster);
        let (outcome, released) = (&reported.outcome, reported.released.as_ref());
        // Whole seconds, as Kubernetes stores condition times: what is read back then equals what was written.
        let now = jiff::Timestamp::now();
        let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
        let Some(new_status) = report::desired_status(status, subject, outcome, released, now) else {
            return Published::Done(reported);
        };
        let metadata = target.metadata();
        if status != Some(&new_status) {
            match resources::write_status(self.client, metadata, status, &new_status, self.report).await {
                Ok(()) => reported.status_written = true,
                // Applied with its answer lost, or someone wrote first: the resource as it is now tells which.
                Err(err) => match resources::get(self.client, metadata, self.report).await {
                    Ok(Some(fresh)) if fresh.status() == Some(&new_status) => reported.status_written = true,
                    Ok(Some(fresh)) if err.kube_status() == Some(409) => return Published::Changed(Box::new(fresh)),
                    Ok(None) => return Published::Done(reported),
                    _ => {
                        tracing::error!(resource = %reported.resource, error = %err, "writing the status failed");
                        reported.errors.push(err.to_string());
                        return Published::Done(reported);
                    }
                },
            }
        }
        for (reason, note, warning) in report::events_for(status, &new_status, outcome, released) {
            let action = match outcome {
                Outcome::Deployed { .. } => "UpdateFunctionCode",
                Outcome::Released { .. } => "UpdateAlias",
                _ => "Reconcile",
            };
            let event = EventRecord { reason, note, warning, action };
            match resources::record_event(self.client, metadata, event, self.report).await {
                Ok(()) => reported.events_recorded += 1,
                Err(err) => {
                    tracing::error!(resource = %reported.resource, error = %err, "recording the Event failed");
                    reported.errors.push(err.to_string());
                }
            }
        }
        Published::Done(reported)
    }
}

impl Reported {
    fn nothing_written(target: &Listed, finished: Finished) -> Reported {
        let place = match target {
            Listed::Valid(ld) => FunctionArn::parse(&ld.spec.function_arn).ok().map(|arn| Place::of(&arn)),
            Listed::Undecodable { .. } => None,
        };
        Reported {
            resource: resource_key(target.metadata()),
            place,
            outcome: finished.outcome,
            released: finished.released,
            status_written: false,
            events_recorded: 0,
            errors: Vec::new(),
        }
    }
}

/// What to report for a resource whose work the deadline cut short.
fn out_of_time(sent: &Option<ArtifactStatus>) -> Outcome {
    match sent {
        Some(artifact) => Outcome::Deploying {
            message: "update started; not confirmed before the invocation's deadline".into(),
            started: Some(artifact.clone()),
        },
        None => Outcome::Skipped,
    }
}

fn subject<'a>(metadata: &'a ObjectMeta, commit: Option<&'a str>, cluster: &'a str) -> Subject<'a> {
    let retry = metadata.annotations.as_ref().and_then(|a| a.get(RETRY_ANNOTATION)).map(String::as_str);
    Subject { generation: metadata.generation, commit, retry, cluster: Some(cluster) }
}

pub fn resource_key(metadata: &ObjectMeta) -> String {
    format!("{}/{}", metadata.namespace.as_deref().unwrap_or_default(), metadata.name.as_deref().unwrap_or_default())
}
