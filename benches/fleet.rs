//! Fleet benchmark (issue 7): the deployer against the testbed with Lambda's quotas ON (GetFunction 100/s, every
//! other control-plane call 15/s, per account), for fleets of functions + LambdaDeployments.
//!
//! Scenarios per fleet: the initial deploying sweep; (a) a sweep with everything in sync; (b) a sweep with 1% of the
//! functions drifted out of band; (c) one S3 event among the fleet; (d) the seed's naive controller
//! (UpdateFunctionCode for every LD, every reconcile); then (h) a fleet spread over three accounts (`fleet/accounts.rs`),
//! each account at its own floor. Each reports wall time, API calls by operation (the AWS layer's
//! call log and the kube request log, the acting identity only), bytes downloaded from S3, status writes, and the
//! ratio to the floor the quotas force for the calls that scenario could not avoid. Then the real binary: sizes, cold
//! init under `cargo lambda watch` (spawn → its first `GET /runtime/invocation/next`) and peak RSS of a sweep of the
//! largest fleet. Prints tables and writes `target/bench/fleet.json`.
//!
//! `BENCH_FLEETS=150,1000` (sizes); `BENCH_ACCOUNT_FLEET=1000` (LDs in each of three accounts, 0 skips it);
//! `BENCH_CONFIGS="FUNCTION_OBSERVATION=auto;FUNCTION_OBSERVATION=get-function;FUNCTION_OBSERVATION=get-function,MAX_CONCURRENCY=32"`
//! (deployer variables per configuration, `;` between configurations, `,` between variables: scenarios a and b run
//! once per configuration, the others with the first); `BENCH_COLD_RUNS=5`.

#[path = "fleet/accounts.rs"]
mod accounts;
#[path = "fleet/binary.rs"]
mod binary;
#[path = "fleet/releases.rs"]
mod releases;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_lambda::primitives::Blob;
use futures::StreamExt;
use kube::api::ListParams;
use lambda_deployer::aws::RateLimiter;
use lambda_deployer::crd::LambdaDeployment;
use lambda_deployer::deployer::Deployer;
use serde::Serialize;
use serde_json::{Value, json};
use support::{Updates, World, commit, zip};
use testbed::aws::{Call, LayerConfig};
use testbed::identity::{ARTIFACT_BUCKET, AwsIdentity, REGION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// ListFunctions returns at most this many functions (with CodeSha256) per page.
const LIST_PAGE: f64 = 50.0;
/// Concurrency of the setup steps (quotas are off then).
const SETUP_CONCURRENCY: usize = 16;
/// The Kubernetes user the deployer's EKS identity maps to, and the admin's.
const DEPLOYER_KUBE_USER: &str = "lambda-deployer";
const ADMIN_KUBE_USER: &str = "kubernetes-admin";

#[tokio::main]
async fn main() -> BenchResult<()> {
    let fleets = env_list("BENCH_FLEETS", "150,1000")?;
    let configs = env_configs(
        "BENCH_CONFIGS",
        "FUNCTION_OBSERVATION=auto;FUNCTION_OBSERVATION=get-function;FUNCTION_OBSERVATION=get-function,MAX_CONCURRENCY=32",
    )?;
    let cold_runs = env_list("BENCH_COLD_RUNS", "5")?.first().copied().unwrap_or(5);
    let per_account = env_list("BENCH_ACCOUNT_FLEET", "1000")?.first().copied().unwrap_or(0);
    if fleets.is_empty() || configs.is_empty() {
        return Err("BENCH_FLEETS and BENCH_CONFIGS need at least one entry".into());
    }
    let layer = support::testbed(Updates::Realistic).await.aws().config();
    let quota = Quota::of(&layer);
    println!(
        "fleet benchmark: testbed quotas GetFunction {}/s, other Lambda calls {}/s, buckets of {} s (full at the start);",
        layer.get_function_per_second, layer.control_plane_per_second, layer.quota_burst_seconds
    );
    let profile = if cfg!(debug_assertions) { "debug (unoptimised: CPU-bound parts are slower)" } else { "optimised" };
    println!(
        "updates InProgress {} ms + a uniform draw in [0, {}] ms (seed {}); {} CPU cores; bench and binary built {profile}\n",
        layer.update_in_progress_ms,
        layer.update_in_progress_jitter_ms,
        layer.update_seed,
        std::thread::available_parallelism()?.get()
    );

    let mut reports = Vec::new();
    let mut largest = None;
    let mut in_account = 0;
    for &size in &fleets {
        in_account += size;
        let fleet = Fleet::create(size, in_account).await?;
        let report = fleet.run(&configs, quota).await?;
        print_fleet(&report);
        reports.push(report);
        largest = Some(fleet);
    }
    let accounts = match per_account {
        0 => json!(null),
        n => {
            let report = accounts::AccountsFleet::create(n).await?.run(quota).await?;
            accounts::print(&report);
            serde_json::to_value(&report)?
        }
    };
    let binary = match &largest {
        Some(fleet) => binary::binary_figures(fleet, cold_runs).await,
        None => json!(null),
    };
    let out = json!({
        "testbed": layer,
        "listFunctionsPageSize": LIST_PAGE,
        "floorFormula": FLOOR_DOC,
        "cpuCores": std::thread::available_parallelism()?.get(),
        "buildProfile": if cfg!(debug_assertions) { "debug" } else { "optimised" },
        "generatedAt": jiff::Timestamp::now().to_string(),
        "fleets": reports,
        "accounts": accounts,
        "binary": binary,
    });
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fleet.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    println!("\nwrote {}", path.display());
    Ok(())
}

fn env_list(name: &str, default: &str) -> BenchResult<Vec<usize>> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_string());
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("{name}: {s:?} is not a number").into()))
        .collect()
}

