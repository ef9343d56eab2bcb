//! Sweeps that observe in bulk: functions through ListFunctions pages (FUNCTION_OBSERVATION=list-functions, or
//! auto when paging is quicker than one GetFunction per target) and artifacts through the bucket listing. In-sync
//! resources cost no GetFunction and no HeadObject at all, and anything to deploy is still read in detail first
//! (function state, tags, fresh RevisionId; the exact artifact version).
//! A test binary of its own, so the account holds only these tests' functions; they run one at a time, because
//! the faults they inject apply to the whole account.

mod support;

use serde_json::json;
use support::{World, commit};
use testbed::aws::{Fault, FaultAction};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

#[tokio::test]
async fn a_listing_sweep_confirms_in_sync_functions_from_pages_and_still_corrects_drift() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let world = World::new("listing").await;
    let (functions, c) = fleet(&world, 20).await;
    let deployer = world.deployer(&[("FUNCTION_OBSERVATION", "list-functions"), ("MAX_CONCURRENCY", "16")]).await;
    assert_eq!(deployer.handle(&json!({"action": "sweep"}), None).await.unwrap().deployed, 20);

    let calls = || world.testbed.aws().calls();
    let gets_of = |function: &str| {
        calls().of("lambda", "GetFunction").filter(|c| c.function.as_deref() == Some(function)).count()
    };
    let all_gets = || functions.iter().map(|f| gets_of(f)).sum::<usize>();
    let lists_by_deployer = || lambda_calls_by_deployer(&world, "ListFunctions");
    let heads_of = |function: &str| {
        let key = format!("{function}/{c}.zip");
        calls().of("s3", "HeadObject").filter(|call| call.params.get("Key") == Some(&key)).count()
    };
    let all_heads = || functions.iter().map(|f| heads_of(f)).sum::<usize>();
    let (lists, gets, heads) = (lists_by_deployer(), all_gets(), all_heads());
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.up_to_date, 20);
    assert_eq!(all_gets(), gets, "in-sync functions are confirmed from the listing alone");
    assert_eq!(all_heads(), heads, "unchanged artifacts are confirmed from the bucket listing alone");
    assert!(lists_by_deployer() > lists, "the sweep listed functions");

    // Drift on one function: it is observed in detail, then restored.
    let (hotfix, _) = support::zip("hand-made hotfix");
    world.lambda.update_function_code().function_name(&functions[3]).zip_file(hotfix.into()).send().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (gets, drifted_gets, heads) = (all_gets(), gets_of(&functions[3]), all_heads());
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!((summary.deployed, summary.up_to_date), (1, 19), "{summary:?}");
    let drifted_gets = gets_of(&functions[3]) - drifted_gets;
    assert!(drifted_gets >= 1, "the drifted function is read in detail");
    assert_eq!(all_gets() - gets, drifted_gets, "and only that one");
    assert_eq!((all_heads() - heads, heads_of(&functions[3]) > 0), (1, true), "only the artifact to deploy is read");

    // A re-upload to the same key changes its ETag: the sweep reads it and deploys the new version.
    let (_, new_sha) = world.upload_with_checksum(&format!("{}/{c}.zip", functions[5]), "release 5, rebuilt").await;
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!((summary.deployed, summary.up_to_date), (1, 19), "{summary:?}");
    assert_eq!(world.code_sha256(&functions[5]).await, new_sha);
}

#[tokio::test]
async fn a_failing_function_listing_falls_back_to_get_function() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let world = World::new("listing-fails").await;
    fleet(&world, 8).await;
    fail_always(&world, "ListFunctions", FaultAction::ServiceException);
    let deployer = world.deployer(&[("FUNCTION_OBSERVATION", "list-functions")]).await;
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    world.testbed.aws().clear_faults();
    assert_eq!(summary.deployed, 8, "{summary:?}");
}

#[tokio::test]
async fn auto_observation_lists_for_a_fleet_and_gets_each_function_of_a_few() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let world = World::new("auto-fleet").await;
    let (functions, _) = fleet(&world, 20).await;
    let deployer = world.deployer(&[]).await;
    assert_eq!(deployer.handle(&json!({"action": "sweep"}), None).await.unwrap().deployed, 20);
    let gets = || gets_of_functions(&world, &functions);
    let (before, settings) = (gets(), lambda_calls_by_deployer(&world, "GetAccountSettings"));
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.up_to_date, 20, "{summary:?}");
    assert_eq!(gets(), before, "20 targets in an account of at most 100 functions: two pages beat 20 GetFunctions");
    let asked = lambda_calls_by_deployer(&world, "GetAccountSettings") - settings;
    assert_eq!(asked, 0, "the account's function count is remembered by the container");

    let few = World::new("auto-few").await;
    let (functions, _) = fleet(&few, 3).await;
    let deployer = few.deployer(&[]).await;
    assert_eq!(deployer.handle(&json!({"action": "sweep"}), None).await.unwrap().deployed, 3);
    let (before, lists) = (gets_of_functions(&few, &functions), lambda_calls_by_deployer(&few, "ListFunctions"));
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.up_to_date, 3, "{summary:?}");
    assert_eq!(gets_of_functions(&few, &functions) - before, 3, "three targets: one GetFunction each");
    assert_eq!(lambda_calls_by_deployer(&few, "ListFunctions"), lists, "no page is read for three targets");
}

