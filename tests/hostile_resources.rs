//! Hostile and malformed input reaching a real deployer: LambdaDeployments stored with validation bypassed (bad
//! ARNs, names, commits, types, targets in other regions/accounts/partitions, missing functions, artifacts that are
//! not zips), and every payload of `tests/fixtures/bad/`. Each gets a specific message, costs no Lambda call, never
//! panics, and the healthy resource next to it still deploys.

mod support;

use std::path::Path;

use lambda_deployer::Error;
use lambda_deployer::crd::Phase;
use lambda_deployer::trigger::decode_json;
use serde_json::{Value, json};
use support::{World, commit, function_arn};
use testbed::identity::{ACCOUNT_ID, ARTIFACT_BUCKET};
use tokio::sync::Mutex;

/// The fixture test counts every Lambda call in the shared log, so the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// One hostile resource: its spec, and what the deployer must say about it.
struct Case {
    name: &'static str,
    spec: Value,
    phase: Phase,
    /// The status message, exactly.
    message: String,
    /// Text that names this case's function or artifact in any AWS call (function name or S3 key).
    marker: String,
    /// The only AWS calls the deployer may make about it (`service:Operation`): none when the spec or policy
    /// rejects it before anything is observed.
    may_call: &'static [&'static str],
}

/// The exact message for an ARN outside the default ALLOWED_FUNCTION_ARNS (the deployer's own account and region).
fn not_allowed(arn: &str) -> String {
    format!("{arn} is not in ALLOWED_FUNCTION_ARNS (arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:*)")
}

fn invalid_arn(arn: &str, reason: &str) -> String {
    format!("spec.functionARN: {arn:?} {reason}")
}

async fn store_raw(world: &World, name: &str, spec: &Value) {
    let mut object = json!({
        "apiVersion": "lambda-deployer.dev/v1",
        "kind": "LambdaDeployment",
        "metadata": {"name": name, "namespace": world.namespace},
    });
    if !spec.is_null() {
        object["spec"] = spec.clone();
    }
    world.testbed.kube().insert_raw(object).unwrap_or_else(|e| panic!("storing {name}: {e}"));
}

/// Every AWS call that names `marker` (as the function, or in a parameter such as the S3 key), as `service:Operation`.
fn calls_naming(world: &World, marker: &str) -> Vec<String> {
    let log = world.testbed.aws().calls();
    log.calls
        .iter()
        .filter(|c| {
            c.function.as_deref().is_some_and(|f| f.contains(marker)) || c.params.values().any(|v| v.contains(marker))
        })
        .map(|c| format!("{}:{}", c.service, c.operation))
        .collect()
}

