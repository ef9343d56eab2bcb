//! The executor: decodes the trigger, finds the LambdaDeployments it concerns, and for each one loops
//! observe → [`plan`] → act until the decision is final, then reports. Clients live in [`Deployer`], built once
//! per container and reused by every invocation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::arn::ArnGlob;
use crate::artifact::ArtifactStore;
use crate::aws::RetryStats;
use crate::cluster::Cluster;
use crate::config::{Config, FunctionObservation};
use crate::crd::LambdaDeployment;
use crate::function::{Functions, lost_race};
use crate::plan::{self, Decision, FunctionState, Input, Observed, Policy};
use crate::report::{self, Outcome};
use crate::resources::{self, EventRecord, ListProgress, Listed};
use crate::trigger::{self, ArtifactEvent, Trigger};
use crate::{Error, Result};

/// Who the deployer is, from STS GetCallerIdentity (once per container).
#[derive(Clone, Debug)]
pub struct Identity {
    pub account: String,
    pub partition: String,
    pub region: String,
}

/// What was listed for one resource: its function from ListFunctions, the bucket's ETags (sweeps), and until when
/// the listed resource itself counts as fresh.
#[derive(Clone, Copy)]
struct Prefetched<'a> {
    function: Option<&'a FunctionState>,
    objects: &'a HashMap<String, String>,
    fresh_until: Instant,
}

/// A bucket listing page (1,000 keys) is worth it when it replaces at least this many HeadObjects.
const HEAD_OBJECTS_PER_LISTING_PAGE: usize = 10;

/// One pass over one resource's spec: an outcome, or the newer spec to start again with.
enum Step {
    Done(Outcome),
    Superseded(Box<Listed>),
}

/// A resource listed less than this long ago is not read again before deploying. The re-read keeps a slow sweep
/// from deploying a commit the user has replaced meanwhile; a listing this fresh leaves no wider window than the
/// re-read would. After a lost race or a wait, or when the function no longer runs what the status recorded
/// (another invocation may have deployed a newer spec), the resource is always read again.
const FRESH_LISTING: Duration = Duration::from_secs(1);
/// The account's function count (for choosing ListFunctions) is asked for again after this long.
const ACCOUNT_COUNT_TTL: Duration = Duration::from_secs(600);

/// How many times one LD may lose a race (conflict, stale revision, concurrent claim) before giving up for now.
const MAX_RACES: u32 = 4;
/// Kept free at the end of an invocation: AWS waits and retries stop this long before the deadline, so there is
/// always time to write the statuses and Events of what was done.
const REPORT_RESERVE: Duration = Duration::from_secs(5);
/// At most this many error messages are returned in the summary; all are logged.
const MAX_SUMMARY_ERRORS: usize = 20;

