//! Shared by the deployer's integration tests: one testbed per test binary (moto + AWS fidelity layer + Kubernetes
//! API server, real HTTP and TLS on 127.0.0.1), the committed CRD and RBAC applied once, and per-test isolation by
//! namespace (the deployer under test watches only its test's namespace) and by function names.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_lambda::primitives::Blob;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use lambda_deployer::config::Config;
use lambda_deployer::crd::{LambdaDeployment, LambdaDeploymentSpec};
use lambda_deployer::deployer::Deployer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testbed::identity::{ACCOUNT_ID, ARTIFACT_BUCKET, AwsIdentity, REGION};
use testbed::up::{FUNCTION_ROLE, Testbed, TestbedOptions};
use tokio::sync::OnceCell;

/// How long updates take in a test binary's testbed: one testbed (with the CRD and RBAC installed) per model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Updates {
    /// A fixed 300 ms InProgress: for tests of behaviour, where update time is not what is measured.
    Fast,
    /// The testbed's default, AWS's: 1.5–4.5 s, seeded. Benchmarks and the soak, whose figures depend on it.
    Realistic,
}

static FAST: OnceCell<Testbed> = OnceCell::const_new();
static REALISTIC: OnceCell<Testbed> = OnceCell::const_new();
static INSTALLED_FAST: OnceCell<()> = OnceCell::const_new();
static INSTALLED_REALISTIC: OnceCell<()> = OnceCell::const_new();

/// The cluster the test deployers' claims name: the testbed's EKS cluster, in the deployer's account and region.
pub fn this_cluster() -> String {
    format!("arn:aws:eks:{REGION}:{ACCOUNT_ID}:cluster/{}", testbed::identity::CLUSTER_NAME)
}

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}")
}

/// A valid zip (one stored file) whose bytes depend on `content`, and its Lambda-style CodeSha256.
pub fn zip(content: &str) -> (Vec<u8>, String) {
    let data = content.as_bytes();
    let name = b"index.txt";
    let crc = crc32(data);
    let mut out = Vec::new();
    let local = |out: &mut Vec<u8>| {
        out.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
    };
    local(&mut out);
    out.extend_from_slice(name);
    out.extend_from_slice(data);
    let central_offset = out.len() as u32;
    out.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(name);
    let central_size = out.len() as u32 - central_offset;
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    let sha = base64_sha256(&out);
    (out, sha)
}

pub fn base64_sha256(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A commit id derived from a label, so tests read well and ids are unique and valid.
pub fn commit(label: &str) -> String {
    hex::encode(&Sha256::digest(label.as_bytes())[..20])
}

pub async fn testbed(updates: Updates) -> &'static Testbed {
    let (cell, options) = match updates {
        Updates::Fast => (&FAST, TestbedOptions::fast()),
        Updates::Realistic => (&REALISTIC, TestbedOptions::default()),
    };
    cell.get_or_init(|| async {
        Testbed::start(options).await.unwrap_or_else(|e| panic!("testbed did not start: {e}"))
    })
    .await
}

fn sdk_config(testbed: &Testbed, identity: &AwsIdentity) -> impl Future<Output = aws_config::SdkConfig> {
    sdk_config_in(testbed, identity, REGION)
}

fn sdk_config_in(
    testbed: &Testbed,
    identity: &AwsIdentity,
    region: &str,
) -> impl Future<Output = aws_config::SdkConfig> {
    let credentials = aws_credential_types::Credentials::new(
        identity.access_key_id.clone(),
        identity.secret_access_key.clone(),
        None,
        None,
        "testbed",
    );
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(testbed.aws_endpoint())
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard().with_max_attempts(10))
        .load()
}

/// A Lambda client acting as the admin of `account` in `region`.
pub async fn lambda_in(testbed: &Testbed, account: &str, region: &str) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&sdk_config_in(testbed, &AwsIdentity::admin_of(account), region).await)
}

