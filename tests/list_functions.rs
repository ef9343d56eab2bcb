//! Sweeps that observe in bulk: functions through ListFunctions pages (LIST_FUNCTIONS=true) and artifacts through
//! the bucket listing. In-sync resources cost no GetFunction and no HeadObject at all, and anything to deploy is
//! still read in detail first (function state, tags, fresh RevisionId; the exact artifact version).
//! A test binary of its own, so the account holds only this test's functions.

mod support;

use serde_json::json;
use support::{World, commit};

#[tokio::test]
async fn a_listing_sweep_confirms_in_sync_functions_from_pages_and_still_corrects_drift() {
    let world = World::new("listing").await;
    let (functions, c) = fleet(&world, 20).await;
    let deployer = world.deployer(&[("LIST_FUNCTIONS", "true"), ("MAX_CONCURRENCY", "16")]).await;
    assert_eq!(deployer.handle(&json!({"action": "sweep"}), None).await.unwrap().deployed, 20);

    // Only this test's functions: the other test of this binary runs at the same time.
    let calls = || world.testbed.aws().calls();
    let gets_of = |function: &str| {
        calls().of("lambda", "GetFunction").filter(|c| c.function.as_deref() == Some(function)).count()
    };
    let all_gets = || functions.iter().map(|f| gets_of(f)).sum::<usize>();
    let lists_by_deployer = || {
        calls()
            .of("lambda", "ListFunctions")
            .filter(|c| {
                c.access_key_id.as_deref() == Some(testbed::identity::AwsIdentity::deployer().access_key_id.as_str())
            })
            .count()
    };
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
    let world = World::new("listing-denied").await;
    fleet(&world, 8).await;
    world
        .testbed
        .aws()
        .inject(testbed::aws::Fault {
            service: "lambda".into(),
            operation: "ListFunctions".into(),
            function: None,
            action: testbed::aws::FaultAction::ServiceException,
            when: testbed::aws::Trigger::Always,
        })
        .unwrap();
    let deployer = world.deployer(&[("LIST_FUNCTIONS", "true")]).await;
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    world.testbed.aws().clear_faults();
    assert_eq!(summary.deployed, 8, "{summary:?}");
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
