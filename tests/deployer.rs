//! The deployer end to end against the testbed: real HTTP and TLS, EKS token authentication, RBAC from
//! crds/rbac.yaml, Lambda's real contract (RevisionId, InProgress, quotas) and S3 versioning.

mod support;

use std::time::Duration;

use lambda_deployer::crd::Phase;
use serde_json::json;
use support::{World, commit};
use testbed::aws::{Fault, FaultAction};
use testbed::identity::ARTIFACT_BUCKET;

#[tokio::test]
async fn ld_applied_before_its_artifact_is_deployed_by_the_upload_event() {
    let world = World::new("applied-first").await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c1 = commit("applied-first-1");
    world.apply_ld("orders", &arn, &function, &c1).await;
    let deployer = world.deployer(&[]).await;

    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.waiting, 1);
    assert_eq!(world.ld("orders").await.status.unwrap().phase, Some(Phase::WaitingForArtifact));
    assert_eq!(
        world.lambda_calls(&function),
        2,
        "only the test's own CreateFunction/GetFunction: a missing artifact costs no Lambda call"
    );

    let key = format!("{function}/{c1}.zip");
    let (version, sha) = world.upload(&key, "release 1").await;
    let summary = deployer.handle(&world.s3_event(&key, &version), None).await.unwrap();
    assert_eq!((summary.trigger.as_str(), summary.deployed), ("artifact", 1));

    assert_eq!(world.code_sha256(&function).await, sha);
    let status = world.ld("orders").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Deployed));
    assert_eq!(status.deployed_commit.as_deref(), Some(c1.as_str()));
    assert_eq!(status.code_sha256.as_deref(), Some(sha.as_str()));
    let artifact = status.artifact.expect("artifact on status");
    assert_eq!(
        (artifact.bucket.as_str(), artifact.key.as_str(), artifact.version_id.as_deref()),
        (ARTIFACT_BUCKET, key.as_str(), Some(version.as_str()))
    );
    assert!(world.event_reasons("orders").await.contains(&"Deployed".to_string()));
    let update = world.testbed.aws().calls();
    let update = update.of("lambda", "UpdateFunctionCode").find(|c| c.function.as_deref() == Some(&function)).unwrap();
    assert_eq!(update.params.get("S3ObjectVersion"), Some(&version), "the exact verified version is deployed");
    assert!(update.params.contains_key("RevisionId"), "updates are guarded by RevisionId");
}

#[tokio::test]
async fn artifact_uploaded_before_the_ld_is_a_no_op_event_then_the_sweep_deploys_it() {
    let world = World::new("uploaded-first").await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c1 = commit("uploaded-first");
    let key = format!("{function}/{c1}.zip");
    let (version, sha) = world.upload(&key, "release 1").await;
    let deployer = world.deployer(&[]).await;
    let calls_before = world.lambda_calls(&function);

    let summary = deployer.handle(&world.eventbridge_event(&key, &version), None).await.unwrap();
    assert_eq!((summary.considered, summary.deployed), (0, 0));
    assert_eq!(world.lambda_calls(&function), calls_before, "no Lambda call for an artifact nobody declared");

    world.apply_ld("orders", &arn, &function, &c1).await;
    let summary = deployer.handle(&support::fixture("eventbridge-scheduled-event.json"), None).await.unwrap();
    assert_eq!((summary.trigger.as_str(), summary.deployed), ("schedule", 1));
    assert_eq!(world.code_sha256(&function).await, sha);
}

