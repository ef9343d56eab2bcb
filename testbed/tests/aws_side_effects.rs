//! When what the client hears and what happened part: calls that took effect although their response failed, a
//! competing writer that changes the function first, updates that end Failed — as aws-sdk-lambda meets them.
//! The fast model (updates InProgress a fixed 300 ms), quotas off: every fault here is scoped to its own function.

mod aws_support;

use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::update_alias::UpdateAliasError;
use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{LastUpdateStatus, LastUpdateStatusReasonCode};
use aws_support::*;
use serde_json::json;
use testbed::aws::{Call, CompetingChange, Fault, FaultAction, LastUpdateStatusReasonCode as ReasonCode, Trigger};
use testbed::identity::{ARTIFACT_BUCKET, AwsIdentity};
use testbed::up::{Testbed, TestbedOptions};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

const IN_PROGRESS_MS: u64 = 300;

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions { quotas: false, ..TestbedOptions::fast() }).await
}

fn once(operation: &str, action: FaultAction, function: &str) -> Fault {
    Fault::new(operation, action).function(function).when(Trigger::Nth(1))
}

/// Polls (≤ 5 s) for the first logged call of `operation` on `function` (a call whose client went away is logged
/// when hyper notices).
async fn logged(tb: &Testbed, operation: &str, function: &str) -> Call {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(call) = calls_about(tb, operation, function).into_iter().next() {
            return call;
        }
        assert!(Instant::now() < deadline, "no {operation} on {function} logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_conflict_or_stale(err: &UpdateFunctionCodeError) -> bool {
    matches!(
        err,
        UpdateFunctionCodeError::ResourceConflictException(_) | UpdateFunctionCodeError::PreconditionFailedException(_)
    )
}

#[tokio::test]
async fn an_update_answered_500_after_it_was_applied_changed_the_code_and_its_retry_meets_409_or_412() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("after500");
    let (one, two) = (zip("one"), zip("two"));
    let before = create_function(&lambda, &name, &one).await;
    let revision = before.revision_id().unwrap();
    let fault = once("UpdateFunctionCode", FaultAction::ServiceException, &name).after_apply();
    tb.aws().inject(fault).unwrap();

    let update = || lambda.update_function_code().function_name(&name).zip_file(Blob::new(two.clone()));
    let err = update().revision_id(revision).send().await.unwrap_err().into_service_error();
    assert!(matches!(err, UpdateFunctionCodeError::ServiceException(_)), "{err:?}");
    let now = lambda.get_function().function_name(&name).send().await.unwrap();
    assert_eq!(now.configuration().unwrap().code_sha256(), Some(sha256_b64(&two).as_str()), "the code changed");
    assert_eq!(tb.aws().history(&name), Some(vec![sha256_b64(&one), sha256_b64(&two)]));

    let retry = update().revision_id(revision).send().await.unwrap_err().into_service_error();
    assert!(is_conflict_or_stale(&retry), "the retry meets the update it made itself: {retry:?}");
    let calls = calls_about(tb, "UpdateFunctionCode", &name);
    assert_eq!(
        calls.iter().map(|c| (c.status, c.applied)).collect::<Vec<_>>(),
        [(500, true), (retry_status(&retry), false)]
    );
    assert_eq!(calls[0].in_progress_ms, Some(IN_PROGRESS_MS));
}

fn retry_status(err: &UpdateFunctionCodeError) -> u16 {
    if matches!(err, UpdateFunctionCodeError::ResourceConflictException(_)) { 409 } else { 412 }
}

#[tokio::test]
async fn a_version_published_and_an_alias_moved_behind_a_500_exist_all_the_same() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("after500alias");
    create_function(&lambda, &name, &zip("one")).await;
    lambda.publish_version().function_name(&name).send().await.unwrap();
    let alias = lambda.create_alias().function_name(&name).name("live").function_version("1").send().await.unwrap();
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.unwrap();
    settled(&lambda, &name).await;
    for operation in ["PublishVersion", "UpdateAlias"] {
        tb.aws().inject(once(operation, FaultAction::ServiceException, &name).after_apply()).unwrap();
    }

    let published = lambda.publish_version().function_name(&name).send().await;
    assert!(published.unwrap_err().into_service_error().is_service_exception());
    let versions = lambda.list_versions_by_function().function_name(&name).send().await.unwrap();
    let numbers: Vec<_> = versions.versions().iter().filter_map(|v| v.version()).collect();
    assert_eq!(numbers, ["$LATEST", "1", "2"], "version 2 was published");

    let moved = lambda
        .update_alias()
        .function_name(&name)
        .name("live")
        .function_version("2")
        .revision_id(alias.revision_id().unwrap())
        .send()
        .await;
    assert!(moved.unwrap_err().into_service_error().is_service_exception());
    let live = lambda.get_alias().function_name(&name).name("live").send().await.unwrap();
    assert_eq!(live.function_version(), Some("2"), "the alias moved");
    let again = lambda
        .update_alias()
        .function_name(&name)
        .name("live")
        .function_version("2")
        .revision_id(alias.revision_id().unwrap())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(again, UpdateAliasError::PreconditionFailedException(_)), "its retry meets 412: {again:?}");
}

