//! Faults with side effects, real races and updates that fail, one at a time, against the testbed: writes that take
//! effect and whose answers are lost (a 5xx, a dropped connection, no answer at all), someone changing the function
//! between the deployer's look and its write, Lambda failing an update after accepting it, S3 answering 5xx and
//! SlowDown, a status decided on an older read racing a newer one, and a bucket without versioning.

mod support;

use std::time::Duration;

use lambda_deployer::crd::{Phase, RETRY_ANNOTATION};
use lambda_deployer::deployer::Summary;
use serde_json::json;
use support::{World, commit};
use testbed::apiserver::KubeFault;
use testbed::aws::{CompetingChange, Fault, FaultAction, LastUpdateStatusReasonCode, Trigger};
use tokio::sync::Mutex;

/// Faults are global to the testbed: the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// One LD for a new function, its artifact uploaded: (function name, its LD's name, the artifact's CodeSha256).
async fn one_ld(world: &World, label: &str) -> (String, String, String) {
    let arn = world.create_function(label, "initial").await;
    let function = world.function_name(label);
    let c = commit(&format!("{}-{label}", world.namespace));
    world.apply_ld(label, &arn, &function, &c).await;
    let (_, sha) = world.upload(&format!("{function}/{c}.zip"), &format!("release of {label}")).await;
    (function, label.to_string(), sha)
}

fn sweep() -> serde_json::Value {
    json!({"action": "sweep"})
}

#[tokio::test]
async fn an_update_applied_whose_answer_is_lost_is_reported_deployed_with_its_event_and_applied_once() {
    let _serial = SERIAL.lock().await;
    let world = World::new("lost-answers").await;
    let aws = world.testbed.aws();
    let cases = [
        ("error", FaultAction::ServiceException),
        ("reset", FaultAction::ConnectionReset),
        ("silence", FaultAction::Timeout { ms: 30_000 }),
    ];
    let mut lds = Vec::new();
    for (label, action) in cases {
        let (function, ld, sha) = one_ld(&world, label).await;
        let fault = Fault::new("UpdateFunctionCode", action).function(&function).after_apply().when(Trigger::Nth(1));
        aws.inject(fault).unwrap();
        lds.push((function, ld, sha));
    }
    // A call without an answer is given up after 1 s.
    let deployer = world.deployer(&[("CALL_TIMEOUT_SECONDS", "1")]).await;

    let summary = deployer.handle(&sweep(), None).await.unwrap();
    aws.clear_faults();
    assert_eq!((summary.deployed, summary.failed), (3, 0), "{summary:?}");
    for (function, ld, sha) in &lds {
        let calls = world.testbed.aws().calls();
        let updates: Vec<_> =
            calls.of("lambda", "UpdateFunctionCode").filter(|c| c.function.as_deref() == Some(function)).collect();
        assert!(
            updates[0].applied && !(200..300).contains(&updates[0].status),
            "the first update was applied and its answer lost: {updates:?}"
        );
        assert_eq!(world.successful_updates(function), 1, "{function}: applied once, never again: {updates:?}");
        assert!(
            updates.iter().skip(1).all(|c| matches!(c.status, 409 | 412)),
            "a retry met its own update: {updates:?}"
        );
        assert_eq!(world.code_sha256(function).await, *sha);
        let status = world.ld(ld).await.status.unwrap();
        assert_eq!(status.phase, Some(Phase::Deployed));
        assert!(status.last_deployed_at.is_some() && status.pending_update.is_none(), "{status:?}");
        assert_eq!(world.event_count(ld, "Deployed").await, 1, "{ld}: one Deployed Event");
    }
}

