//! One deployer, several accounts and regions: functions in other accounts are reached through a role assumed
//! there (sessions cached and renewed), functions in other regions read code from that region's artifact bucket,
//! and a target that cannot be reached — no role, a role that refuses, no bucket, no endpoint, not allowed,
//! throttled — is reported with exactly why while every other target deploys as if it were not there.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use lambda_deployer::crd::Phase;
use serde_json::json;
use support::{World, commit};
use testbed::aws::{Fault, FaultAction};
use testbed::identity::{
    ACCOUNT_ID, ARTIFACT_BUCKET, REGION, SECOND_REGION, SECOND_REGION_ARTIFACT_BUCKET, TARGET_ACCOUNTS,
};
use testbed::up::{TARGET_ROLE, target_role_arn};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Faults and sessions are global to the testbed: the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

const ANY_FUNCTION: &str = "arn:aws:lambda:*:*:function:*";
const REPLICA: &str = "us-west-2=lambda-artifacts-us-west-2";

fn sweep() -> serde_json::Value {
    json!({"action": "sweep"})
}

fn role_template() -> String {
    format!("arn:aws:iam::{{account}}:role/{TARGET_ROLE}")
}

fn deadline_in(seconds: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(seconds))
}

/// A target: an LD for a new function in `account`/`region`, whose artifact is uploaded where that region's
/// deployer reads it (unless `upload` is false).
struct Target {
    ld: String,
    account: &'static str,
    region: &'static str,
    function: String,
    sha: String,
}

async fn target(world: &World, ld: &str, account: &'static str, region: &'static str, upload: bool) -> Target {
    let arn = world.create_function_in(account, region, ld, "initial").await;
    let function = world.function_name(ld);
    let c = commit(&world.namespace);
    world.apply_ld(ld, &arn, &function, &c).await;
    let key = format!("{function}/{c}.zip");
    let content = format!("{ld} in {account}/{region}");
    let sha = match (upload, region) {
        (false, _) => support::zip(&content).1,
        (true, REGION) => world.upload(&key, &content).await.1,
        (true, _) => world.upload_in(region, SECOND_REGION_ARTIFACT_BUCKET, &key, &content).await.1,
    };
    Target { ld: ld.into(), account, region, function, sha }
}

async fn phase_and_message(world: &World, ld: &str) -> (Option<Phase>, String) {
    let status = world.ld(ld).await.status.unwrap_or_default();
    (status.phase, status.message.unwrap_or_default())
}

async fn runs_its_release(world: &World, t: &Target) -> bool {
    world.code_sha256_in(t.account, t.region, &t.function).await == t.sha
}

#[tokio::test]
async fn one_sweep_deploys_in_its_own_account_another_account_and_another_region_each_with_that_places_credentials() {
    let _serial = SERIAL.lock().await;
    let world = World::new("acct-spread").await;
    let targets = [
        target(&world, "own", ACCOUNT_ID, REGION, true).await,
        target(&world, "staging", TARGET_ACCOUNTS[0], REGION, true).await,
        target(&world, "prod-west", TARGET_ACCOUNTS[1], SECOND_REGION, true).await,
    ];
    let deployer = world
        .deployer(&[
            ("TARGET_ROLE_ARN", &role_template()),
            ("ARTIFACT_BUCKETS", REPLICA),
            ("ALLOWED_FUNCTION_ARNS", ANY_FUNCTION),
        ])
        .await;
    let seq_before = world.testbed.aws().calls().calls.last().map_or(0, |c| c.seq);

    let summary = deployer.handle(&sweep(), deadline_in(60)).await.unwrap();
    assert_eq!((summary.deployed, summary.failed, summary.blocked), (3, 0, 0), "{summary:?}");
    let places: BTreeSet<&str> = summary.accounts.keys().map(String::as_str).collect();
    let expected: BTreeSet<String> = targets.iter().map(|t| format!("{}/{}", t.account, t.region)).collect();
    assert_eq!(places, expected.iter().map(String::as_str).collect(), "the summary tells each place's share");
    assert!(summary.accounts.values().all(|share| share.deployed == 1 && share.considered == 1));
    for t in &targets {
        assert!(runs_its_release(&world, t).await, "{} runs its release", t.ld);
        assert_eq!(phase_and_message(&world, &t.ld).await.0, Some(Phase::Deployed));
    }

    // Each function was updated in its own place, with the credentials of that place, from its region's bucket.
    let sessions = world.testbed.aws().sessions();
    let log = world.testbed.aws().calls();
    for t in &targets {
        let updates: Vec<_> = log
            .of("lambda", "UpdateFunctionCode")
            .filter(|c| c.seq > seq_before && c.function.as_deref() == Some(t.function.as_str()) && c.applied)
            .collect();
        assert_eq!(updates.len(), 1, "{}: one update", t.ld);
        let update = updates[0];
        assert_eq!((update.account.as_deref(), update.region.as_deref()), (Some(t.account), Some(t.region)));
        let bucket = if t.region == REGION { ARTIFACT_BUCKET } else { SECOND_REGION_ARTIFACT_BUCKET };
        assert_eq!(update.params.get("S3Bucket").map(String::as_str), Some(bucket), "{}", t.ld);
        let key = update.access_key_id.as_deref().unwrap_or_default();
        let session = sessions.iter().find(|s| s.access_key_id == key);
        if t.account == ACCOUNT_ID {
            assert!(session.is_none(), "the own account is reached with the deployer's own credentials");
        } else {
            let session = session.unwrap_or_else(|| panic!("{}: updated with an assumed role's session", t.ld));
            assert_eq!(session.role_arn, target_role_arn(t.account));
            assert_eq!(session.session_name, "lambda-deployer-local", "CloudTrail names the deployer");
        }
    }

    // Sessions are kept: a second sweep assumes no role again (and has nothing to do).
    let assumed = |log: &testbed::aws::CallLog| log.of("sts", "AssumeRole").filter(|c| c.seq > seq_before).count();
    assert_eq!(assumed(&log), 2, "one session per target account");
    let summary = deployer.handle(&sweep(), deadline_in(60)).await.unwrap();
    assert_eq!((summary.deployed, summary.up_to_date), (0, 3));
    assert_eq!(assumed(&world.testbed.aws().calls()), 2);
}

