//! What the README's GitOps section tells people to run, run: real kubectl (the venv's, with kustomize built in)
//! against a fresh testbed Kubernetes API server per test. `kubectl apply -k crds` installs the CRD and the RBAC (and
//! `kubectl apply -f crds/` still does), the Argo CD health check installs with `kubectl patch`, `kubectl wait` waits
//! for the generation the deployer observed, and the Flux example points at what kustomize can build.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use testbed::apiserver::{ApiServer, ApiServerOptions};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh API server, its kubeconfig in a scratch directory that is also kubectl's HOME and cache.
struct Cluster {
    _server: ApiServer,
    dir: PathBuf,
}

impl Cluster {
    async fn start(label: &str) -> Cluster {
        let server = ApiServer::start(ApiServerOptions::default()).await.expect("the API server starts");
        let dir = std::env::temp_dir().join(format!("lambda-deployer-gitops-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        server.write_files(&dir).unwrap();
        Cluster { _server: server, dir }
    }

    /// Runs kubectl from the repository root (so paths read as in the README); (success, stdout, stderr).
    async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let run = tokio::process::Command::new(support::venv_tool("kubectl"))
            .current_dir(root())
            .arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .env("HOME", &self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("kubectl done in 60 s").unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args).await;
        assert!(ok, "kubectl {} failed: {stderr}", args.join(" "));
        stdout
    }

    fn write(&self, name: &str, value: &Value) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, value.to_string()).unwrap();
        path.display().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const INSTALLED: &str = "customresourcedefinition.apiextensions.k8s.io/lambdadeployments.lambda-deployer.dev {}
clusterrole.rbac.authorization.k8s.io/lambda-deployer {}
clusterrolebinding.rbac.authorization.k8s.io/lambda-deployer {}
";

fn documents(text: &str, origin: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// Numbers as f64: kustomize writes the CRD's `minimum: 1.0` as `1`, the same number.
fn numbers_as_f64(value: Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect()),
        other => other,
    }
}

fn by_kind_and_name(objects: Vec<Value>) -> Vec<Value> {
    let mut objects: Vec<Value> = objects.into_iter().map(numbers_as_f64).collect();
    objects.sort_by_key(|o| (o["kind"].to_string(), o["metadata"]["name"].to_string()));
    objects
}

#[test]
fn kustomize_renders_exactly_the_crd_and_the_rbac_that_kubectl_apply_f_crds_applies() {
    let out = std::process::Command::new(support::venv_tool("kubectl"))
        .current_dir(root())
        .args(["kustomize", "crds"])
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl kustomize crds: {}", String::from_utf8_lossy(&out.stderr));
    let rendered = by_kind_and_name(documents(&String::from_utf8(out.stdout).unwrap(), "kubectl kustomize crds"));

    // `kubectl apply -f crds/` reads the directory's *.yaml, *.yml and *.json: the same objects, no more, no fewer.
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .collect();
    files.sort();
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["lambdadeployment.yaml", "rbac.yaml"], "crds/ holds only manifests meant for the cluster");
    let committed = files
        .iter()
        .flat_map(|path| documents(&std::fs::read_to_string(path).unwrap(), &path.display().to_string()))
        .collect();
    let committed = by_kind_and_name(committed);

    let kinds: Vec<(&str, &str)> =
        rendered.iter().map(|o| (o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())).collect();
    assert_eq!(
        kinds,
        [
            ("ClusterRole", "lambda-deployer"),
            ("ClusterRoleBinding", "lambda-deployer"),
            ("CustomResourceDefinition", "lambdadeployments.lambda-deployer.dev"),
        ]
    );
    for (rendered, committed) in rendered.iter().zip(&committed) {
        assert!(rendered == committed, "kustomize changed {}: {rendered:#}", committed["kind"]);
    }
}

#[tokio::test]
async fn kubectl_apply_k_crds_installs_the_crd_and_the_deployers_rbac_and_apply_f_crds_still_works() {
    let cluster = Cluster::start("apply").await;
    let out = cluster.ok(&["apply", "-k", "crds"]).await;
    assert_eq!(out, INSTALLED.replace("{}", "created"));
    // The kustomization file is not sent to the cluster as an object (kustomization.yaml would be, and fail).
    let out = cluster.ok(&["apply", "-f", "crds/"]).await;
    assert_eq!(out, INSTALLED.replace("{}", "unchanged"), "-f and -k install the same objects");

    let crd = cluster.ok(&["get", "crd", "lambdadeployments.lambda-deployer.dev", "-o", "json"]).await;
    let crd: Value = serde_json::from_str(&crd).unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["ld"]));

    // The binding gives the deployer's group (EKS access entry) what it needs and nothing else.
    for (verb, resource, answer) in [
        ("list", "lambdadeployments.lambda-deployer.dev", "yes"),
        ("get", "lambdadeployments.lambda-deployer.dev", "yes"),
        ("patch", "lambdadeployments.lambda-deployer.dev --subresource=status", "yes"),
        ("create", "events.events.k8s.io", "yes"),
        ("patch", "lambdadeployments.lambda-deployer.dev", "no"),
        ("delete", "lambdadeployments.lambda-deployer.dev", "no"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", "no"),
    ] {
        let mut args = vec!["auth", "can-i", verb, "-A", "--as", "deployer", "--as-group", "lambda-deployer"];
        args.extend(resource.split(' '));
        let (_, stdout, stderr) = cluster.kubectl(&args).await;
        assert_eq!(stdout.trim(), answer, "can the deployer {verb} {resource}? {stderr}");
    }
}