#[tokio::test]
async fn a_tag_applied_whose_answer_is_lost_still_deploys_once() {
    let _serial = SERIAL.lock().await;
    let world = World::new("lost-tag").await;
    let (function, ld, sha) = one_ld(&world, "fn").await;
    let fault = Fault::new("TagResource", FaultAction::ConnectionReset).function(&function).after_apply();
    world.testbed.aws().inject(fault.when(Trigger::Nth(1))).unwrap();
    let summary = world.deployer(&[]).await.handle(&sweep(), None).await.unwrap();
    world.testbed.aws().clear_faults();
    assert_eq!(summary.deployed, 1, "{summary:?}");
    assert_eq!(world.code_sha256(&function).await, sha);
    assert_eq!(world.successful_updates(&function), 1);
    let tags = world.lambda.list_tags().resource(support::function_arn(&function)).send().await.unwrap();
    assert_eq!(
        tags.tags().and_then(|t| t.get(lambda_deployer::crd::OWNER_TAG)).map(String::as_str),
        Some(format!("{}/{ld}", world.namespace).as_str())
    );
}

#[tokio::test]
async fn a_status_write_and_an_event_applied_whose_answers_are_lost_are_written_once() {
    let _serial = SERIAL.lock().await;
    let world = World::new("lost-kube-answers").await;
    let (_, ld, _) = one_ld(&world, "fn").await;
    let kube = world.testbed.kube();
    let in_namespace = |fault: KubeFault| KubeFault { namespace: Some(world.namespace.clone()), ..fault };
    kube.inject(in_namespace(KubeFault::status(500).after_apply().on_status_writes("lambdadeployments").times(1)));
    kube.inject(in_namespace(KubeFault::reset().after_apply().on_verbs(&["create"]).on_resource("events").times(1)));
    let summary = world.deployer(&[]).await.handle(&sweep(), None).await.unwrap();
    kube.clear_faults();
    assert_eq!((summary.deployed, summary.status_writes, summary.events_recorded), (1, 1, 1), "{summary:?}");
    assert!(summary.errors.is_empty(), "{summary:?}");
    assert_eq!(world.ld(&ld).await.status.unwrap().phase, Some(Phase::Deployed));
    assert_eq!(world.event_count(&ld, "Deployed").await, 1, "the retried Event was not recorded twice");
    let writes: Vec<u16> =
        world.deployer_kube_requests().iter().filter(|r| r.is_status_write()).map(|r| r.status).collect();
    assert_eq!(writes, [500, 409], "the retry met the applied write; the fresh read showed it was ours");
}

#[tokio::test]
async fn a_console_edit_between_look_and_update_is_a_real_conflict_and_the_deploy_still_lands_once() {
    let _serial = SERIAL.lock().await;
    let world = World::new("console-edit").await;
    let (function, ld, sha) = one_ld(&world, "fn").await;
    let edit = FaultAction::CompetingWrite { change: CompetingChange::Configuration };
    world
        .testbed
        .aws()
        .inject(Fault::new("UpdateFunctionCode", edit).function(&function).when(Trigger::Nth(1)))
        .unwrap();
    let summary = world.deployer(&[]).await.handle(&sweep(), None).await.unwrap();
    world.testbed.aws().clear_faults();
    assert_eq!((summary.deployed, summary.failed), (1, 0), "{summary:?}");
    let calls = world.testbed.aws().calls();
    let around: Vec<(String, u16, Option<String>)> = calls
        .calls
        .iter()
        .filter(|c| c.function.as_deref() == Some(&function) && c.operation.starts_with("Update"))
        .map(|c| (c.operation.clone(), c.status, c.access_key_id.clone()))
        .collect();
    let competitor = around
        .iter()
        .position(|(op, _, who)| op == "UpdateFunctionConfiguration" && who.as_deref() == Some("competitor"));
    let refused = around.iter().position(|(op, status, who)| {
        op == "UpdateFunctionCode" && matches!(status, 409 | 412) && who.as_deref() != Some("competitor")
    });
    assert!(
        competitor.is_some() && refused > competitor,
        "the competitor wrote first and the deployer met a real 409/412: {around:?}"
    );
    assert_eq!(world.successful_updates(&function), 1);
    assert_eq!(world.code_sha256(&function).await, sha);
    assert_eq!(world.ld(&ld).await.status.unwrap().phase, Some(Phase::Deployed));
}