/// One test's world: its namespace, admin clients, and the deployer it runs.
pub struct World {
    pub testbed: &'static Testbed,
    pub namespace: String,
    pub admin: kube::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

pub async fn admin_kube(testbed: &Testbed) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&testbed.kube().kubeconfig()).expect("admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// Applies a YAML file (one or more documents) as the admin, with server-side apply.
pub async fn apply_file(client: &kube::Client, path: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    for document in documents.into_iter().filter(|d| !d.is_null()) {
        apply_value(client, document).await;
    }
}

pub async fn apply_value(client: &kube::Client, document: Value) {
    let object: DynamicObject = serde_json::from_value(document.clone()).expect("a Kubernetes object");
    let types = object.types.clone().expect("apiVersion and kind");
    let (group, version) = types.api_version.split_once('/').unwrap_or(("", &types.api_version));
    let plural = match types.kind.as_str() {
        "CustomResourceDefinition" => "customresourcedefinitions".to_string(),
        "ClusterRole" => "clusterroles".to_string(),
        "ClusterRoleBinding" => "clusterrolebindings".to_string(),
        "Role" => "roles".to_string(),
        "RoleBinding" => "rolebindings".to_string(),
        "Namespace" => "namespaces".to_string(),
        "LambdaDeployment" => "lambdadeployments".to_string(),
        other => panic!("apply_value does not know {other}"),
    };
    let resource = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: types.api_version.clone(),
        kind: types.kind.clone(),
        plural,
    };
    let name = object.metadata.name.clone().expect("a name");
    let api: Api<DynamicObject> = match &object.metadata.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(&name, &PatchParams::apply("tests").force(), &Patch::Apply(&document))
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", types.kind));
}

impl World {
    /// A world on the fast testbed (see [`Updates`]).
    pub async fn new(namespace: &str) -> World {
        World::with_updates(namespace, Updates::Fast).await
    }

    pub async fn with_updates(namespace: &str, updates: Updates) -> World {
        let testbed = testbed(updates).await;
        let admin = admin_kube(testbed).await;
        let installed = match updates {
            Updates::Fast => &INSTALLED_FAST,
            Updates::Realistic => &INSTALLED_REALISTIC,
        };
        installed
            .get_or_init(|| async {
                apply_file(&admin, "crds/lambdadeployment.yaml").await;
                apply_file(&admin, "crds/rbac.yaml").await;
                let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
                crds.get("lambdadeployments.lambda-deployer.dev").await.expect("CRD installed");
            })
            .await;
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.expect("test namespace");
        let sdk = sdk_config(testbed, &AwsIdentity::admin()).await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        World {
            testbed,
            namespace: namespace.into(),
            admin,
            lambda: aws_sdk_lambda::Client::new(&sdk),
            s3,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        }
    }

