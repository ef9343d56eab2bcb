//! The Argo CD health check (gitops/argocd/health.lua) on every status the deployer writes, run by a real Lua 5.1
//! (gopher-lua, Argo CD's interpreter, has Lua 5.1 semantics): lupa from the venv that `make tools` builds, through
//! tests/argocd/run_health.py, which hands the object to the script as Argo CD does. The statuses are
//! tests/fixtures/status/*.json, generated from the report code (see `src/report.rs`).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const SCRIPT: &str = "gitops/argocd/health.lua";
const CM_PATCH: &str = "gitops/argocd/argocd-cm-patch.yaml";
const CM_KEY: &str = "resource.customizations.health.lambda-deployer.dev_LambdaDeployment";

/// The Argo CD health each status fixture (by file name) must get. A fixture missing here fails the tests: a new
/// phase or reason needs a decision about how Argo CD shows it.
const EXPECTED: &[(&str, &str)] = &[
    ("deployed.json", "Healthy"),
    ("waitingforartifact.json", "Progressing"),
    ("deploying.json", "Progressing"),
    ("progressing.json", "Progressing"),
    ("failed-deployfailed.json", "Degraded"),
    ("failed-invalid.json", "Degraded"),
    ("failed-updatefailed.json", "Degraded"),
    ("blocked.json", "Degraded"),
    ("rolledback.json", "Degraded"),
    ("suspended.json", "Suspended"),
];