/// A deployer configuration: its label (as written) and its variables.
struct BenchConfig {
    label: String,
    vars: Vec<(String, String)>,
}

fn env_configs(name: &str, default: &str) -> BenchResult<Vec<BenchConfig>> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_string());
    let mut configs = Vec::new();
    for label in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let vars = label
            .split(',')
            .map(|pair| {
                let (key, value) = pair.split_once('=').ok_or_else(|| format!("{name}: {pair:?} is not VAR=value"))?;
                Ok((key.trim().to_string(), value.trim().to_string()))
            })
            .collect::<BenchResult<Vec<_>>>()?;
        configs.push(BenchConfig { label: label.to_string(), vars });
    }
    Ok(configs)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

// ---------------------------------------------------------------------------------------------------------------
// The floor

const FLOOR_DOC: &str = "floor = min(max((N - Bg)/Rg, (W - Bc)/Rc), (ceil(A/50) + W - Bc)/Rc), at least 0; when the \
    scenario must confirm its updates, at least max over its writes k (in the order made) of max(0, (k + 1 - Bc)/Rc) + \
    the InProgress time of the update write k started. Rg, Rc: the \
    testbed's GetFunction and control-plane rates; Bg, Bc: what their buckets hold at the start (rate x burst \
    seconds). N = functions whose code must be observed, A = functions in the account (a ListFunctions listing pages \
    through all of them), W = control-plane writes the scenario cannot avoid: UpdateFunctionCode of changed functions, \
    plus (first sweep) the TagResource that claims each function, shown separately as the floor without tags. \
    Observing by GetFunction uses its own bucket (writes overlap on the control-plane one); by ListFunctions, pages of \
    50 share the control-plane bucket with the writes. S3 and Kubernetes calls have no quota and count 0.";

/// The testbed's Lambda quotas: rates and what each bucket holds when a scenario starts.
#[derive(Clone, Copy)]
struct Quota {
    get_rps: f64,
    control_rps: f64,
    get_burst: f64,
    control_burst: f64,
}

impl Quota {
    fn of(layer: &LayerConfig) -> Quota {
        Quota {
            get_rps: layer.get_function_per_second,
            control_rps: layer.control_plane_per_second,
            get_burst: (layer.get_function_per_second * layer.quota_burst_seconds).max(1.0),
            control_burst: (layer.control_plane_per_second * layer.quota_burst_seconds).max(1.0),
        }
    }