#[tokio::test]
async fn another_deployer_deploying_the_same_artifact_first_leaves_one_applied_update_and_a_truthful_status() {
    let _serial = SERIAL.lock().await;
    let world = World::new("same-artifact").await;
    let (function, ld, sha) = one_ld(&world, "fn").await;
    let other = FaultAction::CompetingWrite { change: CompetingChange::SameCode };
    world
        .testbed
        .aws()
        .inject(Fault::new("UpdateFunctionCode", other).function(&function).when(Trigger::Nth(1)))
        .unwrap();
    let summary = world.deployer(&[]).await.handle(&sweep(), None).await.unwrap();
    world.testbed.aws().clear_faults();
    assert_eq!((summary.deployed, summary.up_to_date, summary.failed), (0, 1, 0), "it did not deploy it: {summary:?}");
    let calls = world.testbed.aws().calls();
    let applied: Vec<Option<String>> = calls
        .of("lambda", "UpdateFunctionCode")
        .filter(|c| c.function.as_deref() == Some(&function) && c.applied)
        .map(|c| c.access_key_id.clone())
        .collect();
    assert_eq!(applied, [Some("competitor".to_string())], "exactly one applied update, the other deployer's");
    assert_eq!(world.code_sha256(&function).await, sha);
    let status = world.ld(&ld).await.status.unwrap();
    assert_eq!((status.phase, status.code_sha256.as_deref()), (Some(Phase::Deployed), Some(sha.as_str())));
    assert!(status.last_deployed_at.is_none(), "this deployer did not deploy it: {status:?}");
    assert_eq!(world.event_count(&ld, "Deployed").await, 0);
}

/// When a second deployer starts on a resource whose update a first deployer sent and Lambda fails.
#[derive(PartialEq)]
enum SecondStarts {
    /// While the update is being applied: it sees the update in progress.
    WhileApplying,
    /// After Lambda failed it, before the first deployer's status says so: it sees only the failure.
    BeforeTheFailureIsReported,
}

/// Two deployers and one update Lambda fails (InProgress 2 s); the first deployer's status write takes 3 s. Returns
/// the second deployer's summary, once the first has finished, after checking the update was applied once and the
/// status names the failure.
async fn another_deployers_failing_update(label: &str, second_starts: SecondStarts) -> Summary {
    let world = World::new(label).await;
    let (function, ld, sha) = one_ld(&world, "fn").await;
    let initial = world.code_sha256(&function).await;
    let aws = world.testbed.aws();
    let fails = FaultAction::UpdateFails {
        reason_code: LastUpdateStatusReasonCode::InvalidZipFileException,
        reason: "Could not unpack the zip".into(),
    };
    aws.inject(Fault::new("UpdateFunctionCode", fails).function(&function)).unwrap();
    aws.inject(Fault::new("UpdateFunctionCode", FaultAction::InProgress { ms: 2_000 }).function(&function)).unwrap();
    let slow_status = KubeFault::latency(Duration::from_secs(3)).on_status_writes("lambdadeployments").times(1);
    world.testbed.kube().inject(slow_status.in_namespace(&world.namespace));
    let first = world.deployer(&[]).await;
    let second = world.deployer(&[]).await;

    let first_sweep = tokio::spawn(async move { first.handle(&sweep(), None).await.unwrap() });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let config = world.lambda.get_function().function_name(&function).send().await.unwrap();
        let status = config.configuration().and_then(|c| c.last_update_status()).map(|s| s.as_str().to_string());
        let ready = match second_starts {
            SecondStarts::WhileApplying => world.successful_updates(&function) > 0,
            SecondStarts::BeforeTheFailureIsReported => status.as_deref() == Some("Failed"),
        };
        if ready {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the first deployer's update never got there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if second_starts == SecondStarts::BeforeTheFailureIsReported {
        assert!(world.ld(&ld).await.status.is_none_or(|s| s.failed_update.is_none()), "not reported yet");
    }
    let summary = second.handle(&sweep(), None).await.unwrap();
    let first_summary = first_sweep.await.unwrap();
    aws.clear_faults();

    assert_eq!(world.successful_updates(&function), 1, "the failing update was tried once: {summary:?}");
    assert_eq!((first_summary.deployed, first_summary.failed), (0, 1), "{first_summary:?}");
    assert_eq!(world.code_sha256(&function).await, initial, "Lambda kept the previous code");
    let status = world.ld(&ld).await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed), "{status:?}");
    assert_eq!(status.failed_update.as_ref().map(|f| f.sha256.as_str()), Some(sha.as_str()));
    summary
}

