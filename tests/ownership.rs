//! Ownership follows the resource's life: deleting a LambdaDeployment (or pointing it at another function) ends its
//! claim on the function, whose code is left as it is, and a successor may deploy; a claim that may still be live
//! — its resource unreadable, in another cluster, or made before claims named their cluster — is never taken over.
//! (A live owner in a namespace the deployer does not watch: `tests/tenancy.rs`.)

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kube::api::DeleteParams;
use lambda_deployer::crd::{CLUSTER_TAG, OWNER_TAG, Phase};
use serde_json::json;
use support::{World, commit, function_arn, this_cluster};
use testbed::apiserver::KubeFault;
use tokio::sync::Mutex;

/// Faults are global to the testbed: the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn sweep() -> serde_json::Value {
    json!({"action": "sweep"})
}

async fn tags(world: &World, function: &str) -> HashMap<String, String> {
    let listed = world.lambda.list_tags().resource(function_arn(function)).send().await.unwrap();
    listed.tags().cloned().unwrap_or_default()
}

async fn tag(world: &World, function: &str, tags: &[(&str, &str)]) {
    let mut request = world.lambda.tag_resource().resource(function_arn(function));
    for (key, value) in tags {
        request = request.tags(*key, *value);
    }
    request.send().await.unwrap();
}

async fn phase_and_message(world: &World, name: &str) -> (Option<Phase>, String) {
    let status = world.ld(name).await.status.unwrap_or_default();
    (status.phase, status.message.unwrap_or_default())
}

/// A function running `initial`, and an artifact `label` for it uploaded under `commit`: (arn, name, sha).
async fn function_and_artifact(world: &World, label: &str, c: &str) -> (String, String, String) {
    let arn = world.create_function(label, "initial").await;
    let function = world.function_name(label);
    let (_, sha) = world.upload(&format!("{function}/{c}.zip"), &format!("{label} release {c}")).await;
    (arn, function, sha)
}

#[tokio::test]
async fn deleting_a_lambda_deployment_ends_its_claim_leaves_the_code_and_lets_a_successor_deploy() {
    let _serial = SERIAL.lock().await;
    let world = World::new("claim-deleted").await;
    let deployer = world.deployer(&[]).await;
    let (c1, c2) = (commit("claim-deleted-1"), commit("claim-deleted-2"));
    let (arn, function, sha1) = function_and_artifact(&world, "fn", &c1).await;
    world.apply_ld("old", &arn, &function, &c1).await;
    deployer.handle(&sweep(), None).await.unwrap();
    let claim = tags(&world, &function).await;
    assert_eq!(claim.get(OWNER_TAG).map(String::as_str), Some("claim-deleted/old"));
    assert_eq!(claim.get(CLUSTER_TAG).map(String::as_str), Some(this_cluster().as_str()));
    assert_eq!(world.ld("old").await.status.unwrap().claimed_in.as_deref(), Some(this_cluster().as_str()));

    // No finalizer: the resource is gone at once, whether or not a deployer runs; the function keeps its code.
    assert!(world.ld("old").await.metadata.finalizers.unwrap_or_default().is_empty());
    world.lds().delete("old", &DeleteParams::default()).await.unwrap();
    assert!(world.lds().get_opt("old").await.unwrap().is_none());
    deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!(world.code_sha256(&function).await, sha1, "deleting the resource leaves the code as it is");

    // A successor under another name, deployed by its upload's event: the field-selected listing does not show
    // the old owner, so the deployer reads it, finds it gone, and takes the function over.
    world.apply_ld("new", &arn, &function, &c2).await;
    let (version, sha2) = world.upload(&format!("{function}/{c2}.zip"), "fn release 2").await;
    let summary = deployer.handle(&world.s3_event(&format!("{function}/{c2}.zip"), &version), None).await.unwrap();
    assert_eq!((summary.deployed, summary.blocked), (1, 0), "{summary:?}");
    assert_eq!(world.code_sha256(&function).await, sha2);
    assert_eq!(tags(&world, &function).await.get(OWNER_TAG).map(String::as_str), Some("claim-deleted/new"));
    assert_eq!(world.ld("new").await.status.unwrap().phase, Some(Phase::Deployed));
}

