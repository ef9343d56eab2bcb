//! The executor: decodes the trigger, finds the LambdaDeployments it concerns ([`crate::fleet`]), works on each
//! ([`crate::reconcile`]) and sums up. Clients live in [`Deployer`], built once per container and reused by every
//! invocation.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::accounts::{Accounts, Place, session_name};
use crate::arn::ArnGlob;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::crd::RolloutState;
use crate::fleet::{self, Fleet, Readers, Targets};
use crate::ownership::Seen;
use crate::plan::Policy;
use crate::reconcile::{FRESH_LISTING, Reported, Worker, resource_key};
use crate::report::{self, Outcome, ReleaseEvent, Released};
use crate::retry::{Budget, RetryStats};
use crate::trigger::{self, Trigger};
use crate::wakeup::Wakeups;
use crate::{Error, Result};

/// Who the deployer is, from STS GetCallerIdentity (once per container).
#[derive(Clone, Debug)]
pub struct Identity {
    pub account: String,
    pub partition: String,
    pub region: String,
}

/// Kept free at the end of an invocation: AWS waits and retries stop this long before the deadline, so there is
/// always time to write the statuses and Events of what was done.
const REPORT_RESERVE: Duration = Duration::from_secs(5);
/// Kept free of any call at the very end: the summary, its log line and metrics go out before Lambda's deadline.
const RETURN_RESERVE: Duration = Duration::from_millis(500);
/// At most this many error messages are returned in the summary; all are logged.
const MAX_SUMMARY_ERRORS: usize = 20;

pub struct Deployer {
    config: Config,
    allowed: Vec<ArnGlob>,
    /// Every (account, region)'s clients and quotas, and the artifact stores.
    accounts: Accounts,
    wakeups: Wakeups,
    cluster: Cluster,
    stats: RetryStats,
    fleet: Fleet,
    /// This deployer's cluster, as the claims it makes on functions name it.
    cluster_id: String,
}

/// The invocation's result.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub trigger: String,
    pub dry_run: bool,
    pub considered: usize,
    pub deployed: usize,
    /// Dry runs: how many a sweep would deploy.
    pub would_deploy: usize,
    pub up_to_date: usize,
    pub deploying: usize,
    pub waiting: usize,
    pub failed: usize,
    pub blocked: usize,
    pub suspended: usize,
    /// Releases moving traffic step by step (alias mode).
    pub progressing: usize,
    /// Releases whose new version was rolled back (alias mode).
    pub rolled_back: usize,
    /// Releases that gave their version all the traffic in this invocation (also counted in `deployed`).
    pub promoted: usize,
    /// Releases rolled back in this invocation (`rolledBack` counts every release that stands rolled back).
    pub rollbacks: usize,
    /// Deploys that put back code or an alias changed out of band (also counted in `deployed`).
    pub drift_corrected: usize,
    pub skipped: usize,
    /// Artifact events that matched no LambdaDeployment rule (other bucket, key not matching the template).
    pub ignored_records: usize,
    pub status_writes: usize,
    pub events_recorded: usize,
    pub retries: u64,
    /// Answers that were 429 (Lambda's quotas, an overloaded API server), each retried.
    pub throttled: u64,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Per-resource decisions (dry runs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<PlannedDecision>,
    /// The same counts per `account/region`, when the invocation worked in more than one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts: BTreeMap<String, PlaceSummary>,
}

/// One (account, region)'s share of an invocation.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlaceSummary {
    pub considered: usize,
    pub deployed: usize,
    pub up_to_date: usize,
    pub failed: usize,
    pub blocked: usize,
    pub skipped: usize,
}

#[derive(Debug, Serialize)]
pub struct PlannedDecision {
    pub resource: String,
    pub decision: String,
}

impl Deployer {
    pub fn new(config: Config, sdk: &aws_config::SdkConfig, identity: &Identity) -> Deployer {
        let allowed = config.allowed_function_arns.clone().unwrap_or_else(|| {
            let own = format!("arn:{}:lambda:{}:{}:function:*", identity.partition, identity.region, identity.account);
            vec![ArnGlob::new(&own).expect("an ARN prefix is a valid glob")]
        });
        let own = Place { account: identity.account.clone(), region: identity.region.clone() };
        let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
        let accounts = Accounts::new(
            sdk,
            own,
            config.target_roles.clone(),
            config.regional_buckets.clone(),
            session_name(function_name.as_deref()),
            config.max_concurrency,
        );
        Deployer {
            cluster_id: crate::cluster::identity(&config.cluster, identity),
            cluster: Cluster::new(config.cluster.clone(), sdk),
            accounts,
            wakeups: Wakeups::new(aws_sdk_sqs::Client::new(sdk), config.rollout_queue_url.clone()),
            config,
            allowed,
            stats: RetryStats::default(),
            fleet: Fleet::default(),
        }
    }