#[tokio::test]
async fn a_deployer_that_finds_another_deployers_update_in_progress_and_failing_reports_it_and_does_not_try_again() {
    let _serial = SERIAL.lock().await;
    let summary = another_deployers_failing_update("failed-elsewhere", SecondStarts::WhileApplying).await;
    assert_eq!((summary.deployed, summary.failed), (0, 1), "the second deployer reports the failure: {summary:?}");
}

#[tokio::test]
async fn a_deployer_that_finds_another_deployers_fresh_unreported_failure_leaves_it_to_be_reported() {
    let _serial = SERIAL.lock().await;
    let summary = another_deployers_failing_update("failed-unreported", SecondStarts::BeforeTheFailureIsReported).await;
    assert_eq!((summary.deployed, summary.deploying), (0, 1), "the second deployer waits for the report: {summary:?}");
}

#[tokio::test]
async fn an_update_lambda_fails_is_reported_with_its_reason_and_not_retried_until_a_new_commit_or_a_retry() {
    let _serial = SERIAL.lock().await;
    let world = World::new("failed-update").await;
    let (function, ld, sha) = one_ld(&world, "fn").await;
    let initial = world.code_sha256(&function).await;
    let fails = FaultAction::UpdateFails {
        reason_code: LastUpdateStatusReasonCode::InsufficientRolePermissions,
        reason: "The function's execution role cannot be assumed".into(),
    };
    world
        .testbed
        .aws()
        .inject(Fault::new("UpdateFunctionCode", fails).function(&function).when(Trigger::Nth(1)))
        .unwrap();
    let deployer = world.deployer(&[]).await;

    let summary = deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!((summary.deployed, summary.failed), (0, 1), "{summary:?}");
    assert_eq!(world.code_sha256(&function).await, initial, "Lambda kept the previous code");
    let status = world.ld(&ld).await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = status.message.clone().unwrap();
    assert!(
        message.contains("InsufficientRolePermissions: The function's execution role cannot be assumed"),
        "{message}"
    );
    assert!(message.contains(RETRY_ANNOTATION), "says how to retry: {message}");
    assert_eq!(status.failed_update.as_ref().map(|f| f.sha256.as_str()), Some(sha.as_str()));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "UpdateFailed"));
    assert_eq!(world.event_count(&ld, "UpdateFailed").await, 1);

    // No redeploy loop: later sweeps neither update nor rewrite anything.
    let writes = world.status_writes();
    for _ in 0..2 {
        let summary = deployer.handle(&sweep(), None).await.unwrap();
        assert_eq!((summary.failed, summary.status_writes, summary.events_recorded), (1, 0, 0), "{summary:?}");
    }
    assert_eq!(world.successful_updates(&function), 1, "the failed artifact was tried once");
    assert_eq!(world.status_writes(), writes);

    // The user asks for a retry (the fault fired once: this time Lambda succeeds).
    world
        .lds()
        .patch(
            &ld,
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {RETRY_ANNOTATION: "1"}}})),
        )
        .await
        .unwrap();
    let summary = deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!(summary.deployed, 1, "{summary:?}");
    assert_eq!(world.code_sha256(&function).await, sha);
    let status = world.ld(&ld).await.status.unwrap();
    assert!(status.phase == Some(Phase::Deployed) && status.failed_update.is_none(), "{status:?}");

    // A new commit whose update fails, then the next commit: deployed without any retry.
    let fails_again = FaultAction::UpdateFails {
        reason_code: LastUpdateStatusReasonCode::InvalidZipFileException,
        reason: "Could not unzip".into(),
    };
    world
        .testbed
        .aws()
        .inject(Fault::new("UpdateFunctionCode", fails_again).function(&function).when(Trigger::Nth(1)))
        .unwrap();
    let (c2, c3) = (commit("failed-update-2"), commit("failed-update-3"));
    world.upload(&format!("{function}/{c2}.zip"), "release 2").await;
    let (_, sha3) = world.upload(&format!("{function}/{c3}.zip"), "release 3").await;
    world.set_commit(&ld, &c2).await;
    assert_eq!(deployer.handle(&sweep(), None).await.unwrap().failed, 1);
    assert_eq!(world.code_sha256(&function).await, sha, "commit 2 failed: commit 1's code runs on");
    world.set_commit(&ld, &c3).await;
    assert_eq!(deployer.handle(&sweep(), None).await.unwrap().deployed, 1);
    world.testbed.aws().clear_faults();
    assert_eq!(world.code_sha256(&function).await, sha3);
}