#[tokio::test]
async fn a_replica_not_yet_in_the_regions_bucket_waits_and_its_upload_event_deploys_it() {
    let _serial = SERIAL.lock().await;
    let world = World::new("acct-replica").await;
    let t = target(&world, "west", TARGET_ACCOUNTS[0], SECOND_REGION, false).await;
    let key = format!("{}/{}.zip", t.function, commit(&world.namespace));
    // The artifact is in the main bucket only: Lambda in us-west-2 could not read it from there.
    world.upload(&key, &format!("west in {}/{}", t.account, t.region)).await;
    let deployer = world
        .deployer(&[
            ("TARGET_ROLE_ARN", &role_template()),
            ("ARTIFACT_BUCKETS", REPLICA),
            ("ALLOWED_FUNCTION_ARNS", ANY_FUNCTION),
        ])
        .await;

    let summary = deployer.handle(&sweep(), deadline_in(60)).await.unwrap();
    assert_eq!((summary.deployed, summary.waiting), (0, 1), "{summary:?}");
    let (phase, message) = phase_and_message(&world, &t.ld).await;
    assert_eq!(phase, Some(Phase::WaitingForArtifact));
    assert!(message.contains(&format!("s3://{SECOND_REGION_ARTIFACT_BUCKET}/{key}")), "{message}");
    assert!(!runs_its_release(&world, &t).await);

    // Replication delivers it; the replica bucket's own notification deploys it.
    let (version, _) = world
        .upload_in(SECOND_REGION, SECOND_REGION_ARTIFACT_BUCKET, &key, &format!("west in {}/{}", t.account, t.region))
        .await;
    let mut event = world.s3_event(&key, &version);
    event["Records"][0]["awsRegion"] = json!(SECOND_REGION);
    event["Records"][0]["s3"]["bucket"]["name"] = json!(SECOND_REGION_ARTIFACT_BUCKET);
    event["Records"][0]["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{SECOND_REGION_ARTIFACT_BUCKET}"));
    let summary = deployer.handle(&event, deadline_in(60)).await.unwrap();
    assert_eq!(summary.deployed, 1, "{summary:?}");
    assert!(runs_its_release(&world, &t).await);
    assert_eq!(phase_and_message(&world, &t.ld).await.0, Some(Phase::Deployed));
}

