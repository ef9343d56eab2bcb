//! Helpers shared by the aws_* and up_* test binaries: SDK clients for a Testbed, real zip artifacts, polling.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput as Configuration;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, LastUpdateStatus, State};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use testbed::identity::{ACCOUNT_ID, ARTIFACT_BUCKET, AwsIdentity, REGION};
use testbed::up::{FUNCTION_ROLE, Testbed, TestbedOptions};
use tokio::sync::OnceCell;

/// The binary's one Testbed, started on first use with `opts`.
pub async fn shared(cell: &'static OnceCell<Testbed>, opts: TestbedOptions) -> &'static Testbed {
    cell.get_or_init(|| async move { Testbed::start(opts).await.expect("testbed starts") }).await
}

/// SDK settings for `identity` against the testbed; `max_attempts` 1 = no retries.
pub async fn sdk_config(tb: &Testbed, identity: &AwsIdentity, max_attempts: u32) -> SdkConfig {
    sdk_config_in(tb, credentials_of(identity), REGION, max_attempts).await
}

pub fn credentials_of(identity: &AwsIdentity) -> Credentials {
    Credentials::new(&identity.access_key_id, &identity.secret_access_key, None, None, "testbed")
}

/// SDK settings for `credentials` in `region` against the testbed; `max_attempts` 1 = no retries.
pub async fn sdk_config_in(tb: &Testbed, credentials: Credentials, region: &str, max_attempts: u32) -> SdkConfig {
    let retry = if max_attempts <= 1 {
        RetryConfig::disabled()
    } else {
        RetryConfig::standard().with_max_attempts(max_attempts)
    };
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(tb.aws_endpoint())
        .credentials_provider(credentials)
        .retry_config(retry)
        .load()
        .await
}

/// An S3 client (path-style) for `config`.
pub fn s3_of(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}

/// STS AssumeRole as `identity`: the session's credentials.
pub async fn assume(
    tb: &Testbed,
    identity: &AwsIdentity,
    role_arn: &str,
    external_id: Option<&str>,
) -> Result<Credentials, aws_sdk_sts::error::SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>> {
    let sts = aws_sdk_sts::Client::new(&sdk_config(tb, identity, 1).await);
    let out = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("lambda-deployer")
        .set_external_id(external_id.map(str::to_string))
        .send()
        .await?;
    let c = out.credentials().expect("credentials");
    Ok(Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().to_string()), None, "assumed"))
}

/// A Lambda client as the admin identity, without retries (tests see every error).
pub async fn lambda(tb: &Testbed) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&sdk_config(tb, &AwsIdentity::admin(), 1).await)
}

pub async fn s3(tb: &Testbed) -> aws_sdk_s3::Client {
    s3_of(&sdk_config(tb, &AwsIdentity::admin(), 1).await)
}

/// A CloudWatch client (Smithy RPC v2 CBOR, which the layer translates for moto), without retries.
pub async fn cloudwatch(tb: &Testbed) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&sdk_config(tb, &AwsIdentity::admin(), 1).await)
}

pub async fn sqs(tb: &Testbed) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config(tb, &AwsIdentity::admin(), 1).await)
}

/// Publishes $LATEST once it has settled; returns the version number.
pub async fn publish(lambda: &aws_sdk_lambda::Client, name: &str) -> String {
    settled(lambda, name).await;
    let out = lambda.publish_version().function_name(name).send().await.expect("version published");
    out.version().expect("a version number").to_string()
}

/// A function name no other test uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A real zip archive (one stored file `bootstrap`) with `content`.
pub fn zip(content: &str) -> Vec<u8> {
    let name = b"bootstrap";
    let data = content.as_bytes();
    let (crc, size, name_len) = (crc32(data), data.len() as u32, name.len() as u16);
    let mut out = Vec::new();
    let common = |out: &mut Vec<u8>| {
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x21u16.to_le_bytes()); // date 1980-01-01
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
    };
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    common(&mut out);
    out.extend_from_slice(name);
    out.extend_from_slice(data);
    let central = out.len() as u32;
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version made by
    common(&mut out);
    out.extend_from_slice(&[0; 12]); // comment len, disk, internal attrs, external attrs
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name);
    let central_size = out.len() as u32 - central;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// CodeSha256 as Lambda reports it.
