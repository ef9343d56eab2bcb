//! What an invocation concerns: the LambdaDeployments it touches (an upload's, through a field-selected list; a
//! sweep's, all of them) and, for sweeps, what is read about them in bulk — the functions through ListFunctions
//! pages when that is quicker than one GetFunction each, and the artifact bucket's ETags. Bulk reads start while the
//! LambdaDeployments are still being listed, as soon as the count listed so far makes them worth it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::accounts::{Account, Accounts, Place};
use crate::config::{Config, FunctionObservation};
use crate::plan::{self, FunctionState, Policy};
use crate::resources::{self, ListProgress, Listed};
use crate::retry::Budget;
use crate::trigger::{ArtifactEvent, Trigger};
use crate::{Error, Result};

/// The account's function count (for choosing ListFunctions) is asked for again after this long.
const ACCOUNT_COUNT_TTL: Duration = Duration::from_secs(600);
/// How long a place's bulk read (the function count, each ListFunctions page) may go unanswered before the place's
/// functions are observed one by one instead: a throttled or unreachable place never holds the others' deploys.
const BULK_READ_SLACK: Duration = Duration::from_secs(2);
/// A bucket listing page (1,000 keys) is worth it when it replaces at least this many HeadObjects.
const HEAD_OBJECTS_PER_LISTING_PAGE: usize = 10;

/// The resources an invocation works on, and what was read about them in bulk.
#[derive(Default)]
pub struct Targets {
    pub listed: Vec<Listed>,
    /// Functions from ListFunctions, by unqualified ARN (sweeps that chose to list).
    pub functions: HashMap<String, FunctionState>,
    /// The artifact bucket's keys and ETags (sweeps of fleets large enough).
    pub objects: HashMap<String, String>,
    /// Upload records that concern no LambdaDeployment rule (other bucket, key not matching the template).
    pub ignored_records: usize,
}

/// What a container remembers between invocations to read its fleet quickly.
#[derive(Default)]
pub struct Fleet {
    /// Per place: when its function count was learned, and the count (`None`: GetAccountSettings is not allowed).
    functions_in_account: Mutex<HashMap<Place, (Instant, Option<usize>)>>,
    /// How many LambdaDeployments the previous sweep of this container listed in each place.
    last_sweep_targets: Mutex<HashMap<Place, usize>>,
}

/// The deployer's parts a fleet is read with.
pub struct Readers<'a> {
    pub config: &'a Config,
    pub policy: &'a Policy<'a>,
    pub accounts: &'a Accounts,
    pub client: &'a kube::Client,
}

impl Fleet {
    /// The LambdaDeployments an upload concerns: those whose functionName and commit the key names (selected by
    /// the server through the CRD's selectableFields, else listed and filtered here) and whose artifact is that object.
    pub async fn for_uploads(&self, at: &Readers<'_>, events: &[ArtifactEvent], budget: Budget<'_>) -> Result<Targets> {
        let config = at.config;
        let mut targets = Targets::default();
        for event in events {
            let artifact_bucket = event.bucket == config.artifact_bucket
                || config.regional_buckets.iter().any(|(_, bucket)| *bucket == event.bucket);
            if !artifact_bucket {
                tracing::info!(bucket = %event.bucket, key = %event.key, "ignored: not an artifact bucket (ARTIFACT_BUCKET, ARTIFACT_BUCKETS)");
                targets.ignored_records += 1;
                continue;
            }
            let artifact = match config.key_template.parse_key(&event.key) {
                Ok(artifact) => artifact,
                Err(reason) => {
                    tracing::info!(bucket = %event.bucket, key = %event.key, %reason, "ignored: key does not match KEY_TEMPLATE");
                    targets.ignored_records += 1;
                    continue;
                }
            };
            tracing::info!(bucket = %event.bucket, key = %event.key, version_id = ?event.version_id, source = ?event.source, "artifact uploaded");
            let selector = format!("spec.functionName={},spec.commit={}", artifact.function_name, artifact.commit);
            let namespaces = config.watch_namespaces.as_deref();
            let listed = match resources::list(at.client, namespaces, Some(&selector), None, budget).await {
                Err(Error::Kube { status: Some(400), .. }) => {
                    tracing::info!("field selector unsupported by the cluster; listing all LambdaDeployments");
                    resources::list(at.client, namespaces, None, None, budget).await?
                }
                other => other?,
            };
            for item in listed {
                let Listed::Valid(ld) = &item else { continue };
                let concerns_upload =
                    plan::artifact_location(ld, at.policy) == (event.bucket.clone(), event.key.clone());
                let seen = targets.listed.iter().any(|t| t.metadata().uid == item.metadata().uid);
                if concerns_upload && !seen {
                    targets.listed.push(item);
                }
            }
        }
        Ok(targets)
    }

