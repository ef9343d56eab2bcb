//! Scripted faults (HTTP control API and Rust API) and the call log.

mod aws_support;

use std::time::{Duration, Instant};

use aws_sdk_lambda::operation::get_function::GetFunctionError;
use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_support::*;
use serde_json::json;
use testbed::aws::{Fault, FaultAction, Trigger};
use testbed::identity::ARTIFACT_BUCKET;
use testbed::up::{Testbed, TestbedOptions};
use tokio::sync::{Mutex, OnceCell};

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();
/// S3 faults cannot name a function: the tests that fault or read S3 objects take turns.
static S3_OBJECTS: Mutex<()> = Mutex::const_new(());

async fn testbed() -> &'static Testbed {
    let opts = TestbedOptions { quotas: false, update_in_progress: Duration::ZERO, ..TestbedOptions::fast() };
    shared(&TESTBED, opts).await
}

#[tokio::test]
async fn a_fault_posted_to_the_control_api_fires_on_the_nth_call_only() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("nth");
    create_function(&lambda, &name, &zip("code")).await;
    let fault = json!({"operation": "GetFunction", "function": name, "action": {"kind": "service_exception"}, "when": {"nth": 2}});
    let (status, _) = control(tb, "POST", "/_testbed/faults", Some(fault)).await;
    assert_eq!(status, 200);

    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(lambda.get_function().function_name(&name).send().await.map_err(|e| e.into_service_error()));
    }
    assert!(outcomes[0].is_ok());
    assert!(matches!(outcomes[1], Err(GetFunctionError::ServiceException(_))), "{:?}", outcomes[1]);
    assert!(outcomes[2].is_ok());
}

#[tokio::test]
async fn throttle_conflict_and_stale_revision_faults_reach_the_sdk_as_modeled_errors() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("modeled");
    create_function(&lambda, &name, &zip("one")).await;
    let actions = [FaultAction::Throttle, FaultAction::Conflict, FaultAction::StaleRevision];
    for (nth, action) in (1..).zip(actions) {
        let fault = Fault::new("UpdateFunctionCode", action).function(&name).when(Trigger::Nth(nth));
        tb.aws().inject(fault).unwrap();
    }
    let mut errors = Vec::new();
    for _ in 0..3 {
        let r = lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await;
        errors.push(r.unwrap_err().into_service_error());
    }
    assert!(matches!(errors[0], UpdateFunctionCodeError::TooManyRequestsException(_)), "{:?}", errors[0]);
    assert!(matches!(errors[1], UpdateFunctionCodeError::ResourceConflictException(_)), "{:?}", errors[1]);
    assert!(matches!(errors[2], UpdateFunctionCodeError::PreconditionFailedException(_)), "{:?}", errors[2]);
    assert!(lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.is_ok());
    assert_eq!(tb.aws().history(&name).unwrap().len(), 2, "faulted calls changed nothing");
}

#[tokio::test]
async fn a_connection_reset_fault_drops_the_connection() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("reset");
    create_function(&lambda, &name, &zip("code")).await;
    tb.aws()
        .inject(Fault::new("GetFunction", FaultAction::ConnectionReset).function(&name).when(Trigger::Next(1)))
        .unwrap();
    let err = lambda.get_function().function_name(&name).send().await.unwrap_err();
    assert!(err.as_service_error().is_none(), "no response at all: {err:?}");
    assert!(lambda.get_function().function_name(&name).send().await.is_ok());
    let log = tb.aws().calls();
    assert!(log.of("lambda", "GetFunction").any(|c| c.function.as_deref() == Some(&name) && c.status == 0));
}