#[tokio::test]
async fn an_update_an_invocation_could_not_confirm_is_confirmed_or_found_failed_by_the_next() {
    let _serial = SERIAL.lock().await;
    let world = World::new("unconfirmed").await;
    let (good, good_ld, good_sha) = one_ld(&world, "good").await;
    let (bad, bad_ld, _) = one_ld(&world, "bad").await;
    let aws = world.testbed.aws();
    // Both updates take 6 s; the second one then fails.
    for function in [&good, &bad] {
        aws.inject(Fault::new("UpdateFunctionCode", FaultAction::InProgress { ms: 6000 }).function(function)).unwrap();
    }
    let fails = FaultAction::UpdateFails {
        reason_code: LastUpdateStatusReasonCode::EniLimitExceeded,
        reason: "The ENI limit was reached".into(),
    };
    aws.inject(Fault::new("UpdateFunctionCode", fails).function(&bad)).unwrap();
    let deployer = world.deployer(&[("DEADLINE_MARGIN_SECONDS", "1")]).await;

    // An invocation with 8 s: 3 s of work after the 5 s kept for reporting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let summary = deployer.handle(&sweep(), Some(deadline)).await.unwrap();
    assert_eq!(summary.deploying, 2, "{summary:?}");
    for ld in [&good_ld, &bad_ld] {
        let status = world.ld(ld).await.status.unwrap();
        assert_eq!(status.phase, Some(Phase::Deploying), "{status:?}");
        assert!(status.pending_update.is_some(), "the update is remembered: {status:?}");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    let summary = deployer.handle(&sweep(), None).await.unwrap();
    aws.clear_faults();
    assert_eq!((summary.deployed, summary.failed), (1, 1), "{summary:?}");
    assert_eq!(world.code_sha256(&good).await, good_sha);
    assert_eq!(world.event_count(&good_ld, "Deployed").await, 1, "the confirmed update is the deploy it was");
    let status = world.ld(&bad_ld).await.status.unwrap();
    assert!(status.message.as_deref().unwrap_or_default().contains("EniLimitExceeded"), "{status:?}");
    assert_eq!(world.successful_updates(&bad), 1, "the failed update was not sent again");
    assert_eq!(world.successful_updates(&good), 1);
}

#[tokio::test]
async fn s3_server_errors_and_slow_down_are_retried() {
    let _serial = SERIAL.lock().await;
    let world = World::new("s3-errors").await;
    let (function, _, sha) = one_ld(&world, "fn").await;
    let aws = world.testbed.aws();
    aws.inject(Fault::new("HeadObject", FaultAction::SlowDown).service("s3").when(Trigger::Nth(1))).unwrap();
    aws.inject(Fault::new("GetObject", FaultAction::ServiceException).service("s3").when(Trigger::Nth(1))).unwrap();
    let summary = world.deployer(&[]).await.handle(&sweep(), None).await.unwrap();
    aws.clear_faults();
    assert_eq!((summary.deployed, summary.failed), (1, 0), "{summary:?}");
    assert!(summary.retries >= 2 && summary.throttled >= 1, "{summary:?}");
    let calls = aws.calls();
    assert!(calls.of("s3", "HeadObject").any(|c| c.status == 503), "S3 answered SlowDown");
    assert!(calls.of("s3", "GetObject").any(|c| c.status == 500), "S3 answered 500");
    assert_eq!(world.code_sha256(&function).await, sha);
}

#[tokio::test]
async fn a_status_decided_on_an_older_read_never_overwrites_a_newer_one() {
    let _serial = SERIAL.lock().await;
    let world = World::new("status-race").await;
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c = commit("status-race");
    world.apply_ld("app", &arn, &function, &c).await;
    let (slow, fast) = (world.deployer(&[]).await, world.deployer(&[]).await);
    // The slow container finds no artifact yet; its status write then takes 3 s to reach the server.
    world.testbed.kube().inject(KubeFault {
        namespace: Some(world.namespace.clone()),
        ..KubeFault::latency(Duration::from_secs(3)).on_status_writes("lambdadeployments").times(1)
    });
    let payload = sweep();
    let slow_sweep = slow.handle(&payload, None);
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // CI uploads; the upload's event reaches another container, which deploys and writes Deployed.
        let key = format!("{function}/{c}.zip");
        let (version, _) = world.upload(&key, "release").await;
        fast.handle(&world.s3_event(&key, &version), None).await.unwrap()
    };
    let (slow_summary, fast_summary) = tokio::join!(slow_sweep, meanwhile);
    let slow_summary = slow_summary.unwrap();
    assert_eq!(fast_summary.deployed, 1, "{fast_summary:?}");
    let status = world.ld("app").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Deployed), "the older decision (waiting) did not overwrite: {slow_summary:?}");
    let writes: Vec<u16> =
        world.deployer_kube_requests().iter().filter(|r| r.is_status_write()).map(|r| r.status).collect();
    assert!(writes.contains(&409), "the slow write was refused on its precondition: {writes:?}");
}