    /// Resolves the deployer's own identity (account, partition) once per container.
    pub async fn identity(sdk: &aws_config::SdkConfig) -> Result<Identity> {
        let sts = aws_sdk_sts::Client::new(sdk);
        let caller =
            sts.get_caller_identity().send().await.map_err(|e| crate::aws::aws_error("sts", "GetCallerIdentity", e))?;
        let arn = caller.arn().unwrap_or_default();
        let partition = arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws");
        Ok(Identity {
            account: caller.account().unwrap_or_default().to_string(),
            partition: partition.to_string(),
            region: sdk
                .region()
                .map(|r| r.to_string())
                .ok_or_else(|| Error::config("AWS_REGION", "no region configured"))?,
        })
    }

    /// Handles one invocation. Per-resource failures are reported on the resources and in the summary; only
    /// failures that affect everything (bad payload, cluster unreachable or refusing us) fail the invocation.
    pub async fn handle(&self, payload: &Value, deadline: Option<Instant>) -> Result<Summary> {
        let started = Instant::now();
        let retries_before = self.stats.retries.load(std::sync::atomic::Ordering::Relaxed);
        let throttled_before = self.stats.throttled.load(std::sync::atomic::Ordering::Relaxed);
        let trigger =
            trigger::decode(payload).inspect_err(|err| tracing::error!(error = %err, "rejected invocation"))?;
        let dry_run = matches!(trigger, Trigger::Plan { .. });
        let mut summary = Summary { trigger: trigger.kind().to_string(), dry_run, ..Summary::default() };
        let calls_until = deadline.map(|deadline| deadline.checked_sub(RETURN_RESERVE).unwrap_or(deadline));
        let budget = Budget { deadline: calls_until, attempt_timeout: self.config.call_timeout, stats: &self.stats };
        let work = budget.until(deadline.map(|deadline| deadline.checked_sub(REPORT_RESERVE).unwrap_or(deadline)));
        let client = self.cluster.client(work).await?;
        let policy = self.policy();
        let readers = Readers { config: &self.config, policy: &policy, accounts: &self.accounts, client: &client };
        let listed_at = Instant::now();
        // Boxed as `Send`: the proof that the whole invocation can move between threads is made here, where the
        // borrows have concrete lifetimes (rustc cannot make it through these generic retries otherwise).
        let reading: BoxFuture<'_, Result<Targets>> = match &trigger {
            Trigger::Artifacts(events) => Box::pin(self.fleet.for_uploads(&readers, events, work)),
            Trigger::Wakeups(wakeups) => Box::pin(self.fleet.for_wakeups(&readers, wakeups, &self.wakeups, work)),
            _ => Box::pin(self.fleet.for_sweep(&readers, &trigger, work)),
        };
        let targets = match (reading.await, &trigger) {
            // Out of time before anything was read: due steps are sent back to the queue, for at once.
            (Err(Error::Deadline { .. }), Trigger::Wakeups(wakeups)) => {
                for wakeup in wakeups {
                    if let Err(err) = self.wakeups.schedule(wakeup, budget).await {
                        tracing::warn!(error = %err, "cannot send a due step back to the queue; the next sweep takes it");
                    }
                }
                summary.skipped = wakeups.len();
                summary.duration_ms = started.elapsed().as_millis() as u64;
                return Ok(summary);
            }
            (read, _) => read?,
        };
        summary.considered = targets.listed.len();
        summary.ignored_records = targets.ignored_records;
        let rivals = fleet::preferred_rivals(&targets.listed, &policy);
        let seen: HashMap<String, Seen> =
            targets.listed.iter().map(|listed| (resource_key(listed.metadata()), Seen::of(listed))).collect();
        let worker = Worker {
            config: &self.config,
            policy: &policy,
            accounts: &self.accounts,
            wakeups: &self.wakeups,
            client: &client,
            work,
            report: budget,
            dry_run,
            listed_functions: &targets.functions,
            objects: &targets.objects,
            rivals: &rivals,
            seen: &seen,
            cluster: &self.cluster_id,
            fresh_until: listed_at + FRESH_LISTING,
        };
        // Every resource at once: the acting slots and the rate limits pace them, and waiting for an update to
        // finish holds no slot.
        let everyone = targets.listed.len().max(1);
        let reports: Vec<Reported> = futures::stream::iter(targets.listed)
            .map(|target| worker.run(target))
            .buffer_unordered(everyone)
            .collect()
            .await;
        let mut places: BTreeMap<String, PlaceSummary> = BTreeMap::new();
        for reported in reports {
            if let Some(place) = &reported.place {
                let share = places.entry(place.to_string()).or_default();
                share.considered += 1;
                match &reported.outcome {
                    Outcome::Deployed { .. } => share.deployed += 1,
                    Outcome::Released { .. } if moved_traffic(reported.released.as_ref()) => share.deployed += 1,
                    Outcome::UpToDate { .. } | Outcome::Released { .. } => share.up_to_date += 1,
                    Outcome::Failed { .. } | Outcome::Invalid { .. } | Outcome::UpdateFailed { .. } => {
                        share.failed += 1
                    }
                    Outcome::Blocked { .. } => share.blocked += 1,
                    Outcome::Skipped => share.skipped += 1,
                    _ => {}
                }
            }
            count(&mut summary, reported);
        }
        if places.len() > 1 {
            summary.accounts = places;
        }
        summary.retries = self.stats.retries.load(std::sync::atomic::Ordering::Relaxed) - retries_before;
        summary.throttled = self.stats.throttled.load(std::sync::atomic::Ordering::Relaxed) - throttled_before;
        summary.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(summary = %serde_json::to_string(&summary).unwrap_or_default(), "invocation finished");
        Ok(summary)
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            default_bucket: &self.config.artifact_bucket,
            regional_buckets: &self.config.regional_buckets,
            own: self.accounts.own(),
            roles: &self.config.target_roles,
            key_template: &self.config.key_template,
            allowed_function_arns: &self.allowed,
            namespace_policy: self.config.namespace_policy.as_ref(),
        }
    }
}

