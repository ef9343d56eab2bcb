//! Fault-matrix soak: many LambdaDeployments, several sweeps and a storm of duplicated S3 events from three deployer
//! instances at once, while updates take seconds (the testbed's realistic model) and the testbed throttles,
//! conflicts, races a competing writer, applies writes and then loses their answers, fails some updates, resets
//! connections, answers 5xx/SlowDown and slows down (Lambda, S3 and the Kubernetes API), with Lambda's quotas on.
//!
//! The storm is judged while it rages: a quarter of the LambdaDeployments change commit in the middle of it (their
//! new releases' events race a sweep), and before any fault is cleared most functions must already run their
//! declared code with a truthful status. Then one settling sweep without faults, with few deploys, must leave
//! everything right: each function runs its commit's artifact (or, where Lambda failed the update, its previous code
//! with the failure on the status, tried once), Lambda applied exactly one UpdateFunctionCode per artifact a function
//! ran (counting writes whose answers were lost and the competitor's), and no function ever ran undeclared code.
//!
//! `SOAK_LDS` (default 40: the `make test` variant), `SOAK_SWEEPS` (default 3) and `SOAK_SEED` (default 6) tune it;
//! `make soak` runs `SOAK_LDS=200 cargo test --release --test soak -- --nocapture`.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lambda_deployer::crd::{LambdaDeploymentStatus, Phase};
use lambda_deployer::deployer::{Deployer, Summary};
use serde_json::{Value, json};
use support::{Updates, World, commit, zip};
use testbed::apiserver::KubeFault;
use testbed::aws::{CompetingChange, Fault, FaultAction, LastUpdateStatusReasonCode, Trigger};
use tokio::sync::Mutex;

struct Settings {
    lds: usize,
    sweeps: usize,
    seed: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
        };
        Settings {
            lds: number("SOAK_LDS", 40) as usize,
            sweeps: number("SOAK_SWEEPS", 3) as usize,
            seed: number("SOAK_SEED", 6),
        }
    }
}

/// (commit, versionId, CodeSha256) of one release.
type Release = (String, String, String);

/// One LambdaDeployment of the soak and everything the test knows about it.
struct Target {
    ld: String,
    function: String,
    initial_sha: String,
    first: Release,
    /// Every fourth LD moves to a second commit in the middle of the storm.
    second: Option<Release>,
    /// Lambda fails this LD's first update (one in twenty, never one that changes commit).
    update_fails: bool,
}

impl Target {
    fn key(&self, release: &Release) -> String {
        format!("{}/{}.zip", self.function, release.0)
    }

    fn wanted(&self) -> &Release {
        self.second.as_ref().unwrap_or(&self.first)
    }
}

/// What the invocations returned, summed.
#[derive(Default)]
struct Tally {
    sweeps: usize,
    event_invocations: usize,
    event_records: usize,
    failed_invocations: Vec<String>,
    deployed: usize,
    deployed_by_events: usize,
    retries: u64,
    status_writes: usize,
    errors: usize,
}

impl Tally {
    fn add(&mut self, result: lambda_deployer::Result<Summary>) {
        match result {
            Ok(summary) => {
                self.deployed += summary.deployed;
                if summary.trigger == "artifact" {
                    self.deployed_by_events += summary.deployed;
                }
                self.retries += summary.retries;
                self.status_writes += summary.status_writes;
                self.errors += summary.errors.len();
            }
            // Systemic failures (the cluster failing the list): Lambda retries such an invocation.
            Err(err) => self.failed_invocations.push(err.to_string()),
        }
    }
}

const FAILED_REASON: &str = "Could not unpack the uploaded zip (soak)";

