//! The real `lambda-deployer` binary under the Lambda runtime API emulator of cargo-lambda (`cargo lambda watch`),
//! invoked with `cargo lambda invoke` for every trigger type, against the testbed. Also checks that the binary's
//! JSON logs never contain credentials or the EKS token.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lambda_deployer::crd::Phase;
use lambda_deployer::metrics;
use serde_json::Value;
use support::{Children, World, commit, free_port, venv_tool};
use testbed::identity::AwsIdentity;

fn cargo_lambda() -> Command {
    let mut command = Command::new(venv_tool("cargo-lambda"));
    command.arg("lambda").current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// `cargo lambda invoke` with a payload; returns (exit ok, stdout + stderr).
fn invoke(port: u16, payload: &Value, dir: &Path) -> (bool, String) {
    let file = dir.join(format!("payload-{}.json", fastrand::u64(..)));
    std::fs::write(&file, payload.to_string()).unwrap();
    let output = cargo_lambda()
        .args(["invoke", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string(), "--data-file"])
        .arg(&file)
        .output()
        .expect("cargo lambda invoke runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn summary(text: &str) -> Value {
    let start = text.find('{').unwrap_or_else(|| panic!("no JSON in {text}"));
    serde_json::from_str(text[start..].trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn the_real_binary_handles_every_trigger_under_the_runtime_emulator() {
    let world = World::new("emulator").await;
    let dir = tempdir();
    let port = free_port();
    let emulator = cargo_lambda()
        .args(["watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cargo lambda watch starts");
    let log_path = dir.join("deployer.log");
    let mut deployer = Command::new(env!("CARGO_BIN_EXE_lambda-deployer"));
    deployer
        .env_clear()
        .envs(world.testbed.deployer_env().into_iter().filter(|(k, _)| k != "KUBECONFIG"))
        .env("WATCH_NAMESPACES", &world.namespace)
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "deployer-under-test")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        // As the template's LoggingConfig makes Lambda set them; Lambda's level wins over RUST_LOG.
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("RUST_LOG", "debug")
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(Stdio::inherit());
    let mut processes = Children(vec![emulator]);
    wait_for_port(port, Duration::from_secs(120));
    processes.0.push(deployer.spawn().expect("the deployer binary starts"));

    let arn = world.create_function("fn", "initial").await;
    let function = world.function_name("fn");
    let c1 = commit("emulator-1");
    world.apply_ld("orders", &arn, &function, &c1).await;

    // Schedule: artifact missing → waiting.
    let (ok, text) = invoke(port, &support::fixture("eventbridge-scheduled-event.json"), &dir);
    assert!(ok, "{text}");
    let result = summary(&text);
    assert_eq!((result["trigger"].as_str(), result["waiting"].as_u64()), (Some("schedule"), Some(1)), "{text}");

    // S3 notification: deploys.
    let key = format!("{function}/{c1}.zip");
    let (version, sha) = world.upload(&key, "release 1").await;
    let (ok, text) = invoke(port, &world.s3_event(&key, &version), &dir);
    assert!(ok, "{text}");
    assert_eq!(summary(&text)["deployed"].as_u64(), Some(1), "{text}");
    assert_eq!(world.code_sha256(&function).await, sha);
    assert_eq!(world.ld("orders").await.status.unwrap().phase, Some(Phase::Deployed));

    // Plan, after a new commit is declared and uploaded: says what it would do, changes nothing.
    let c2 = commit("emulator-2");
    world.set_commit("orders", &c2).await;
    let key2 = format!("{function}/{c2}.zip");
    let (version2, sha2) = world.upload(&key2, "release 2").await;
    let (ok, text) = invoke(port, &support::fixture("direct-plan.json"), &dir);
    assert!(ok, "{text}");
    let decision = summary(&text)["decisions"][0]["decision"].as_str().unwrap_or_default().to_string();
    assert!(decision.starts_with("would deploy"), "{text}");
    assert_eq!(world.code_sha256(&function).await, sha);

    // EventBridge Object Created: deploys the new commit.
    let (ok, text) = invoke(port, &world.eventbridge_event(&key2, &version2), &dir);
    assert!(ok, "{text}");
    assert_eq!(summary(&text)["deployed"].as_u64(), Some(1), "{text}");
    assert_eq!(world.code_sha256(&function).await, sha2);

    // A malformed payload: a clear, typed error naming what was received; nothing else happens.
    let (ok, text) = invoke(port, &serde_json::json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}), &dir);
    assert!(!ok || text.contains("UnrecognisedPayload"), "{text}");
    // The emulator's CLI wraps long messages: look for a short piece.
    assert!(text.contains("UnrecognisedPayload") && text.contains("rollout wake"), "{text}");

    // And the process is still serving.
    let (ok, text) = invoke(port, &serde_json::json!({"action": "sweep"}), &dir);
    assert!(ok, "{text}");
    assert_eq!(summary(&text)["upToDate"].as_u64(), Some(1), "{text}");

    drop(processes);
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.lines().count() > 5, "the binary logged: {logs}");
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("every log line is JSON ({e}): {line}")))
        .collect();
    assert!(!lines.iter().any(|l| l["level"] == "DEBUG"), "AWS_LAMBDA_LOG_LEVEL=INFO is obeyed over RUST_LOG");
    // Every line of an invocation names its request (lines before the first invocation are start-up).
    let request_id = |line: &Value| match line.get("_aws") {
        Some(_) => line["requestId"].as_str().map(String::from),
        None => line["spans"][0]["requestId"].as_str().map(String::from),
    };
    let first = lines.iter().position(|l| request_id(l).is_some()).expect("lines with a request id");
    for line in &lines[first..] {
        assert!(request_id(line).is_some_and(|r| !r.is_empty()), "a line without its request id: {line}");
    }

    // One EMF document per invocation that did something (not the plan, not the rejected payload), parsed back.
    let documents: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    let triggers: Vec<&str> = documents.iter().map(|d| d["Trigger"].as_str().unwrap_or_default()).collect();
    assert_eq!(triggers, ["schedule", "artifact", "artifact", "sweep"]);
    let count = |name: &str| documents.iter().map(|d| d[name].as_u64().unwrap_or(u64::MAX)).collect::<Vec<_>>();
    assert_eq!(count("Deployed"), [0, 1, 1, 0]);
    assert_eq!(count("WaitingForArtifact"), [1, 0, 0, 0]);
    assert_eq!(count("UpToDate"), [0, 0, 0, 1]);
    for document in &documents {
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], metrics::NAMESPACE);
        assert_eq!(directive["Dimensions"], serde_json::json!([["Deployer"], ["Deployer", "Trigger"]]));
        assert_eq!(document["Deployer"], "deployer-under-test", "the function's own name");
        assert!(document["_aws"]["Timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
        let emitted: Vec<(&str, &str)> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["Name"].as_str().unwrap(), m["Unit"].as_str().unwrap()))
            .collect();
        let declared: Vec<(&str, &str)> = metrics::METRICS.iter().map(|m| (m.name, m.unit)).collect();
        assert_eq!(emitted, declared, "the binary emits exactly the metrics the template's alarms are checked against");
        for (name, _) in emitted {
            assert!(document[name].is_u64(), "{name} has a value: {document}");
        }
        let invocation = document["requestId"].as_str().unwrap();
        let finished = lines
            .iter()
            .find(|l| request_id(l).as_deref() == Some(invocation) && l["fields"]["message"] == "invocation finished");
        assert!(finished.is_some(), "the metrics name the invocation their summary line names: {invocation}");
    }
    let deployer_identity = AwsIdentity::deployer();
    for secret in [deployer_identity.secret_access_key.as_str(), "k8s-aws-v1.", "X-Amz-Signature"] {
        assert!(!logs.contains(secret), "logs leak {secret}");
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lambda-deployer-emulator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits (bounded) until something listens on the port: `cargo lambda watch` first runs `cargo metadata`.
fn wait_for_port(port: u16, limit: Duration) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < limit, "the runtime emulator did not listen on port {port} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
