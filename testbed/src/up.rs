//! The whole testbed in-process: moto, the AWS layer in front of it and the Kubernetes API server, on a runtime of
//! its own so one `Testbed` can be shared (through a `static OnceLock`) by every test of a test binary.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use http::Method;
use tokio::sync::oneshot;

use crate::apiserver::{ApiServer, ApiServerOptions};
use crate::aws::{AwsLayer, AwsLayerOptions, EksCluster, LayerConfig, MotoClient};
use crate::identity::{
    ACCOUNT_ID, ARTIFACT_BUCKET, AccessEntry, AwsIdentity, CLUSTER_NAME, REGION, SECOND_REGION,
    SECOND_REGION_ARTIFACT_BUCKET, TARGET_ACCOUNTS,
};
use crate::moto::{Moto, MotoError};

/// The IAM role the deployer runs as.
pub const DEPLOYER_ROLE: &str = "lambda-deployer";
/// An IAM role tests give the functions they create (in every account).
pub const FUNCTION_ROLE: &str = "testbed-function";
/// The role the deployer assumes in each target account; it trusts [`DEPLOYER_ROLE`] (no ExternalId required).
pub const TARGET_ROLE: &str = "lambda-deployer-target";

/// `arn:aws:iam::ACCOUNT:role/lambda-deployer-target`
pub fn target_role_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/{TARGET_ROLE}")
}