#[tokio::test]
async fn a_latency_fault_delays_the_call() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("latency");
    create_function(&lambda, &name, &zip("code")).await;
    tb.aws().inject(Fault::new("GetFunctionConfiguration", FaultAction::Latency { ms: 400 }).function(&name)).unwrap();
    let started = Instant::now();
    lambda.get_function_configuration().function_name(&name).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn probability_faults_repeat_exactly_with_the_same_seed() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let (a, b) = (unique("seed"), unique("seed"));
    let mut patterns = Vec::new();
    for name in [&a, &b] {
        create_function(&lambda, name, &zip("code")).await;
        let when = Trigger::Probability { p: 0.5, seed: 42 };
        tb.aws().inject(Fault::new("GetFunction", FaultAction::Throttle).function(name).when(when)).unwrap();
        let mut pattern = Vec::new();
        for _ in 0..20 {
            pattern.push(lambda.get_function().function_name(name).send().await.is_ok());
        }
        patterns.push(pattern);
    }
    assert_eq!(patterns[0], patterns[1]);
    let ok = patterns[0].iter().filter(|ok| **ok).count();
    assert!((3..=17).contains(&ok), "p = 0.5 fires sometimes: {ok}/20 succeeded");
}

#[tokio::test]
async fn the_call_log_records_operations_key_parameters_and_s3_bytes_downloaded() {
    let _turn = S3_OBJECTS.lock().await;
    let tb = testbed().await;
    let (lambda, s3) = (lambda(tb).await, s3(tb).await);
    let name = unique("log");
    let first = create_function(&lambda, &name, &zip("one")).await;
    let key = format!("{name}/code.zip");
    let artifact = zip(&"x".repeat(5_000));
    let version = put_artifact(&s3, &key, &artifact).await;
    lambda
        .update_function_code()
        .function_name(&name)
        .s3_bucket(ARTIFACT_BUCKET)
        .s3_key(&key)
        .s3_object_version(&version)
        .revision_id(first.revision_id().unwrap())
        .send()
        .await
        .unwrap();
    let got = s3.get_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().len(), artifact.len());

    let log = tb.aws().calls();
    let update = log.of("lambda", "UpdateFunctionCode").find(|c| c.function.as_deref() == Some(&name)).unwrap();
    assert_eq!(update.status, 200);
    assert_eq!(update.params["S3Key"], key);
    assert_eq!(update.params["S3ObjectVersion"], version);
    assert_eq!(update.params["RevisionId"], first.revision_id().unwrap());
    let download = log.of("s3", "GetObject").find(|c| c.params.get("Key") == Some(&key)).unwrap();
    assert_eq!(download.response_bytes, artifact.len() as u64);
    assert!(log.count("lambda", "CreateFunction") >= 1);
    assert!(log.count("s3", "PutObject") >= 1);

    let (status, over_http) = control(tb, "GET", "/_testbed/calls", None).await;
    assert_eq!(status, 200);
    assert!(over_http["counts"]["lambda:UpdateFunctionCode"].as_u64().unwrap() >= 1);
    assert!(over_http["calls"].as_array().unwrap().iter().any(|c| c["params"]["S3Key"] == json!(key)));
}

#[tokio::test]
async fn the_control_api_rejects_malformed_faults_and_reports_the_configuration() {
    let tb = testbed().await;
    let bad = json!({"service": "s3", "operation": "GetObject", "action": {"kind": "throttle"}});
    let (status, body) = control(tb, "POST", "/_testbed/faults", Some(bad)).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = control(tb, "POST", "/_testbed/faults", Some(json!({"operation": 3}))).await;
    assert_eq!(status, 400, "{body}");
    let rejected = [
        (
            json!({"operation": "UpdateFunctionCode", "action": {"kind": "throttle"}, "after_apply": true}),
            "after_apply",
        ),
        (
            json!({"service": "s3", "operation": "GetObject", "action": {"kind": "service_exception"}, "after_apply": true}),
            "after_apply",
        ),
        (json!({"operation": "GetFunction", "action": {"kind": "slow_down"}}), "SlowDown"),
        (
            json!({"operation": "ListFunctions", "action": {"kind": "competing_write", "change": "configuration"}}),
            "one function",
        ),
        (
            json!({"operation": "TagResource", "action": {"kind": "competing_write", "change": "same_code"}}),
            "UpdateFunctionCode",
        ),
        (
            json!({"operation": "PublishVersion", "action": {"kind": "update_fails", "reason_code": "InternalError", "reason": "r"}}),
            "UpdateFunctionConfiguration",
        ),
        (
            json!({"operation": "UpdateFunctionCode", "action": {"kind": "update_fails", "reason_code": "Gremlins", "reason": "r"}}),
            "unknown variant `Gremlins`",
        ),
    ];
    for (fault, says) in rejected {
        let (status, body) = control(tb, "POST", "/_testbed/faults", Some(fault.clone())).await;
        assert_eq!(status, 400, "{fault} was accepted");
        assert!(body["error"].as_str().unwrap().contains(says), "{fault}: {body}");
    }
    let name = unique("accepted");
    let fault = json!({"operation": "UpdateFunctionCode", "function": name, "action": {"kind": "timeout", "ms": 100}, "after_apply": true});
    let (status, body) = control(tb, "POST", "/_testbed/faults", Some(fault)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["function"] == json!(name) && f["after_apply"] == json!(true))
    );
    let (status, config) = control(tb, "POST", "/_testbed/config", Some(json!({"quotas": false}))).await;
    assert_eq!(status, 200);
    assert_eq!(config["get_function_per_second"], json!(100.0));
    assert_eq!(config["control_plane_per_second"], json!(15.0));
}