#[tokio::test]
async fn duplicate_events_and_an_event_racing_a_sweep_deploy_exactly_once() {
    let world = World::new("duplicates").await;
    let deployer = world.deployer(&[]).await;

    // The same S3 event delivered twice.
    let arn = world.create_function("dup", "initial").await;
    let function = world.function_name("dup");
    let c1 = commit("duplicates-1");
    world.apply_ld("dup", &arn, &function, &c1).await;
    let key = format!("{function}/{c1}.zip");
    let (version, _) = world.upload(&key, "dup release").await;
    let event = world.s3_event(&key, &version);
    deployer.handle(&event, None).await.unwrap();
    let again = deployer.handle(&event, None).await.unwrap();
    assert_eq!((again.deployed, again.up_to_date), (0, 1));
    assert_eq!(world.successful_updates(&function), 1);

    // An event and a sweep at the same time, from two deployer instances (two containers), on a function its LD
    // already owns. Both looks at the function are answered 1.5 s late, so both see the same RevisionId before
    // either updates: the race surely happens.
    let arn = world.create_function("race", "initial").await;
    let function = world.function_name("race");
    let c2 = commit("duplicates-2");
    world.apply_ld("race", &arn, &function, &c2).await;
    let key = format!("{function}/{c2}.zip");
    let (version, sha) = world.upload(&key, "race release").await;
    let owner = format!("{}/race", world.namespace);
    let claim = world.lambda.tag_resource().resource(&arn).tags(lambda_deployer::crd::OWNER_TAG, owner);
    claim.tags(lambda_deployer::crd::CLUSTER_TAG, support::this_cluster()).send().await.unwrap();
    let other = world.deployer(&[]).await;
    let slow_look = Fault::new("GetFunction", FaultAction::Latency { ms: 1500 }).function(&function).after_apply();
    world.testbed.aws().inject(slow_look.when(testbed::aws::Trigger::Next(2))).unwrap();
    let event = world.s3_event(&key, &version);
    let sweep = json!({"action": "sweep"});
    let (a, b) = tokio::join!(deployer.handle(&event, None), other.handle(&sweep, None));
    world.testbed.aws().clear_faults();
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(world.successful_updates(&function), 1, "exactly one UpdateFunctionCode succeeded");
    assert_eq!(world.code_sha256(&function).await, sha);
    assert_eq!(a.failed + b.failed, 0, "the loser re-observes instead of failing: {a:?} {b:?}");
    let lost = world.calls_to(&function, "UpdateFunctionCode").into_iter().filter(|s| matches!(s, 409 | 412)).count();
    assert_eq!(lost, 1, "the race happened: the loser's update met the winner's (409 or 412)");
    assert_eq!(a.deployed + b.deployed, 1, "one deploy reported: {a:?} {b:?}");

    // Two sweeps at the same time over the same resources, both looking before either updates.
    let c3 = commit("duplicates-3");
    world.set_commit("dup", &c3).await;
    world.set_commit("race", &c3).await;
    let (_, dup_sha) = world.upload(&format!("{}/{c3}.zip", world.function_name("dup")), "dup release 3").await;
    let (_, race_sha) = world.upload(&format!("{}/{c3}.zip", world.function_name("race")), "race release 3").await;
    for label in ["dup", "race"] {
        let slow_look = Fault::new("GetFunction", FaultAction::Latency { ms: 1500 })
            .function(&world.function_name(label))
            .after_apply();
        world.testbed.aws().inject(slow_look.when(testbed::aws::Trigger::Next(2))).unwrap();
    }
    let (a, b) = tokio::join!(deployer.handle(&sweep, None), other.handle(&sweep, None));
    world.testbed.aws().clear_faults();
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.deployed + b.deployed, a.failed + b.failed), (2, 0), "{a:?} {b:?}");
    assert_eq!(world.successful_updates(&world.function_name("dup")), 2);
    assert_eq!(world.successful_updates(&function), 2);
    assert_eq!(world.code_sha256(&world.function_name("dup")).await, dup_sha);
    assert_eq!(world.code_sha256(&function).await, race_sha);
    for label in ["dup", "race"] {
        let statuses = world.calls_to(&world.function_name(label), "UpdateFunctionCode");
        assert!(statuses.iter().any(|s| matches!(s, 409 | 412)), "{label}: the two sweeps raced: {statuses:?}");
    }
}

