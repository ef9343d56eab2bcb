//! The services the layer forwards to moto or answers itself: EKS DescribeCluster, STS GetCallerIdentity, S3;
//! and the deployer environment a Testbed hands out.

mod aws_support;

use aws_sdk_eks::types::VpcConfigRequest;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_support::*;
use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use testbed::identity::{ACCOUNT_ID, ARTIFACT_BUCKET, AwsIdentity, CLUSTER_NAME, REGION};
use testbed::up::{DEPLOYER_ROLE, Testbed, TestbedOptions};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions::default()).await
}

#[tokio::test]
async fn describe_cluster_returns_the_kubernetes_testbed_endpoint_and_its_ca_as_pem() {
    let tb = testbed().await;
    let eks = aws_sdk_eks::Client::new(&sdk_config(tb, &AwsIdentity::deployer(), 1).await);
    let out = eks.describe_cluster().name(CLUSTER_NAME).send().await.unwrap();
    let cluster = out.cluster().unwrap();
    assert_eq!(cluster.endpoint(), Some(tb.kube().url()));
    assert_eq!(cluster.status().map(|s| s.as_str()), Some("ACTIVE"));
    assert_eq!(cluster.arn(), Some(format!("arn:aws:eks:{REGION}:{ACCOUNT_ID}:cluster/{CLUSTER_NAME}").as_str()));
    let data = cluster.certificate_authority().and_then(|ca| ca.data()).unwrap();
    let pem = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    assert_eq!(String::from_utf8(pem.clone()).unwrap(), tb.kube().ca_pem());
    let der = CertificateDer::from_pem_slice(&pem).expect("the CA is a PEM certificate");

    // The CA really is the endpoint's: a TLS client that trusts only it gets an HTTP answer.
    let mut config = kube::Config::new(cluster.endpoint().unwrap().parse().unwrap());
    config.root_cert = Some(vec![der.to_vec()]);
    let client = kube::Client::try_from(config).unwrap();
    match client.apiserver_version().await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => panic!("TLS with the described CA failed: {e}"),
    }
}

#[tokio::test]
async fn other_clusters_are_described_by_moto() {
    let tb = testbed().await;
    let eks = aws_sdk_eks::Client::new(&sdk_config(tb, &AwsIdentity::admin(), 1).await);
    let name = unique("other");
    eks.create_cluster()
        .name(&name)
        .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/{DEPLOYER_ROLE}"))
        .resources_vpc_config(VpcConfigRequest::builder().build())
        .send()
        .await
        .unwrap();
    let out = eks.describe_cluster().name(&name).send().await.unwrap();
    assert_ne!(out.cluster().unwrap().endpoint(), Some(tb.kube().url()));
    assert_eq!(
        tb.aws().calls().of("eks", "DescribeCluster").filter(|c| c.params.get("Name") == Some(&name)).count(),
        1
    );
}

#[tokio::test]
async fn get_caller_identity_returns_the_deployers_assumed_role_arn() {
    let tb = testbed().await;
    let deployer = AwsIdentity::deployer();
    let sts = aws_sdk_sts::Client::new(&sdk_config(tb, &deployer, 1).await);
    let me = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(me.arn(), Some(deployer.caller_arn.as_str()));
    assert_eq!(me.account(), Some(ACCOUNT_ID));
    assert!(me.user_id().unwrap().ends_with(":lambda-deployer-session"));

    let stranger = AwsIdentity { access_key_id: "AKIANOBODY0000000000".into(), ..AwsIdentity::admin() };
    let sts = aws_sdk_sts::Client::new(&sdk_config(tb, &stranger, 1).await);
    let err = sts.get_caller_identity().send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidClientTokenId"));
}

#[tokio::test]
async fn s3_is_moto_behind_the_layer_with_versions_and_404s() {
    let tb = testbed().await;
    let s3 = s3(tb).await;
    let key = format!("{}/artifact.zip", unique("s3"));
    let old = put_artifact(&s3, &key, b"old").await;
    put_artifact(&s3, &key, b"new").await;
    let got = s3.get_object().bucket(ARTIFACT_BUCKET).key(&key).version_id(&old).send().await.unwrap();
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], b"old");
    let missing = s3.get_object().bucket(ARTIFACT_BUCKET).key("no/such/key").send().await.unwrap_err();
    assert!(missing.into_service_error().is_no_such_key());
}

#[tokio::test]
async fn write_dir_writes_the_deployers_env_and_the_kube_files() {
    let tb = testbed().await;
    let dir = std::env::temp_dir().join(unique("testbed-dir"));
    tb.write_dir(&dir).unwrap();
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    let deployer = AwsIdentity::deployer();
    for line in [
        format!("export AWS_ENDPOINT_URL='{}'", tb.aws_endpoint()),
        format!("export AWS_ACCESS_KEY_ID='{}'", deployer.access_key_id),
        format!("export AWS_SECRET_ACCESS_KEY='{}'", deployer.secret_access_key),
        format!("export AWS_REGION='{REGION}'"),
        format!("export CLUSTER_NAME='{CLUSTER_NAME}'"),
        format!("export ARTIFACT_BUCKET='{ARTIFACT_BUCKET}'"),
        format!("export KUBECONFIG='{}'", dir.join("kubeconfig").display()),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from:\n{env}");
    }
    assert!(dir.join("kubeconfig").is_file());
    assert!(tb.deployer_env().iter().any(|(k, v)| k == "KUBECONFIG" && v.ends_with("kubeconfig")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn large_artifacts_stream_through_the_layer_both_ways_and_downloads_are_counted() {
    let tb = testbed().await;
    let s3 = s3(tb).await;
    let key = format!("{}/large.zip", unique("large"));
    let artifact = zip(&"lambda ".repeat(600_000)); // ~4 MB: big enough for chunked uploads and Expect: 100-continue
    let version = put_artifact(&s3, &key, &artifact).await;
    let got = s3.get_object().bucket(ARTIFACT_BUCKET).key(&key).version_id(&version).send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), artifact);
    let log = tb.aws().calls();
    let download = log.of("s3", "GetObject").find(|c| c.params.get("Key") == Some(&key)).unwrap();
    assert_eq!(download.params.get("VersionId"), Some(&version));
    assert_eq!(download.response_bytes, artifact.len() as u64);
}