#[tokio::test]
async fn each_target_that_cannot_be_reached_says_exactly_why_and_the_others_deploy() {
    let _serial = SERIAL.lock().await;
    let world = World::new("acct-unreachable").await;
    let (staging, prod) = (TARGET_ACCOUNTS[0], TARGET_ACCOUNTS[1]);
    let healthy = target(&world, "healthy", ACCOUNT_ID, REGION, true).await;
    // staging's role is configured but does not exist there (or does not trust the deployer: STS says the same).
    let refusing_role = format!("arn:aws:iam::{staging}:role/not-created-yet");
    let refused = target(&world, "refused", staging, REGION, true).await;
    // prod has no role configured at all.
    let no_role = target(&world, "no-role", prod, REGION, true).await;
    // Our own functions in a region without an artifact bucket, in one without an endpoint, and in one the
    // allow-list leaves out. (Creating them needs a served region: their ARNs are written by hand.)
    let c = commit(&world.namespace);
    let arn_in = |region: &str, name: &str| format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}");
    let other = world.function_name("other");
    world.apply_ld("no-bucket", &arn_in("ap-southeast-2", &other), &other, &c).await;
    world.apply_ld("no-endpoint", &arn_in("eu-central-1", &other), &other, &c).await;
    let west = target(&world, "not-allowed", ACCOUNT_ID, SECOND_REGION, true).await;

    let allowed = ["us-east-1", "eu-central-1", "ap-southeast-2"].map(|r| format!("arn:aws:lambda:{r}:*:function:*"));
    let deployer = world
        .deployer(&[
            ("TARGET_ROLES", &format!("{staging}={refusing_role}")),
            ("ARTIFACT_BUCKETS", &format!("{REPLICA},eu-central-1=lambda-artifacts-eu-central-1")),
            ("ALLOWED_FUNCTION_ARNS", &allowed.join(",")),
        ])
        .await;
    let seq_before = world.testbed.aws().calls().calls.last().map_or(0, |c| c.seq);
    let started = Instant::now();
    let summary = deployer.handle(&sweep(), deadline_in(60)).await.unwrap();
    let healthy_done = finished_after(&world, seq_before, &BTreeSet::from([healthy.function.clone()]));
    assert!(started.elapsed() < Duration::from_secs(60), "the sweep ended before its deadline");
    // At most the bulk reads' 2 s slack: not the unreachable region's retries (14 s here without that bound).
    assert!(healthy_done < Duration::from_secs(3), "the healthy deploy waited for the others: {healthy_done:?}");
    assert_eq!((summary.deployed, summary.failed, summary.blocked), (1, 2, 3), "{summary:?}");
    assert!(runs_its_release(&world, &healthy).await);
    assert_eq!(phase_and_message(&world, &healthy.ld).await.0, Some(Phase::Deployed));

    let expectations: [(&str, Phase, &[&str]); 5] = [
        ("refused", Phase::Failed, &[&refusing_role, "is not authorized to perform: sts:AssumeRole"]),
        ("no-role", Phase::Blocked, &[&format!("account {prod}"), "no role to assume", "TARGET_ROLES"]),
        ("no-bucket", Phase::Blocked, &["region ap-southeast-2", "no artifact bucket", "ARTIFACT_BUCKETS"]),
        ("no-endpoint", Phase::Failed, &["eu-central-1"]),
        ("not-allowed", Phase::Blocked, &["us-west-2", "is not in ALLOWED_FUNCTION_ARNS"]),
    ];
    for (ld, phase, words) in expectations {
        let (got, message) = phase_and_message(&world, ld).await;
        assert_eq!(got, Some(phase), "{ld}: {message}");
        for word in words {
            assert!(message.contains(word), "{ld}: {word:?} not in {message:?}");
        }
    }
    for t in [&refused, &no_role, &west] {
        assert!(!runs_its_release(&world, t).await, "{} was not touched", t.ld);
    }
    // STS refused: the role is not asked for again and again within the sweep.
    let log = world.testbed.aws().calls();
    let assumed = log.of("sts", "AssumeRole").filter(|c| c.params.values().any(|v| v == &refusing_role)).count();
    assert!(assumed <= 2, "AssumeRole of a refusing role: {assumed} calls");
}