#[derive(Debug)]
struct Health {
    status: String,
    message: String,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the health check on `object` with Lua 5.1, as Argo CD would.
fn health(object: &Value) -> Health {
    let python = support::venv_tool("python");
    let mut child = Command::new(&python)
        .arg(root().join("tests/argocd/run_health.py"))
        .arg(root().join(SCRIPT))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    child.stdin.take().unwrap().write_all(object.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(2) => {
            panic!("the venv cannot run Lua: run `make tools` (lupa is pinned in tools/requirements.txt)\n{stderr}")
        }
        _ => panic!("the health check failed on {object}\n{stderr}"),
    }
    let result: Value = serde_json::from_slice(&out.stdout).expect("the runner prints JSON");
    let text = |key: &str| result[key].as_str().unwrap_or_else(|| panic!("no {key} in {result}")).to_string();
    Health { status: text("status"), message: text("message") }
}

/// Every status fixture, by file name, sorted.
fn fixtures() -> Vec<(String, Value)> {
    let dir = root().join("tests/fixtures/status");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            (name, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .collect()
}

fn expected(name: &str) -> &'static str {
    let found = EXPECTED.iter().find(|(file, _)| *file == name);
    found.map(|(_, health)| *health).unwrap_or_else(|| {
        panic!("tests/fixtures/status/{name} has no expected Argo CD health: add it to EXPECTED in {}", file!())
    })
}

fn fixture(name: &str) -> Value {
    fixtures().into_iter().find(|(file, _)| file == name).unwrap_or_else(|| panic!("no fixture {name}")).1
}

fn status_message(object: &Value) -> &str {
    object["status"]["message"].as_str().expect("status.message")
}

#[test]
fn every_status_the_deployer_writes_gets_the_argo_cd_health_its_phase_means_with_the_status_message() {
    for (name, object) in fixtures() {
        let health = health(&object);
        assert_eq!(health.status, expected(&name), "{name}: {health:?}");
        assert_eq!(health.message, status_message(&object), "{name}");
    }
}

#[test]
fn every_status_fixture_has_an_expected_health_and_every_expectation_a_fixture() {
    let names: Vec<String> = fixtures().into_iter().map(|(name, _)| name).collect();
    for name in &names {
        expected(name);
    }
    for (name, _) in EXPECTED {
        assert!(names.iter().any(|n| n == name), "EXPECTED names {name}, which tests/fixtures/status lacks");
    }
}

#[test]
fn a_resource_without_a_status_is_progressing_until_the_deployer_observes_its_generation() {
    for (name, mut object) in fixtures() {
        object.as_object_mut().unwrap().remove("status");
        let health = health(&object);
        assert_eq!(health.status, "Progressing", "{name}");
        assert_eq!(health.message, "waiting for the deployer to observe generation 3", "{name}");
    }
    let health = health(&json!({"apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment"}));
    assert_eq!(health.status, "Progressing");
    assert_eq!(health.message, "waiting for the deployer to observe this resource");
}

#[test]
fn a_new_generation_is_progressing_whatever_the_status_of_the_previous_one_says() {
    for (name, mut object) in fixtures() {
        object["metadata"]["generation"] = json!(4);
        let health = health(&object);
        assert_eq!(health.status, "Progressing", "{name}: generation 4, observedGeneration 3");
        assert_eq!(health.message, "waiting for the deployer to observe generation 4", "{name}");
    }
}

#[test]
fn without_conditions_the_phase_gives_the_same_health() {
    for (name, mut object) in fixtures() {
        object["status"].as_object_mut().unwrap().remove("conditions");
        let health = health(&object);
        assert_eq!(health.status, expected(&name), "{name} without conditions: {health:?}");
        assert_eq!(health.message, status_message(&object), "{name} without conditions");
    }
    for (name, mut object) in fixtures() {
        object["status"]["conditions"] = json!([]);
        assert_eq!(health(&object).status, expected(&name), "{name} with no conditions");
    }
}

#[test]
fn conditions_decide_when_they_disagree_with_the_phase() {
    let mut object = fixture("failed-updatefailed.json");
    object["status"]["phase"] = json!("Deployed");
    assert_eq!(health(&object).status, "Degraded", "Stalled=True outranks the phase");

    let mut object = fixture("deployed.json");
    object["status"]["phase"] = json!("Deploying");
    assert_eq!(health(&object).status, "Healthy", "Ready=True outranks the phase");
}

#[test]
fn conditions_of_an_older_generation_are_not_believed() {
    // status.observedGeneration says 4 was seen, but the Stalled condition is about 3: the phase decides.
    let mut object = fixture("failed-invalid.json");
    object["metadata"]["generation"] = json!(4);
    object["status"]["observedGeneration"] = json!(4);
    object["status"]["phase"] = json!("Deploying");
    object["status"]["message"] = json!("update in progress");
    let health = health(&object);
    assert_eq!(health.status, "Progressing", "{health:?}");
    assert_eq!(health.message, "update in progress");
}

#[test]
fn a_canary_release_names_its_traffic_weight() {
    let object = fixture("progressing.json");
    assert!(health(&object).message.contains("10% of the traffic"), "the deployer's message names the weight");

    let mut object = fixture("progressing.json");
    object["status"]["message"] = json!("held: alarm errors is in ALARM");
    let health_held = health(&object);
    assert_eq!(health_held.status, "Progressing");
    assert_eq!(health_held.message, "release at 10% of the traffic: held: alarm errors is in ALARM");

    let mut object = fixture("progressing.json");
    object["status"].as_object_mut().unwrap().remove("message");
    object["status"].as_object_mut().unwrap().remove("conditions");
    object["status"]["rollout"]["weight"] = json!(25);
    assert_eq!(health(&object).message, "release at 25% of the traffic: Progressing");
}

#[test]
fn odd_or_partial_statuses_get_a_health_and_never_a_lua_error() {
    let deployed = fixture("deployed.json");
    let with_status = |status: Value| {
        let mut object = deployed.clone();
        object["status"] = status;
        object
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("an empty object", json!({}), "Progressing"),
        ("metadata without generation", json!({"metadata": {}, "status": {"observedGeneration": 1}}), "Unknown"),
        ("status not an object", with_status(json!("Deployed")), "Progressing"),
        ("an empty status", with_status(json!({})), "Progressing"),
        ("observedGeneration a string", with_status(json!({"observedGeneration": "3"})), "Progressing"),
        ("observed, nothing else", with_status(json!({"observedGeneration": 3})), "Unknown"),
        ("an unknown phase", with_status(json!({"observedGeneration": 3, "phase": "Paused"})), "Unknown"),
        (
            "conditions not a list",
            with_status(json!({"observedGeneration": 3, "phase": "Deployed", "conditions": "Ready"})),
            "Healthy",
        ),
        (
            "conditions with odd entries",
            with_status(json!({
                "observedGeneration": 3,
                "phase": "Deploying",
                // A null ends the sequence, as in Argo CD (ipairs stops at the first nil).
                "conditions": [1, "Ready", {}, {"type": "Ready"}, {"type": "Stalled", "status": "True"}, null],
            })),
            "Degraded",
        ),
        (
            "a Ready condition without status or message",
            with_status(json!({"observedGeneration": 3, "conditions": [{"type": "Ready", "reason": "Deploying"}]})),
            "Unknown",
        ),
        (
            "a release without a rollout",
            with_status(json!({"observedGeneration": 3, "phase": "Progressing"})),
            "Progressing",
        ),
    ];
    for (label, object, status) in cases {
        let health = health(&object);
        assert_eq!(health.status, status, "{label}: {object}: {health:?}");
    }
    let unknown = health(&with_status(json!({"observedGeneration": 3, "phase": "Paused", "message": "why"})));
    assert_eq!(unknown.message, "unknown phase Paused: why");
}

#[test]
fn the_argocd_cm_patch_embeds_the_health_check_byte_for_byte() {
    let script = std::fs::read_to_string(root().join(SCRIPT)).unwrap();
    let text = std::fs::read_to_string(root().join(CM_PATCH)).unwrap();
    let patch: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{CM_PATCH}: {e}"));
    assert_eq!(patch["apiVersion"], "v1");
    assert_eq!(patch["kind"], "ConfigMap");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    assert!(patch["metadata"].get("namespace").is_none(), "kubectl -n argocd names it; Argo CD's may differ");
    let embedded = patch["data"][CM_KEY].as_str().unwrap_or_else(|| panic!("{CM_PATCH} has no data.{CM_KEY}"));
    assert!(
        embedded == script,
        "{CM_PATCH} embeds a different script than {SCRIPT}: rebuild it with the command in its header comment"
    );
}