#[tokio::test]
async fn out_of_band_change_is_restored_and_an_in_sync_sweep_changes_nothing() {
    let world = World::new("drift").await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c1 = commit("drift-1");
    world.apply_ld("orders", &arn, &function, &c1).await;
    let (_, sha) = world.upload(&format!("{function}/{c1}.zip"), "release 1").await;
    let deployer = world.deployer(&[]).await;
    assert_eq!(deployer.handle(&json!({"action": "sweep"}), None).await.unwrap().deployed, 1);

    // Someone deploys by hand.
    let (hotfix, hotfix_sha) = support::zip("hand-made hotfix");
    world
        .lambda
        .update_function_code()
        .function_name(&function)
        .zip_file(aws_sdk_lambda::primitives::Blob::new(hotfix))
        .send()
        .await
        .unwrap();
    assert_eq!(world.code_sha256(&function).await, hotfix_sha);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.deployed, 1);
    assert_eq!(world.code_sha256(&function).await, sha);
    assert!(world.event_reasons("orders").await.contains(&"DriftCorrected".to_string()));

    let updates = world.successful_updates(&function);
    let writes = world.status_writes();
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!((summary.up_to_date, summary.status_writes), (1, 0));
    assert_eq!(world.successful_updates(&function), updates, "an in-sync sweep makes no UpdateFunctionCode");
    assert_eq!(world.status_writes(), writes, "an in-sync sweep writes no status");
}

#[tokio::test]
async fn changing_the_commit_back_rolls_the_function_back() {
    let world = World::new("rollback").await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let (old, new) = (commit("rollback-old"), commit("rollback-new"));
    let (_, old_sha) = world.upload(&format!("{function}/{old}.zip"), "old release").await;
    let (_, new_sha) = world.upload(&format!("{function}/{new}.zip"), "new release").await;
    let deployer = world.deployer(&[]).await;

    world.apply_ld("orders", &arn, &function, &new).await;
    deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(world.code_sha256(&function).await, new_sha);

    world.set_commit("orders", &old).await;
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.deployed, 1);
    assert_eq!(world.code_sha256(&function).await, old_sha);
    let status = world.ld("orders").await.status.unwrap();
    assert_eq!(status.deployed_commit.as_deref(), Some(old.as_str()));
    assert_eq!(status.observed_generation, world.ld("orders").await.metadata.generation);
}

#[tokio::test]
async fn problems_with_some_lds_are_reported_while_the_others_still_deploy() {
    let world = World::new("mixed").await;
    let deployer = world.deployer(&[]).await;
    let c = commit("mixed");

    let waiting_arn = world.create_function("waiting", "initial").await;
    let waiting_fn = world.function_name("waiting");
    let waiting_sha = world.code_sha256(&waiting_fn).await;
    world.apply_ld("waiting", &waiting_arn, &waiting_fn, &c).await;

    let missing_fn = world.function_name("missing");
    world.apply_ld("missing", &support::function_arn(&missing_fn), "shared", &c).await;

    world.apply_ld("foreign", "arn:aws:lambda:eu-west-1:999999999999:function:someone-else", "shared", &c).await;

    let shared_arn = world.create_function("shared", "initial").await;
    world.apply_ld("a-owner", &shared_arn, "shared", &c).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creation timestamps have second resolution
    world.apply_ld("b-second", &shared_arn, "shared", &c).await;

    let good_arn = world.create_function("good", "initial").await;
    let good_fn = world.function_name("good");
    world.apply_ld("good", &good_arn, &good_fn, &c).await;
    let (_, good_sha) = world.upload(&format!("{good_fn}/{c}.zip"), "good release").await;
    world.upload(&format!("shared/{c}.zip"), "shared release").await;

    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!((summary.deployed, summary.waiting, summary.failed, summary.blocked), (2, 1, 1, 2), "{summary:?}");

    let phase_and_message = |ld: lambda_deployer::crd::LambdaDeployment| {
        let status = ld.status.unwrap();
        (status.phase.unwrap(), status.message.unwrap_or_default())
    };
    let (phase, message) = phase_and_message(world.ld("waiting").await);
    assert_eq!(phase, Phase::WaitingForArtifact);
    assert!(message.contains(&format!("s3://{ARTIFACT_BUCKET}/{waiting_fn}/{c}.zip")), "{message}");
    assert_eq!(world.code_sha256(&waiting_fn).await, waiting_sha, "function untouched");
    assert_eq!(world.calls_to(&waiting_fn, "UpdateFunctionCode").len(), 0);

    let (phase, message) = phase_and_message(world.ld("missing").await);
    assert_eq!(phase, Phase::Failed);
    assert!(message.contains("does not exist"), "{message}");

    let (phase, message) = phase_and_message(world.ld("foreign").await);
    assert_eq!(phase, Phase::Blocked);
    assert!(message.contains("not in ALLOWED_FUNCTION_ARNS"), "{message}");

    assert_eq!(world.ld("a-owner").await.status.unwrap().phase, Some(Phase::Deployed));
    let (phase, message) = phase_and_message(world.ld("b-second").await);
    assert_eq!(phase, Phase::Blocked);
    assert!(message.contains(&format!("{}/a-owner", world.namespace)), "names the owner: {message}");

    assert_eq!(world.code_sha256(&good_fn).await, good_sha);

    // Ownership is sticky: the second LD stays blocked on the next sweep, the function does not flap.
    let updates = world.successful_updates(&world.function_name("shared"));
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.blocked, 2);
    assert_eq!(world.successful_updates(&world.function_name("shared")), updates);
}