#[tokio::test]
async fn two_lambda_deployments_naming_one_function_in_another_account_deploy_it_once_and_the_same_name_elsewhere_is_another_function()
 {
    let _serial = SERIAL.lock().await;
    let world = World::new("acct-same-fn").await;
    let staging = TARGET_ACCOUNTS[0];
    let first = target(&world, "shared", staging, REGION, true).await;
    let second_arn = format!("arn:aws:lambda:{REGION}:{staging}:function:{}", first.function);
    world.apply_ld("shared-again", &second_arn, &first.function, &commit(&world.namespace)).await;
    // The same function name in the deployer's own account: a different function, its own LD.
    let own_arn = world.create_function("shared", "initial").await;
    let own_commit = commit("acct-same-fn-own");
    world.apply_ld("own-shared", &own_arn, &first.function, &own_commit).await;
    let (_, own_sha) = world.upload(&format!("{}/{own_commit}.zip", first.function), "own release").await;
    let deployer =
        world.deployer(&[("TARGET_ROLE_ARN", &role_template()), ("ALLOWED_FUNCTION_ARNS", ANY_FUNCTION)]).await;

    let summary = deployer.handle(&sweep(), deadline_in(60)).await.unwrap();
    assert_eq!((summary.deployed, summary.blocked), (2, 1), "{summary:?}");
    assert!(runs_its_release(&world, &first).await);
    assert_eq!(world.code_sha256(&first.function).await, own_sha);
    assert_eq!(phase_and_message(&world, "own-shared").await.0, Some(Phase::Deployed));
    let (claimant, other) = match phase_and_message(&world, "shared").await.0 {
        Some(Phase::Deployed) => ("shared", "shared-again"),
        _ => ("shared-again", "shared"),
    };
    assert_eq!(phase_and_message(&world, claimant).await.0, Some(Phase::Deployed));
    let (phase, message) = phase_and_message(&world, other).await;
    assert_eq!(phase, Some(Phase::Blocked));
    assert!(message.contains(claimant) && message.contains(staging), "{message}");
    let log = world.testbed.aws().calls();
    let updates = log.of("lambda", "UpdateFunctionCode").filter(|c| c.function.as_deref() == Some(&first.function));
    assert_eq!(updates.filter(|c| c.applied).count(), 2, "one update in each account");
}