pub struct Deployer {
    config: Config,
    allowed: Vec<ArnGlob>,
    artifacts: ArtifactStore,
    functions: Functions,
    cluster: Cluster,
    stats: RetryStats,
    /// When the account's function count was learned, and the count (`None`: GetAccountSettings is not allowed).
    functions_in_account: Mutex<Option<(Instant, Option<usize>)>>,
    /// How many LambdaDeployments the previous sweep of this container listed.
    last_sweep_targets: AtomicUsize,
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
    pub skipped: usize,
    /// Artifact events that matched no LambdaDeployment rule (other bucket, key not matching the template).
    pub ignored_records: usize,
    pub status_writes: usize,
    pub events_recorded: usize,
    pub retries: u64,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Per-resource decisions (dry runs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<PlannedDecision>,
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
        // A custom endpoint (testbed, LocalStack) is addressed by IP or localhost: virtual-host buckets cannot resolve.
        let s3_config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some()).build();
        Deployer {
            cluster: Cluster::new(config.cluster.clone(), sdk),
            config,
            allowed,
            artifacts: ArtifactStore::new(aws_sdk_s3::Client::from_conf(s3_config)),
            functions: Functions::new(aws_sdk_lambda::Client::new(sdk)),
            stats: RetryStats::default(),
            functions_in_account: Mutex::new(None),
            last_sweep_targets: AtomicUsize::new(0),
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
        let retries_before = self.stats.retries.load(Ordering::Relaxed);
        let trigger =
            trigger::decode(payload).inspect_err(|err| tracing::error!(error = %err, "rejected invocation"))?;
        let dry_run = matches!(trigger, Trigger::Plan { .. });
        let mut summary = Summary { trigger: trigger.kind().to_string(), dry_run, ..Summary::default() };
        let client = self.cluster.client().await?;
        let listed_at = Instant::now();
        // An upload event reads only its own targets. A sweep also reads in bulk (functions, artifact ETags), each
        // listing starting as soon as the LambdaDeployments listed so far make it worth it.
        let (targets, (listed, objects)) = match &trigger {
            Trigger::Artifacts(events) => {
                (self.artifact_targets(&client, events, &mut summary).await?, (HashMap::new(), HashMap::new()))
            }
            _ => {
                let (progress, listed_so_far) = watch::channel(ListProgress::default());
                let read_targets = async {
                    let targets = self.sweep_targets(&client, &trigger, &progress).await?;
                    progress.send_replace(ListProgress { at_least: targets.len(), complete: true });
                    Ok::<_, Error>(targets)
                };
                let read_in_bulk = async {
                    Ok(tokio::join!(
                        self.list_functions(listed_so_far.clone(), deadline),
                        self.list_artifacts(listed_so_far.clone(), deadline)
                    ))
                };
                tokio::try_join!(read_targets, read_in_bulk)?
            }
        };
        summary.considered = targets.len();
        let rivals = preferred_rivals(&targets, &self.policy());
        let fresh_until = listed_at + FRESH_LISTING;
        let deadline = deadline.map(|deadline| deadline.checked_sub(REPORT_RESERVE).unwrap_or(deadline));
        let outcomes: Vec<(Listed, Outcome)> = futures::stream::iter(targets)
            .map(|target| {
                let rival = rivals.get(&resource_key(target.metadata())).map(String::as_str);
                let prefetched = match &target {
                    Listed::Valid(ld) => listed.get(&ld.spec.function_arn),
                    Listed::Undecodable { .. } => None,
                };
                self.reconcile(
                    &client,
                    target,
                    rival,
                    Prefetched { function: prefetched, objects: &objects, fresh_until },
                    dry_run,
                    deadline,
                )
            })
            .buffer_unordered(self.config.max_concurrency)
            .collect()
            .await;
        for (target, outcome) in &outcomes {
            self.report(&client, target, outcome, &mut summary).await;
        }
        summary.retries = self.stats.retries.load(Ordering::Relaxed) - retries_before;
        summary.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(summary = %serde_json::to_string(&summary).unwrap_or_default(), "invocation finished");
        Ok(summary)
    }

    /// The LambdaDeployments an upload concerns: those whose functionName and commit the key names (selected by
    /// the server through the CRD's selectableFields, else listed and filtered here) and whose artifact is that object.
    async fn artifact_targets(
        &self,
        client: &kube::Client,
        events: &[ArtifactEvent],
        summary: &mut Summary,
    ) -> Result<Vec<Listed>> {
        let mut targets: Vec<Listed> = Vec::new();
        for event in events {
            if event.bucket != self.config.artifact_bucket {
                tracing::info!(bucket = %event.bucket, key = %event.key, "ignored: not the artifact bucket {}", self.config.artifact_bucket);
                summary.ignored_records += 1;
                continue;
            }
            let artifact = match self.config.key_template.parse_key(&event.key) {
                Ok(artifact) => artifact,
                Err(reason) => {
                    tracing::info!(bucket = %event.bucket, key = %event.key, %reason, "ignored: key does not match KEY_TEMPLATE");
                    summary.ignored_records += 1;
                    continue;
                }
            };
            tracing::info!(bucket = %event.bucket, key = %event.key, version_id = ?event.version_id, source = ?event.source, "artifact uploaded");
            let selector = format!("spec.functionName={},spec.commit={}", artifact.function_name, artifact.commit);
            let namespaces = self.config.watch_namespaces.as_deref();
            let listed = match resources::list(client, namespaces, Some(&selector), None).await {
                Err(Error::Kube { status: Some(400), .. }) => {
                    tracing::info!("field selector unsupported by the cluster; listing all LambdaDeployments");
                    resources::list(client, namespaces, None, None).await?
                }
                other => other?,
            };
            let policy = self.policy();
            for item in listed {
                let Listed::Valid(ld) = &item else { continue };
                let concerns_upload = plan::artifact_location(ld, &policy) == (event.bucket.clone(), event.key.clone());
                let seen = targets.iter().any(|t| t.metadata().uid == item.metadata().uid);
                if concerns_upload && !seen {
                    targets.push(item);
                }
            }
        }
        Ok(targets)
    }