#[tokio::test]
async fn an_unversioned_artifact_bucket_is_deployed_by_etag_end_to_end() {
    let _serial = SERIAL.lock().await;
    let world = World::new("unversioned").await;
    let bucket = "unversioned-artifacts";
    world.s3.create_bucket().bucket(bucket).send().await.unwrap();
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c = commit("unversioned");
    world.apply_ld("app", &arn, &function, &c).await;
    let deployer = world.deployer(&[("ARTIFACT_BUCKET", bucket)]).await;
    let key = format!("{function}/{c}.zip");

    let (version, sha) = world.put_zip_to(bucket, &key, "release", None).await;
    assert!(version.is_empty(), "the bucket keeps no versions");
    let mut event = world.s3_event(&key, "");
    event["Records"][0]["s3"]["bucket"]["name"] = json!(bucket);
    event["Records"][0]["s3"]["object"].as_object_mut().unwrap().remove("versionId");
    let summary = deployer.handle(&event, None).await.unwrap();
    assert_eq!(summary.deployed, 1, "{summary:?}");
    assert_eq!(world.code_sha256(&function).await, sha);
    let calls = world.testbed.aws().calls();
    let update = calls.of("lambda", "UpdateFunctionCode").find(|c| c.function.as_deref() == Some(&function)).unwrap();
    assert_eq!(
        (update.params.get("S3Bucket").map(String::as_str), update.params.get("S3ObjectVersion")),
        (Some(bucket), None)
    );
    let artifact = world.ld("app").await.status.unwrap().artifact.unwrap();
    assert!(artifact.version_id.is_none() && artifact.etag.is_some(), "{artifact:?}");

    let summary = deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!((summary.up_to_date, summary.status_writes), (1, 0), "in sync by ETag: {summary:?}");

    // The same key overwritten with other bytes (a rebuilt artifact): a new ETag, hashed again and deployed.
    let (_, rebuilt) = world.put_zip_to(bucket, &key, "release, rebuilt", None).await;
    let summary = deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!(summary.deployed, 1, "{summary:?}");
    assert_eq!(world.code_sha256(&function).await, rebuilt);
}