#[tokio::test]
async fn an_owner_pointed_at_another_function_releases_its_claim() {
    let _serial = SERIAL.lock().await;
    let world = World::new("claim-moved").await;
    let deployer = world.deployer(&[]).await;
    let c = commit("claim-moved");
    let (arn, function, sha) = function_and_artifact(&world, "first", &c).await;
    let (other_arn, other, _) = function_and_artifact(&world, "second", &c).await;
    world.apply_ld("owner", &arn, &function, &c).await;
    deployer.handle(&sweep(), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world.apply_ld("successor", &arn, &function, &c).await;
    deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!(phase_and_message(&world, "successor").await.0, Some(Phase::Blocked));

    // The owner now deploys another function: the first one's claim ended.
    world.apply_ld("owner", &other_arn, &other, &c).await;
    let summary = deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!(summary.blocked, 0, "{summary:?}");
    assert_eq!(phase_and_message(&world, "successor").await.0, Some(Phase::Deployed));
    assert_eq!(tags(&world, &function).await.get(OWNER_TAG).map(String::as_str), Some("claim-moved/successor"));
    assert_eq!(world.code_sha256(&function).await, sha, "same artifact: claimed, not redeployed");
    assert_eq!(world.successful_updates(&function), 1);
}

#[tokio::test]
async fn an_owner_that_cannot_be_read_is_never_taken_over() {
    let _serial = SERIAL.lock().await;
    let owner = World::new("claim-unreadable-owner").await;
    let rival = World::new("claim-unreadable-rival").await;
    let c = commit("claim-unreadable");
    let (arn, function, sha) = function_and_artifact(&owner, "fn", &c).await;
    owner.apply_ld("app", &arn, &function, &c).await;
    owner.deployer(&[]).await.handle(&sweep(), None).await.unwrap();
    let rival_commit = commit("claim-unreadable-rival");
    rival.upload(&format!("{function}/{rival_commit}.zip"), "rival release").await;
    rival.apply_ld("app", &arn, &function, &rival_commit).await;

    // The rival's deployer may not read the owner's namespace (as RBAC answers: 403), whether or not the owner
    // still exists — here it even was deleted: the claim stands.
    let forbidden = KubeFault::status(403).on_verbs(&["get"]).in_namespace("claim-unreadable-owner");
    owner.testbed.kube().inject(forbidden);
    owner.lds().delete("app", &DeleteParams::default()).await.unwrap();
    let summary = rival.deployer(&[]).await.handle(&sweep(), None).await;
    owner.testbed.kube().clear_faults();
    assert_eq!(summary.unwrap().blocked, 1);
    let (phase, message) = phase_and_message(&rival, "app").await;
    assert_eq!(phase, Some(Phase::Blocked));
    assert!(
        message.contains("owned by LambdaDeployment claim-unreadable-owner/app, which cannot be read"),
        "{message}"
    );
    assert_eq!(owner.code_sha256(&function).await, sha);
    assert_eq!(owner.successful_updates(&function), 1);
}

#[tokio::test]
async fn a_claim_of_another_cluster_is_never_taken_over() {
    let _serial = SERIAL.lock().await;
    let world = World::new("claim-other-cluster").await;
    let c = commit("claim-other-cluster");
    let (arn, function, _) = function_and_artifact(&world, "fn", &c).await;
    // Claimed by a resource of another cluster, whose name does not exist here.
    let elsewhere = "arn:aws:eks:us-east-1:123456789012:cluster/staging";
    tag(&world, &function, &[(OWNER_TAG, "team-x/app"), (CLUSTER_TAG, elsewhere)]).await;
    world.apply_ld("app", &arn, &function, &c).await;
    world.deployer(&[]).await.handle(&sweep(), None).await.unwrap();
    let owned = format!("function {arn} is owned by LambdaDeployment team-x/app of cluster {elsewhere}");
    assert_eq!(phase_and_message(&world, "app").await, (Some(Phase::Blocked), owned));
    assert_eq!(world.successful_updates(&function), 0);
    let reads = world.testbed.kube().requests();
    assert!(!reads.iter().any(|r| r.namespace == "team-x"), "another cluster's owner is not looked up here");
}

#[tokio::test]
async fn a_claim_that_names_no_cluster_is_completed_by_its_owner_and_never_taken_over_once_its_owner_is_gone() {
    let _serial = SERIAL.lock().await;
    let world = World::new("claim-legacy").await;
    let deployer = world.deployer(&[("FUNCTION_OBSERVATION", "list-functions")]).await;
    let c = commit("claim-legacy");
    let (arn, function, _) = function_and_artifact(&world, "owned", &c).await;
    world.apply_ld("owner", &arn, &function, &c).await;
    deployer.handle(&sweep(), None).await.unwrap();
    // As an earlier deployer version left it: the owner tag alone, and a status that never verified the claim.
    world.lambda.untag_resource().resource(&arn).tag_keys(CLUSTER_TAG).send().await.unwrap();
    world
        .lds()
        .patch_status("owner", &Default::default(), &kube::api::Patch::Merge(json!({"status": {"claimedIn": null}})))
        .await
        .unwrap();

    // A sweep that lists functions reads this one's tags once and completes the claim; then it lists only.
    let gets = || world.calls_to(&function, "GetFunction").len();
    let before = gets();
    deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!(gets(), before + 1, "the unverified claim is read once");
    assert_eq!(tags(&world, &function).await.get(CLUSTER_TAG).map(String::as_str), Some(this_cluster().as_str()));
    assert_eq!(world.ld("owner").await.status.unwrap().claimed_in.as_deref(), Some(this_cluster().as_str()));
    deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!(gets(), before + 1, "a verified claim is not read again");

    // A claim without a cluster whose owner is gone here may be another cluster's: never taken over.
    let (arn2, function2, _) = function_and_artifact(&world, "orphan", &c).await;
    tag(&world, &function2, &[(OWNER_TAG, "claim-legacy/gone")]).await;
    world.apply_ld("heir", &arn2, &function2, &c).await;
    deployer.handle(&sweep(), None).await.unwrap();
    let (phase, message) = phase_and_message(&world, "heir").await;
    assert_eq!(phase, Some(Phase::Blocked));
    assert!(message.contains("which no longer exists; the claim names no cluster"), "{message}");
    assert!(message.contains(&format!("remove tag {OWNER_TAG}")), "{message}");
    assert_eq!(world.successful_updates(&function2), 0);
}