#[tokio::test]
async fn conflicts_stale_revisions_and_throttling_do_not_stop_convergence() {
    let world = World::new("faults").await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c1 = commit("faults-1");
    world.apply_ld("orders", &arn, &function, &c1).await;
    let (_, sha) = world.upload(&format!("{function}/{c1}.zip"), "release 1").await;
    let aws = world.testbed.aws();
    // Scripted in sequence: the nth UpdateFunctionCode (and the first GetFunction) of this function fails so.
    let fault = |operation: &str, action: FaultAction, nth: u64| {
        Fault::new(operation, action).function(&function).when(testbed::aws::Trigger::Nth(nth))
    };
    aws.inject(fault("GetFunction", FaultAction::ServiceException, 1)).unwrap();
    aws.inject(fault("UpdateFunctionCode", FaultAction::Conflict, 1)).unwrap();
    aws.inject(fault("UpdateFunctionCode", FaultAction::StaleRevision, 2)).unwrap();
    aws.inject(fault("UpdateFunctionCode", FaultAction::Throttle, 3)).unwrap();
    aws.inject(fault("UpdateFunctionCode", FaultAction::Throttle, 4)).unwrap();
    aws.inject(fault("UpdateFunctionCode", FaultAction::InProgress { ms: 1500 }, 5)).unwrap();
    let deployer = world.deployer(&[]).await;

    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.deployed, 1, "{summary:?}");
    assert!(summary.retries >= 2, "throttling and 5xx were retried: {summary:?}");
    assert_eq!(world.code_sha256(&function).await, sha);
    assert_eq!(world.successful_updates(&function), 1);
    let rejected = world.calls_to(&function, "UpdateFunctionCode").iter().filter(|s| **s >= 400).count();
    assert!(rejected >= 3, "the testbed really rejected updates ({rejected})");
    assert_eq!(world.ld("orders").await.status.unwrap().phase, Some(Phase::Deployed));
}

#[tokio::test]
async fn plan_reports_what_a_sweep_would_do_and_changes_nothing() {
    let world = World::new("dry-run").await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let before = world.code_sha256(&function).await;
    let c1 = commit("dry-run");
    world.apply_ld("orders", &arn, &function, &c1).await;
    let later_arn = world.create_function("later", "initial").await;
    world.apply_ld("later", &later_arn, "later", &c1).await;
    world.upload(&format!("{function}/{c1}.zip"), "release").await;
    let deployer = world.deployer(&[]).await;

    let summary = deployer.handle(&support::fixture("direct-plan.json"), None).await.unwrap();
    assert!(summary.dry_run);
    assert_eq!((summary.would_deploy, summary.waiting, summary.deployed), (1, 1, 0), "{summary:?}");
    let decisions: Vec<(&str, &str)> =
        summary.decisions.iter().map(|d| (d.resource.as_str(), d.decision.as_str())).collect();
    let orders = format!("{}/orders", world.namespace);
    assert!(decisions.iter().any(|(r, d)| *r == orders && d.starts_with("would deploy s3://")), "{decisions:?}");
    assert!(decisions.iter().any(|(_, d)| d.starts_with("waiting for s3://")), "{decisions:?}");
    assert_eq!(world.code_sha256(&function).await, before);
    assert_eq!(world.calls_to(&function, "UpdateFunctionCode").len(), 0);
    assert_eq!(world.calls_to(&function, "TagResource").len(), 0);
    assert_eq!(world.status_writes(), 0);
    assert!(world.ld("orders").await.status.is_none());
}