#[tokio::test]
async fn a_slow_answer_tells_the_function_as_it_was_when_the_call_arrived() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("slowanswer");
    let before = create_function(&lambda, &name, &zip("one")).await.revision_id().unwrap_or_default().to_string();
    let slow = FaultAction::Latency { ms: 800 };
    tb.aws().inject(once("GetFunction", slow, &name).after_apply()).unwrap();

    let look = lambda.get_function().function_name(&name).send();
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.unwrap()
    };
    let started = Instant::now();
    let (look, updated) = tokio::join!(look, meanwhile);
    let seen = look.unwrap().configuration().and_then(|c| c.revision_id().map(String::from));
    assert!(started.elapsed() >= Duration::from_millis(800), "the answer was held");
    assert_eq!(seen.as_deref(), Some(before.as_str()), "the answer describes the function before the update");
    assert_ne!(updated.revision_id(), Some(before.as_str()));
}

#[tokio::test]
async fn a_connection_reset_after_tag_resource_left_the_tag() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("resettag");
    create_function(&lambda, &name, &zip("code")).await;
    tb.aws().inject(once("TagResource", FaultAction::ConnectionReset, &name).after_apply()).unwrap();

    let arn = function_arn(&name);
    let err = lambda.tag_resource().resource(&arn).tags("team", "deploy").send().await.unwrap_err();
    assert!(err.as_service_error().is_none(), "no response at all: {err:?}");
    let tags = lambda.list_tags().resource(&arn).send().await.unwrap();
    assert_eq!(tags.tags().unwrap().get("team").map(String::as_str), Some("deploy"));
    let call = logged(tb, "TagResource", &name).await;
    assert_eq!((call.status, call.applied), (0, true));
}

#[tokio::test]
async fn a_timeout_after_apply_holds_the_connection_until_the_client_gives_up_and_the_update_took_effect() {
    let tb = testbed().await;
    let conf = sdk_config(tb, &AwsIdentity::admin(), 1).await;
    let impatient = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&conf)
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_millis(800)).build())
            .build(),
    );
    let name = unique("timeout");
    create_function(&impatient, &name, &zip("one")).await;
    tb.aws().inject(once("UpdateFunctionCode", FaultAction::Timeout { ms: 10_000 }, &name).after_apply()).unwrap();

    let started = Instant::now();
    let err = impatient.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await;
    let waited = started.elapsed();
    assert!(matches!(err, Err(SdkError::TimeoutError(_))), "the client's own timeout fired: {err:?}");
    assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(5), "held, unanswered: {waited:?}");
    let now = impatient.get_function_configuration().function_name(&name).send().await.unwrap();
    assert_eq!(now.code_sha256(), Some(sha256_b64(&zip("two")).as_str()), "the update took effect");
    let call = logged(tb, "UpdateFunctionCode", &name).await;
    assert_eq!((call.status, call.applied), (0, true), "logged when the client went away");
}

#[tokio::test]
async fn a_timeout_before_apply_drops_the_call_unserved() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("timeoutbefore");
    create_function(&lambda, &name, &zip("one")).await;
    tb.aws().inject(once("UpdateFunctionCode", FaultAction::Timeout { ms: 400 }, &name)).unwrap();

    let started = Instant::now();
    let err = lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await;
    let err = err.unwrap_err();
    assert!(err.as_service_error().is_none(), "dropped, not answered: {err:?}");
    assert!(started.elapsed() >= Duration::from_millis(400), "held before it was dropped");
    assert_eq!(tb.aws().history(&name), Some(vec![sha256_b64(&zip("one"))]), "the update never happened");
    let call = logged(tb, "UpdateFunctionCode", &name).await;
    assert_eq!((call.status, call.applied), (0, false));
}