#[tokio::test]
async fn a_session_that_expires_mid_sweep_is_renewed_and_the_sweep_deploys_everything() {
    let _serial = SERIAL.lock().await;
    let world = World::new("acct-expiry").await;
    let staging = TARGET_ACCOUNTS[0];
    let mut targets = Vec::new();
    for n in 0..4 {
        targets.push(target(&world, &format!("fn{n}"), staging, REGION, true).await);
    }
    // One at a time, each update slow to answer: the sweep is long enough to lose its session in the middle.
    for t in &targets {
        let slow = FaultAction::Latency { ms: 400 };
        world.testbed.aws().inject(Fault::new("UpdateFunctionCode", slow).function(&t.function)).unwrap();
    }
    let deployer = world
        .deployer(&[
            ("TARGET_ROLE_ARN", &role_template()),
            ("ALLOWED_FUNCTION_ARNS", ANY_FUNCTION),
            ("MAX_CONCURRENCY", "1"),
        ])
        .await;
    let aws = world.testbed.aws();
    let names: BTreeSet<&str> = targets.iter().map(|t| t.function.as_str()).collect();
    let seq_before = aws.calls().calls.last().map_or(0, |c| c.seq);
    let ours = |c: &testbed::aws::Call| c.seq > seq_before && c.function.as_deref().is_some_and(|f| names.contains(f));

    let expire_after_first_update = async {
        loop {
            let log = aws.calls();
            if log.of("lambda", "UpdateFunctionCode").any(|c| ours(c) && c.status == 200) {
                return aws.expire_sessions(Some(staging));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let payload = sweep();
    let (summary, expired) = tokio::join!(deployer.handle(&payload, deadline_in(60)), expire_after_first_update);
    aws.clear_faults();
    let log = aws.calls();
    let summary = summary.unwrap();
    assert!(expired >= 1, "the session was valid when it was expired (earlier tests' sessions may be too)");
    assert_eq!((summary.deployed, summary.failed), (4, 0), "{summary:?}");
    for t in &targets {
        assert!(runs_its_release(&world, t).await);
        assert_eq!(phase_and_message(&world, &t.ld).await.0, Some(Phase::Deployed));
    }

    // The first session acted, was refused once it had expired, and a second one finished the sweep.
    let mut sessions: Vec<&str> = Vec::new();
    for key in log.calls.iter().filter(|c| ours(c)).filter_map(|c| c.access_key_id.as_deref()) {
        if !sessions.contains(&key) {
            sessions.push(key);
        }
    }
    assert_eq!(sessions.len(), 2, "renewed once");
    let by =
        |key: &str| log.calls.iter().filter(|c| ours(c) && c.access_key_id.as_deref() == Some(key)).collect::<Vec<_>>();
    let (old, new) = (by(sessions[0]), by(sessions[1]));
    assert!(
        old.iter().any(|c| c.status == 200) && old.iter().any(|c| c.status == 403),
        "old: {:?}",
        old.iter().map(|c| c.status).collect::<Vec<_>>()
    );
    assert!(
        new.iter().all(|c| (200..300).contains(&c.status)) && new.iter().any(|c| c.operation == "UpdateFunctionCode")
    );
}

/// When the healthy account's deploys of this sweep were done: its last call about them, from the sweep's first call.
fn finished_after(world: &World, seq_before: u64, functions: &BTreeSet<String>) -> Duration {
    let log = world.testbed.aws().calls();
    let sweep: Vec<_> = log.calls.iter().filter(|c| c.seq > seq_before).collect();
    let start = sweep.iter().map(|c| c.at_ms).min().unwrap_or_default();
    let end = sweep
        .iter()
        .filter(|c| c.function.as_ref().is_some_and(|f| functions.contains(f)))
        .map(|c| c.at_ms + c.duration_ms)
        .max()
        .unwrap_or_default();
    Duration::from_millis(end - start)
}

#[tokio::test]
async fn a_throttled_account_and_an_unreachable_one_delay_no_other_accounts_deploys() {
    let _serial = SERIAL.lock().await;
    let world = World::new("acct-isolated").await;
    let (staging, prod) = (TARGET_ACCOUNTS[0], TARGET_ACCOUNTS[1]);
    let vars = [
        ("TARGET_ROLES", format!("{staging}={},{prod}=arn:aws:iam::{prod}:role/missing", target_role_arn(staging))),
        ("ALLOWED_FUNCTION_ARNS", ANY_FUNCTION.to_string()),
        ("MAX_CONCURRENCY", "4".to_string()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Baseline: the healthy account's 8 deploys alone.
    let mut baseline = Vec::new();
    for n in 0..8 {
        baseline.push(target(&world, &format!("alone{n}"), ACCOUNT_ID, REGION, true).await);
    }
    let seq = world.testbed.aws().calls().calls.last().map_or(0, |c| c.seq);
    let summary = world.deployer(&vars).await.handle(&sweep(), deadline_in(60)).await.unwrap();
    assert_eq!(summary.deployed, 8);
    let alone = finished_after(&world, seq, &baseline.iter().map(|t| t.function.clone()).collect());
    for t in &baseline {
        world.lds().delete(&t.ld, &Default::default()).await.unwrap();
    }

    // The same deploys, with 8 in an account whose every call is throttled and 8 in one whose role refuses (it cannot be reached at all).
    let mut healthy = Vec::new();
    for n in 0..8 {
        healthy.push(target(&world, &format!("healthy{n}"), ACCOUNT_ID, REGION, true).await);
        target(&world, &format!("busy{n}"), staging, REGION, true).await;
        target(&world, &format!("denied{n}"), prod, REGION, true).await;
    }
    // In staging every update is throttled (its retries hold acting slots there) and so are the account-wide reads.
    for operation in ["UpdateFunctionCode", "GetAccountSettings", "ListFunctions"] {
        world.testbed.aws().inject(Fault::new(operation, FaultAction::Throttle).in_account(staging)).unwrap();
    }
    let seq = world.testbed.aws().calls().calls.last().map_or(0, |c| c.seq);
    let summary = world.deployer(&vars).await.handle(&sweep(), deadline_in(60)).await;
    world.testbed.aws().clear_faults();
    let summary = summary.unwrap();
    let functions: BTreeSet<String> = healthy.iter().map(|t| t.function.clone()).collect();
    let beside_trouble = finished_after(&world, seq, &functions);
    assert_eq!((summary.deployed, summary.failed), (8, 16), "{summary:?}");
    let own = &summary.accounts[&format!("{ACCOUNT_ID}/{REGION}")];
    assert_eq!((own.deployed, own.failed), (8, 0));
    for t in &healthy {
        assert!(runs_its_release(&world, t).await);
    }
    let log = world.testbed.aws().calls();
    let own_429s =
        log.calls.iter().filter(|c| c.seq > seq && c.account.as_deref() == Some(ACCOUNT_ID) && c.status == 429);
    assert_eq!(own_429s.count(), 0);
    let staging_429s =
        log.calls.iter().filter(|c| c.seq > seq && c.account.as_deref() == Some(staging) && c.status == 429);
    assert!(staging_429s.count() >= 8, "the other account really was throttled");
    // Some slack for a loaded machine, far less than one throttled function's retries take.
    assert!(
        beside_trouble <= alone * 3 / 2 + Duration::from_millis(500),
        "the healthy account's deploys took {beside_trouble:?} beside the trouble, {alone:?} alone"
    );
    for n in 0..8 {
        let (phase, message) = phase_and_message(&world, &format!("busy{n}")).await;
        assert_eq!(phase, Some(Phase::Failed), "{message}");
        let (phase, message) = phase_and_message(&world, &format!("denied{n}")).await;
        assert!(phase == Some(Phase::Failed) && message.contains("missing"), "{message}");
    }
}