#[tokio::test]
async fn the_status_the_deployer_writes_survives_schema_pruning() {
    let world = World::new("pruning").await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c1 = commit("pruning");
    world.apply_ld("orders", &arn, &function, &c1).await;
    world.upload(&format!("{function}/{c1}.zip"), "release").await;
    world.deployer(&[]).await.handle(&json!({"action": "sweep"}), None).await.unwrap();

    let ld = world.ld("orders").await;
    let status = ld.status.clone().unwrap();
    assert_eq!(status.observed_generation, ld.metadata.generation);
    assert!(status.last_deployed_at.is_some() && status.message.is_some() && status.code_sha256.is_some());
    let artifact = status.artifact.unwrap();
    assert!(artifact.version_id.is_some() && !artifact.sha256.is_empty());
    let types: Vec<(&str, &str, &str)> =
        status.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
    let kstatus = [("Reconciling", "False", "Deployed"), ("Stalled", "False", "Deployed")];
    assert_eq!(
        types,
        [[("Ready", "True", "Deployed")].as_slice(), &kstatus, &[("ArtifactAvailable", "True", "Found")]].concat()
    );
    assert!(status.claimed_in.is_some(), "the claim's cluster is kept");
    assert!(status.conditions.iter().all(|c| c.observed_generation == ld.metadata.generation && !c.message.is_empty()));
}

#[tokio::test]
async fn artifact_hashes_come_from_s3_checksums_or_one_download_remembered_on_the_status() {
    let world = World::new("hashing").await;
    let deployer = world.deployer(&[]).await;
    let c1 = commit("hashing");

    let arn = world.create_function("checksum", "initial").await;
    let function = world.function_name("checksum");
    world.apply_ld("checksum", &arn, &function, &c1).await;
    let with_checksum = format!("{function}/{c1}.zip");
    world.upload_with_checksum(&with_checksum, "checksummed release").await;

    let arn = world.create_function("plain", "initial").await;
    let function = world.function_name("plain");
    world.apply_ld("plain", &arn, &function, &c1).await;
    let plain = format!("{function}/{c1}.zip");
    world.upload(&plain, "plain release").await;

    for _ in 0..3 {
        deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    }
    assert_eq!(world.downloads(&with_checksum), (1, 4), "the checksum is used; only the zip signature is read, once");
    let (downloads, bytes) = world.downloads(&plain);
    assert_eq!(downloads, 1, "hashed once, then remembered by version on the status");
    assert!(bytes > 100, "the whole object was hashed: {bytes} bytes");
    assert_eq!(world.ld("plain").await.status.unwrap().phase, Some(Phase::Deployed));

    // A re-upload to the same key is a new version: hashed (once) and deployed.
    let (_, sha) = world.upload(&plain, "plain release, rebuilt").await;
    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.deployed, 1);
    assert_eq!(world.code_sha256(&function).await, sha);
    assert_eq!(world.downloads(&plain).0, 2);
}