async fn setup(world: &World, settings: &Settings) -> Vec<Target> {
    futures::stream::iter(0..settings.lds)
        .map(|i| async move {
            let label = format!("f{i:03}");
            let initial = format!("initial {i}");
            let arn = world.create_function(&label, &initial).await;
            let function = world.function_name(&label);
            let release = |n: u32| {
                let function = function.clone();
                async move {
                    let commit = commit(&format!("soak-{i}-{n}"));
                    let (version, sha) =
                        world.upload(&format!("{function}/{commit}.zip"), &format!("release {n} of {i}")).await;
                    (commit, version, sha)
                }
            };
            let first = release(1).await;
            let second = if i % 4 == 0 { Some(release(2).await) } else { None };
            let update_fails = i % 20 == 7;
            if update_fails {
                let fault = FaultAction::UpdateFails {
                    reason_code: LastUpdateStatusReasonCode::InvalidZipFileException,
                    reason: FAILED_REASON.into(),
                };
                world.testbed.aws().inject(Fault::new("UpdateFunctionCode", fault).function(&function)).unwrap();
            }
            let ld = format!("ld-{i:03}");
            world.apply_ld(&ld, &arn, &function, &first.0).await;
            Target { ld, function, initial_sha: zip(&initial).1, first, second, update_fails }
        })
        .buffered(6)
        .collect()
        .await
}

fn inject_faults(world: &World, seed: u64) {
    let aws = world.testbed.aws();
    let p = |p: f64, n: u64| Trigger::Probability { p, seed: seed * 100 + n };
    let faults = [
        Fault::new("*", FaultAction::Throttle).when(p(0.15, 1)),
        Fault::new("UpdateFunctionCode", FaultAction::Conflict).when(p(0.1, 2)),
        Fault::new("UpdateFunctionCode", FaultAction::StaleRevision).when(p(0.05, 3)),
        // Writes that take effect and whose answers are lost.
        Fault::new("UpdateFunctionCode", FaultAction::ServiceException).after_apply().when(p(0.06, 4)),
        Fault::new("UpdateFunctionCode", FaultAction::ConnectionReset).after_apply().when(p(0.04, 5)),
        Fault::new("UpdateFunctionCode", FaultAction::Timeout { ms: 20_000 }).after_apply().when(p(0.03, 6)),
        Fault::new("TagResource", FaultAction::ConnectionReset).after_apply().when(p(0.1, 7)),
        // Real races: someone edits the function in the console, another deployer deploys the same artifact.
        Fault::new("UpdateFunctionCode", FaultAction::CompetingWrite { change: CompetingChange::Configuration })
            .when(p(0.06, 8)),
        Fault::new("UpdateFunctionCode", FaultAction::CompetingWrite { change: CompetingChange::SameCode })
            .when(p(0.04, 9)),
        Fault::new("*", FaultAction::ServiceException).when(p(0.04, 10)),
        Fault::new("*", FaultAction::ConnectionReset).when(p(0.02, 11)),
        Fault::new("*", FaultAction::Latency { ms: 40 }).when(p(0.2, 12)),
        Fault::new("*", FaultAction::Latency { ms: 40 }).service("s3").when(p(0.2, 13)),
        Fault::new("*", FaultAction::ConnectionReset).service("s3").when(p(0.02, 14)),
        Fault::new("*", FaultAction::ServiceException).service("s3").when(p(0.03, 15)),
        Fault::new("*", FaultAction::SlowDown).service("s3").when(p(0.03, 16)),
    ];
    for fault in faults {
        aws.inject(fault).expect("valid fault");
    }
    // The first matching Kubernetes fault fires. Only the deployer's requests are hit (status writes, lists,
    // Events): the test's own spec changes must land.
    let kube = world.testbed.kube();
    let p = |n: u64| seed * 100 + 20 + n;
    kube.inject(
        KubeFault::status(500).after_apply().on_status_writes("lambdadeployments").with_probability(0.06, p(1)),
    );
    kube.inject(KubeFault::status(500).on_status_writes("lambdadeployments").with_probability(0.06, p(2)));
    kube.inject(KubeFault::status(409).on_status_writes("lambdadeployments").with_probability(0.06, p(3)));
    kube.inject(KubeFault::status(429).retry_after(1).on_verbs(&["list"]).with_probability(0.05, p(4)));
    kube.inject(
        KubeFault::status(503).on_verbs(&["list"]).on_resource("lambdadeployments").with_probability(0.05, p(5)),
    );
    kube.inject(
        KubeFault::status(500).after_apply().on_verbs(&["create"]).on_resource("events").with_probability(0.05, p(6)),
    );
    kube.inject(KubeFault::status(500).on_verbs(&["create"]).on_resource("events").with_probability(0.05, p(7)));
    kube.inject(KubeFault::latency(Duration::from_millis(30)).with_probability(0.2, p(8)));
}