fn count(summary: &mut Summary, reported: Reported) {
    let Reported { resource, outcome, released, status_written, events_recorded, errors, .. } = reported;
    summary.drift_corrected += usize::from(matches!(outcome, Outcome::Deployed { drift: true, .. }));
    let counter = match &outcome {
        Outcome::Released { .. } => release_counter(summary, released.as_ref()),
        Outcome::Deployed { .. } => &mut summary.deployed,
        Outcome::UpToDate { .. } => &mut summary.up_to_date,
        Outcome::Deploying { .. } => &mut summary.deploying,
        Outcome::WaitingForArtifact { .. } => &mut summary.waiting,
        Outcome::Failed { .. } | Outcome::Invalid { .. } | Outcome::UpdateFailed { .. } => &mut summary.failed,
        Outcome::Blocked { .. } => &mut summary.blocked,
        Outcome::Suspended => &mut summary.suspended,
        Outcome::Skipped => &mut summary.skipped,
        Outcome::Planned { .. } => &mut summary.would_deploy,
    };
    *counter += 1;
    summary.status_writes += usize::from(status_written);
    summary.events_recorded += events_recorded;
    let problem = match &outcome {
        Outcome::Failed { message } | Outcome::Invalid { message } => Some(format!("{resource} failed: {message}")),
        Outcome::UpdateFailed { reason, .. } => Some(format!("{resource} failed: Lambda failed the update: {reason}")),
        Outcome::Blocked { message } => Some(format!("{resource} blocked: {message}")),
        _ => None,
    };
    for message in problem.into_iter().chain(errors) {
        if summary.errors.len() < MAX_SUMMARY_ERRORS {
            summary.errors.push(message);
        }
    }
    if summary.dry_run {
        summary.decisions.push(crate::deployer::PlannedDecision { resource, decision: report::describe(&outcome) });
    }
}

/// Whether a release gave a version all the traffic in this invocation (promoted, or the alias put back).
fn moved_traffic(released: Option<&Released>) -> bool {
    released.is_some_and(|r| r.events.iter().any(|e| matches!(e, ReleaseEvent::Promoted | ReleaseEvent::AliasRestored)))
}

/// Which count a release's outcome goes to: what traffic does now, and whether this invocation moved it.
fn release_counter<'s>(summary: &'s mut Summary, released: Option<&Released>) -> &'s mut usize {
    let events = released.map(|r| r.events.as_slice()).unwrap_or_default();
    let happened = |wanted: fn(&ReleaseEvent) -> bool| events.iter().filter(|e| wanted(e)).count();
    summary.promoted += happened(|e| matches!(e, ReleaseEvent::Promoted));
    summary.rollbacks += happened(|e| matches!(e, ReleaseEvent::RolledBack));
    summary.drift_corrected += happened(|e| matches!(e, ReleaseEvent::AliasRestored));
    match released.and_then(|r| r.rollout.as_ref()).map(|r| r.state) {
        Some(RolloutState::Progressing) => &mut summary.progressing,
        Some(RolloutState::RolledBack) => &mut summary.rolled_back,
        _ if moved_traffic(released) => &mut summary.deployed,
        _ => &mut summary.up_to_date,
    }
}

/// Converts the Lambda context's deadline (epoch milliseconds) into an [`Instant`]. A deadline that is not in the
/// future is not a real one (Lambda would have stopped us; some runtime emulators send a duration instead), so it
/// is ignored rather than skipping all work.
pub fn deadline_from_epoch_millis(deadline_ms: u64) -> Option<Instant> {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    (deadline_ms > now_ms).then(|| Instant::now() + Duration::from_millis(deadline_ms - now_ms))
}