#[tokio::test]
async fn an_upload_event_touches_only_the_lds_of_that_artifact_through_one_field_selected_list() {
    let world = World::new("event-path").await;
    let deployer = world.deployer(&[]).await;
    let c1 = commit("event-path");
    // Two environments deploy the same artifact; a bystander must not be touched.
    let artifact = "orders";
    for env in ["preview", "staging"] {
        let arn = world.create_function(env, "initial").await;
        world.apply_ld(env, &arn, artifact, &c1).await;
    }
    let bystander_arn = world.create_function("bystander", "initial").await;
    world.apply_ld("bystander", &bystander_arn, "payments", &c1).await;
    let key = format!("{artifact}/{c1}.zip");
    let (version, sha) = world.upload(&key, "orders release").await;
    let bystander = world.function_name("bystander");
    let before = world.lambda_calls(&bystander);

    let requests_before = world.deployer_kube_requests().len();
    let summary = deployer.handle(&world.s3_event(&key, &version), None).await.unwrap();
    assert_eq!((summary.considered, summary.deployed), (2, 2), "{summary:?}");
    for env in ["preview", "staging"] {
        assert_eq!(world.code_sha256(&world.function_name(env)).await, sha);
    }
    assert_eq!(world.lambda_calls(&bystander), before, "the bystander's function is not even read");
    let lists: Vec<_> =
        world.deployer_kube_requests()[requests_before..].iter().filter(|r| r.verb == "list").cloned().collect();
    assert_eq!(lists.len(), 1, "one field-selected list: {lists:?}");
    assert!(lists[0].query.contains("fieldSelector"), "{:?}", lists[0]);

    // A cluster that rejects the field selector: the deployer lists and filters instead.
    let c2 = commit("event-path-2");
    world.set_commit("preview", &c2).await;
    let key2 = format!("{artifact}/{c2}.zip");
    let (version2, sha2) = world.upload(&key2, "orders release 2").await;
    world.testbed.kube().inject(testbed::apiserver::KubeFault {
        namespace: Some(world.namespace.clone()),
        ..testbed::apiserver::KubeFault::status(400).on_verbs(&["list"]).on_resource("lambdadeployments").times(1)
    });
    let summary = deployer.handle(&world.eventbridge_event(&key2, &version2), None).await.unwrap();
    assert_eq!((summary.considered, summary.deployed), (1, 1), "{summary:?}");
    assert_eq!(world.code_sha256(&world.function_name("preview")).await, sha2);
    assert_eq!(world.code_sha256(&world.function_name("staging")).await, sha, "staging keeps its commit");

    // The next release of an LD already deployed: the fresh list is not read again; the kube calls are that list,
    // the status write and the `Deployed` Event.
    let c3 = commit("event-path-3");
    world.set_commit("staging", &c3).await;
    let key3 = format!("{artifact}/{c3}.zip");
    let (version3, sha3) = world.upload(&key3, "orders release 3").await;
    let requests_before = world.deployer_kube_requests().len();
    let summary = deployer.handle(&world.s3_event(&key3, &version3), None).await.unwrap();
    assert_eq!((summary.considered, summary.deployed), (1, 1), "{summary:?}");
    assert_eq!(world.code_sha256(&world.function_name("staging")).await, sha3);
    let calls: Vec<String> = world.deployer_kube_requests()[requests_before..]
        .iter()
        .map(|r| format!("{} {}/{}", r.verb, r.resource, r.subresource))
        .collect();
    assert_eq!(calls, ["list lambdadeployments/", "patch lambdadeployments/status", "create events/"]);
}

#[tokio::test]
async fn a_sweep_near_its_deadline_stops_starting_work_and_the_next_sweep_finishes() {
    let world = World::new("deadline").await;
    let deployer = world.deployer(&[("MAX_CONCURRENCY", "1"), ("DEADLINE_MARGIN_SECONDS", "1")]).await;
    let c1 = commit("deadline");
    for name in ["a", "b", "c"] {
        let arn = world.create_function(name, "initial").await;
        let function = world.function_name(name);
        world.apply_ld(name, &arn, &function, &c1).await;
        world.upload(&format!("{function}/{c1}.zip"), &format!("{name} release")).await;
        // Each update takes 1.5 s to be accepted: acting, which holds the only slot (waiting for it to finish
        // would not).
        world
            .testbed
            .aws()
            .inject(Fault::new("UpdateFunctionCode", FaultAction::Latency { ms: 1500 }).function(&function))
            .unwrap();
    }

    // The deployer keeps the last 5 s of an invocation for reporting: 2.5 s of work time here.
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_millis(7500);
    let summary = deployer.handle(&json!({"action": "sweep"}), Some(deadline)).await.unwrap();
    assert_eq!((summary.deployed, summary.skipped), (1, 2), "{summary:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "returned in time, with time left to report");
    let phases: Vec<Option<Phase>> = futures::future::join_all(["a", "b", "c"].map(|n| world.ld(n)))
        .await
        .into_iter()
        .map(|ld| ld.status.and_then(|s| s.phase))
        .collect();
    assert_eq!(phases.iter().filter(|p| **p == Some(Phase::Deployed)).count(), 1);
    assert_eq!(phases.iter().filter(|p| p.is_none()).count(), 2, "skipped LDs are not half-reported: {phases:?}");

    let summary = deployer.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!((summary.deployed, summary.up_to_date, summary.skipped), (2, 1, 0), "{summary:?}");
}