#[tokio::test]
async fn auto_observation_without_permission_to_count_functions_gets_each_function() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let world = World::new("auto-denied").await;
    let (functions, _) = fleet(&world, 20).await;
    fail_always(&world, "GetAccountSettings", FaultAction::AccessDenied);
    let deployer = world.deployer(&[]).await;
    let first = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    let before = gets_of_functions(&world, &functions);
    let asked = lambda_calls_by_deployer(&world, "GetAccountSettings");
    let second = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    world.testbed.aws().clear_faults();
    assert_eq!((first.deployed, second.up_to_date), (20, 20), "{first:?} {second:?}");
    assert!(first.errors.is_empty() && second.errors.is_empty(), "a denied count is not an error of any LD");
    assert_eq!(gets_of_functions(&world, &functions) - before, 20, "every function observed with GetFunction");
    assert_eq!(lambda_calls_by_deployer(&world, "GetAccountSettings"), asked, "a denial is remembered, not retried");
}

#[tokio::test]
async fn a_listing_started_on_the_last_sweeps_fleet_stops_when_the_fleet_has_shrunk() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let world = World::new("auto-shrunk").await;
    let (functions, _) = fleet(&world, 20).await;
    let deployer = world.deployer(&[]).await;
    assert_eq!(deployer.handle(&json!({"action": "sweep"}), None).await.unwrap().deployed, 20);
    for i in 3..20 {
        world.lds().delete(&format!("fn{i:02}"), &Default::default()).await.unwrap();
    }
    // The guess from 20 LDs starts a listing at once; it is slow here, so the three LDs are listed first.
    let slow = Fault::new("ListFunctions", FaultAction::Latency { ms: 3000 });
    world.testbed.aws().inject(slow).unwrap();
    let (before, lists) =
        (gets_of_functions(&world, &functions[..3]), lambda_calls_by_deployer(&world, "ListFunctions"));
    let started = std::time::Instant::now();
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    let took = started.elapsed();
    world.testbed.aws().clear_faults();
    assert_eq!((summary.considered, summary.up_to_date), (3, 3), "{summary:?}");
    assert_eq!(gets_of_functions(&world, &functions[..3]) - before, 3, "three targets: GetFunction each");
    assert!(took < std::time::Duration::from_millis(2500), "the listing was not waited for: {took:?}");
    // The abandoned page request is logged once the testbed sees the client gone.
    let started_listing = async {
        while lambda_calls_by_deployer(&world, "ListFunctions") == lists {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let waited = tokio::time::timeout(std::time::Duration::from_secs(5), started_listing).await;
    assert!(waited.is_ok(), "a listing was started on the guess");
}

fn fail_always(world: &World, operation: &str, action: FaultAction) {
    world.testbed.aws().inject(Fault::new(operation, action)).unwrap();
}

fn lambda_calls_by_deployer(world: &World, operation: &str) -> usize {
    let deployer = testbed::identity::AwsIdentity::deployer().access_key_id;
    let calls = world.testbed.aws().calls();
    calls.of("lambda", operation).filter(|c| c.access_key_id.as_deref() == Some(deployer.as_str())).count()
}

fn gets_of_functions(world: &World, functions: &[String]) -> usize {
    let calls = world.testbed.aws().calls();
    calls.of("lambda", "GetFunction").filter(|c| c.function.as_ref().is_some_and(|f| functions.contains(f))).count()
}

/// `size` functions with one LambdaDeployment each and an artifact uploaded with its checksum; returns the function
/// names and the commit they all declare.
async fn fleet(world: &World, size: usize) -> (Vec<String>, String) {
    let c = commit(&world.namespace);
    let mut functions = Vec::new();
    for i in 0..size {
        let label = format!("fn{i:02}");
        let arn = world.create_function(&label, "initial").await;
        let function = world.function_name(&label);
        world.apply_ld(&label, &arn, &function, &c).await;
        world.upload_with_checksum(&format!("{function}/{c}.zip"), &format!("release {i}")).await;
        functions.push(function);
    }
    (functions, c)
}