#[tokio::test]
async fn the_argo_cd_health_check_installs_with_kubectl_patch_keeping_the_other_settings() {
    let cluster = Cluster::start("argocd").await;
    cluster.ok(&["create", "namespace", "argocd"]).await;
    let url = "--from-literal=url=https://argocd.example.com";
    cluster.ok(&["-n", "argocd", "create", "configmap", "argocd-cm", url]).await;
    let patch =
        ["-n", "argocd", "patch", "configmap", "argocd-cm", "--patch-file", "gitops/argocd/argocd-cm-patch.yaml"];
    assert_eq!(cluster.ok(&patch).await.trim(), "configmap/argocd-cm patched");

    let cm: Value =
        serde_json::from_str(&cluster.ok(&["-n", "argocd", "get", "configmap", "argocd-cm", "-o", "json"]).await)
            .unwrap();
    let script = std::fs::read_to_string(root().join("gitops/argocd/health.lua")).unwrap();
    let installed = cm["data"]["resource.customizations.health.lambda-deployer.dev_LambdaDeployment"].as_str();
    assert!(installed == Some(script.as_str()), "the installed script differs from health.lua: {installed:?}");
    assert_eq!(cm["data"]["url"], "https://argocd.example.com", "the patch merges, it does not replace");
    assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/part-of"], "argocd", "Argo CD watches only its own");
}

#[tokio::test]
async fn kubectl_wait_for_ready_waits_for_the_generation_the_deployer_observed() {
    let cluster = Cluster::start("wait").await;
    cluster.ok(&["apply", "-k", "crds"]).await;
    cluster.ok(&["create", "namespace", "team-orders"]).await;
    let deployed = support::fixture("status/deployed.json");
    let mut ld = deployed.clone();
    ld.as_object_mut().unwrap().remove("status");
    ld["metadata"].as_object_mut().unwrap().remove("generation");
    let path = cluster.write("ld.json", &ld);
    cluster.ok(&["apply", "-f", &path]).await;
    let ready = ["wait", "ld/orders", "-n", "team-orders", "--for=condition=Ready", "--timeout=1s"];
    let (met, _, stderr) = cluster.kubectl(&ready).await;
    assert!(!met && stderr.contains("timed out"), "no status yet: {stderr}");

    // The deployer's status for generation 1 (the fixture's, renumbered), written as the deployer does.
    let mut status = deployed["status"].clone();
    status["observedGeneration"] = json!(1);
    for condition in status["conditions"].as_array_mut().unwrap() {
        condition["observedGeneration"] = json!(1);
    }
    let path = cluster.write("status.json", &json!({"status": status}));
    let write_status = ["patch", "ld", "orders", "-n", "team-orders", "--subresource=status", "--type=merge"];
    cluster.ok(&[&write_status[..], &["--patch-file", &path]].concat()).await;
    let out = cluster.ok(&ready).await;
    assert_eq!(out.trim(), "lambdadeployment.lambda-deployer.dev/orders condition met");
    let commit = "--for=jsonpath={.status.deployedCommit}=abcdef1";
    cluster.ok(&["wait", "ld/orders", "-n", "team-orders", commit, "--timeout=1s"]).await;

    // A new commit is generation 2: the Ready=True of generation 1 no longer satisfies kubectl wait.
    let new_commit =
        ["patch", "ld", "orders", "-n", "team-orders", "--type=merge", "-p", r#"{"spec":{"commit":"1234567"}}"#];
    cluster.ok(&new_commit).await;
    let (met, _, stderr) = cluster.kubectl(&ready).await;
    assert!(!met && stderr.contains("timed out"), "a stale Ready=True passed: {stderr}");
}

#[test]
fn the_flux_example_waits_for_its_objects_and_installs_the_crds_from_a_kustomization() {
    let path = root().join("gitops/flux/kustomization.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kustomizations = documents(&text, "gitops/flux/kustomization.yaml");
    let names: Vec<&str> = kustomizations.iter().map(|k| k["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lambda-deployer-crds", "lambdas-production"]);
    for k in &kustomizations {
        let name = k["metadata"]["name"].as_str().unwrap();
        assert_eq!(k["apiVersion"], "kustomize.toolkit.fluxcd.io/v1", "{name}");
        assert_eq!(k["kind"], "Kustomization", "{name}");
        assert_eq!(k["spec"]["wait"], true, "{name}: Flux health-checks only when told to");
        assert!(k["spec"]["timeout"].is_string(), "{name}: how long Flux waits");
        for dependency in k["spec"]["dependsOn"].as_array().into_iter().flatten() {
            assert!(names.contains(&dependency["name"].as_str().unwrap()), "{name} depends on {dependency}");
        }
    }
    // Flux's kustomize-controller builds ./crds with kustomize: the same file `kubectl apply -k crds` reads.
    assert_eq!(kustomizations[0]["spec"]["path"], "./crds");
    let kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
    assert!(kustomization.iter().any(|f| root().join("crds").join(f).exists()), "crds/ has no kustomization to build");
}
