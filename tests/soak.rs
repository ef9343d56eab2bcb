//! Fault-matrix soak: many LambdaDeployments, several sweeps and a storm of duplicated S3 events from three deployer
//! instances at once, while the testbed throttles, conflicts, rejects stale revisions, fails, resets connections and
//! slows down (Lambda, S3 and the Kubernetes API), with Lambda's quotas on. Two phases: first releases, then (with
//! no invocation running in between) a new commit for every fourth LD and its events. Then the faults stop, a
//! settling sweep runs, and the end state is checked against reality: right code everywhere, truthful statuses, no
//! successful duplicate deploy, never a foreign CodeSha256.
//!
//! `SOAK_LDS` (default 40: the `make test` variant), `SOAK_SWEEPS` (default 3) and `SOAK_SEED` (default 6) tune it;
//! `make soak` runs `SOAK_LDS=200 cargo test --release --test soak -- --nocapture`.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lambda_deployer::crd::Phase;
use lambda_deployer::deployer::{Deployer, Summary};
use serde_json::{Value, json};
use support::{World, commit, zip};
use testbed::apiserver::KubeFault;
use testbed::aws::{Fault, FaultAction, Trigger};
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

/// One LambdaDeployment of the soak and everything the test knows about it.
struct Target {
    ld: String,
    function: String,
    initial_sha: String,
    /// (commit, versionId, CodeSha256) of the first release, and of the second for the LDs whose commit changes.
    first: (String, String, String),
    second: Option<(String, String, String)>,
}

impl Target {
    fn key(&self, release: &(String, String, String)) -> String {
        format!("{}/{}.zip", self.function, release.0)
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
    retries: u64,
    status_writes: usize,
    errors: usize,
}

impl Tally {
    fn add(&mut self, result: lambda_deployer::Result<Summary>) {
        match result {
            Ok(summary) => {
                self.deployed += summary.deployed;
                self.retries += summary.retries;
                self.status_writes += summary.status_writes;
                self.errors += summary.errors.len();
            }
            // Systemic failures (the cluster answering 500 to the list): Lambda retries such an invocation.
            Err(err) => self.failed_invocations.push(err.to_string()),
        }
    }
}

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
            // Every fourth LD gets a new commit mid-soak.
            let second = if i % 4 == 0 { Some(release(2).await) } else { None };
            let ld = format!("ld-{i:03}");
            world.apply_ld(&ld, &arn, &function, &first.0).await;
            Target { ld, function, initial_sha: zip(&initial).1, first, second }
        })
        .buffered(6)
        .collect()
        .await
}

fn inject_faults(world: &World, seed: u64) {
    let aws = world.testbed.aws();
    let p = |p: f64, n: u64| Trigger::Probability { p, seed: seed * 100 + n };
    let faults = [
        Fault::new("*", FaultAction::Throttle).when(p(0.2, 1)),
        Fault::new("UpdateFunctionCode", FaultAction::Conflict).when(p(0.15, 2)),
        Fault::new("UpdateFunctionCode", FaultAction::StaleRevision).when(p(0.1, 3)),
        Fault::new("UpdateFunctionCode", FaultAction::InProgress { ms: 1500 }).when(p(0.3, 4)),
        Fault::new("*", FaultAction::ServiceException).when(p(0.05, 5)),
        Fault::new("*", FaultAction::ConnectionReset).when(p(0.03, 6)),
        Fault::new("*", FaultAction::Latency { ms: 40 }).when(p(0.2, 7)),
        Fault::new("*", FaultAction::Latency { ms: 40 }).service("s3").when(p(0.2, 8)),
        Fault::new("*", FaultAction::ConnectionReset).service("s3").when(p(0.02, 9)),
    ];
    for fault in faults {
        aws.inject(fault).expect("valid fault");
    }
    // The first matching Kubernetes fault fires: errors before latency.
    let kube = world.testbed.kube();
    kube.inject(KubeFault::status(500).on_status_writes("lambdadeployments").with_probability(0.1, seed * 100 + 11));
    kube.inject(KubeFault::status(409).on_status_writes("lambdadeployments").with_probability(0.1, seed * 100 + 12));
    kube.inject(
        KubeFault::status(500)
            .on_verbs(&["list"])
            .on_resource("lambdadeployments")
            .with_probability(0.05, seed * 100 + 13),
    );
    kube.inject(
        KubeFault::status(500).on_verbs(&["create"]).on_resource("events").with_probability(0.05, seed * 100 + 14),
    );
    kube.inject(KubeFault::latency(Duration::from_millis(30)).with_probability(0.2, seed * 100 + 15));
}