pub fn sha256_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}")
}

/// Uploads to the artifact bucket and returns the new object version.
pub async fn put_artifact(s3: &aws_sdk_s3::Client, key: &str, bytes: &[u8]) -> String {
    let out = s3
        .put_object()
        .bucket(ARTIFACT_BUCKET)
        .key(key)
        .body(bytes.to_vec().into())
        .send()
        .await
        .expect("artifact uploaded");
    out.version_id().expect("the artifact bucket is versioned").to_string()
}

/// Creates a function with `zip` as its code and waits until it is Active and its last update Successful.
pub async fn create_function(lambda: &aws_sdk_lambda::Client, name: &str, zip: &[u8]) -> Configuration {
    create_function_in(lambda, ACCOUNT_ID, name, zip).await
}

/// [`create_function`] with `account`'s function role (the client must act in `account`).
pub async fn create_function_in(
    lambda: &aws_sdk_lambda::Client,
    account: &str,
    name: &str,
    zip: &[u8],
) -> Configuration {
    lambda
        .create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(format!("arn:aws:iam::{account}:role/{FUNCTION_ROLE}"))
        .code(FunctionCode::builder().zip_file(Blob::new(zip.to_vec())).build())
        .send()
        .await
        .expect("function created");
    settled(lambda, name).await
}

/// Polls (≤ 10 s) until the function is Active with its last update Successful.
pub async fn settled(lambda: &aws_sdk_lambda::Client, name: &str) -> Configuration {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = lambda.get_function_configuration().function_name(name).send().await.expect("configuration");
        if c.state() == Some(&State::Active) && c.last_update_status() == Some(&LastUpdateStatus::Successful) {
            return c;
        }
        assert!(Instant::now() < deadline, "{name} did not settle: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls (≤ 10 s) until the function's last update has ended, Successful or Failed.
pub async fn update_ended(lambda: &aws_sdk_lambda::Client, name: &str) -> Configuration {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = lambda.get_function_configuration().function_name(name).send().await.expect("configuration");
        if c.last_update_status() != Some(&LastUpdateStatus::InProgress) {
            return c;
        }
        assert!(Instant::now() < deadline, "{name}'s update did not end: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The logged calls of one Lambda operation on one function, oldest first.
pub fn calls_about(tb: &Testbed, operation: &str, function: &str) -> Vec<testbed::aws::Call> {
    tb.aws().calls().of("lambda", operation).filter(|c| c.function.as_deref() == Some(function)).cloned().collect()
}

/// A query-protocol call (IAM, STS: there is no IAM SDK in this workspace) as `identity` in the main region, with
/// a credential scope but no real signature (the testbed verifies none); status and body.
pub async fn query_call(tb: &Testbed, identity: &AwsIdentity, service: &str, form: &str) -> (u16, String) {
    let date = jiff::Timestamp::now().strftime("%Y%m%d");
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0",
        identity.access_key_id
    );
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(format!("{}/", tb.aws_endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth)
        .body(Full::new(Bytes::from(form.to_string())))
        .expect("request");
    let response = client.request(request).await.expect("the layer answers");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// IAM CreateRole in `identity`'s account with `trust` as its trust policy.
pub async fn create_role(tb: &Testbed, identity: &AwsIdentity, name: &str, trust: &str) {
    let form = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument={}",
        percent_encoding::utf8_percent_encode(trust, percent_encoding::NON_ALPHANUMERIC)
    );
    let (status, body) = query_call(tb, identity, "iam", &form).await;
    assert_eq!(status, 200, "CreateRole {name}: {body}");
}

/// A request to the layer's control API; returns status and JSON body (Null when empty).
pub async fn control(
    tb: &Testbed,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", tb.aws_endpoint()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .expect("request");
    let response = client.request(request).await.expect("control API answers");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let json = if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).expect("JSON") };
    (status, json)
}
