//! Every fixture in `tests/fixtures/` (AWS's documented event shapes) and `tests/fixtures/bad/` (hostile input)
//! decoded as the deployer would: the trigger, then for artifact events the key template. One test per fixture.

use std::path::Path;

use lambda_deployer::Error;
use lambda_deployer::key::{ArtifactRef, KeyMismatch, KeyTemplate};
use lambda_deployer::trigger::{ArtifactEvent, ArtifactSource, SweepSource, Trigger, decode_json};
use testbed::identity::ARTIFACT_BUCKET;

const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

fn fixtures_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn decode_fixture(name: &str) -> Result<Trigger, Error> {
    let bytes = std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    decode_json(&bytes)
}

fn decoded(name: &str) -> Trigger {
    decode_fixture(name).unwrap_or_else(|e| panic!("{name} should decode: {e}"))
}

/// The payload error's full message (as logged and returned to the invoker).
fn payload_error(name: &str) -> String {
    match decode_fixture(name) {
        Err(error @ Error::Payload(_)) => {
            assert!(!error.is_retryable(), "{name}: a payload error must not be retried");
            error.to_string()
        }
        other => panic!("{name} should be a payload error, got {other:?}"),
    }
}

/// The single upload event a fixture decodes to.
fn single_event(name: &str) -> ArtifactEvent {
    match decoded(name) {
        Trigger::Artifacts(mut events) if events.len() == 1 => events.remove(0),
        other => panic!("{name} should decode to one artifact event, got {other:?}"),
    }
}

/// Why the default key template rejects the key of the fixture's single event.
fn key_mismatch(name: &str) -> KeyMismatch {
    let event = single_event(name);
    KeyTemplate::default().parse_key(&event.key).expect_err("the key should not name an artifact")
}

fn upload(key: &str, version_id: Option<&str>, source: ArtifactSource) -> ArtifactEvent {
    ArtifactEvent { bucket: ARTIFACT_BUCKET.into(), key: key.into(), version_id: version_id.map(Into::into), source }
}

fn artifact(function_name: &str, commit: &str) -> ArtifactRef {
    ArtifactRef { function_name: function_name.into(), commit: commit.into() }
}

#[test]
fn every_fixture_file_has_a_test_here() {
    let source = include_str!("trigger_decoding.rs");
    for dir in [fixtures_dir().to_path_buf(), fixtures_dir().join("bad")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let relative = path.strip_prefix(fixtures_dir()).unwrap().to_str().unwrap().to_owned();
                assert!(source.contains(&format!("\"{relative}\"")), "fixture {relative} has no test");
            }
        }
    }
}

// ---- documented shapes ----