    /// The least time the quotas allow for observing `observed` functions in an account of `in_account` (by
    /// GetFunction, or by pages of the account's functions when `listable`) and making `writes` control-plane writes.
    fn time(&self, observed: usize, in_account: usize, writes: usize, listable: bool) -> (f64, String) {
        let (n, w) = (observed as f64, writes as f64);
        let after_burst = |calls: f64, burst: f64, rate: f64| ((calls - burst) / rate).max(0.0);
        let by_get =
            after_burst(n, self.get_burst, self.get_rps).max(after_burst(w, self.control_burst, self.control_rps));
        let a = in_account.max(observed) as f64;
        let by_list = if listable {
            after_burst((a / LIST_PAGE).ceil() + w, self.control_burst, self.control_rps)
        } else {
            f64::INFINITY
        };
        let text = format!(
            "min(max(({n}-{bg})/{rg}, ({w}-{bc})/{rc}), (ceil({a}/50)+{w}-{bc})/{rc}) = min({by_get:.3}, {by_list:.3})",
            bg = self.get_burst,
            rg = self.get_rps,
            bc = self.control_burst,
            rc = self.control_rps,
        );
        (by_get.min(by_list), text)
    }
}

#[derive(Clone, Copy)]
struct FloorInput {
    observed: usize,
    /// Functions in the account: what a ListFunctions listing must page through to observe `observed` of them.
    in_account: usize,
    /// UpdateFunctionCode calls the scenario needs.
    updates: usize,
    /// TagResource calls claiming functions first seen (the first sweep).
    tags: usize,
    /// The scenario ends when its updates are confirmed finished.
    confirm: bool,
    /// The code observed can be read from ListFunctions pages (not an alias's: GetFunction with a qualifier only).
    listable: bool,
}

/// A control-plane write the scenario made, in the order made: whether it started an update, and how long that
/// stayed InProgress (seconds).
struct Write {
    update: Option<f64>,
}

/// The least time until the last update can be confirmed: the k-th write (in the order the deployer made them)
/// cannot start before the quota lets it, and its update cannot end before its own InProgress time after that.
fn confirmed_by(writes: &[Write], quota: Quota) -> f64 {
    let earliest = |k: usize| ((k as f64 + 1.0 - quota.control_burst) / quota.control_rps).max(0.0);
    writes.iter().enumerate().filter_map(|(k, w)| w.update.map(|ip| earliest(k) + ip)).fold(0.0, f64::max)
}

/// The control-plane writes Lambda applied among `calls` (TagResource, UpdateFunctionCode), in the order made, and
/// each update's InProgress time in ms.
fn writes_of(calls: &[&Call]) -> (Vec<Write>, Vec<u64>) {
    let mut written: Vec<&&Call> = calls
        .iter()
        .filter(|c| c.applied && matches!(c.operation.as_str(), "UpdateFunctionCode" | "TagResource"))
        .collect();
    written.sort_by_key(|c| c.at_ms);
    let writes = written
        .iter()
        .map(|c| Write {
            update: (c.operation == "UpdateFunctionCode").then(|| c.in_progress_ms.unwrap_or(0) as f64 / 1000.0),
        })
        .collect();
    let in_progress_ms =
        written.iter().filter(|c| c.operation == "UpdateFunctionCode").filter_map(|c| c.in_progress_ms).collect();
    (writes, in_progress_ms)
}