/// S3 notifications for `releases`, in a seeded shuffled order, 1–3 records each, every record delivered 1–3 times.
fn event_storm(world: &World, releases: &[(&Target, &Release)], rng: &mut fastrand::Rng) -> Vec<Value> {
    let mut records: Vec<Value> = Vec::new();
    for (target, release) in releases {
        let record = world.s3_event(&target.key(release), &release.1)["Records"][0].clone();
        for _ in 0..rng.usize(1..=3) {
            records.push(record.clone());
        }
    }
    rng.shuffle(&mut records);
    let mut events = Vec::new();
    while !records.is_empty() {
        let take = rng.usize(1..=3).min(records.len());
        events.push(json!({"Records": records.drain(..take).collect::<Vec<_>>()}));
    }
    events
}

async fn send_events(deployer: &Deployer, events: &[Value], tally: &Mutex<Tally>) {
    for event in events {
        let result = deployer.handle(event, None).await;
        let mut tally = tally.lock().await;
        tally.event_invocations += 1;
        tally.event_records += event["Records"].as_array().map_or(0, Vec::len);
        tally.add(result);
    }
}

async fn sweeps(deployer: &Deployer, count: usize, tally: &Mutex<Tally>) {
    for _ in 0..count {
        let result = deployer.handle(&json!({"action": "sweep"}), None).await;
        let mut tally = tally.lock().await;
        tally.sweeps += 1;
        tally.add(result);
    }
}

/// Where one LambdaDeployment stands, checked against Lambda itself.
struct Standing {
    runs: String,
    status: LambdaDeploymentStatus,
    spec_commit: String,
}

async fn standing(world: &World, target: &Target) -> Standing {
    let ld = world.ld(&target.ld).await;
    Standing {
        runs: world.code_sha256(&target.function).await,
        status: ld.status.unwrap_or_default(),
        spec_commit: ld.spec.commit,
    }
}

/// Whether the function runs what its LambdaDeployment declares and the status says so truthfully; for an LD whose
/// update Lambda fails, whether it runs its previous code and the status names the failure. `None` when right.
fn judge(target: &Target, standing: &Standing) -> Option<String> {
    let wanted = target.wanted();
    let status = &standing.status;
    if standing.spec_commit != wanted.0 {
        return Some(format!("{}: spec commit {} was never changed to {}", target.ld, standing.spec_commit, wanted.0));
    }
    if target.update_fails {
        let failed = status.failed_update.as_ref();
        let truthful = standing.runs == target.initial_sha
            && status.phase == Some(Phase::Failed)
            && failed.is_some_and(|f| f.sha256 == wanted.2 && f.reason.contains(FAILED_REASON))
            && status.message.as_deref().is_some_and(|m| m.contains("InvalidZipFileException"));
        return (!truthful).then(|| {
            format!(
                "{}: runs {}, status {:?} {:?} {:?}",
                target.ld, standing.runs, status.phase, failed, status.message
            )
        });
    }
    if standing.runs != wanted.2 {
        return Some(format!("{}: runs {}, its commit's artifact is {}", target.function, standing.runs, wanted.2));
    }
    let truthful = status.phase == Some(Phase::Deployed)
        && status.deployed_commit.as_deref() == Some(wanted.0.as_str())
        && status.code_sha256.as_deref() == Some(standing.runs.as_str());
    (!truthful).then(|| {
        format!(
            "{}: status {:?} {:?} {:?} {:?}",
            target.ld, status.phase, status.deployed_commit, status.code_sha256, status.message
        )
    })
}

/// The applied UpdateFunctionCode calls of one function, by the CodeSha256 it was set to, and its code history.
fn applied_updates(world: &World, target: &Target, shas: &HashMap<String, String>) -> BTreeMap<String, usize> {
    let calls = world.testbed.aws().calls();
    let mut by_artifact = BTreeMap::new();
    for call in calls.of("lambda", "UpdateFunctionCode") {
        if call.function.as_deref() == Some(&target.function) && call.applied {
            let key = call.params.get("S3ObjectVersion").cloned().unwrap_or_default();
            let sha = shas.get(&key).cloned().unwrap_or_else(|| format!("unknown object version {key}"));
            *by_artifact.entry(sha).or_insert(0) += 1;
        }
    }
    by_artifact
}