    /// The LambdaDeployments a sweep or a plan concerns, reporting the listing's progress page by page (a plan
    /// of one named resource only at the end, so it does not start bulk reads).
    async fn sweep_targets(
        &self,
        client: &kube::Client,
        trigger: &Trigger,
        progress: &watch::Sender<ListProgress>,
    ) -> Result<Vec<Listed>> {
        let (namespaces, name) = match trigger {
            Trigger::Plan { namespace, name } => {
                (namespace.clone().map(|ns| vec![ns]).or_else(|| self.config.watch_namespaces.clone()), name.clone())
            }
            _ => (self.config.watch_namespaces.clone(), None),
        };
        let progress = name.is_none().then_some(progress);
        let listed = resources::list(client, namespaces.as_deref(), None, progress).await?;
        if name.is_none() {
            self.last_sweep_targets.store(listed.len(), Ordering::Relaxed);
        }
        Ok(listed.into_iter().filter(|item| name.is_none() || item.metadata().name == name).collect())
    }

    /// For a sweep, the functions from ListFunctions pages when configured, or (auto) when paging through the
    /// account's functions is quicker than one GetFunction per target. Failing to list is not fatal.
    async fn list_functions(
        &self,
        targets: watch::Receiver<ListProgress>,
        deadline: Option<Instant>,
    ) -> HashMap<String, FunctionState> {
        let in_account = match self.config.function_observation {
            FunctionObservation::GetFunction => return HashMap::new(),
            FunctionObservation::ListFunctions => None,
            FunctionObservation::Auto => match self.functions_in_account(deadline).await {
                Some(count) => Some(count),
                None => return HashMap::new(),
            },
        };
        let worth_it =
            |targets| targets > 0 && in_account.is_none_or(|count| crate::aws::listing_is_quicker(targets, count));
        // The previous sweep's fleet says whether to start at once, before the first page of LambdaDeployments;
        // a listing started on that guess stops if the complete list says otherwise.
        let guessed = worth_it(self.last_sweep_targets.load(Ordering::Relaxed));
        if !guessed && !once_worth_it(targets.clone(), worth_it).await {
            return HashMap::new();
        }
        let wrong_guess = async {
            if once_worth_it(targets, worth_it).await {
                std::future::pending::<()>().await;
            }
        };
        let listing = tokio::select! {
            listing = self.functions.list(deadline, &self.stats) => listing,
            () = wrong_guess => return HashMap::new(),
        };
        match listing {
            Ok(functions) => {
                self.remember_functions_in_account(Some(functions.len()));
                functions
            }
            Err(err) => {
                tracing::warn!(error = %err, "ListFunctions failed; observing each function with GetFunction");
                HashMap::new()
            }
        }
    }

    /// The account's function count: remembered for a while (a complete listing also updates it), else asked
    /// with GetAccountSettings. `None` when that is not allowed or fails: then functions are observed one by one.
    async fn functions_in_account(&self, deadline: Option<Instant>) -> Option<usize> {
        let remembered = *self.functions_in_account.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((learned, count)) = remembered
            && learned.elapsed() < ACCOUNT_COUNT_TTL
        {
            return count;
        }
        let count = match self.functions.count_in_account(deadline, &self.stats).await {
            Ok(count) => Some(count),
            Err(err) => {
                tracing::warn!(error = %err, "GetAccountSettings failed; sweeps observe each function with GetFunction (set FUNCTION_OBSERVATION=get-function to skip asking)");
                None
            }
        };
        self.remember_functions_in_account(count);
        count
    }

