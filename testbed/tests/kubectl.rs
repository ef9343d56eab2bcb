//! Real kubectl (1.37, from the venv that `make tools` builds) against `testbed kube`: apply a CRD and objects with
//! validation on, printer columns, field selectors on selectableFields, idempotent apply, explain, rejections.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: lambdadeployments.lambda-deployer.dev
spec:
  group: lambda-deployer.dev
  scope: Namespaced
  names: {plural: lambdadeployments, singular: lambdadeployment, kind: LambdaDeployment, shortNames: [ld]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    selectableFields:
    - jsonPath: .spec.functionName
    - jsonPath: .spec.commit
    additionalPrinterColumns:
    - {name: Function, type: string, jsonPath: .spec.functionName}
    - {name: Commit, type: string, jsonPath: .spec.commit}
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        description: A request to deploy one commit of a Lambda function.
        properties:
          spec:
            type: object
            description: What to deploy.
            required: [functionName, commit]
            properties:
              functionName: {type: string, minLength: 1, description: The Lambda function to update.}
              commit: {type: string, pattern: '^[0-9a-f]{7,40}$', description: The git commit whose artifact to deploy.}
          status:
            type: object
            properties:
              phase: {type: string}
"#;

fn objects_yaml(commit_b: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n---\n\
         apiVersion: lambda-deployer.dev/v1\nkind: LambdaDeployment\nmetadata:\n  name: alpha\n  namespace: default\n\
         spec:\n  functionName: fn-alpha\n  commit: abc1234\n---\n\
         apiVersion: lambda-deployer.dev/v1\nkind: LambdaDeployment\nmetadata:\n  name: beta\n  namespace: team-b\n\
         spec:\n  functionName: fn-beta\n  commit: {commit_b}\n"
    )
}

fn kubectl_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/kubectl");
    assert!(path.exists(), "kubectl not found at {} — run `make tools` to create the venv", path.display());
    path
}