/// The kinds of the faults one call's log names (`Throttle`, `ServiceException after apply`, `competing_write`).
fn fault_kinds(fault: &str) -> Vec<String> {
    // The log joins the faults with ", ", which also separates fields inside one fault's description.
    fault
        .split(", ")
        .filter(|part| part.starts_with(char::is_uppercase) || part.starts_with("competing_write"))
        .map(|part| {
            let kind = part.split([' ', '(', '{', ':']).next().unwrap_or(part);
            if part.ends_with("after apply") { format!("{kind} after apply") } else { kind.to_string() }
        })
        .collect()
}

/// Faults are global to the testbed: the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployers_racing_through_a_fault_storm_converge_during_it_with_no_duplicate_or_foreign_deploy() {
    let _serial = SERIAL.lock().await;
    let settings = Settings::from_env();
    let world = World::with_updates("soak", Updates::Realistic).await;
    let aws = world.testbed.aws();
    let started = Instant::now();
    let targets = setup(&world, &settings).await;
    let setup_time = started.elapsed();
    // A lost answer costs 2 s (not the default 10) so the storm's timeouts do not dominate its length.
    let vars = [("CALL_TIMEOUT_SECONDS", "2")];
    let deployers = [world.deployer(&vars).await, world.deployer(&vars).await, world.deployer(&vars).await];
    let calls_before = aws.calls().counts;
    let kube_requests_before = world.testbed.kube().requests().len();
    let versions: HashMap<String, String> = targets
        .iter()
        .flat_map(|t| [Some(&t.first), t.second.as_ref()])
        .flatten()
        .map(|(_, version, sha)| (version.clone(), sha.clone()))
        .collect();

    inject_faults(&world, settings.seed);
    let storm_started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(settings.seed);
    let firsts: Vec<_> = targets.iter().map(|t| (t, &t.first)).collect();
    let first_events = event_storm(&world, &firsts, &mut rng);
    let (half_a, half_b) = first_events.split_at(first_events.len() / 2);
    let tally = Mutex::new(Tally::default());
    let movers: Vec<&Target> = targets.iter().filter(|t| t.second.is_some()).collect();
    let seconds: Vec<_> = movers.iter().map(|t| (*t, t.second.as_ref().expect("a mover"))).collect();
    let second_events = event_storm(&world, &seconds, &mut rng);
    // Phase 1: sweeps racing the first releases' events, from three containers; while they run, a quarter of the
    // LambdaDeployments move to a new commit and their events race the rest (Phase 2).
    tokio::join!(sweeps(&deployers[0], settings.sweeps, &tally), send_events(&deployers[1], half_a, &tally), async {
        send_events(&deployers[2], half_b, &tally).await;
        for target in &movers {
            world.set_commit(&target.ld, &target.second.as_ref().expect("a mover").0).await;
        }
        tokio::join!(
            send_events(&deployers[1], &second_events, &tally),
            send_events(&deployers[2], &second_events, &tally)
        );
    },);
    // A last scheduled sweep while the faults still rage.
    sweeps(&deployers[0], 1, &tally).await;
    let storm_time = storm_started.elapsed();

    // Judged during the storm: before any fault is cleared.
    let mut wrong_during = Vec::new();
    for target in &targets {
        if let Some(problem) = judge(target, &standing(&world, target).await) {
            wrong_during.push(problem);
        }
    }
    let right_during = targets.len() - wrong_during.len();

    aws.clear_faults();
    world.testbed.kube().clear_faults();
    let settle_started = Instant::now();
    let settling =
        deployers[0].handle(&json!({"action": "sweep"}), None).await.expect("a sweep without faults succeeds");
    let settle_time = settle_started.elapsed();
    let in_sync = deployers[0].handle(&json!({"action": "sweep"}), None).await.expect("an in-sync sweep");

    // The end state, checked against Lambda itself, and every update Lambda applied.
    let mut wrong = Vec::new();
    let mut artifacts_run = 0;
    let mut applied_total = 0;
    for target in &targets {
        if let Some(problem) = judge(target, &standing(&world, target).await) {
            wrong.push(problem);
        }
        let history = aws.history(&target.function).unwrap_or_default();
        let declared: Vec<&String> =
            [Some(&target.initial_sha), Some(&target.first.2), target.second.as_ref().map(|s| &s.2)]
                .into_iter()
                .flatten()
                .collect();
        if let Some(foreign) = history.iter().find(|sha| !declared.contains(sha)) {
            wrong.push(format!("{}: ran undeclared code {foreign} (history {history:?})", target.function));
        }
        // Each artifact the function was set to took exactly one applied UpdateFunctionCode, whoever sent it.
        let applied = applied_updates(&world, target, &versions);
        let set_to: HashSet<&String> = history.iter().skip(1).filter(|sha| **sha != target.initial_sha).collect();
        artifacts_run += set_to.len();
        applied_total += applied.values().sum::<usize>();
        if applied.values().any(|n| *n != 1) || applied.len() != set_to.len() {
            wrong.push(format!("{}: applied updates {applied:?}, code history {history:?}", target.function));
        }
        if target.update_fails && applied.get(&target.first.2) != Some(&1) {
            wrong.push(format!("{}: the update Lambda fails was tried {applied:?}, not once", target.function));
        }
    }

    let tally = tally.into_inner();
    let calls = aws.calls();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for call in &calls.calls {
        for kind in call.fault.iter().flat_map(|f| fault_kinds(f)) {
            *faults.entry(format!("{}:{kind}", call.service)).or_default() += 1;
        }
    }
    let kube_requests = world.testbed.kube().requests();
    for request in kube_requests.iter().skip(kube_requests_before).filter(|r| r.user == "lambda-deployer") {
        if request.status >= 409 && request.status != 404 {
            let what = if request.is_status_write() {
                "status write".to_string()
            } else {
                format!("{} {}", request.verb, request.resource)
            };
            *faults.entry(format!("kube:{} {what}", request.status)).or_default() += 1;
        }
    }
    let soak_calls = |operation: &str| {
        calls.of("lambda", operation).filter(|c| c.function.as_deref().is_some_and(|f| f.starts_with("soak-"))).count()
    };
    let lost_answers = calls
        .of("lambda", "UpdateFunctionCode")
        .filter(|c| c.applied && !(200..300).contains(&c.status) && c.access_key_id.as_deref() != Some("competitor"))
        .count();
    let competitor =
        calls.of("lambda", "UpdateFunctionCode").filter(|c| c.access_key_id.as_deref() == Some("competitor")).count();
    let real_races =
        calls.of("lambda", "UpdateFunctionCode").filter(|c| matches!(c.status, 409 | 412) && c.fault.is_none()).count();
    let in_progress: Vec<u64> = calls.of("lambda", "UpdateFunctionCode").filter_map(|c| c.in_progress_ms).collect();
    println!(
        "soak: {} LDs over {} functions, seed {}, quotas on, 3 deployer instances, updates InProgress {}-{} ms",
        targets.len(),
        targets.len(),
        settings.seed,
        in_progress.iter().min().copied().unwrap_or(0),
        in_progress.iter().max().copied().unwrap_or(0)
    );
    println!(
        "  commits changed mid-storm: {}; updates Lambda fails: {}",
        movers.len(),
        targets.iter().filter(|t| t.update_fails).count()
    );
    println!(
        "  invocations: {} sweeps, {} event invocations carrying {} S3 records; {} failed (Lambda would retry)",
        tally.sweeps,
        tally.event_invocations,
        tally.event_records,
        tally.failed_invocations.len()
    );
    println!("  faults fired: {faults:?}");
    let during: BTreeMap<&String, u64> = calls
        .counts
        .iter()
        .map(|(op, n)| (op, n - calls_before.get(op).copied().unwrap_or(0)))
        .filter(|(op, n)| *n > 0 && (op.starts_with("lambda:") || op.starts_with("s3:")))
        .collect();
    println!("  AWS calls during storm and settling: {during:?}");
    println!(
        "  UpdateFunctionCode: {} attempts, {applied_total} applied ({lost_answers} of them answered with an error or not at all, {competitor} by the competitor) for {artifacts_run} artifacts run; {real_races} real 409/412; deploys reported {} ({} by events); retries {}; status writes {}; per-LD errors reported {}",
        soak_calls("UpdateFunctionCode"),
        tally.deployed,
        tally.deployed_by_events,
        tally.retries,
        tally.status_writes,
        tally.errors
    );
    println!(
        "  during the storm: {right_during}/{} LDs ran their declared code with a truthful status ({:.0}%)",
        targets.len(),
        100.0 * right_during as f64 / targets.len() as f64
    );
    println!(
        "  settling: one sweep, {} deploys, {} status writes, {:.1} s; then an in-sync sweep: {} deploys, {} status writes",
        settling.deployed,
        settling.status_writes,
        settle_time.as_secs_f64(),
        in_sync.deployed,
        in_sync.status_writes
    );
    println!(
        "  time: setup {:.1}s, storm {:.1}s, converged {:.1}s after the storm began",
        setup_time.as_secs_f64(),
        storm_time.as_secs_f64(),
        (storm_time + settle_time).as_secs_f64()
    );
    assert!(
        wrong.is_empty(),
        "{} problems after the soak:\n{}",
        wrong.len(),
        wrong.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(
        right_during * 10 >= targets.len() * 9,
        "only {right_during}/{} right while the storm raged:\n{}",
        targets.len(),
        wrong_during.join("\n")
    );
    assert!(tally.deployed_by_events > 0, "the events deployed nothing: the sweeps did all the work");
    assert!(settling.deployed * 20 <= targets.len(), "settling needed {} deploys", settling.deployed);
    assert_eq!(
        (in_sync.deployed, in_sync.status_writes, in_sync.failed),
        (0, 0, targets.iter().filter(|t| t.update_fails).count())
    );
    assert!(
        lost_answers > 0 && competitor > 0 && real_races > 0,
        "the storm had lost answers ({lost_answers}), a competitor ({competitor}) and real races ({real_races})"
    );
}