/// The bucket policy the deployer's artifact buckets get: every target account's [`TARGET_ROLE`] may get their
/// objects and object versions (Lambda reads another account's code with the caller's rights).
pub fn artifact_bucket_policy(bucket: &str) -> String {
    let readers: Vec<String> = TARGET_ACCOUNTS.iter().map(|account| target_role_arn(account)).collect();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TargetAccountsReadArtifacts",
            "Effect": "Allow",
            "Principal": { "AWS": readers },
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": format!("arn:aws:s3:::{bucket}/*"),
        }],
    })
    .to_string()
}
/// The Kubernetes version the EKS cluster record reports.
pub const KUBERNETES_VERSION: &str = "1.31";

/// The AWS layer's settings a testbed starts with (the rest are [`LayerConfig`]'s defaults).
#[derive(Clone, Debug)]
pub struct TestbedOptions {
    /// Lambda request quotas (GetFunction 100/s, other control-plane calls 15/s).
    pub quotas: bool,
    /// LastUpdateStatus InProgress after an update: `update_in_progress` plus a uniform draw in
    /// [0, `update_in_progress_jitter`].
    pub update_in_progress: Duration,
    pub update_in_progress_jitter: Duration,
    /// State Pending after CreateFunction.
    pub create_pending: Duration,
    /// How late invocation metrics become visible in CloudWatch.
    pub metrics_delay: Duration,
}

impl TestbedOptions {
    /// For tests that need updates to settle quickly: quotas on, InProgress a fixed 300 ms, Pending 0, metrics 1 s
    /// late.
    pub fn fast() -> TestbedOptions {
        TestbedOptions::of(&LayerConfig::fast())
    }

    fn of(config: &LayerConfig) -> TestbedOptions {
        TestbedOptions {
            quotas: config.quotas,
            update_in_progress: Duration::from_millis(config.update_in_progress_ms),
            update_in_progress_jitter: Duration::from_millis(config.update_in_progress_jitter_ms),
            create_pending: Duration::from_millis(config.create_pending_ms),
            metrics_delay: Duration::from_millis(config.metrics_delay_ms),
        }
    }
}

impl Default for TestbedOptions {
    /// [`LayerConfig`]'s defaults, AWS's: quotas on, InProgress 1.5–4.5 s, Pending 0, metrics a minute late.
    fn default() -> Self {
        TestbedOptions::of(&LayerConfig::default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error(transparent)]
    Moto(#[from] MotoError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("setting up moto failed: {0}")]
    Setup(String),
    #[error("the testbed's runtime thread ended before the testbed was up")]
    RuntimeGone,
}

/// Everything the testbed started. Dropping it stops the servers and kills moto.
pub struct Testbed {
    aws: AwsLayer,
    kube: ApiServer,
    moto: Moto,
    dir: Mutex<Option<PathBuf>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Parts {
    aws: AwsLayer,
    kube: ApiServer,
    moto: Moto,
}

impl Testbed {
    /// Starts moto, the AWS layer and the Kubernetes API server on free 127.0.0.1 ports, on a runtime of its own
    /// (a dedicated thread), so a Testbed may be shared by all `#[tokio::test]`s of a test binary and outlives each
    /// test's runtime. Creates what [`seed`] lists.
    pub async fn start(opts: TestbedOptions) -> Result<Testbed, TestbedError> {
        let (ready_tx, ready_rx) = oneshot::channel::<Result<Parts, TestbedError>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("testbed".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            runtime.block_on(async move {
                match boot(opts).await {
                    Ok(parts) => {
                        if ready_tx.send(Ok(parts)).is_ok() {
                            let _ = stop_rx.await;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            // Dropping the runtime here ends every server task it runs.
        })?;
        let parts = ready_rx.await.map_err(|_| TestbedError::RuntimeGone)??;
        Ok(Testbed {
            aws: parts.aws,
            kube: parts.kube,
            moto: parts.moto,
            dir: Mutex::new(None),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (the AWS layer).
    pub fn aws_endpoint(&self) -> &str {
        self.aws.url()
    }

    pub fn kube(&self) -> &ApiServer {
        &self.kube
    }

    pub fn aws(&self) -> &AwsLayer {
        &self.aws
    }

    /// moto's own URL (bypasses the layer).
    pub fn moto_url(&self) -> &str {
        self.moto.url()
    }

    pub fn moto_pid(&self) -> u32 {
        self.moto.pid()
    }

    /// The deployer's environment: its credentials and where everything is. `KUBECONFIG` (the admin's) is
    /// included once [`Testbed::write_dir`] has written it.
    pub fn deployer_env(&self) -> Vec<(String, String)> {
        let deployer = AwsIdentity::deployer();
        let mut env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", self.aws_endpoint()),
            ("AWS_ACCESS_KEY_ID", &deployer.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &deployer.secret_access_key),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("CLUSTER_NAME", CLUSTER_NAME),
            ("ARTIFACT_BUCKET", ARTIFACT_BUCKET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(dir) = self.dir.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            env.push(("KUBECONFIG".into(), dir.join("kubeconfig").display().to_string()));
        }
        env
    }

    /// Writes the Kubernetes server's files (kubeconfig, ca.pem, kube.url) and `DIR/env` (shell `export` lines).
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        self.kube.write_files(dir)?;
        let dir = std::path::absolute(dir)?;
        *self.dir.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir.clone());
        let env: String = self.deployer_env().iter().map(|(k, v)| format!("export {k}={}\n", shell_quote(v))).collect();
        std::fs::write(dir.join("env"), env)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.moto.stop();
    }
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

async fn boot(opts: TestbedOptions) -> Result<Parts, TestbedError> {
    let moto = Moto::start().await?;
    let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let kube = ApiServer::start(ApiServerOptions {
        listen: localhost,
        cluster_name: CLUSTER_NAME.into(),
        identities: AwsIdentity::all(),
        access_entries: vec![AccessEntry::deployer(), AccessEntry::outsider()],
    })
    .await?;
    let config = LayerConfig {
        quotas: opts.quotas,
        update_in_progress_ms: opts.update_in_progress.as_millis() as u64,
        update_in_progress_jitter_ms: opts.update_in_progress_jitter.as_millis() as u64,
        create_pending_ms: opts.create_pending.as_millis() as u64,
        metrics_delay_ms: opts.metrics_delay.as_millis() as u64,
        ..LayerConfig::default()
    };
    let aws = AwsLayer::start(AwsLayerOptions {
        listen: localhost,
        moto_url: moto.url().to_string(),
        config,
        identities: AwsIdentity::all(),
        eks_cluster: Some(EksCluster {
            name: CLUSTER_NAME.into(),
            endpoint: kube.url().to_string(),
            ca_pem: kube.ca_pem().to_string(),
        }),
    })
    .await?;
    seed(aws.moto()).await?;
    Ok(Parts { aws, kube, moto })
}

/// The AWS resources every testbed has. In the deployer's account: the versioned artifact buckets
/// [`ARTIFACT_BUCKET`] and (in [`SECOND_REGION`]) [`SECOND_REGION_ARTIFACT_BUCKET`], each with
/// [`artifact_bucket_policy`]; the IAM roles [`DEPLOYER_ROLE`] and [`FUNCTION_ROLE`]; the EKS cluster
/// [`CLUSTER_NAME`]. In each of [`TARGET_ACCOUNTS`]: the roles [`TARGET_ROLE`] and [`FUNCTION_ROLE`].
async fn seed(moto: &MotoClient) -> Result<(), TestbedError> {
    let trust = |principal: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"}}]}}"#
        )
    };
    let function_trust = trust(r#"{"Service":"lambda.amazonaws.com"}"#);
    let deployer_trust = trust(&format!(r#"{{"AWS":"arn:aws:iam::{ACCOUNT_ID}:role/{DEPLOYER_ROLE}"}}"#));
    let form = "application/x-www-form-urlencoded";
    let role_form = |name: &str, trust: &str| {
        format!(
            "Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument={}",
            percent_encoding::utf8_percent_encode(trust, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    let cluster = serde_json::json!({
        "name": CLUSTER_NAME,
        "version": KUBERNETES_VERSION,
        "roleArn": format!("arn:aws:iam::{ACCOUNT_ID}:role/{DEPLOYER_ROLE}"),
        "resourcesVpcConfig": {},
    });
    let versioning = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
    let in_second_region = format!(
        r#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>{SECOND_REGION}</LocationConstraint></CreateBucketConfiguration>"#
    );
    let xml = Some("application/xml");
    let json = Some("application/json");
    // Who acts, then the request: service, method, path, content type, body.
    type Step = (MotoClient, &'static str, Method, String, Option<&'static str>, String);
    let mut steps: Vec<Step> = Vec::new();
    for account in TARGET_ACCOUNTS {
        let there = moto.at(account, REGION);
        steps.push((
            there.clone(),
            "iam",
            Method::POST,
            "/".into(),
            Some(form),
            role_form(TARGET_ROLE, &deployer_trust),
        ));
        steps.push((there, "iam", Method::POST, "/".into(), Some(form), role_form(FUNCTION_ROLE, &function_trust)));
    }
    for (bucket, region, create) in
        [(ARTIFACT_BUCKET, REGION, String::new()), (SECOND_REGION_ARTIFACT_BUCKET, SECOND_REGION, in_second_region)]
    {
        let home = moto.at(ACCOUNT_ID, region);
        steps.push((home.clone(), "s3", Method::PUT, format!("/{bucket}"), xml.filter(|_| !create.is_empty()), create));
        steps.push((home.clone(), "s3", Method::PUT, format!("/{bucket}?versioning"), xml, versioning.into()));
        steps.push((home, "s3", Method::PUT, format!("/{bucket}?policy"), json, artifact_bucket_policy(bucket)));
    }
    steps.extend([
        (moto.clone(), "iam", Method::POST, "/".into(), Some(form), role_form(DEPLOYER_ROLE, &function_trust)),
        (moto.clone(), "iam", Method::POST, "/".into(), Some(form), role_form(FUNCTION_ROLE, &function_trust)),
        (moto.clone(), "eks", Method::POST, "/clusters".into(), json, cluster.to_string()),
    ]);
    for (moto, service, method, path, content_type, body) in steps {
        let (status, answer) = moto.call(service, method.clone(), &path, content_type, body).await?;
        if !status.is_success() {
            return Err(TestbedError::Setup(format!(
                "{service} {method} {path} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            )));
        }
    }
    Ok(())
}