/// S3 notifications for `releases`, in a seeded shuffled order, 1–3 records each, every record delivered 1–3 times.
fn event_storm(world: &World, targets: &[(&Target, &(String, String, String))], rng: &mut fastrand::Rng) -> Vec<Value> {
    let mut records: Vec<Value> = Vec::new();
    for (target, release) in targets {
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

/// Moves every fourth LD to its second commit if its first release is already deployed (so the change costs
/// exactly one more deploy). Returns the LDs that moved.
async fn change_commits(world: &World, targets: &[Target]) -> HashSet<String> {
    let mut changed = HashSet::new();
    for target in targets {
        let Some(second) = &target.second else { continue };
        let history = world.testbed.aws().history(&target.function).unwrap_or_default();
        if history.last() == Some(&target.first.2) {
            world.set_commit(&target.ld, &second.0).await;
            changed.insert(target.ld.clone());
        }
    }
    changed
}

fn fault_kind(fault: &str) -> &str {
    fault.split([' ', '(']).next().unwrap_or(fault)
}

/// Faults are global to the testbed: the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployers_racing_through_a_fault_storm_converge_with_no_duplicate_or_foreign_deploy() {
    let _serial = SERIAL.lock().await;
    let settings = Settings::from_env();
    let world = World::new("soak").await;
    let aws = world.testbed.aws();
    aws.set_config(testbed::aws::LayerConfig { quotas: true, ..aws.config() });
    let started = Instant::now();
    let targets = setup(&world, &settings).await;
    let setup_time = started.elapsed();
    let deployers = [world.deployer(&[]).await, world.deployer(&[]).await, world.deployer(&[]).await];
    let calls_before = aws.calls().counts;
    let kube_requests_before = world.testbed.kube().requests().len();

    inject_faults(&world, settings.seed);
    let storm_started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(settings.seed);
    let firsts: Vec<_> = targets.iter().map(|t| (t, &t.first)).collect();
    let first_events = event_storm(&world, &firsts, &mut rng);
    let (half_a, half_b) = first_events.split_at(first_events.len() / 2);
    let tally = Mutex::new(Tally::default());
    // Phase 1: sweeps racing the first releases' events, from three containers.
    tokio::join!(sweeps(&deployers[0], settings.sweeps, &tally), send_events(&deployers[1], half_a, &tally), async {
        sweeps(&deployers[2], 1, &tally).await;
        send_events(&deployers[2], half_b, &tally).await;
    },);
    // Between the phases, with no invocation running: a sweep acts on the spec it listed when it started, so a
    // commit changed under a running sweep could be rolled back (see the ignored test below).
    let changed = change_commits(&world, &targets).await;
    let seconds: Vec<_> =
        targets.iter().filter(|t| changed.contains(&t.ld)).filter_map(|t| t.second.as_ref().map(|s| (t, s))).collect();
    let second_events = event_storm(&world, &seconds, &mut rng);
    // Phase 2: the new commits' events, each delivery list sent to two containers at once, racing a sweep.
    tokio::join!(
        sweeps(&deployers[0], 1, &tally),
        send_events(&deployers[1], &second_events, &tally),
        send_events(&deployers[2], &second_events, &tally),
    );
    let storm_time = storm_started.elapsed();

    aws.clear_faults();
    world.testbed.kube().clear_faults();
    let settle_started = Instant::now();
    let mut settling_sweeps = 0;
    for _ in 0..5 {
        settling_sweeps += 1;
        let summary =
            deployers[0].handle(&json!({"action": "sweep"}), None).await.expect("a sweep without faults succeeds");
        if summary.up_to_date == targets.len() && summary.status_writes == 0 {
            break;
        }
        tally.lock().await.add(Ok(summary));
    }
    let settle_time = settle_started.elapsed();

    // The end state, checked against Lambda itself.
    let mut wrong = Vec::new();
    let mut needed = 0;
    for target in &targets {
        let moved = changed.contains(&target.ld);
        let wanted = if moved { target.second.as_ref().expect("a second release") } else { &target.first };
        needed += 1 + usize::from(moved);
        let runs = world.code_sha256(&target.function).await;
        if runs != wanted.2 {
            wrong.push(format!("{}: runs {runs}, its commit's artifact is {}", target.function, wanted.2));
        }
        let status = world.ld(&target.ld).await.status.unwrap_or_default();
        let truthful = status.phase == Some(Phase::Deployed)
            && status.deployed_commit.as_deref() == Some(wanted.0.as_str())
            && status.code_sha256.as_deref() == Some(runs.as_str());
        if !truthful {
            wrong.push(format!(
                "{}: status {:?} {:?} {:?} {:?}",
                target.ld, status.phase, status.deployed_commit, status.code_sha256, status.message
            ));
        }
        let updates = world.successful_updates(&target.function);
        if updates != 1 + usize::from(moved) {
            wrong.push(format!(
                "{}: {updates} successful UpdateFunctionCode, {} needed",
                target.function,
                1 + usize::from(moved)
            ));
        }
        let declared: Vec<&String> =
            [Some(&target.initial_sha), Some(&target.first.2), target.second.as_ref().map(|s| &s.2)]
                .into_iter()
                .flatten()
                .collect();
        let history = aws.history(&target.function).unwrap_or_default();
        if let Some(foreign) = history.iter().find(|sha| !declared.contains(sha)) {
            wrong.push(format!("{}: ran undeclared code {foreign} (history {history:?})", target.function));
        }
    }

    let tally = tally.into_inner();
    let calls = aws.calls();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for call in &calls.calls {
        for fault in call.fault.iter().flat_map(|f| f.split(", ")) {
            *faults.entry(format!("{}:{}", call.service, fault_kind(fault))).or_default() += 1;
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
    let update_attempts = calls
        .of("lambda", "UpdateFunctionCode")
        .filter(|c| c.function.as_deref().is_some_and(|f| f.starts_with("soak-")))
        .count();
    let successful: usize = targets.iter().map(|t| world.successful_updates(&t.function)).sum();
    println!(
        "soak: {} LDs over {} functions, seed {}, quotas on, 3 deployer instances",
        targets.len(),
        targets.len(),
        settings.seed
    );
    println!("  commits changed mid-soak: {}; deploys needed: {needed}", changed.len());
    println!(
        "  invocations: {} sweeps, {} event invocations carrying {} S3 records ({} artifacts: {} duplicate deliveries); {} failed (Lambda would retry)",
        tally.sweeps,
        tally.event_invocations,
        tally.event_records,
        firsts.len() + changed.len(),
        tally.event_records.saturating_sub(firsts.len() + changed.len()),
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
        "  UpdateFunctionCode: {update_attempts} attempts, {successful} successful; deploys reported {}; retries {}; status writes {}; per-LD errors reported {}",
        tally.deployed, tally.retries, tally.status_writes, tally.errors
    );
    println!(
        "  time: setup {:.1}s, storm {:.1}s, settling {:.1}s ({settling_sweeps} sweeps), converged {:.1}s after the storm began",
        setup_time.as_secs_f64(),
        storm_time.as_secs_f64(),
        settle_time.as_secs_f64(),
        (storm_time + settle_time).as_secs_f64()
    );
    assert!(
        wrong.is_empty(),
        "{} problems after the soak:\n{}",
        wrong.len(),
        wrong.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(successful, needed, "no successful duplicate deploy");
}

#[tokio::test]

async fn a_slow_sweep_does_not_roll_back_a_commit_changed_and_deployed_while_it_ran() {
    let _serial = SERIAL.lock().await;
    let world = World::new("stale-sweep").await;
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