async fn upload_bytes(world: &World, key: &str, bytes: Vec<u8>, with_checksum: bool) {
    let mut put = world.s3.put_object().bucket(ARTIFACT_BUCKET).key(key).body(bytes.into());
    if with_checksum {
        put = put.checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256);
    }
    put.send().await.unwrap_or_else(|e| panic!("upload {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
}

#[tokio::test]
async fn every_hostile_resource_gets_a_specific_message_and_no_lambda_call_while_the_healthy_one_deploys() {
    let _serial = SERIAL.lock().await;
    let world = World::new("hostile").await;
    let ns = world.namespace.clone();
    let c = commit("hostile");

    // The healthy neighbour.
    let healthy_arn = world.create_function("healthy", "initial").await;
    let healthy_fn = world.function_name("healthy");
    world.apply_ld("healthy", &healthy_arn, &healthy_fn, &c).await;
    let (_, healthy_sha) = world.upload(&format!("{healthy_fn}/{c}.zip"), "healthy release").await;

    // Real functions whose artifacts are broken: the artifact is checked before the function is looked at.
    let not_zip_arn = world.create_function("notzip", "initial").await;
    let not_zip_fn = world.function_name("notzip");
    let not_zip_key = format!("{not_zip_fn}/{c}.zip");
    upload_bytes(&world, &not_zip_key, b"#!/bin/sh\necho this is not a zip\n".to_vec(), false).await;
    let empty_arn = world.create_function("empty", "initial").await;
    let empty_fn = world.function_name("empty");
    let empty_key = format!("{empty_fn}/{c}.zip");
    upload_bytes(&world, &empty_key, Vec::new(), false).await;
    // A function that does not exist, with a perfectly good artifact.
    let ghost_fn = world.function_name("ghost");
    let ghost_arn = function_arn(&ghost_fn);
    world.upload(&format!("{ghost_fn}/{c}.zip"), "ghost release").await;

    let spec =
        |arn: &str, name: &str, commit: &str| json!({"functionARN": arn, "functionName": name, "commit": commit});
    let lambda_arn =
        |region: &str, account: &str, name: &str| format!("arn:aws:lambda:{region}:{account}:function:{name}");
    let shape = "is not a Lambda function ARN: expected arn:<partition>:lambda:<region>:<account-id>:function:<name>";
    let marker = |label: &str| format!("{ns}-{label}");
    let (s3_arn, qualified_arn, gcp_arn) = (
        format!("arn:aws:s3:::{}", marker("s3")),
        format!("{}:live", lambda_arn("us-east-1", ACCOUNT_ID, &marker("qualified"))),
        format!("arn:gcp:lambda:us-east-1:{ACCOUNT_ID}:function:{}", marker("gcp")),
    );
    let (eu_arn, other_account_arn, china_arn) = (
        lambda_arn("eu-west-1", ACCOUNT_ID, &marker("eu")),
        lambda_arn("us-east-1", "999999999999", &marker("other-account")),
        format!("arn:aws-cn:lambda:cn-north-1:{ACCOUNT_ID}:function:{}", marker("china")),
    );
    let dot_dot_key = format!("builds/../{}.zip", marker("dotdot"));
    let cases = vec![
        Case {
            name: "not-lambda-arn",
            spec: spec(&s3_arn, &marker("s3"), &c),
            phase: Phase::Failed,
            message: invalid_arn(&s3_arn, shape),
            marker: marker("s3"),
            may_call: &[],
        },
        Case {
            name: "qualified-arn",
            spec: spec(&qualified_arn, &marker("qualified"), &c),
            phase: Phase::Failed,
            message: invalid_arn(&qualified_arn, "has a qualifier (\"live\"); deploy to the unqualified function ARN"),
            marker: marker("qualified"),
            may_call: &[],
        },
        Case {
            name: "unknown-partition",
            spec: spec(&gcp_arn, &marker("gcp"), &c),
            phase: Phase::Failed,
            message: invalid_arn(&gcp_arn, "has an unknown partition \"gcp\""),
            marker: marker("gcp"),
            may_call: &[],
        },
        Case {
            name: "dot-dot-function-name",
            spec: spec(&function_arn(&marker("dotname")), "../x", &c),
            phase: Phase::Failed,
            message:
                "spec.functionName: function name \"../x\" contains '.': only letters, digits, '-' and '_' are allowed"
                    .into(),
            marker: marker("dotname"),
            may_call: &[],
        },
        Case {
            name: "non-hex-commit",
            spec: spec(&function_arn(&marker("head")), &marker("head"), "HEAD"),
            phase: Phase::Failed,
            message: "spec.commit: commit \"HEAD\" contains 'H': only lowercase hex digits (0-9a-f) are allowed".into(),
            marker: marker("head"),
            may_call: &[],
        },
        Case {
            name: "short-commit",
            spec: spec(&function_arn(&marker("short")), &marker("short"), "abc"),
            phase: Phase::Failed,
            message: "spec.commit: commit \"abc\" is 3 hex digits long; a commit is 7 to 40".into(),
            marker: marker("short"),
            may_call: &[],
        },
        Case {
            name: "missing-function-arn",
            spec: json!({"functionName": marker("noarn"), "commit": c}),
            phase: Phase::Failed,
            message: "spec does not decode: missing field `functionARN`".into(),
            marker: marker("noarn"),
            may_call: &[],
        },
        Case {
            name: "missing-spec",
            spec: Value::Null,
            phase: Phase::Failed,
            message: "spec does not decode: missing field `spec`".into(),
            marker: marker("missing-spec"),
            may_call: &[],
        },
        Case {
            name: "commit-as-number",
            spec: json!({"functionARN": function_arn(&marker("number")), "functionName": marker("number"), "commit": 1234567}),
            phase: Phase::Failed,
            message: "spec does not decode: invalid type: integer `1234567`, expected a string".into(),
            marker: marker("number"),
            may_call: &[],
        },
        Case {
            name: "other-region",
            spec: spec(&eu_arn, &marker("eu"), &c),
            phase: Phase::Blocked,
            message: not_allowed(&eu_arn),
            marker: marker("eu"),
            may_call: &[],
        },
        Case {
            name: "other-account",
            spec: spec(&other_account_arn, &marker("other-account"), &c),
            phase: Phase::Blocked,
            message: not_allowed(&other_account_arn),
            marker: marker("other-account"),
            may_call: &[],
        },
        Case {
            name: "other-partition",
            spec: spec(&china_arn, &marker("china"), &c),
            phase: Phase::Blocked,
            message: not_allowed(&china_arn),
            marker: marker("china"),
            may_call: &[],
        },
        Case {
            name: "artifact-key-with-dot-dot",
            spec: json!({"functionARN": function_arn(&marker("dotdot")), "functionName": marker("dotdot"), "commit": c,
                         "artifact": {"key": dot_dot_key}}),
            phase: Phase::Failed,
            message: format!("spec.artifact.key: {dot_dot_key:?} is not a usable S3 key"),
            marker: marker("dotdot"),
            may_call: &[],
        },
        Case {
            name: "function-does-not-exist",
            spec: spec(&ghost_arn, &ghost_fn, &c),
            phase: Phase::Failed,
            message: format!("function {ghost_arn} does not exist"),
            marker: ghost_fn.clone(),
            may_call: &["s3:HeadObject", "s3:GetObject", "lambda:GetFunction"],
        },
        Case {
            name: "artifact-not-a-zip",
            spec: spec(&not_zip_arn, &not_zip_fn, &c),
            phase: Phase::Failed,
            message: format!(
                "cannot read artifact s3://{ARTIFACT_BUCKET}/{not_zip_key}: s3://{ARTIFACT_BUCKET}/{not_zip_key} is not a zip file"
            ),
            marker: not_zip_fn.clone(),
            may_call: &["s3:HeadObject", "s3:GetObject"],
        },
        Case {
            name: "artifact-empty",
            spec: spec(&empty_arn, &empty_fn, &c),
            phase: Phase::Failed,
            message: format!(
                "cannot read artifact s3://{ARTIFACT_BUCKET}/{empty_key}: s3://{ARTIFACT_BUCKET}/{empty_key} is empty (0 bytes), not a zip"
            ),
            marker: empty_fn.clone(),
            may_call: &["s3:HeadObject"],
        },
    ];
    for case in &cases {
        store_raw(&world, case.name, &case.spec).await;
    }
    let calls_before: Vec<usize> = cases.iter().map(|c| calls_naming(&world, &c.marker).len()).collect();

    let deployer = world.deployer(&[]).await;
    let summary =
        deployer.handle(&json!({"action": "sweep"}), None).await.expect("a sweep over hostile resources succeeds");

    assert_eq!(summary.deployed, 1, "the healthy LD deploys: {summary:?}");
    assert_eq!(world.code_sha256(&healthy_fn).await, healthy_sha);
    assert_eq!(world.ld("healthy").await.status.and_then(|s| s.phase), Some(Phase::Deployed));
    let mut wrong = Vec::new();
    for (case, &before) in cases.iter().zip(&calls_before) {
        // Read as plain JSON: a resource whose spec does not decode cannot be read through the typed client.
        let status = raw_status(&world, case.name).await;
        if status != Some((Some(case.phase), Some(case.message.clone()))) {
            wrong.push(format!("{}: status {status:?}, expected {:?} {:?}", case.name, case.phase, case.message));
        }
        let calls: Vec<String> = calls_naming(&world, &case.marker).into_iter().skip(before).collect();
        if let Some(op) = calls.iter().find(|op| !case.may_call.contains(&op.as_str())) {
            wrong.push(format!("{}: made {op} ({calls:?})", case.name));
        }
    }
    assert!(wrong.is_empty(), "hostile resources mishandled:\n{}", wrong.join("\n"));
    assert_eq!(summary.failed + summary.blocked, cases.len(), "{summary:?}");
}

/// `(phase, message)` of a stored LD read as plain JSON.
async fn raw_status(world: &World, name: &str) -> Option<(Option<Phase>, Option<String>)> {
    let resource = kube::discovery::ApiResource::erase::<lambda_deployer::crd::LambdaDeployment>(&());
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(world.admin.clone(), &world.namespace, &resource);
    let object = api.get(name).await.ok()?;
    let status = object.data.get("status")?;
    let phase = status.get("phase").cloned().and_then(|p| serde_json::from_value(p).ok());
    Some((phase, status.get("message").and_then(Value::as_str).map(String::from)))
}

#[tokio::test]

async fn an_invalid_resource_targeting_the_same_function_does_not_block_the_valid_one() {
    let _serial = SERIAL.lock().await;
    let world = World::new("hostile-rival").await;
    let c = commit("hostile-rival");
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let (_, sha) = world.upload(&format!("{function}/{c}.zip"), "release").await;
    // Stored first (and sorting first by name): older than the valid resource, but it can never deploy.
    store_raw(&world, "a-invalid", &json!({"functionARN": arn, "functionName": function, "commit": "HEAD"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    world.apply_ld("valid", &arn, &function, &c).await;

    let summary = world.deployer(&[]).await.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!((summary.deployed, summary.failed, summary.blocked), (1, 1, 0), "{:?}", summary.errors);
    assert_eq!(world.code_sha256(&function).await, sha);
}

#[tokio::test]

async fn a_non_zip_artifact_stored_with_an_s3_checksum_is_rejected_before_any_lambda_update() {
    let _serial = SERIAL.lock().await;
    let world = World::new("hostile-checksum").await;
    let c = commit("hostile-checksum");
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let key = format!("{function}/{c}.zip");
    upload_bytes(&world, &key, b"not a zip, but checksummed".to_vec(), true).await;
    world.apply_ld("checksummed", &arn, &function, &c).await;

    let summary = world.deployer(&[]).await.handle(&json!({"action": "sweep"}), None).await.unwrap();
    assert_eq!(summary.failed, 1, "{summary:?}");
    let status = world.ld("checksummed").await.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(message.contains("is not a zip file"), "{message}");
    assert!(world.calls_to(&function, "UpdateFunctionCode").is_empty(), "no update attempted with a non-zip artifact");
}

#[tokio::test]
async fn every_bad_payload_is_refused_cleanly_by_a_real_deployer_without_any_lambda_call() {
    let _serial = SERIAL.lock().await;
    let world = World::new("hostile-payloads").await;
    // A deployable LD in the namespace, so a payload wrongly taken for its upload would show as a deploy.
    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c = commit("hostile-payloads");
    world.apply_ld("bystander", &arn, &function, &c).await;
    let (_, sha) = world.upload(&format!("{function}/{c}.zip"), "release").await;
    let deployer = world.deployer(&[]).await;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("tests/fixtures/bad").filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    assert!(!files.is_empty(), "the bad-input corpus is empty");
    let lambda_calls = || world.testbed.aws().calls().calls.iter().filter(|c| c.service == "lambda").count();
    let mut problems = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        let bytes = std::fs::read(path).expect("fixture bytes");
        let before = lambda_calls();
        let payload: Value = match serde_json::from_slice(&bytes) {
            Ok(payload) => payload,
            // Not JSON at all: the Lambda runtime refuses it before the handler; the decoder must too.
            Err(_) => {
                if !matches!(decode_json(&bytes), Err(Error::Payload(_))) {
                    problems.push(format!("{name}: not JSON, yet not refused as a payload error"));
                }
                continue;
            }
        };
        match deployer.handle(&payload, None).await {
            Err(Error::Payload(_)) => {}
            Ok(summary) if summary.deployed == 0 => {}
            Ok(summary) => problems.push(format!("{name}: deployed {}", summary.deployed)),
            Err(other) => problems.push(format!("{name}: not a payload error: {other}")),
        }
        if lambda_calls() != before {
            problems.push(format!("{name}: made {} Lambda call(s)", lambda_calls() - before));
        }
    }
    assert!(problems.is_empty(), "bad payloads mishandled:\n{}", problems.join("\n"));
    assert!(world.calls_to(&function, "UpdateFunctionCode").is_empty());
    // Sanity: the bystander was deployable all along.
    assert_eq!(deployer.handle(&json!({"action": "sweep"}), None).await.unwrap().deployed, 1);
    assert_eq!(world.code_sha256(&function).await, sha);
}