    /// A deployer as the Lambda runs it (deployer credentials, EKS token auth, RBAC from crds/rbac.yaml), watching
    /// only this test's namespace. `vars` override or add environment variables.
    pub async fn deployer(&self, vars: &[(&str, &str)]) -> Deployer {
        let mut env: HashMap<String, String> = self.testbed.deployer_env().into_iter().collect();
        env.remove("KUBECONFIG");
        env.insert("WATCH_NAMESPACES".into(), self.namespace.clone());
        env.insert("DEADLINE_MARGIN_SECONDS".into(), "1".into());
        for (key, value) in vars {
            env.insert(key.to_string(), value.to_string());
        }
        let config = Config::from_vars(|name| env.get(name).cloned()).expect("valid configuration");
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.testbed.aws_endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                env["AWS_ACCESS_KEY_ID"].clone(),
                env["AWS_SECRET_ACCESS_KEY"].clone(),
                None,
                None,
                "deployer",
            ))
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        let identity = Deployer::identity(&sdk).await.expect("deployer identity");
        Deployer::new(config, &sdk, &identity)
    }

    /// A new SQS queue for this test (the deployer's rollout queue); its URL.
    pub async fn queue(&self, label: &str) -> String {
        let name = format!("{}-{label}", self.namespace);
        let out = self.sqs.create_queue().queue_name(&name).send().await.expect("CreateQueue");
        out.queue_url().expect("a queue URL").to_string()
    }

    /// A unique function name for this test.
    pub fn function_name(&self, label: &str) -> String {
        format!("{}-{label}", self.namespace)
    }

    /// Creates a function running `initial` code; returns its ARN.
    pub async fn create_function(&self, label: &str, initial: &str) -> String {
        create_function_with(&self.lambda, ACCOUNT_ID, REGION, &self.function_name(label), initial).await
    }

    /// Creates a function in another account and/or region (as that account's admin); returns its ARN.
    pub async fn create_function_in(&self, account: &str, region: &str, label: &str, initial: &str) -> String {
        let lambda = lambda_in(self.testbed, account, region).await;
        create_function_with(&lambda, account, region, &self.function_name(label), initial).await
    }

    /// The CodeSha256 of a function in another account and/or region.
    pub async fn code_sha256_in(&self, account: &str, region: &str, function: &str) -> String {
        let lambda = lambda_in(self.testbed, account, region).await;
        let out = lambda.get_function().function_name(function).send().await.expect("GetFunction");
        out.configuration().and_then(|c| c.code_sha256()).unwrap_or_default().to_string()
    }

    pub async fn code_sha256(&self, function: &str) -> String {
        let out = self.lambda.get_function().function_name(function).send().await.expect("GetFunction");
        out.configuration().and_then(|c| c.code_sha256()).unwrap_or_default().to_string()
    }

    /// Uploads `content` as a zip to `key` in the artifact bucket; returns (versionId, CodeSha256).
    pub async fn upload(&self, key: &str, content: &str) -> (String, String) {
        self.put_zip(key, content, None).await
    }

    /// Like [`World::upload`], with S3's full-object SHA-256 checksum stored on the object.
    pub async fn upload_with_checksum(&self, key: &str, content: &str) -> (String, String) {
        self.put_zip(key, content, Some(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)).await
    }

    async fn put_zip(
        &self,
        key: &str,
        content: &str,
        checksum: Option<aws_sdk_s3::types::ChecksumAlgorithm>,
    ) -> (String, String) {
        self.put_zip_to(ARTIFACT_BUCKET, key, content, checksum).await
    }

    /// Uploads `content` as a zip to `bucket`; returns (versionId, "" when the bucket is not versioned; CodeSha256).
    pub async fn put_zip_to(
        &self,
        bucket: &str,
        key: &str,
        content: &str,
        checksum: Option<aws_sdk_s3::types::ChecksumAlgorithm>,
    ) -> (String, String) {
        self.put_zip_in(&self.s3, bucket, key, content, checksum).await
    }

    /// Uploads `content` as a zip to the deployer account's `bucket` in another region.
    pub async fn upload_in(&self, region: &str, bucket: &str, key: &str, content: &str) -> (String, String) {
        let sdk = sdk_config_in(self.testbed, &AwsIdentity::admin(), region).await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        self.put_zip_in(&s3, bucket, key, content, None).await
    }

    async fn put_zip_in(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        content: &str,
        checksum: Option<aws_sdk_s3::types::ChecksumAlgorithm>,
    ) -> (String, String) {
        let (bytes, sha) = zip(content);
        let out = s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_checksum_algorithm(checksum)
            .body(bytes.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
        (out.version_id().unwrap_or_default().to_string(), sha)
    }

    pub fn lds(&self) -> Api<LambdaDeployment> {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    pub async fn apply_ld(&self, name: &str, function_arn: &str, function_name: &str, commit: &str) {
        let spec = LambdaDeploymentSpec {
            function_arn: function_arn.into(),
            function_name: function_name.into(),
            commit: commit.into(),
            ..Default::default()
        };
        self.apply_spec(name, spec).await;
    }

    /// Applies an LD with this spec (server-side apply: fields left out are removed).
    pub async fn apply_spec(&self, name: &str, spec: LambdaDeploymentSpec) {
        let ld = LambdaDeployment::new(name, spec);
        self.lds().patch(name, &PatchParams::apply("tests").force(), &Patch::Apply(&ld)).await.expect("apply LD");
    }

    pub async fn set_commit(&self, name: &str, commit: &str) {
        self.lds()
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"commit": commit}})))
            .await
            .expect("patch commit");
    }

    pub async fn ld(&self, name: &str) -> LambdaDeployment {
        self.lds().get(name).await.expect("get LD")
    }

    /// Reasons of the Events recorded about one LD, oldest first.
    pub async fn event_reasons(&self, ld: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.admin.clone(), &self.namespace);
        let mut list = events.list(&ListParams::default()).await.expect("list events").items;
        list.retain(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(ld));
        list.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
        list.into_iter().filter_map(|e| e.reason).collect()
    }

    /// UpdateFunctionCode calls Lambda applied to one of this test's functions since the testbed started, by any
    /// writer, counting those whose answer was then lost (a fault after applying).
    pub fn successful_updates(&self, function: &str) -> usize {
        let log = self.testbed.aws().calls();
        log.of("lambda", "UpdateFunctionCode").filter(|c| c.function.as_deref() == Some(function) && c.applied).count()
    }

    /// Reasons of the Events of one LD, each with how many times it was recorded.
    pub async fn event_count(&self, ld: &str, reason: &str) -> usize {
        self.event_reasons(ld).await.iter().filter(|r| *r == reason).count()
    }

    /// Statuses of every call of `operation` about `function`.
    pub fn calls_to(&self, function: &str, operation: &str) -> Vec<u16> {
        let log = self.testbed.aws().calls();
        log.of("lambda", operation).filter(|c| c.function.as_deref() == Some(function)).map(|c| c.status).collect()
    }

    /// Lambda calls of any kind about `function`.
    pub fn lambda_calls(&self, function: &str) -> usize {
        let log = self.testbed.aws().calls();
        log.calls.iter().filter(|c| c.service == "lambda" && c.function.as_deref() == Some(function)).count()
    }

    /// Status writes on this test's LambdaDeployments so far.
    pub fn status_writes(&self) -> usize {
        self.testbed.kube().requests().iter().filter(|r| r.namespace == self.namespace && r.is_status_write()).count()
    }

    /// An S3 notification for `key` (as AWS sends it: URL-encoded key, versionId), from the fixture's shape.
    pub fn s3_event(&self, key: &str, version_id: &str) -> Value {
        let mut event = fixture("s3-object-created-put.json");
        let object = &mut event["Records"][0]["s3"]["object"];
        object["key"] = json!(url_encode_key(key));
        object["versionId"] = json!(version_id);
        event
    }

    /// An EventBridge `Object Created` event for `key` (raw key), from the fixture's shape.
    pub fn eventbridge_event(&self, key: &str, version_id: &str) -> Value {
        let mut event = fixture("eventbridge-object-created.json");
        event["detail"]["object"]["key"] = json!(key);
        event["detail"]["object"]["version-id"] = json!(version_id);
        event
    }
}