    fn remember_functions_in_account(&self, count: Option<usize>) {
        *self.functions_in_account.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), count));
    }

    /// For a sweep, the artifact bucket's listing (key → ETag), when it can replace enough HeadObjects: artifacts
    /// whose ETag is the one the status remembers are known without reading them. Failing to list is not fatal.
    async fn list_artifacts(
        &self,
        targets: watch::Receiver<ListProgress>,
        deadline: Option<Instant>,
    ) -> HashMap<String, String> {
        let pages_worth_it = |targets: usize| targets / HEAD_OBJECTS_PER_LISTING_PAGE;
        if !once_worth_it(targets.clone(), |targets| pages_worth_it(targets) > 0).await {
            return HashMap::new();
        }
        let max_pages = || pages_worth_it(targets.borrow().at_least);
        match self.artifacts.list(&self.config.artifact_bucket, max_pages, deadline, &self.stats).await {
            Ok(objects) => objects,
            Err(err) => {
                tracing::warn!(error = %err, "listing the artifact bucket failed; reading each artifact with HeadObject");
                HashMap::new()
            }
        }
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            default_bucket: &self.config.artifact_bucket,
            key_template: &self.config.key_template,
            allowed_function_arns: &self.allowed,
            namespace_policy: self.config.namespace_policy.as_ref(),
        }
    }

    /// Observe → plan → act for one resource until the decision is final. Returns the resource as last read (it is
    /// re-read before deploying) with the outcome.
    async fn reconcile(
        &self,
        client: &kube::Client,
        target: Listed,
        rival: Option<&str>,
        prefetched: Prefetched<'_>,
        dry_run: bool,
        deadline: Option<Instant>,
    ) -> (Listed, Outcome) {
        let mut target = target;
        let mut prefetched = prefetched;
        for _ in 0..MAX_RACES {
            let ld = match &target {
                Listed::Valid(ld) => ld,
                Listed::Undecodable { reason, .. } => {
                    let outcome = Outcome::Invalid { message: reason.clone() };
                    return (target, outcome);
                }
            };
            match self.reconcile_spec(client, ld, rival, prefetched, dry_run, deadline).await {
                Step::Done(outcome) => return (target, outcome),
                Step::Superseded(fresh) => {
                    tracing::info!(resource = %ld.key(), "spec changed during the invocation; deciding again");
                    target = *fresh;
                    prefetched.function = None;
                }
            }
        }
        let message = "the resource kept changing during the invocation; the next sweep picks it up".to_string();
        (target, Outcome::Deploying { message })
    }

    async fn reconcile_spec(
        &self,
        client: &kube::Client,
        ld: &LambdaDeployment,
        rival: Option<&str>,
        prefetched: Prefetched<'_>,
        dry_run: bool,
        deadline: Option<Instant>,
    ) -> Step {
        if deadline.is_some_and(|deadline| Instant::now() + self.config.deadline_margin >= deadline) {
            return Step::Done(Outcome::Skipped);
        }
        let policy = self.policy();
        let arn = ld.spec.function_arn.as_str();
        let me = ld.key();
        let stats = &self.stats;
        let mut function = prefetched.function.map_or(Observed::NotObserved, |listed| Observed::Found(listed.clone()));
        let known = ld.status.as_ref().and_then(|s| s.artifact.as_ref());
        let (bucket, key) = plan::artifact_location(ld, &policy);
        let unchanged = known.filter(|known| {
            bucket == self.config.artifact_bucket
                && (known.bucket.as_str(), known.key.as_str()) == (bucket.as_str(), key.as_str())
                && known.etag.is_some()
                && prefetched.objects.get(&key) == known.etag.as_ref()
        });
        let mut artifact_from_listing = unchanged.is_some();
        let mut artifact = unchanged.map_or(Observed::NotObserved, |known| Observed::Found(known.clone()));
        let mut races = 0;
        let done = Step::Done;
        loop {
            let decision = plan::plan(&Input {
                ld,
                artifact: &artifact,
                artifact_from_listing,
                function: &function,
                preferred_rival: rival,
                policy: &policy,
            });
            tracing::debug!(resource = %me, ?decision, "planned");
            match decision {
                // A dry run observes like a sweep, and stops where a sweep would change something.
                Decision::Deploy { artifact, drift, .. } if dry_run => {
                    return done(Outcome::Planned { decision: report::would_deploy(&artifact, drift) });
                }
                Decision::UpToDate { artifact, .. } if dry_run => return done(Outcome::UpToDate { artifact }),
                Decision::WaitForFunction { reason } if dry_run => return done(Outcome::Deploying { message: reason }),
                Decision::ObserveArtifact { bucket, key } => {
                    artifact = self.artifacts.observe(&bucket, &key, known, deadline, stats).await;
                    artifact_from_listing = false;
                }
                Decision::ObserveFunction => function = self.functions.observe(arn, deadline, stats).await,
                Decision::UpToDate { artifact, claim } => {
                    if claim && let Err(err) = self.functions.claim(arn, &me, deadline, stats).await {
                        return done(Outcome::Failed { message: format!("cannot tag {arn} as owned by {me}: {err}") });
                    }
                    return done(Outcome::UpToDate { artifact });
                }
                Decision::Deploy { artifact: wanted, revision_id, claim, drift } => {
                    let attempt = if claim {
                        self.functions.claim(arn, &me, deadline, stats).await
                    } else {
                        // A spec listed seconds or minutes ago may be stale: never deploy a commit the user replaced.
                        let changed = match &function {
                            Observed::Found(running) => plan::changed_since_recorded(ld, running),
                            _ => true,
                        };
                        let stale = races > 0 || changed || Instant::now() >= prefetched.fresh_until;
                        if stale && let Some(step) = self.superseded(client, ld).await {
                            return step;
                        }
                        self.functions.update_code(arn, &wanted, &revision_id, deadline, stats).await
                    };
                    match attempt {
                        // Claimed: look again, so ownership and the revision are confirmed before deploying.
                        Ok(()) if claim => function = Observed::NotObserved,
                        Ok(()) => return done(self.settle(arn, wanted, drift, deadline).await),
                        Err(err) if lost_race(&err) && races < MAX_RACES => {
                            races += 1;
                            tracing::info!(resource = %me, error = %err, "lost a race; re-observing");
                            function = self
                                .functions
                                .wait_until_settled(arn, self.config.update_timeout, deadline, stats)
                                .await;
                        }
                        Err(err) => return done(Outcome::Failed { message: err.to_string() }),
                    }
                }
                Decision::WaitForFunction { reason } => {
                    if races >= MAX_RACES {
                        return done(Outcome::Deploying { message: reason });
                    }
                    races += 1;
                    function =
                        self.functions.wait_until_settled(arn, self.config.update_timeout, deadline, stats).await;
                }
                Decision::WaitForArtifact { bucket, key } => return done(Outcome::WaitingForArtifact { bucket, key }),
                Decision::Blocked(message) => return done(Outcome::Blocked { message }),
                Decision::Invalid(message) => return done(Outcome::Invalid { message }),
                Decision::Failed(message) => return done(Outcome::Failed { message }),
                Decision::Suspended => return done(Outcome::Suspended),
            }
        }
    }

    /// Re-reads the resource. `Some` when it changed (decide again on the new spec) or was deleted (do nothing);
    /// `None` when it is unchanged, or when it cannot be read (then the listed spec is all we know).
    async fn superseded(&self, client: &kube::Client, ld: &LambdaDeployment) -> Option<Step> {
        match resources::get(client, &ld.metadata).await {
            Ok(Some(fresh)) if fresh.metadata().generation != ld.metadata.generation => {
                Some(Step::Superseded(Box::new(fresh)))
            }
            Ok(Some(_)) => None,
            Ok(None) => Some(Step::Done(Outcome::Skipped)),
            Err(err) => {
                tracing::warn!(resource = %ld.key(), error = %err, "cannot re-read the resource before deploying");
                None
            }
        }
    }

    /// After UpdateFunctionCode was accepted: wait for Lambda to finish and verify the result.
    async fn settle(
        &self,
        arn: &str,
        artifact: crate::crd::ArtifactStatus,
        drift: bool,
        deadline: Option<Instant>,
    ) -> Outcome {
        match self.functions.wait_until_settled(arn, self.config.update_timeout, deadline, &self.stats).await {
            Observed::Found(f) if f.last_update_status == "Successful" && f.code_sha256 == artifact.sha256 => {
                Outcome::Deployed { artifact, drift }
            }
            Observed::Found(f) if f.last_update_status == "Failed" => Outcome::Failed {
                message: format!(
                    "Lambda rejected the update: {}",
                    f.last_update_reason.as_deref().unwrap_or("no reason given")
                ),
            },
            Observed::Found(f) if f.last_update_status == "InProgress" => Outcome::Deploying {
                message: format!("update of {arn} still in progress after {}s", self.config.update_timeout.as_secs()),
            },
            Observed::Found(f) => Outcome::Failed {
                message: format!(
                    "after the update {arn} runs CodeSha256 {}, expected {}",
                    f.code_sha256, artifact.sha256
                ),
            },
            Observed::Missing => Outcome::Failed { message: format!("function {arn} disappeared during the update") },
            Observed::Failed(reason) => Outcome::Deploying {
                message: format!("update of {arn} started; could not confirm it finished: {reason}"),
            },
            Observed::NotObserved => Outcome::Deploying { message: format!("update of {arn} started") },
        }
    }

    /// Logs the decision, writes the status if it changed, records the Event if one is due.
    async fn report(&self, client: &kube::Client, target: &Listed, outcome: &Outcome, summary: &mut Summary) {
        let resource = resource_key(target.metadata());
        count(summary, &resource, outcome);
        let (status, generation, commit, function_arn) = match target {
            Listed::Valid(ld) => (
                ld.status.as_ref(),
                ld.metadata.generation,
                Some(ld.spec.commit.as_str()),
                ld.spec.function_arn.as_str(),
            ),
            Listed::Undecodable { status, metadata, .. } => (status.as_ref(), metadata.generation, None, ""),
        };
        tracing::info!(resource = %resource, function_arn, commit, outcome = %serde_json::to_string(outcome).unwrap_or_default(), "decision");
        if summary.dry_run {
            summary.decisions.push(PlannedDecision { resource, decision: report::describe(outcome) });
            return;
        }
        let Some(new_status) = report::desired_status(status, generation, commit, outcome, jiff::Timestamp::now())
        else {
            return;
        };
        if status != Some(&new_status) {
            match resources::write_status(client, target.metadata(), status, &new_status).await {
                Ok(()) => summary.status_writes += 1,
                Err(err) => note_error(summary, &resource, err),
            }
        }
        if let Some((reason, note, warning)) = report::event_for(status, &new_status, outcome) {
            let action = if matches!(outcome, Outcome::Deployed { .. }) { "UpdateFunctionCode" } else { "Reconcile" };
            match resources::record_event(client, target.metadata(), EventRecord { reason, note, warning, action })
                .await
            {
                Ok(()) => summary.events_recorded += 1,
                Err(err) => note_error(summary, &resource, err),
            }
        }
    }
}