#[tokio::test]
async fn a_slow_sweep_does_not_roll_back_a_commit_changed_and_deployed_while_it_ran() {
    let _serial = SERIAL.lock().await;
    let world = World::with_updates("stale-sweep", Updates::Realistic).await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let (c1, c2) = (commit("stale-sweep-1"), commit("stale-sweep-2"));
    world.upload(&format!("{function}/{c1}.zip"), "release 1").await;
    let (_, sha2) = world.upload(&format!("{function}/{c2}.zip"), "release 2").await;
    world.apply_ld("app", &arn, &function, &c1).await;
    let (slow, fast) = (world.deployer(&[]).await, world.deployer(&[]).await);
    assert_eq!(fast.handle(&json!({"action": "sweep"}), None).await.unwrap().deployed, 1);

    // The slow sweep lists the LD (commit 1), then its artifact check takes 2 s — as when a sweep works through a
    // long list. Meanwhile the commit moves to 2 and another invocation deploys it.
    let aws = world.testbed.aws();
    aws.inject(Fault::new("HeadObject", FaultAction::Latency { ms: 2000 }).service("s3").when(Trigger::Nth(1)))
        .unwrap();
    let sweep = json!({"action": "sweep"});
    let slow_sweep = slow.handle(&sweep, None);
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        world.set_commit("app", &c2).await;
        fast.handle(&sweep, None).await.unwrap()
    };
    let (slow_summary, fast_summary) = tokio::join!(slow_sweep, meanwhile);
    aws.clear_faults();
    assert_eq!(fast_summary.deployed, 1, "the new commit was deployed meanwhile");
    let slow_summary = slow_summary.unwrap();
    assert_eq!(
        world.code_sha256(&function).await,
        sha2,
        "the function still runs the current commit: {slow_summary:?}"
    );
    assert_eq!(world.successful_updates(&function), 2, "no rollback and re-deploy");
}