/// The floor with and without the owner tags, and how it was computed. `writes`: the scenario's TagResource and
/// UpdateFunctionCode calls Lambda applied, in order, with each update's InProgress time (from the call log).
fn floor(input: FloorInput, quota: Quota, writes: &[Write]) -> (f64, f64, String) {
    let (with_tags, text) = quota.time(input.observed, input.in_account, input.updates + input.tags, input.listable);
    let (without_tags, _) = quota.time(input.observed, input.in_account, input.updates, input.listable);
    let mut text = format!("{text} = {with_tags:.3} s");
    let (mut floor, mut floor_without_tags) = (with_tags, without_tags);
    if input.confirm && input.updates > 0 {
        let updates_only: Vec<Write> =
            writes.iter().filter(|w| w.update.is_some()).map(|w| Write { update: w.update }).collect();
        floor = floor.max(confirmed_by(writes, quota));
        floor_without_tags = floor_without_tags.max(confirmed_by(&updates_only, quota));
        text.push_str(&format!(
            "; the updates confirmed at the earliest (each write at its quota slot, each update's own InProgress) {floor:.3} s"
        ));
    }
    if input.tags > 0 {
        text.push_str(&format!("; without the {} owner tags {floor_without_tags:.3} s", input.tags));
    }
    (floor, floor_without_tags, text)
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring one scenario

/// Who acted in a scenario: calls of other identities (the bench's own setup, markers) are not counted.
struct Actor {
    access_key_id: String,
    kube_user: &'static str,
}

impl Actor {
    fn deployer() -> Actor {
        Actor { access_key_id: AwsIdentity::deployer().access_key_id, kube_user: DEPLOYER_KUBE_USER }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Phase {
    operation: String,
    calls: u64,
    /// Seconds after the scenario started: first request received, last response sent.
    first_s: f64,
    last_s: f64,
    /// Summed server-side durations (concurrent calls overlap).
    busy_s: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Scenario {
    name: String,
    config: String,
    wall_s: f64,
    floor_s: f64,
    /// The floor without the owner tags' writes (equal to `floor_s` when the scenario claims nothing).
    floor_without_tags_s: f64,
    floor: String,
    ratio_to_floor: f64,
    ratio_to_floor_without_tags: f64,
    /// InProgress of each update Lambda applied in the scenario, in ms.
    update_in_progress_ms: Vec<u64>,
    /// `service:Operation` → requests (all statuses).
    aws_calls: BTreeMap<String, u64>,
    lambda_calls: u64,
    throttled_429: u64,
    update_function_code: u64,
    s3_get_object_bytes: u64,
    /// `verb resource[/subresource]` → requests.
    kube_calls: BTreeMap<String, u64>,
    kube_requests: u64,
    status_writes: u64,
    /// When each kind of AWS call happened; the gap before the first is the Kubernetes listing, the gap after
    /// the last is the report phase (status writes, Events).
    phases: Vec<Phase>,
    before_first_aws_call_s: f64,
    after_last_aws_call_s: f64,
    summary: Value,
}

/// Runs `work` with fresh call logs and measures it.
async fn measure<F>(
    world: &World,
    name: &str,
    config: &str,
    actor: &Actor,
    floor_input: FloorInput,
    quota: Quota,
    work: F,
) -> BenchResult<Scenario>
where
    F: Future<Output = BenchResult<Value>>,
{
    let aws = world.testbed.aws();
    aws.clear_calls();
    world.testbed.kube().clear_requests();
    let (started, origin_ms) = time_origin(world).await?;
    let summary = work.await?;
    let wall_s = started.elapsed().as_secs_f64();
    let log = aws.calls();
    let calls: Vec<&Call> =
        log.calls.iter().filter(|c| c.access_key_id.as_deref() == Some(actor.access_key_id.as_str())).collect();
    let mut aws_calls = BTreeMap::new();
    for call in &calls {
        *aws_calls.entry(format!("{}:{}", call.service, call.operation)).or_insert(0) += 1;
    }
    let lambda_calls = calls.iter().filter(|c| c.service == "lambda").count() as u64;
    let throttled_429 = calls.iter().filter(|c| c.status == 429).count() as u64;
    let update_function_code = calls.iter().filter(|c| c.operation == "UpdateFunctionCode" && c.applied).count() as u64;
    let s3_get_object_bytes =
        calls.iter().filter(|c| c.service == "s3" && c.operation == "GetObject").map(|c| c.response_bytes).sum();
    let requests: Vec<_> = world.testbed.kube().requests().into_iter().filter(|r| r.user == actor.kube_user).collect();
    let mut kube_calls = BTreeMap::new();
    for r in &requests {
        let resource =
            if r.subresource.is_empty() { r.resource.clone() } else { format!("{}/{}", r.resource, r.subresource) };
        *kube_calls.entry(format!("{} {resource}", r.verb)).or_insert(0) += 1;
    }
    let status_writes = requests.iter().filter(|r| r.is_status_write()).count() as u64;
    let rel = |ms: u64| (ms as f64 - origin_ms) / 1000.0;
    let mut phases: BTreeMap<String, Phase> = BTreeMap::new();
    for call in &calls {
        let phase = phases.entry(format!("{}:{}", call.service, call.operation)).or_insert_with(|| Phase {
            operation: format!("{}:{}", call.service, call.operation),
            calls: 0,
            first_s: f64::MAX,
            last_s: 0.0,
            busy_s: 0.0,
        });
        phase.calls += 1;
        phase.first_s = phase.first_s.min(rel(call.at_ms));
        phase.last_s = phase.last_s.max(rel(call.at_ms + call.duration_ms));
        phase.busy_s += call.duration_ms as f64 / 1000.0;
    }
    let mut phases: Vec<Phase> = phases.into_values().collect();
    phases.sort_by(|a, b| a.first_s.total_cmp(&b.first_s));
    let before_first_aws_call_s = phases.first().map_or(wall_s, |p| p.first_s.max(0.0));
    let after_last_aws_call_s =
        phases.iter().map(|p| p.last_s).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let after_last_aws_call_s = after_last_aws_call_s.map_or(0.0, |last| (wall_s - last).max(0.0));
    let (writes, update_in_progress_ms) = writes_of(&calls);
    let (floor_s, floor_without_tags_s, floor_text) = floor(floor_input, quota, &writes);
    let ratio = |floor: f64| if floor > 0.0 { wall_s / floor } else { f64::NAN };
    let scenario = Scenario {
        name: name.to_string(),
        config: config.to_string(),
        wall_s,
        floor_s,
        floor_without_tags_s,
        floor: floor_text,
        ratio_to_floor: ratio(floor_s),
        ratio_to_floor_without_tags: ratio(floor_without_tags_s),
        update_in_progress_ms,
        aws_calls,
        lambda_calls,
        throttled_429,
        update_function_code,
        s3_get_object_bytes,
        kube_requests: requests.len() as u64,
        kube_calls,
        status_writes,
        phases,
        before_first_aws_call_s,
        after_last_aws_call_s,
        summary,
    };
    Ok(scenario)
}

/// Maps the AWS layer's clock (`at_ms`: milliseconds since it started) to ours: an unsigned request is logged with
/// its arrival time, taken as "now". Returns (now, that arrival in layer milliseconds).
async fn time_origin(world: &World) -> BenchResult<(Instant, f64)> {
    let aws = world.testbed.aws();
    let address = aws.url().trim_start_matches("http://").to_string();
    let started = Instant::now();
    let mut stream = TcpStream::connect(&address).await?;
    let request = format!("GET /bench-time-origin HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await??;
    let log = aws.calls();
    let marker = log.calls.iter().rev().find(|c| c.operation.contains("bench-time-origin") || c.service == "unsigned");
    let origin = marker.ok_or("the time-origin request was not logged")?.at_ms as f64;
    Ok((started, origin))
}

// ---------------------------------------------------------------------------------------------------------------
// A fleet

struct Member {
    ld: String,
    function: String,
    arn: String,
    key: String,
}

struct Fleet {
    size: usize,
    /// Functions in the account while this fleet is measured (earlier fleets' included).
    in_account: usize,
    world: World,
    members: Vec<Member>,
    setup_s: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FleetReport {
    size: usize,
    setup_s: f64,
    scenarios: Vec<Scenario>,
    naive_vs_ours: Value,
    rollout_steps: releases::StepLateness,
}

fn set_quotas(world: &World, on: bool) {
    let aws = world.testbed.aws();
    aws.set_config(LayerConfig { quotas: on, ..aws.config() });
}

impl Fleet {
    /// Functions running placeholder code, one artifact each (uploaded with its SHA-256 checksum, as the README
    /// tells users to), and one LD each naming it. Quotas are off during setup.
    async fn create(size: usize, in_account: usize) -> BenchResult<Fleet> {
        let started = Instant::now();
        let world = World::with_updates(&format!("fleet-{size}"), Updates::Realistic).await;
        set_quotas(&world, false);
        let members: Vec<Member> = (0..size)
            .map(|i| {
                let function = world.function_name(&format!("f{i:04}"));
                let c = commit(&format!("{function}-1"));
                Member {
                    ld: format!("ld-{i:04}"),
                    arn: support::function_arn(&function),
                    key: format!("{function}/{c}.zip"),
                    function,
                }
            })
            .collect();
        let world_ref = &world;
        futures::stream::iter(&members)
            .map(|m| async move {
                world_ref.create_function(&m.function[world_ref.namespace.len() + 1..], "placeholder").await;
                world_ref.upload_with_checksum(&m.key, &format!("release 1 of {}", m.function)).await;
                let c = m.key.rsplit('/').next().unwrap_or_default().trim_end_matches(".zip");
                world_ref.apply_ld(&m.ld, &m.arn, &m.function, c).await;
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
        set_quotas(&world, true);
        let setup_s = started.elapsed().as_secs_f64();
        println!("fleet {size}: {size} functions, artifacts and LDs created in {setup_s:.1} s (quotas off)");
        Ok(Fleet { size, in_account, world, members, setup_s })
    }

    async fn deployer(&self, config: &BenchConfig) -> Deployer {
        let vars: Vec<(&str, &str)> = config.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.world.deployer(&vars).await
    }

    /// Changes the code of 1% of the functions out of band (quotas off meanwhile); `round` picks other functions
    /// each time. Returns how many.
    async fn drift(&self, round: usize) -> BenchResult<usize> {
        let world = &self.world;
        let count = ((self.size + 50) / 100).max(1);
        let step = self.size / count;
        let drifted: Vec<&Member> = self.members.iter().skip(round % step).step_by(step).take(count).collect();
        set_quotas(world, false);
        for (i, m) in drifted.iter().enumerate() {
            world
                .lambda
                .update_function_code()
                .function_name(&m.function)
                .zip_file(Blob::new(zip(&format!("hotfix {round}-{i}")).0))
                .send()
                .await
                .map_err(|e| format!("drifting {}: {}", m.function, aws_sdk_lambda::error::DisplayErrorContext(e)))?;
        }
        for m in &drifted {
            wait_settled(&world.lambda, &m.function).await?;
        }
        set_quotas(world, true);
        Ok(drifted.len())
    }

    async fn sweep(&self, deployer: &Deployer) -> BenchResult<Value> {
        let summary = deployer.handle(&json!({"action": "sweep"}), None).await?;
        Ok(serde_json::to_value(&summary)?)
    }

    async fn run(&self, configs: &[BenchConfig], quota: Quota) -> BenchResult<FleetReport> {
        let n = self.size;
        let world = &self.world;
        let actor = Actor::deployer();
        let first = &configs[0].label;
        let deployer = self.deployer(&configs[0]).await;
        let mut scenarios = Vec::new();

        // The first sweep deploys everything: every function is claimed (TagResource) and updated.
        let s = measure(
            world,
            "initial sweep (deploys all)",
            first,
            &actor,
            FloorInput { observed: n, in_account: self.in_account, updates: n, tags: n, confirm: true, listable: true },
            quota,
            self.sweep(&deployer),
        )
        .await?;
        scenarios.push(s);

        // (a) everything in sync, then (b) 1% drifted, per configuration: the first with the warm container, the
        // others each with a new one (its first invocation also resolves the cluster: one DescribeCluster).
        for (round, config) in configs.iter().enumerate() {
            let other = if round == 0 { None } else { Some(self.deployer(config).await) };
            let deployer = other.as_ref().unwrap_or(&deployer);
            let s = measure(
                world,
                "a: sweep, all in sync",
                &config.label,
                &actor,
                FloorInput {
                    observed: n,
                    in_account: self.in_account,
                    updates: 0,
                    tags: 0,
                    confirm: false,
                    listable: true,
                },
                quota,
                self.sweep(deployer),
            )
            .await?;
            scenarios.push(s);
            let drifted = self.drift(round).await?;
            let s = measure(
                world,
                &format!("b: sweep, 1% drifted ({drifted})"),
                &config.label,
                &actor,
                FloorInput {
                    observed: n,
                    in_account: self.in_account,
                    updates: drifted,
                    tags: 0,
                    confirm: true,
                    listable: true,
                },
                quota,
                self.sweep(deployer),
            )
            .await?;
            scenarios.push(s);
        }

        // (c) One S3 event: one LD moves to a new commit, CI uploads it, S3 notifies.
        let target = &self.members[n / 2];
        let new_commit = commit(&format!("{}-2", target.function));
        world.set_commit(&target.ld, &new_commit).await;
        let key = format!("{}/{new_commit}.zip", target.function);
        let (version, _) = world.upload_with_checksum(&key, &format!("release 2 of {}", target.function)).await;
        let event = world.s3_event(&key, &version);
        let s = measure(
            world,
            &format!("c: one S3 event among {n}"),
            first,
            &actor,
            FloorInput { observed: 1, in_account: 1, updates: 1, tags: 0, confirm: true, listable: false },
            quota,
            async {
                let summary = deployer.handle(&event, None).await?;
                Ok(serde_json::to_value(&summary)?)
            },
        )
        .await?;
        scenarios.push(s);

        // (d) The seed's controller: UpdateFunctionCode for every LD, every reconcile, no checks.
        let naive_actor = Actor { access_key_id: AwsIdentity::deployer().access_key_id, kube_user: ADMIN_KUBE_USER };
        let s = measure(
            world,
            "d: naive reconcile (seed)",
            "15/s client limit, SDK standard retry",
            &naive_actor,
            FloorInput { observed: 0, in_account: 0, updates: n, tags: 0, confirm: false, listable: false },
            quota,
            naive_reconcile(world, quota.control_rps),
        )
        .await?;
        scenarios.push(s);

        let naive_vs_ours = compare(&scenarios);
        // Last: it moves every LambdaDeployment to releases through an alias.
        let (release_rows, rollout_steps) = self.release_scenarios(quota).await?;
        scenarios.extend(release_rows);
        Ok(FleetReport { size: n, setup_s: self.setup_s, scenarios, naive_vs_ours, rollout_steps })
    }
}

/// Naive over ours: wall time and UpdateFunctionCode count, against the in-sync sweep (a, first configuration) and the
/// 1%-drifted one (b). A ratio over zero is reported as null with the counts.
fn compare(scenarios: &[Scenario]) -> Value {
    let find = |prefix: &str| scenarios.iter().find(|s| s.name.starts_with(prefix));
    let (Some(naive), Some(a), Some(b)) = (find("d:"), find("a:"), find("b:")) else { return json!(null) };
    let ratio = |x: f64, y: f64| if y > 0.0 { json!(x / y) } else { json!(null) };
    let against = |ours: &Scenario| {
        json!({
            "ours": ours.name,
            "wallRatio": ratio(naive.wall_s, ours.wall_s),
            "updateFunctionCodeRatio": ratio(naive.update_function_code as f64, ours.update_function_code as f64),
            "naiveUpdateFunctionCode": naive.update_function_code,
            "oursUpdateFunctionCode": ours.update_function_code,
        })
    };
    json!({"inSync": against(a), "drifted": against(b)})
}

async fn wait_settled(lambda: &aws_sdk_lambda::Client, function: &str) -> BenchResult<()> {
    for _ in 0..200 {
        let out = lambda.get_function().function_name(function).send().await?;
        let busy = out.configuration().and_then(|c| c.last_update_status()).is_some_and(|s| s.as_str() == "InProgress");
        if !busy {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{function} stayed InProgress").into())
}

/// The seed's reconcile: list the LDs, UpdateFunctionCode from S3Bucket/S3Key for each, no observation. As a real
/// client under the quotas it needs a client-side limit (the full 15/s, the most generous choice) and the SDK's
/// standard retry for the 429s that still happen; 8 in flight like the deployer's default.
async fn naive_reconcile(world: &World, control_rps: f64) -> BenchResult<Value> {
    let deployer = AwsIdentity::deployer();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(world.testbed.aws_endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            deployer.access_key_id,
            deployer.secret_access_key,
            None,
            None,
            "naive",
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(5))
        .load()
        .await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let limiter = RateLimiter::per_second(control_rps as u32, 1);
    let lds: kube::Api<LambdaDeployment> = world.lds();
    let mut items = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = lds.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    let (lambda, limiter) = (&lambda, &limiter);
    let results: Vec<bool> = futures::stream::iter(&items)
        .map(|ld| async move {
            limiter.acquire(None).await;
            let key = format!("{}/{}.zip", ld.spec.function_name, ld.spec.commit);
            let sent = lambda
                .update_function_code()
                .function_name(&ld.spec.function_arn)
                .s3_bucket(ARTIFACT_BUCKET)
                .s3_key(key)
                .send()
                .await;
            sent.is_ok()
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let failed = results.iter().filter(|ok| !**ok).count();
    Ok(json!({"listed": items.len(), "updated": items.len() - failed, "failed": failed}))
}

// ---------------------------------------------------------------------------------------------------------------
// Output

fn print_fleet(report: &FleetReport) {
    println!("\n== fleet of {} LDs/functions (setup {:.1} s) ==", report.size, report.setup_s);
    println!(
        "{:<36} {:<52} {:>8} {:>8} {:>7} {:>7} {:>5} {:>6} {:>7} {:>5} {:>6}",
        "scenario", "config", "wall s", "floor s", "×floor", "lambda", "429", "UFC", "S3 GET B", "kube", "status"
    );
    for s in &report.scenarios {
        println!(
            "{:<36} {:<52} {:>8.2} {:>8.3} {:>7.2} {:>7} {:>5} {:>6} {:>7} {:>5} {:>6}",
            s.name,
            truncate(&s.config, 52),
            s.wall_s,
            s.floor_s,
            s.ratio_to_floor,
            s.lambda_calls,
            s.throttled_429,
            s.update_function_code,
            s.s3_get_object_bytes,
            s.kube_requests,
            s.status_writes
        );
        if s.floor_without_tags_s < s.floor_s {
            println!(
                "{:<36} {:<52} {:>8} {:>8.3} {:>7.2}   (floor without the owner tags)",
                "", "", "", s.floor_without_tags_s, s.ratio_to_floor_without_tags
            );
        }
    }
    println!("\ncalls by operation and where the time went (seconds after the scenario started):");
    for s in &report.scenarios {
        println!("  {} [{}]: floor {}", s.name, s.config, s.floor);
        if let (Some(min), Some(max)) = (s.update_in_progress_ms.iter().min(), s.update_in_progress_ms.iter().max()) {
            println!("    updates InProgress {min}–{max} ms ({} updates)", s.update_in_progress_ms.len());
        }
        let kube: Vec<String> = s.kube_calls.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("    kube: {}", if kube.is_empty() { "none".into() } else { kube.join(", ") });
        println!("    before the first AWS call (listing LDs): {:.2} s", s.before_first_aws_call_s);
        for p in &s.phases {
            println!(
                "    {:<30} {:>6} calls  {:>7.2} → {:>7.2} s  (server busy {:.2} s)",
                p.operation, p.calls, p.first_s, p.last_s, p.busy_s
            );
        }
        println!("    after the last AWS call (status writes, Events): {:.2} s", s.after_last_aws_call_s);
    }
    if let Some(cmp) = report.naive_vs_ours.as_object() {
        for (label, c) in cmp {
            println!(
                "naive/ours ({label}, vs {}): wall {}, UpdateFunctionCode {} ({} vs {})",
                c["ours"].as_str().unwrap_or_default(),
                fmt_ratio(&c["wallRatio"]),
                fmt_ratio(&c["updateFunctionCodeRatio"]),
                c["naiveUpdateFunctionCode"],
                c["oursUpdateFunctionCode"]
            );
        }
    }
    let steps = &report.rollout_steps;
    println!(
        "g: canary steps taken after they were due ({} steps of {} LDs, canary {:?} every {}): median {:.0} ms, max {:.0} ms",
        steps.steps,
        steps.steps / releases::WEIGHTS.len(),
        releases::WEIGHTS,
        releases::STEP,
        steps.median_ms,
        steps.max_ms
    );
    print_markdown(report);
}

/// The same figures as a Markdown table, to paste into the README as printed.
fn print_markdown(report: &FleetReport) {
    println!("\nMarkdown ({} LambdaDeployments):\n", report.size);
    println!(
        "| scenario | config | wall | floor | × floor | Lambda calls | 429 | UpdateFunctionCode | S3 bytes downloaded | kube calls | status writes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &report.scenarios {
        let (floor, ratio) = if s.floor_without_tags_s < s.floor_s {
            (
                format!("{:.2} s ({:.2} s without owner tags)", s.floor_s, s.floor_without_tags_s),
                format!("{:.2} ({:.2})", s.ratio_to_floor, s.ratio_to_floor_without_tags),
            )
        } else {
            (format!("{:.2} s", s.floor_s), format!("{:.2}", s.ratio_to_floor))
        };
        println!(
            "| {} | `{}` | {:.2} s | {floor} | {ratio} | {} | {} | {} | {} | {} | {} |",
            s.name,
            s.config,
            s.wall_s,
            s.lambda_calls,
            s.throttled_429,
            s.update_function_code,
            s.s3_get_object_bytes,
            s.kube_requests,
            s.status_writes
        );
    }
}

fn fmt_ratio(v: &Value) -> String {
    v.as_f64().map_or_else(|| "∞ (ours: 0)".to_string(), |r| format!("{r:.1}×"))
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
