//! Credentials never leak: after deploys, per-resource failures, AWS and Kubernetes faults and failed invocations,
//! neither the statuses, the Events, the invocation summaries and errors, nor the deployer's own JSON logs contain
//! the deployer's secret key, the cluster admin token, an EKS bearer token, a presigned-URL signature, or the secret
//! key or session token of a role it assumed in another account.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams};
use lambda_deployer::deployer::Deployer;
use serde_json::json;
use support::{World, commit, function_arn};
use testbed::apiserver::KubeFault;
use testbed::aws::{Fault, FaultAction};
use testbed::identity::{ACCOUNT_ID, ARTIFACT_BUCKET, AwsIdentity, REGION, TARGET_ACCOUNTS};
use testbed::up::target_role_arn;

/// Where the deployer's logs go: the same JSON format as `src/main.rs`, into memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Installs the buffer as the process's log sink, at main.rs's level plus the deployer's own debug lines.
    fn install() -> LogBuffer {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,lambda_deployer=debug,aws_config=warn"))
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        buffer
    }
}

/// Everything the deployer said, through every channel a user or operator can read.
#[derive(Default)]
struct Said(Vec<String>);

impl Said {
    async fn invoke(&mut self, deployer: &Deployer, payload: serde_json::Value) {
        match deployer.handle(&payload, None).await {
            Ok(summary) => self.0.push(serde_json::to_string(&summary).expect("summary JSON")),
            Err(err) => {
                self.0.push(err.to_string());
                self.0.push(format!("{err:?}"));
                self.0.push(lambda_runtime::Diagnostic::from(err).error_message);
            }
        }
    }
}

async fn store_invalid(world: &World, name: &str) {
    let object = json!({
        "apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment",
        "metadata": {"name": name, "namespace": world.namespace},
        "spec": {"functionARN": function_arn("x"), "functionName": "x", "commit": "HEAD"},
    });
    world.testbed.kube().insert_raw(object).expect("stored");
}