pub fn fixture(name: &str) -> Value {
    let path = format!("tests/fixtures/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .expect("fixture JSON")
}

pub async fn create_function_with(
    lambda: &aws_sdk_lambda::Client,
    account: &str,
    region: &str,
    name: &str,
    initial: &str,
) -> String {
    lambda
        .create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(format!("arn:aws:iam::{account}:role/{FUNCTION_ROLE}"))
        .code(aws_sdk_lambda::types::FunctionCode::builder().zip_file(Blob::new(zip(initial).0)).build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {}", aws_sdk_lambda::error::DisplayErrorContext(e)));
    wait_active(lambda, name).await;
    format!("arn:aws:lambda:{region}:{account}:function:{name}")
}

/// S3's notification encoding: form-style, `+` for space.
fn url_encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'*' => (b as char).to_string(),
            b' ' => "+".into(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn wait_active(lambda: &aws_sdk_lambda::Client, name: &str) {
    for _ in 0..100 {
        let out = lambda.get_function().function_name(name).send().await.expect("GetFunction");
        let config = out.configuration().expect("configuration");
        let pending = config.state().is_some_and(|s| s.as_str() == "Pending")
            || config.last_update_status().is_some_and(|s| s.as_str() == "InProgress");
        if !pending {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never became Active");
}

/// A tool from the Makefile's venv (`make tools` creates it).
pub fn venv_tool(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin").join(name);
    assert!(path.exists(), "{} is missing: run `make tools` first", path.display());
    path
}

/// Child processes killed (and reaped) when dropped, even when a test panics or a bench returns early.
pub struct Children(pub Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl World {
    /// S3 GetObject calls of one key through the AWS layer, and the bytes they returned.
    pub fn downloads(&self, key: &str) -> (usize, u64) {
        let log = self.testbed.aws().calls();
        let calls: Vec<_> =
            log.of("s3", "GetObject").filter(|c| c.params.get("Key").map(String::as_str) == Some(key)).collect();
        (calls.len(), calls.iter().map(|c| c.response_bytes).sum())
    }

    /// Kubernetes API requests the deployer made in this test's namespace.
    pub fn deployer_kube_requests(&self) -> Vec<testbed::apiserver::RequestRecord> {
        let requests = self.testbed.kube().requests().into_iter();
        requests.filter(|r| r.user == "lambda-deployer" && r.namespace == self.namespace).collect()
    }
}