fn count(summary: &mut Summary, resource: &str, outcome: &Outcome) {
    let counter = match outcome {
        Outcome::Deployed { .. } => &mut summary.deployed,
        Outcome::UpToDate { .. } => &mut summary.up_to_date,
        Outcome::Deploying { .. } => &mut summary.deploying,
        Outcome::WaitingForArtifact { .. } => &mut summary.waiting,
        Outcome::Failed { .. } | Outcome::Invalid { .. } => &mut summary.failed,
        Outcome::Blocked { .. } => &mut summary.blocked,
        Outcome::Suspended => &mut summary.suspended,
        Outcome::Skipped => &mut summary.skipped,
        Outcome::Planned { .. } => &mut summary.would_deploy,
    };
    *counter += 1;
    let problem = match outcome {
        Outcome::Failed { message } | Outcome::Invalid { message } => Some(("failed", message)),
        Outcome::Blocked { message } => Some(("blocked", message)),
        _ => None,
    };
    if let Some((kind, message)) = problem
        && summary.errors.len() < MAX_SUMMARY_ERRORS
    {
        summary.errors.push(format!("{resource} {kind}: {message}"));
    }
}

fn note_error(summary: &mut Summary, resource: &str, err: Error) {
    tracing::error!(resource, error = %err, "reporting failed");
    if summary.errors.len() < MAX_SUMMARY_ERRORS {
        summary.errors.push(err.to_string());
    }
}