#[tokio::test]
async fn no_credential_or_token_appears_in_statuses_events_summaries_errors_or_logs() {
    let logs = LogBuffer::install();
    let world = World::new("secrets").await;
    let sweep = json!({"action": "sweep"});
    let release = commit("secrets");
    let mut said = Said::default();

    // A deploy, a missing function, a non-zip artifact, a blocked target, an invalid spec, a missing artifact.
    let ok_arn = world.create_function("ok", "initial").await;
    let ok_fn = world.function_name("ok");
    let (ok_version, _) = world.upload(&format!("{ok_fn}/{release}.zip"), "release").await;
    world.apply_ld("ok", &ok_arn, &ok_fn, &release).await;
    let ghost_fn = world.function_name("ghost");
    world.upload(&format!("{ghost_fn}/{release}.zip"), "release").await;
    world.apply_ld("ghost", &function_arn(&ghost_fn), &ghost_fn, &release).await;
    let junk_arn = world.create_function("junk", "initial").await;
    let junk_fn = world.function_name("junk");
    world
        .s3
        .put_object()
        .bucket(ARTIFACT_BUCKET)
        .key(format!("{junk_fn}/{release}.zip"))
        .body(b"junk".to_vec().into())
        .send()
        .await
        .unwrap();
    world.apply_ld("junk", &junk_arn, &junk_fn, &release).await;
    world.apply_ld("foreign", "arn:aws:lambda:us-east-1:999999999999:function:theirs", "theirs", &release).await;
    store_invalid(&world, "invalid").await;
    let waiting_arn = world.create_function("waiting", "initial").await;
    world.apply_ld("waiting", &waiting_arn, &world.function_name("waiting"), &commit("never uploaded")).await;
    // Lambda failing for good on two functions: a 500, and connections reset.
    let broken_arn = world.create_function("broken", "initial").await;
    let broken_fn = world.function_name("broken");
    world.upload(&format!("{broken_fn}/{release}.zip"), "release").await;
    world.apply_ld("broken", &broken_arn, &broken_fn, &release).await;
    let reset_arn = world.create_function("reset", "initial").await;
    let reset_fn = world.function_name("reset");
    world.upload(&format!("{reset_fn}/{release}.zip"), "release").await;
    world.apply_ld("reset", &reset_arn, &reset_fn, &release).await;
    let aws = world.testbed.aws();
    aws.inject(Fault::new("GetFunction", FaultAction::ServiceException).function(&broken_fn)).unwrap();
    aws.inject(Fault::new("GetFunction", FaultAction::ConnectionReset).function(&reset_fn)).unwrap();

    // Another account reached through an assumed role (its session expired between invocations and renewed), and
    // one whose role STS refuses.
    let (staging, prod) = (TARGET_ACCOUNTS[0], TARGET_ACCOUNTS[1]);
    let staging_arn = world.create_function_in(staging, REGION, "staging", "initial").await;
    let staging_fn = world.function_name("staging");
    world.upload(&format!("{staging_fn}/{release}.zip"), "release").await;
    world.apply_ld("staging", &staging_arn, &staging_fn, &release).await;
    let refused_arn = world.create_function_in(prod, REGION, "refused", "initial").await;
    world.apply_ld("refused", &refused_arn, &world.function_name("refused"), &release).await;
    let roles = format!("{staging}={},{prod}=arn:aws:iam::{prod}:role/missing", target_role_arn(staging));
    let allowed = [ACCOUNT_ID, staging, prod].map(|a| format!("arn:aws:lambda:{REGION}:{a}:function:*")).join(",");
    let vars = [("TARGET_ROLES", roles.as_str()), ("ALLOWED_FUNCTION_ARNS", allowed.as_str())];

    let deployer = world.deployer(&vars).await;
    said.invoke(&deployer, sweep.clone()).await;
    assert!(aws.expire_sessions(Some(staging)) > 0, "the sweep assumed staging's role");
    said.invoke(&deployer, world.s3_event(&format!("{ok_fn}/{release}.zip"), &ok_version)).await;
    aws.clear_faults();
    // The cluster failing a status write, then refusing the deployer outright.
    world.testbed.kube().inject(KubeFault::status(500).on_status_writes("lambdadeployments").times(3));
    world
        .apply_ld("later", &function_arn(&world.function_name("later")), &world.function_name("later"), &release)
        .await;
    said.invoke(&deployer, sweep.clone()).await;
    world.testbed.kube().inject(KubeFault::status(401).on_verbs(&["list"]).times(1));
    said.invoke(&deployer, sweep.clone()).await;
    // A new container whose EKS DescribeCluster connection is reset: it cannot build its cluster client.
    aws.inject(Fault::new("DescribeCluster", FaultAction::ConnectionReset).service("eks")).unwrap();
    said.invoke(&world.deployer(&vars).await, sweep.clone()).await;
    aws.clear_faults();
    world.testbed.kube().clear_faults();
    said.invoke(&deployer, json!({"not": "an event"})).await;

    let resource = kube::discovery::ApiResource::erase::<lambda_deployer::crd::LambdaDeployment>(&());
    let lds: Api<DynamicObject> = Api::namespaced_with(world.admin.clone(), &world.namespace, &resource);
    for ld in lds.list(&ListParams::default()).await.unwrap().items {
        said.0.push(serde_json::to_string(&ld.data["status"]).unwrap());
    }
    let events: Api<Event> = Api::namespaced(world.admin.clone(), &world.namespace);
    let events = events.list(&ListParams::default()).await.unwrap().items;
    said.0.extend(events.iter().map(|e| serde_json::to_string(e).unwrap()));
    let logs = logs.text();

    // The channels carry the failures (so the grep below means something).
    let everything = format!("{}\n{logs}", said.0.join("\n"));
    for expected in [
        "does not exist",
        "is not a zip file",
        "is not in ALLOWED_FUNCTION_ARNS",
        "contains 'H'",
        "waiting for s3://",
        "writing status",
        "(401)",
        "DescribeCluster",
        "unrecognised invocation payload",
        "\"decision\"",
        "is not authorized to perform: sts:AssumeRole",
    ] {
        assert!(everything.contains(expected), "no {expected:?} anywhere: the scenario did not happen");
    }
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("Deployed")) && logs.lines().count() > 20);
    let staging_ld = events.iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("staging"));
    assert!(staging_ld.into_iter().any(|e| e.reason.as_deref() == Some("Deployed")), "deployed in another account");

    let deployer_identity = AwsIdentity::deployer();
    let mut secrets = vec![
        ("the deployer's secret access key".to_string(), deployer_identity.secret_access_key.clone()),
        ("the cluster admin token".to_string(), world.testbed.kube().admin_token().to_string()),
        ("an EKS bearer token's prefix".to_string(), "k8s-aws-v1.".to_string()),
        ("a presigned URL's signature parameter".to_string(), "X-Amz-Signature".to_string()),
        ("a presigned URL's credential parameter".to_string(), "X-Amz-Credential".to_string()),
    ];
    // Every token the deployer really presented: its body (with or without the prefix, in any part), and the
    // signature inside the presigned URL it encodes.
    let tokens = world.testbed.kube().eks_tokens();
    assert!(!tokens.is_empty(), "the deployer authenticated with EKS tokens");
    for token in &tokens {
        let body = token.strip_prefix("k8s-aws-v1.").expect("an EKS token");
        // 24-character parts; the last one ends the body rather than being a short tail that ordinary text contains.
        let starts = (0..body.len().saturating_sub(24)).step_by(24).chain([body.len().saturating_sub(24)]);
        for (i, start) in starts.enumerate() {
            secrets.push((
                format!("part {i} of an EKS token's body"),
                body[start..(start + 24).min(body.len())].to_string(),
            ));
        }
        let url = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        let signature = url.split('&').find_map(|p| p.strip_prefix("X-Amz-Signature=")).expect("a signature");
        secrets.push(("an EKS token's signature".to_string(), signature.to_string()));
    }
    let sessions = world.testbed.aws().session_secrets();
    assert!(sessions.len() >= 4, "two sessions of staging's role were issued (key and token each)");
    secrets.extend(
        sessions.into_iter().map(|secret| ("an assumed role's secret key or session token".to_string(), secret)),
    );
    let lowered = everything.to_lowercase();
    for (what, secret) in &secrets {
        if let Some(at) = lowered.find(&secret.to_lowercase()) {
            let start = lowered[..at].chars().count().saturating_sub(80);
            panic!("{what} leaked: …{}…", lowered.chars().skip(start).take(200).collect::<String>());
        }
    }
}