#[test]
fn s3_put_notification_is_one_upload_with_its_version() {
    let trigger = decoded("s3-object-created-put.json");
    assert_eq!(trigger.kind(), "artifact");
    let key = format!("orders-api/{SHA}.zip");
    let expected = upload(&key, Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"), ArtifactSource::S3Notification);
    assert_eq!(trigger, Trigger::Artifacts(vec![expected]));
    assert_eq!(KeyTemplate::default().parse_key(&key), Ok(artifact("orders-api", SHA)));
}

#[test]
fn s3_multipart_upload_is_an_upload_and_unversioned_buckets_have_no_version() {
    let event = single_event("s3-complete-multipart-upload.json");
    assert_eq!(event, upload("billing_worker/3c4e9a1.zip", None, ArtifactSource::S3Notification));
    assert_eq!(KeyTemplate::default().parse_key(&event.key), Ok(artifact("billing_worker", "3c4e9a1")));
}

#[test]
fn s3_notification_with_several_records_yields_every_upload_and_skips_the_removal() {
    let s3 = ArtifactSource::S3Notification;
    assert_eq!(
        decoded("s3-several-records.json"),
        Trigger::Artifacts(vec![
            upload(&format!("orders-api/{SHA}.zip"), Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"), s3),
            upload("billing_worker/3c4e9a1.zip", Some("Q8ve3kV8gM0bKdlXnFpdC1Ygw8XxbVu2"), s3),
        ])
    );
}

#[test]
fn s3_keys_are_url_decoded_with_plus_as_space_and_escaped_slashes() {
    let Trigger::Artifacts(events) = decoded("s3-url-encoded-keys.json") else { panic!("expected artifacts") };
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    let moto_style = format!("orders-api/{SHA}.zip");
    assert_eq!(keys, ["team a/café+1.zip", moto_style.as_str()]);
    assert_eq!(KeyTemplate::default().parse_key(&moto_style), Ok(artifact("orders-api", SHA)));
}

#[test]
fn eventbridge_object_created_is_one_upload_with_its_version() {
    let trigger = decoded("eventbridge-object-created.json");
    assert_eq!(trigger.kind(), "artifact");
    let key = format!("orders-api/{SHA}.zip");
    let expected = upload(&key, Some("uhggCJ2_B6gU2JaXWXebnXFDstO0ID6G"), ArtifactSource::EventBridge);
    assert_eq!(trigger, Trigger::Artifacts(vec![expected]));
}

#[test]
fn eventbridge_keys_are_taken_raw_without_url_decoding() {
    let event = single_event("eventbridge-object-created-raw-key.json");
    assert_eq!(event, upload("team a/café+1%2B.zip", None, ArtifactSource::EventBridge));
}

#[test]
fn eventbridge_scheduled_event_is_a_full_sweep() {
    let trigger = decoded("eventbridge-scheduled-event.json");
    assert_eq!(trigger, Trigger::Sweep { source: SweepSource::Schedule });
    assert_eq!(trigger.kind(), "schedule");
}

#[test]
fn the_rollout_queues_messages_name_the_lambda_deployments_whose_steps_are_due() {
    let trigger = decoded("sqs-rollout-wakeups.json");
    assert_eq!(trigger.kind(), "wakeup");
    let Trigger::Wakeups(wakeups) = trigger else { panic!("{trigger:?}") };
    let named: Vec<(&str, &str, &str)> =
        wakeups.iter().map(|w| (w.namespace.as_str(), w.name.as_str(), w.due.as_str())).collect();
    assert_eq!(
        named,
        [
            ("team-orders", "orders-production", "2026-12-02T14:05:00Z"),
            ("team-orders", "orders-staging", "2026-12-02T14:05:03Z")
        ]
    );
}

#[test]
fn direct_sweep_is_a_full_sweep() {
    let trigger = decoded("direct-sweep.json");
    assert_eq!(trigger, Trigger::Sweep { source: SweepSource::Direct });
    assert_eq!(trigger.kind(), "sweep");
}

#[test]
fn direct_plan_without_scope_plans_everything() {
    let trigger = decoded("direct-plan.json");
    assert_eq!(trigger, Trigger::Plan { namespace: None, name: None });
    assert_eq!(trigger.kind(), "plan");
}

#[test]
fn direct_plan_with_namespace_and_name_is_scoped_to_that_resource() {
    assert_eq!(
        decoded("direct-plan-scoped.json"),
        Trigger::Plan { namespace: Some("team-a".into()), name: Some("orders".into()) }
    );
}

// ---- hostile and malformed input: not a payload we understand ----

#[test]
fn truncated_json_is_rejected_as_invalid_json() {
    let message = payload_error("bad/truncated.json");
    assert!(message.starts_with("unrecognised invocation payload: payload is not valid JSON: EOF while parsing"));
}

#[test]
fn python_style_quotes_are_rejected_as_invalid_json() {
    let message = payload_error("bad/invalid-json.json");
    assert!(message.starts_with("unrecognised invocation payload: payload is not valid JSON: key must be a string"));
}

#[test]
fn deeply_nested_json_is_rejected_without_overflowing_the_stack() {
    assert!(payload_error("bad/deep-nesting.json").contains("recursion limit exceeded"));
}

#[test]
fn a_json_array_is_rejected_as_not_an_object() {
    assert_eq!(
        payload_error("bad/not-an-object.json"),
        "unrecognised invocation payload: expected a JSON object, got an array"
    );
}

#[test]
fn json_null_is_rejected_as_not_an_object() {
    assert_eq!(payload_error("bad/null.json"), "unrecognised invocation payload: expected a JSON object, got null");
}

#[test]
fn empty_object_is_rejected_and_says_it_was_empty() {
    assert_eq!(
        payload_error("bad/empty-object.json"),
        "unrecognised invocation payload: expected an S3 notification (\"Records\"), an EventBridge event (\"source\", \
         \"detail-type\") or a direct invoke (\"action\"); got an empty object"
    );
}

#[test]
fn object_with_many_long_keys_is_named_briefly() {
    let message = payload_error("bad/many-keys.json");
    assert!(message.ends_with("(305 bytes) and 92 more"), "{message}");
    assert!(message.len() < 1200, "message is {} bytes", message.len());
}

#[test]
fn sns_notification_is_rejected_naming_its_event_source() {
    assert_eq!(
        payload_error("bad/sns-notification.json"),
        "unrecognised invocation payload: Records[0]: eventSource is \"aws:sns\", expected \"aws:s3\""
    );
}

#[test]
fn an_sqs_message_that_is_no_rollout_wake_up_is_rejected_naming_what_it_lacks_and_the_record_count() {
    assert_eq!(
        payload_error("bad/sqs-message.json"),
        "unrecognised invocation payload: Records[0]: body is not a rollout wake-up: missing field `action` at line 1 \
         column 14 (and 1 more unusable records)"
    );
}

#[test]
fn api_gateway_request_is_rejected_naming_its_keys() {
    assert_eq!(
        payload_error("bad/api-gateway-proxy.json"),
        "unrecognised invocation payload: expected an S3 notification (\"Records\"), an EventBridge event \
         (\"source\", \"detail-type\") or a direct invoke (\"action\"); got an object with keys \"body\", \"headers\", \
         \"httpMethod\", \"isBase64Encoded\", \"multiValueHeaders\", \"multiValueQueryStringParameters\", \"path\", \
         \"pathParameters\" and 4 more"
    );
}

#[test]
fn s3_test_event_is_rejected_naming_its_keys() {
    assert!(
        payload_error("bad/s3-test-event.json").ends_with(
            "got an object with keys \"Bucket\", \"Event\", \"HostId\", \"RequestId\", \"Service\", \"Time\""
        )
    );
}

#[test]
fn eventbridge_event_from_another_service_is_rejected_naming_source_and_detail_type() {
    assert_eq!(
        payload_error("bad/eventbridge-other-source.json"),
        "unrecognised invocation payload: EventBridge event with source \"aws.ec2\" and detail-type \"EC2 Instance \
         State-change Notification\" is neither an S3 \"Object Created\" nor a \"Scheduled Event\" from \"aws.events\""
    );
}

#[test]
fn s3_notification_without_records_is_rejected() {
    assert_eq!(
        payload_error("bad/s3-empty-records.json"),
        "unrecognised invocation payload: S3 notification has an empty \"Records\" array"
    );
}

#[test]
fn s3_record_without_a_key_is_rejected_naming_the_missing_field() {
    assert_eq!(
        payload_error("bad/s3-record-missing-key.json"),
        "unrecognised invocation payload: Records[0]: s3.object.key is missing"
    );
}

#[test]
fn s3_key_that_is_not_utf8_once_decoded_is_rejected_when_it_is_the_only_record() {
    assert_eq!(
        payload_error("bad/s3-key-invalid-utf8.json"),
        format!(
            "unrecognised invocation payload: Records[0]: s3.object.key \"orders%C3%28api/{SHA}.zip\" is not valid \
             UTF-8 once URL-decoded"
        )
    );
}

#[test]
fn unusable_s3_record_is_skipped_when_other_records_are_uploads() {
    let event = single_event("bad/s3-mixed-good-and-bad-records.json");
    let key = format!("orders-api/{SHA}.zip");
    assert_eq!(event, upload(&key, Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"), ArtifactSource::S3Notification));
}

#[test]
fn unknown_direct_action_is_rejected_naming_it() {
    assert_eq!(
        payload_error("bad/direct-unknown-action.json"),
        "unrecognised invocation payload: direct invoke with unknown action \"deploy\"; expected \"sweep\" or \"plan\""
    );
}

#[test]
fn non_string_direct_action_is_rejected() {
    assert_eq!(
        payload_error("bad/direct-action-not-string.json"),
        "unrecognised invocation payload: direct invoke \"action\" is an array, expected \"sweep\" or \"plan\""
    );
}

#[test]
fn sweep_with_a_scope_is_rejected_instead_of_sweeping_everything() {
    assert_eq!(
        payload_error("bad/direct-sweep-with-scope.json"),
        "unrecognised invocation payload: direct invoke \"sweep\" does not take \"namespace\"; it takes only \"action\""
    );
}

#[test]
fn plan_with_a_path_as_namespace_is_rejected() {
    assert_eq!(
        payload_error("bad/direct-plan-bad-namespace.json"),
        "unrecognised invocation payload: direct invoke \"plan\": \"namespace\" \"../kube-system\" is not a Kubernetes \
         object name (1-253 of a-z, 0-9, '-', '.')"
    );
}

// ---- hostile input: decodes, but is not an upload the deployer acts on ----

#[test]
fn s3_object_removed_is_skipped_leaving_nothing_to_do() {
    assert_eq!(decoded("bad/s3-object-removed.json"), Trigger::Artifacts(vec![]));
}

#[test]
fn eventbridge_object_deleted_is_skipped_leaving_nothing_to_do() {
    assert_eq!(decoded("bad/eventbridge-object-deleted.json"), Trigger::Artifacts(vec![]));
}

#[test]
fn s3_upload_to_another_bucket_decodes_with_that_bucket_so_it_is_not_the_artifact_bucket() {
    let event = single_event("bad/s3-other-bucket.json");
    assert_eq!(event.bucket, "someone-elses-bucket");
    assert_ne!(event.bucket, ARTIFACT_BUCKET);
}

#[test]
fn key_with_dot_dot_segments_does_not_name_an_artifact() {
    assert_eq!(
        key_mismatch("bad/s3-key-dot-dot.json").to_string(),
        "key matches the template but function name \"orders-api/../../admin\" contains '/': only letters, digits, \
         '-' and '_' are allowed"
    );
}

#[test]
fn key_with_encoded_slashes_is_decoded_and_then_does_not_name_an_artifact() {
    assert_eq!(
        key_mismatch("bad/s3-key-encoded-slash.json").to_string(),
        "key matches the template but function name \"orders-api/../admin\" contains '/': only letters, digits, '-' \
         and '_' are allowed"
    );
}

#[test]
fn key_with_plus_is_a_space_and_does_not_name_an_artifact() {
    assert_eq!(
        key_mismatch("bad/s3-key-plus.json").to_string(),
        "key matches the template but function name \"orders api\" contains ' ': only letters, digits, '-' and '_' \
         are allowed"
    );
}

#[test]
fn key_with_an_encoded_plus_keeps_the_plus_and_does_not_name_an_artifact() {
    assert_eq!(
        key_mismatch("bad/s3-key-encoded-plus.json").to_string(),
        "key matches the template but function name \"orders+api\" contains '+': only letters, digits, '-' and '_' \
         are allowed"
    );
}

#[test]
fn key_with_a_unicode_look_alike_does_not_name_an_artifact() {
    // The first letter is CYRILLIC SMALL LETTER O, which looks like "orders-api".
    assert_eq!(
        key_mismatch("bad/s3-key-unicode.json").to_string(),
        "key matches the template but function name \"\u{43e}rders-api\" contains '\u{43e}': only letters, digits, \
         '-' and '_' are allowed"
    );
}

#[test]
fn key_longer_than_s3_allows_is_rejected_without_echoing_it() {
    let mismatch = key_mismatch("bad/s3-key-too-long.json");
    assert_eq!(mismatch, KeyMismatch::TooLong { bytes: 1100 + 1 + 40 + 4 });
    assert_eq!(mismatch.to_string(), "key is 1145 bytes, longer than S3's 1024-byte limit");
}

#[test]
fn key_with_a_version_string_instead_of_a_commit_does_not_name_an_artifact() {
    assert_eq!(
        key_mismatch("bad/s3-key-non-hex-commit.json").to_string(),
        "key matches the template but commit \"v1.2.3-final\" contains 'v': only lowercase hex digits (0-9a-f) are \
         allowed"
    );
}

#[test]
fn key_with_an_uppercase_commit_does_not_name_an_artifact() {
    let mismatch = key_mismatch("bad/s3-key-uppercase-commit.json");
    assert!(matches!(mismatch, KeyMismatch::Commit(_)), "{mismatch}");
    assert!(mismatch.to_string().contains("contains 'F': only lowercase hex digits"), "{mismatch}");
}
