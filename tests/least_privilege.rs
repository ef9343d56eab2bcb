//! The deployer with exactly the RBAC of crds/rbac.yaml, and with each of its rules taken away: every missing
//! permission fails clearly and specifically, and never causes a repeated deploy. One test, run in sequence,
//! because the ClusterRole is cluster-wide (this binary has a testbed of its own).

mod support;

use serde_json::{Value, json};
use support::{World, apply_value, commit};

fn rbac_without(rule_resource: &str) -> Value {
    let text = std::fs::read_to_string("crds/rbac.yaml").unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut role = documents.into_iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let rules = role["rules"].as_array_mut().unwrap();
    let before = rules.len();
    rules.retain(|rule| !rule["resources"].as_array().unwrap().iter().any(|r| r == rule_resource));
    assert_eq!(rules.len(), before - 1, "crds/rbac.yaml has a rule for {rule_resource}");
    role
}

#[tokio::test]
async fn each_rbac_rule_is_needed_and_its_absence_is_reported_clearly() {
    let world = World::new("rbac").await;
    let sweep = json!({"action": "sweep"});
    let deployer = world.deployer(&[]).await;
    let full = || async { support::apply_file(&world.admin, "crds/rbac.yaml").await };

    // Exactly crds/rbac.yaml: works.
    let arn = world.create_function("full", "initial").await;
    let function = world.function_name("full");
    let c = commit("rbac-full");
    world.apply_ld("full", &arn, &function, &c).await;
    world.upload(&format!("{function}/{c}.zip"), "release").await;
    let summary = deployer.handle(&sweep, None).await.unwrap();
    assert_eq!((summary.deployed, summary.status_writes, summary.events_recorded), (1, 1, 1), "{summary:?}");
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);

    // Without status writes: the deploy still happens, the 403 is reported, and the next sweep does not redeploy.
    apply_value(&world.admin, rbac_without("lambdadeployments/status")).await;
    let arn = world.create_function("nostatus", "initial").await;
    let function = world.function_name("nostatus");
    world.apply_ld("nostatus", &arn, &function, &c).await;
    world.upload(&format!("{function}/{c}.zip"), "release").await;
    let summary = deployer.handle(&sweep, None).await.unwrap();
    assert_eq!(summary.deployed, 1);
    let error = summary.errors.iter().find(|e| e.contains("writing status")).expect("status error reported");
    assert!(error.contains("403") && error.contains("lambdadeployments/status"), "{error}");
    let summary = deployer.handle(&sweep, None).await.unwrap();
    assert_eq!((summary.deployed, summary.up_to_date), (0, 2));
    assert_eq!(world.successful_updates(&function), 1, "not deployed again because the status could not be written");
    full().await;

    // Without events: deploys and status go on; the missing permission is named.
    apply_value(&world.admin, rbac_without("events")).await;
    let arn = world.create_function("noevents", "initial").await;
    let function = world.function_name("noevents");
    world.apply_ld("noevents", &arn, &function, &c).await;
    world.upload(&format!("{function}/{c}.zip"), "release").await;
    let summary = deployer.handle(&sweep, None).await.unwrap();
    assert!(summary.deployed == 1 && summary.status_writes >= 1, "{summary:?}");
    let error = summary.errors.iter().find(|e| e.contains("recording event")).expect("event error reported");
    assert!(error.contains("403") && error.contains("events"), "{error}");
    full().await;

    // Without list: nothing can be done, so the invocation fails (and Lambda retries it) with the reason.
    apply_value(&world.admin, rbac_without("lambdadeployments")).await;
    let err = deployer.handle(&sweep, None).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("403") && message.contains("cannot list resource \"lambdadeployments\""), "{message}");
    full().await;
    assert!(deployer.handle(&sweep, None).await.is_ok(), "works again with crds/rbac.yaml restored");
}