#[tokio::test]
async fn the_call_log_marks_the_calls_the_service_applied_and_how_long_their_updates_last() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("applied");
    create_function(&lambda, &name, &zip("one")).await;
    tb.aws().inject(once("GetFunction", FaultAction::Throttle, &name)).unwrap();

    assert!(lambda.get_function().function_name(&name).send().await.is_err());
    lambda.get_function().function_name(&name).send().await.unwrap();
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.unwrap();
    let refused = lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("three"))).send().await;
    assert!(refused.is_err(), "409 while the first update is InProgress");

    let gets = calls_about(tb, "GetFunction", &name);
    assert_eq!(gets.iter().map(|c| (c.status, c.applied)).collect::<Vec<_>>(), [(429, false), (200, true)]);
    let updates = calls_about(tb, "UpdateFunctionCode", &name);
    let seen: Vec<_> = updates.iter().map(|c| (c.status, c.applied, c.in_progress_ms)).collect();
    assert_eq!(seen, [(200, true, Some(IN_PROGRESS_MS)), (409, false, None)]);
    let created = calls_about(tb, "CreateFunction", &name);
    assert_eq!(created.iter().map(|c| (c.applied, c.in_progress_ms)).collect::<Vec<_>>(), [(true, Some(0))]);
    let (_, over_http) = control(tb, "GET", "/_testbed/calls", None).await;
    let calls = over_http["calls"].as_array().unwrap();
    let first = calls.iter().find(|c| c["function"] == json!(name) && c["operation"] == "UpdateFunctionCode").unwrap();
    assert_eq!((&first["applied"], &first["in_progress_ms"]), (&json!(true), &json!(IN_PROGRESS_MS)));
}

#[tokio::test]
async fn a_console_edit_just_before_a_guarded_update_makes_it_meet_a_real_412_or_409() {
    let tb = testbed().await;
    let (lambda, s3) = (lambda(tb).await, s3(tb).await);
    let name = unique("console");
    let one = zip("one");
    create_function(&lambda, &name, &one).await;
    let key = format!("{name}/two.zip");
    let version = put_artifact(&s3, &key, &zip("two")).await;
    let seen = lambda.get_function().function_name(&name).send().await.unwrap();
    let seen = seen.configuration().unwrap();
    let change = FaultAction::CompetingWrite { change: CompetingChange::Configuration };
    tb.aws().inject(once("UpdateFunctionCode", change, &name)).unwrap();

    let guarded = || {
        lambda
            .update_function_code()
            .function_name(&name)
            .s3_bucket(ARTIFACT_BUCKET)
            .s3_key(&key)
            .s3_object_version(&version)
    };
    let err = guarded().revision_id(seen.revision_id().unwrap()).send().await.unwrap_err().into_service_error();
    assert!(is_conflict_or_stale(&err), "{err:?}");

    let edited = lambda.get_function_configuration().function_name(&name).send().await.unwrap();
    assert_ne!(edited.description(), seen.description(), "the competitor's edit is on the function");
    assert_ne!(edited.revision_id(), seen.revision_id());
    assert_eq!(edited.code_sha256(), Some(sha256_b64(&one).as_str()), "the guarded update changed nothing");
    let competitor = calls_about(tb, "UpdateFunctionConfiguration", &name);
    assert_eq!(competitor.len(), 1);
    let competitor = &competitor[0];
    assert_eq!(competitor.access_key_id.as_deref(), Some("competitor"));
    assert_eq!((competitor.status, competitor.applied), (200, true));
    assert!(competitor.fault.as_deref().unwrap_or_default().contains("competing_write"), "{competitor:?}");
    let mine = logged(tb, "UpdateFunctionCode", &name).await;
    assert!(competitor.seq < mine.seq, "the competitor's write is logged before the call it preceded");
    assert_eq!((mine.status, mine.applied), (retry_status(&err), false));

    let fresh = settled(&lambda, &name).await;
    guarded().revision_id(fresh.revision_id().unwrap()).send().await.expect("a fresh RevisionId is accepted");
}

/// A function running "one"; a guarded UpdateFunctionCode to artifact "two" that another deployer, sending the very
/// same source first (with `faults` on the call too), makes a real 409/412. Returns (name, one, two, its version).
async fn beaten_by_a_competitor_deploying_the_same_code(
    tb: &Testbed,
    lambda: &aws_sdk_lambda::Client,
    label: &str,
    faults: Vec<FaultAction>,
) -> (String, Vec<u8>, Vec<u8>, String) {
    let s3 = s3(tb).await;
    let name = unique(label);
    let (one, two) = (zip("one"), zip("two"));
    create_function(lambda, &name, &one).await;
    let key = format!("{name}/two.zip");
    let version = put_artifact(&s3, &key, &two).await;
    let seen = lambda.get_function().function_name(&name).send().await.unwrap();
    for fault in faults {
        tb.aws().inject(once("UpdateFunctionCode", fault, &name)).unwrap();
    }
    let change = FaultAction::CompetingWrite { change: CompetingChange::SameCode };
    tb.aws().inject(once("UpdateFunctionCode", change, &name)).unwrap();

    let err = lambda
        .update_function_code()
        .function_name(&name)
        .s3_bucket(ARTIFACT_BUCKET)
        .s3_key(&key)
        .s3_object_version(&version)
        .revision_id(seen.configuration().unwrap().revision_id().unwrap())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(is_conflict_or_stale(&err), "{err:?}");
    (name, one, two, version)
}