#[tokio::test]
async fn faults_on_other_services_delay_or_drop_their_requests() {
    let _turn = S3_OBJECTS.lock().await;
    let tb = testbed().await;
    let s3 = s3(tb).await;
    let key = format!("{}/object", unique("s3fault"));
    put_artifact(&s3, &key, b"bytes").await;
    let reset = Fault::new("HeadObject", FaultAction::ConnectionReset).service("s3").when(Trigger::Nth(1));
    let slow = Fault::new("HeadObject", FaultAction::Latency { ms: 300 }).service("s3").when(Trigger::Nth(2));
    tb.aws().inject(reset).unwrap();
    tb.aws().inject(slow).unwrap();
    let err = s3.head_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap_err();
    assert!(err.as_service_error().is_none(), "dropped, not answered: {err:?}");
    let started = Instant::now();
    s3.head_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_call_the_client_abandons_is_logged_when_it_goes_away() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("abandoned");
    create_function(&lambda, &name, &zip("code")).await;
    tb.aws().inject(Fault::new("GetFunction", FaultAction::Latency { ms: 3000 }).function(&name)).unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(200), lambda.get_function().function_name(&name).send());
    assert!(gave_up.await.is_err(), "the client stops waiting");
    let started = Instant::now();
    let logged = || tb.aws().calls().of("lambda", "GetFunction").any(|c| c.function.as_deref() == Some(&name));
    while !logged() && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let call = tb.aws().calls().of("lambda", "GetFunction").find(|c| c.function.as_deref() == Some(&name)).cloned();
    assert_eq!(call.map(|c| c.status), Some(0), "logged with status 0 long before its 3 s latency ended");
}

#[tokio::test]
async fn s3_internal_error_and_slow_down_faults_reach_the_sdk_as_s3_errors() {
    let _turn = S3_OBJECTS.lock().await;
    let tb = testbed().await;
    let s3 = s3(tb).await;
    let key = format!("{}/object", unique("s3errors"));
    put_artifact(&s3, &key, b"bytes").await;
    for operation in ["GetObject", "HeadObject"] {
        let internal = Fault::new(operation, FaultAction::ServiceException).service("s3").when(Trigger::Nth(1));
        let slow_down = Fault::new(operation, FaultAction::SlowDown).service("s3").when(Trigger::Nth(2));
        tb.aws().inject(internal).unwrap();
        tb.aws().inject(slow_down).unwrap();
    }

    let mut gets = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..2 {
        let err = s3.get_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap_err();
        let status = err.raw_response().map(|r| r.status().as_u16());
        gets.push((err.into_service_error().code().map(str::to_string), status));
        let err = s3.head_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap_err();
        heads.push(err.raw_response().map(|r| r.status().as_u16()));
    }
    assert_eq!(gets, [(Some("InternalError".into()), Some(500)), (Some("SlowDown".into()), Some(503))]);
    assert_eq!(heads, [Some(500), Some(503)]);
    assert!(s3.get_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.is_ok(), "the third call is served");
    let log = tb.aws().calls();
    let failed = log.of("s3", "GetObject").filter(|c| c.params.get("Key") == Some(&key) && !c.applied).count();
    assert_eq!(failed, 2, "refused calls are not applied");
}