fn resource_key(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", metadata.namespace.as_deref().unwrap_or_default(), metadata.name.as_deref().unwrap_or_default())
}

/// For each LambdaDeployment that shares its function with an older eligible one, the older one's key. Creation
/// order (then name) decides deterministically, so two resources never take turns deploying.
fn preferred_rivals(targets: &[Listed], policy: &Policy) -> HashMap<String, String> {
    let mut by_function: HashMap<&str, Vec<&LambdaDeployment>> = HashMap::new();
    for target in targets {
        if let Listed::Valid(ld) = target
            && plan::eligible(ld, policy)
        {
            by_function.entry(ld.spec.function_arn.as_str()).or_default().push(ld);
        }
    }
    let mut rivals = HashMap::new();
    for mut group in by_function.into_values().filter(|group| group.len() > 1) {
        group.sort_by_key(|ld| (ld.metadata.creation_timestamp.clone().map(|t| t.0), ld.key()));
        let preferred = group[0].key();
        for ld in &group[1..] {
            rivals.insert(ld.key(), preferred.clone());
        }
    }
    rivals
}

/// Waits until the LambdaDeployments listed so far make a bulk read `worth_it` (true), or the listing ends
/// without that (false).
async fn once_worth_it(mut targets: watch::Receiver<ListProgress>, worth_it: impl Fn(usize) -> bool) -> bool {
    loop {
        let progress = *targets.borrow_and_update();
        if worth_it(progress.at_least) {
            return true;
        }
        if progress.complete || targets.changed().await.is_err() {
            return false;
        }
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