#[tokio::test]
async fn another_deployer_deploying_the_same_code_first_leaves_it_deployed_exactly_once() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let (name, one, two, version) =
        beaten_by_a_competitor_deploying_the_same_code(tb, &lambda, "samecode", vec![]).await;

    let done = settled(&lambda, &name).await;
    assert_eq!(done.code_sha256(), Some(sha256_b64(&two).as_str()), "the function runs the declared code");
    assert_eq!(tb.aws().history(&name), Some(vec![sha256_b64(&one), sha256_b64(&two)]));
    let applied: Vec<_> = calls_about(tb, "UpdateFunctionCode", &name).into_iter().filter(|c| c.applied).collect();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0].access_key_id.as_deref(), Some("competitor"));
    assert_eq!(applied[0].params.get("S3ObjectVersion"), Some(&version), "the very source the deployer named");
}

#[tokio::test]
async fn another_deployer_deploying_the_same_code_that_lambda_fails_fails_the_same_way() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let fails = FaultAction::UpdateFails { reason_code: ReasonCode::InvalidZipFileException, reason: "bad zip".into() };
    let (name, one, two, _) =
        beaten_by_a_competitor_deploying_the_same_code(tb, &lambda, "samecodefails", vec![fails]).await;

    let failed = update_ended(&lambda, &name).await;
    assert_eq!(failed.last_update_status(), Some(&LastUpdateStatus::Failed));
    assert_eq!(failed.last_update_status_reason(), Some("bad zip"));
    assert_eq!(failed.code_sha256(), Some(sha256_b64(&one).as_str()), "the previous code is back");
    assert_eq!(tb.aws().history(&name), Some(vec![sha256_b64(&one), sha256_b64(&two), sha256_b64(&one)]));
}

#[tokio::test]
async fn an_update_scripted_to_fail_ends_failed_with_its_reason_and_the_previous_code_back() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("fails");
    let (one, two, three) = (zip("one"), zip("two"), zip("three"));
    create_function(&lambda, &name, &one).await;
    let reason = "Lambda was unable to configure access to your environment variables because the KMS key is invalid";
    let fails = FaultAction::UpdateFails { reason_code: ReasonCode::KMSKeyNotFound, reason: reason.into() };
    tb.aws().inject(once("UpdateFunctionCode", fails, &name)).unwrap();

    let accepted =
        lambda.update_function_code().function_name(&name).zip_file(Blob::new(two.clone())).send().await.unwrap();
    assert_eq!(accepted.last_update_status(), Some(&LastUpdateStatus::InProgress));
    assert_eq!(accepted.code_sha256(), Some(sha256_b64(&two).as_str()), "the new code shows while InProgress");

    let failed = update_ended(&lambda, &name).await;
    assert_eq!(failed.last_update_status(), Some(&LastUpdateStatus::Failed));
    assert_eq!(failed.last_update_status_reason(), Some(reason));
    assert_eq!(failed.last_update_status_reason_code(), Some(&LastUpdateStatusReasonCode::KmsKeyNotFound));
    assert_eq!(failed.code_sha256(), Some(sha256_b64(&one).as_str()), "the previous code is back");
    assert_ne!(failed.revision_id(), accepted.revision_id());
    let history = vec![sha256_b64(&one), sha256_b64(&two), sha256_b64(&one)];
    assert_eq!(tb.aws().history(&name), Some(history.clone()), "it ran the old code again");
    let (_, body) = control(tb, "GET", &format!("/_testbed/functions/{name}/history"), None).await;
    assert_eq!(body["CodeSha256History"], json!(history));

    let next = lambda.update_function_code().function_name(&name).zip_file(Blob::new(three.clone())).send().await;
    let next = next.expect("a Failed update does not block the next one");
    assert_eq!(next.last_update_status(), Some(&LastUpdateStatus::InProgress));
    let done = settled(&lambda, &name).await;
    assert_eq!(done.code_sha256(), Some(sha256_b64(&three).as_str()));
    assert_eq!((done.last_update_status_reason(), done.last_update_status_reason_code()), (None, None));
}

#[tokio::test]
async fn a_configuration_update_that_fails_leaves_the_previous_configuration() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("failsconfig");
    let before = create_function(&lambda, &name, &zip("one")).await;
    let fails = FaultAction::UpdateFails { reason_code: ReasonCode::InvalidConfiguration, reason: "bad".into() };
    tb.aws().inject(once("UpdateFunctionConfiguration", fails, &name)).unwrap();

    let accepted = lambda.update_function_configuration().function_name(&name).description("new").send().await.unwrap();
    assert_eq!(accepted.description(), Some("new"));
    let failed = update_ended(&lambda, &name).await;
    assert_eq!(failed.last_update_status(), Some(&LastUpdateStatus::Failed));
    assert_eq!(failed.description(), before.description(), "the previous configuration is back");
}