    /// The LambdaDeployments whose rollout steps are due. A wake-up for a step further away than SQS can delay
    /// is the next link of a chain: sent again, for the rest of the wait.
    pub async fn for_wakeups(
        &self,
        at: &Readers<'_>,
        wakeups: &[crate::wakeup::Wakeup],
        queue: &crate::wakeup::Wakeups,
        budget: Budget<'_>,
    ) -> Result<Targets> {
        let mut targets = Targets::default();
        let soon = jiff::Timestamp::now() + std::time::Duration::from_secs(1);
        let mut due = Vec::new();
        for wakeup in wakeups {
            if wakeup.due_at().is_some_and(|due| due > soon) {
                queue.schedule(wakeup, budget).await?;
            } else if !due
                .iter()
                .any(|d: &&crate::wakeup::Wakeup| (&d.namespace, &d.name) == (&wakeup.namespace, &wakeup.name))
            {
                due.push(wakeup);
            }
        }
        let reads = due.iter().map(|wakeup| {
            let metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                namespace: Some(wakeup.namespace.clone()),
                name: Some(wakeup.name.clone()),
                ..Default::default()
            };
            async move { resources::get(at.client, &metadata, budget).await }
        });
        for (wakeup, read) in due.iter().zip(futures::future::join_all(reads).await) {
            match read? {
                Some(listed) => targets.listed.push(listed),
                None => {
                    tracing::info!(namespace = %wakeup.namespace, name = %wakeup.name, "woken for a LambdaDeployment that no longer exists")
                }
            }
        }
        Ok(targets)
    }

    /// A sweep's or a plan's LambdaDeployments, with the bulk reads a sweep starts while they are listed.
    pub async fn for_sweep(&self, at: &Readers<'_>, trigger: &Trigger, budget: Budget<'_>) -> Result<Targets> {
        let (progress, listed_so_far) = watch::channel(ListProgress::default());
        let (places, in_each_place) = watch::channel(None);
        let read_targets = async {
            let targets = self.sweep_targets(at, trigger, &progress, budget).await;
            // Whatever happened, the bulk reads waiting for the complete listing stop waiting.
            let counts = targets.as_ref().map(|targets| targets_by_place(targets, at.policy)).unwrap_or_default();
            places.send_replace(Some(counts));
            let targets = targets?;
            progress.send_replace(ListProgress { at_least: targets.len(), complete: true });
            Ok::<_, Error>(targets)
        };
        let read_in_bulk = async {
            Ok(tokio::join!(
                self.list_functions(at, in_each_place, budget),
                self.list_artifacts(at, listed_so_far.clone(), budget)
            ))
        };
        let (listed, (functions, objects)) = tokio::try_join!(read_targets, read_in_bulk)?;
        Ok(Targets { listed, functions, objects, ignored_records: 0 })
    }

    /// Lists the LambdaDeployments, reporting the listing's progress page by page (a plan of one named resource
    /// only at the end, so it does not start bulk reads).
    async fn sweep_targets(
        &self,
        at: &Readers<'_>,
        trigger: &Trigger,
        progress: &watch::Sender<ListProgress>,
        budget: Budget<'_>,
    ) -> Result<Vec<Listed>> {
        let (namespaces, name) = match trigger {
            Trigger::Plan { namespace, name } => {
                (namespace.clone().map(|ns| vec![ns]).or_else(|| at.config.watch_namespaces.clone()), name.clone())
            }
            _ => (at.config.watch_namespaces.clone(), None),
        };
        let progress = name.is_none().then_some(progress);
        let listed = resources::list(at.client, namespaces.as_deref(), None, progress, budget).await?;
        if name.is_none() {
            *lock(&self.last_sweep_targets) = targets_by_place(&listed, at.policy);
        }
        Ok(listed.into_iter().filter(|item| name.is_none() || item.metadata().name == name).collect())
    }

    /// The functions from ListFunctions pages, in every (account, region) where that is configured, or (auto)
    /// where paging through its functions is quicker than one GetFunction per target there. Places the previous
    /// sweep had start at once, on that guess; others once the complete listing of LambdaDeployments says they are
    /// worth it. Failing to list is not fatal.
    async fn list_functions(
        &self,
        at: &Readers<'_>,
        in_each_place: watch::Receiver<Option<HashMap<Place, usize>>>,
        budget: Budget<'_>,
    ) -> HashMap<String, FunctionState> {
        if at.config.function_observation == FunctionObservation::GetFunction {
            return HashMap::new();
        }
        let guessed = lock(&self.last_sweep_targets).clone();
        let guessed_places = guessed
            .iter()
            .map(|(place, count)| self.list_place(at, place.clone(), Some(*count), in_each_place.clone(), budget));
        let new_places = async {
            let counts = complete(in_each_place.clone()).await;
            let new = counts.into_keys().filter(|place| !guessed.contains_key(place));
            let listings = new.map(|place| self.list_place(at, place, None, in_each_place.clone(), budget));
            futures::future::join_all(listings).await
        };
        let (guessed_listings, new_listings) = tokio::join!(futures::future::join_all(guessed_places), new_places);
        guessed_listings.into_iter().chain(new_listings).flatten().collect()
    }

    /// One place's functions (see [`Fleet::list_functions`]): `guess` is the previous sweep's target count there.
    async fn list_place(
        &self,
        at: &Readers<'_>,
        place: Place,
        guess: Option<usize>,
        in_each_place: watch::Receiver<Option<HashMap<Place, usize>>>,
        budget: Budget<'_>,
    ) -> HashMap<String, FunctionState> {
        let account = at.accounts.at(&place).await;
        let in_account = match at.config.function_observation {
            FunctionObservation::GetFunction => return HashMap::new(),
            FunctionObservation::ListFunctions => None,
            FunctionObservation::Auto => {
                let probe = budget.until(Some(Instant::now() + BULK_READ_SLACK));
                match self.functions_in_account(&account, probe).await {
                    Some(count) => Some(count),
                    None => return HashMap::new(),
                }
            }
        };
        // A page that does not come within the slack ends the listing (what was listed is used).
        let list = || account.functions.list(budget, BULK_READ_SLACK);
        let worth_it =
            |targets| targets > 0 && in_account.is_none_or(|count| crate::aws::listing_is_quicker(targets, count));
        let targets_here = async { complete(in_each_place).await.get(&place).copied().unwrap_or(0) };
        let listing = match guess {
            // Started on the guess; stopped if the complete list says otherwise.
            Some(guess) if worth_it(guess) => {
                let wrong_guess = async {
                    if worth_it(targets_here.await) {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    listing = list() => listing,
                    () = wrong_guess => return HashMap::new(),
                }
            }
            _ if worth_it(targets_here.await) => list().await,
            _ => return HashMap::new(),
        };
        match listing {
            Ok(functions) => {
                self.remember_functions_in_account(&place, Some(functions.len()));
                functions
            }
            Err(err) => {
                tracing::warn!(%place, error = %err, "ListFunctions failed; observing each function with GetFunction");
                HashMap::new()
            }
        }
    }

    /// The place's function count: remembered for a while (a complete listing also updates it), else asked with
    /// GetAccountSettings. `None` when that is not allowed or fails: then functions are observed one by one.
    async fn functions_in_account(&self, account: &Account, budget: Budget<'_>) -> Option<usize> {
        let remembered = lock(&self.functions_in_account).get(&account.place).copied();
        if let Some((learned, count)) = remembered
            && learned.elapsed() < ACCOUNT_COUNT_TTL
        {
            return count;
        }
        let count = match account.functions.count_in_account(budget).await {
            Ok(count) => Some(count),
            Err(err) => {
                tracing::warn!(place = %account.place, error = %err, "GetAccountSettings failed; sweeps observe each function with GetFunction (set FUNCTION_OBSERVATION=get-function to skip asking)");
                None
            }
        };
        self.remember_functions_in_account(&account.place, count);
        count
    }

    fn remember_functions_in_account(&self, place: &Place, count: Option<usize>) {
        lock(&self.functions_in_account).insert(place.clone(), (Instant::now(), count));
    }

    /// The artifact bucket's listing (key → ETag), when it can replace enough HeadObjects: artifacts whose ETag is
    /// the one the status remembers are known without reading them. Failing to list is not fatal.
    async fn list_artifacts(
        &self,
        at: &Readers<'_>,
        targets: watch::Receiver<ListProgress>,
        budget: Budget<'_>,
    ) -> HashMap<String, String> {
        let pages_worth_it = |targets: usize| targets / HEAD_OBJECTS_PER_LISTING_PAGE;
        if !once_worth_it(targets.clone(), |targets| pages_worth_it(targets) > 0).await {
            return HashMap::new();
        }
        let max_pages = || pages_worth_it(targets.borrow().at_least);
        let store = at.accounts.store_for(&at.config.artifact_bucket).await;
        match store.list(&at.config.artifact_bucket, max_pages, budget).await {
            Ok(objects) => objects,
            Err(err) => {
                tracing::warn!(error = %err, "listing the artifact bucket failed; reading each artifact with HeadObject");
                HashMap::new()
            }
        }
    }
}

/// How many of the LambdaDeployments that may deploy target each place.
fn targets_by_place(listed: &[Listed], policy: &Policy) -> HashMap<Place, usize> {
    let mut counts = HashMap::new();
    for item in listed {
        if let Listed::Valid(ld) = item
            && let Ok(arn) = plan::admit(ld, policy)
        {
            *counts.entry(Place::of(&arn)).or_insert(0) += 1;
        }
    }
    counts
}

/// The counts per place, once the listing is complete (empty if it failed).
async fn complete(mut in_each_place: watch::Receiver<Option<HashMap<Place, usize>>>) -> HashMap<Place, usize> {
    loop {
        if let Some(counts) = in_each_place.borrow_and_update().as_ref() {
            return counts.clone();
        }
        if in_each_place.changed().await.is_err() {
            return HashMap::new();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// For each LambdaDeployment that shares its function with an older eligible one, the older one's key. Creation
/// order (then name) decides deterministically, so two resources never take turns deploying.
pub fn preferred_rivals(targets: &[Listed], policy: &Policy) -> HashMap<String, String> {
    let mut by_function: HashMap<&str, Vec<&crate::crd::LambdaDeployment>> = HashMap::new();
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