/// `testbed kube` running in a scratch directory; killed (SIGTERM) by `stop`.
struct KubeCommand {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl KubeCommand {
    async fn start() -> KubeCommand {
        let dir = std::env::temp_dir().join(format!("testbed-kubectl-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
            .args(["kube", "--listen", "127.0.0.1:0", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("testbed kube starts");
        for _ in 0..100 {
            if dir.join("kube.url").exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(dir.join("kubeconfig").exists(), "testbed kube wrote no kubeconfig within 10 s");
        KubeCommand { child, dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// kubectl with this server's kubeconfig and a private cache and HOME.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(kubectl_path());
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .env("HOME", &self.dir)
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let run = self.command(args).output();
        let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("kubectl finished in 60 s").unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed: {stderr}");
        stdout
    }

    /// SIGTERM, then the command must exit cleanly.
    async fn stop(mut self) {
        let pid = self.child.id().expect("still running").to_string();
        let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.expect("exits on SIGTERM");
        assert!(status.unwrap().success(), "clean exit on SIGTERM");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect()
}

#[tokio::test]
async fn kubectl_applies_lists_filters_explains_and_rejects_like_against_eks() {
    let kube = KubeCommand::start().await;
    let crd = kube.write("crd.yaml", CRD);
    let objects = kube.write("objects.yaml", &objects_yaml("def5678"));

    let out = kube.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/lambdadeployments.lambda-deployer.dev created"
    );
    let out = kube.ok(&["apply", "-f", objects.to_str().unwrap()]).await;
    assert!(out.contains("lambdadeployment.lambda-deployer.dev/alpha created"), "{out}");

    // Printer columns, all namespaces.
    let table = rows(&kube.ok(&["get", "lambdadeployments", "-A"]).await);
    assert_eq!(table[0], ["NAMESPACE", "NAME", "FUNCTION", "COMMIT", "PHASE", "AGE"]);
    assert_eq!(table[1][..4], ["default", "alpha", "fn-alpha", "abc1234"]);
    assert_eq!(table[2][..4], ["team-b", "beta", "fn-beta", "def5678"]);

    // Field selector on a CRD selectableField, through the short name.
    let filtered = rows(&kube.ok(&["get", "ld", "-A", "--field-selector", "spec.functionName=fn-beta"]).await);
    assert_eq!(filtered.len(), 2, "{filtered:?}");
    assert_eq!(filtered[1][1], "beta");
    let (ok, _, stderr) = kube.kubectl(&["get", "ld", "--field-selector", "spec.nope=x"]).await;
    assert!(!ok && stderr.contains("field label not supported: spec.nope"), "{stderr}");

    // Applying the same file again changes nothing; a changed spec bumps generation.
    let jsonpath =
        ["get", "ld", "beta", "-n", "team-b", "-o", "jsonpath={.metadata.resourceVersion} {.metadata.generation}"];
    let before = kube.ok(&jsonpath).await;
    let out = kube.ok(&["apply", "-f", objects.to_str().unwrap()]).await;
    assert!(out.contains("lambdadeployment.lambda-deployer.dev/beta unchanged"), "{out}");
    assert_eq!(kube.ok(&jsonpath).await, before);
    let changed = kube.write("changed.yaml", &objects_yaml("fedcba9"));
    let out = kube.ok(&["apply", "-f", changed.to_str().unwrap()]).await;
    assert!(out.contains("lambdadeployment.lambda-deployer.dev/beta configured"), "{out}");
    assert!(out.contains("lambdadeployment.lambda-deployer.dev/alpha unchanged"), "{out}");
    assert!(kube.ok(&jsonpath).await.ends_with(" 2"));

    // explain reads the CRD schema from /openapi/v3.
    let explained = kube.ok(&["explain", "ld.spec"]).await;
    assert!(explained.contains("KIND:       LambdaDeployment"), "{explained}");
    assert!(explained.contains("functionName\t<string> -required-"), "{explained}");
    assert!(explained.contains("The git commit whose artifact to deploy."), "{explained}");

    // Server-side validation, with the field named; unknown fields rejected (kubectl sends fieldValidation=Strict).
    let bad = kube.write(
        "bad.yaml",
        "apiVersion: lambda-deployer.dev/v1\nkind: LambdaDeployment\nmetadata:\n  name: bad\nspec:\n  functionName: fn\n  commit: HEAD\n",
    );
    let (ok, _, stderr) = kube.kubectl(&["apply", "-f", bad.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(stderr.contains("spec.commit: Invalid value: \"HEAD\": spec.commit in body should match"), "{stderr}");
    let unknown = kube.write(
        "unknown.yaml",
        "apiVersion: lambda-deployer.dev/v1\nkind: LambdaDeployment\nmetadata:\n  name: odd\nspec:\n  functionName: fn\n  commit: abc1234\n  bogus: 1\n",
    );
    let (ok, _, stderr) = kube.kubectl(&["apply", "-f", unknown.to_str().unwrap()]).await;
    assert!(!ok && stderr.contains("unknown field \"spec.bogus\""), "{stderr}");

    // What kubectl asked for, from the server's request log.
    let log: Value = serde_json::from_str(&kube.ok(&["get", "--raw", "/_testbed/requests"]).await).unwrap();
    let requests = log.as_array().unwrap();
    assert!(
        requests
            .iter()
            .any(|r| r["verb"] == "create" && r["query"].as_str().unwrap().contains("fieldValidation=Strict"))
    );
    assert!(
        requests.iter().any(|r| r["verb"] == "patch" && r["resource"] == "lambdadeployments" && r["status"] == 200)
    );

    kube.stop().await;
}

#[tokio::test]
async fn kubectl_typed_commands_rbac_checks_and_watch_work() {
    let kube = KubeCommand::start().await;
    let crd = kube.write("crd.yaml", CRD);
    kube.ok(&["apply", "-f", crd.to_str().unwrap()]).await;

    // These send protobuf bodies (kubectl's typed clients).
    assert_eq!(kube.ok(&["create", "namespace", "team-c"]).await.trim(), "namespace/team-c created");
    kube.ok(&[
        "create",
        "clusterrole",
        "ld-reader",
        "--verb=get,list,watch",
        "--resource=lambdadeployments.lambda-deployer.dev",
    ])
    .await;
    kube.ok(&["create", "clusterrolebinding", "ld-reader", "--clusterrole=ld-reader", "--group=lambda-deployer"]).await;
    let can = |groups: &'static str| {
        let kube = &kube;
        async move {
            let mut args = vec!["auth", "can-i", "list", "lambdadeployments", "--as=someone"];
            if !groups.is_empty() {
                args.push(groups);
            }
            kube.kubectl(&args).await.1.trim().to_string()
        }
    };
    assert_eq!(can("--as-group=lambda-deployer").await, "yes");
    assert_eq!(can("").await, "no");
    let whoami = kube.ok(&["auth", "whoami", "--as=someone", "--as-group=lambda-deployer"]).await;
    assert!(whoami.contains("someone") && whoami.contains("lambda-deployer"), "{whoami}");

    // `get -w` streams Table rows as objects change.
    let objects = kube.write("objects.yaml", &objects_yaml("def5678"));
    kube.ok(&["apply", "-f", objects.to_str().unwrap()]).await;
    let mut watch =
        kube.command(&["get", "ld", "alpha", "-w", "--output-watch-events"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with("EVENT"), "{first}");
    kube.ok(&[
        "patch",
        "ld",
        "alpha",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Deployed"}}"#,
    ])
    .await;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("MODIFIED") && line.contains("Deployed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "kubectl get -w showed the status change");
    watch.kill().await.unwrap();

    kube.stop().await;
}
