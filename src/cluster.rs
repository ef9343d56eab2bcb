//! Access to the cluster. On AWS: DescribeCluster gives the endpoint and CA, and the bearer token is what
//! `aws eks get-token` makes — `k8s-aws-v1.` + base64url(a presigned STS GetCallerIdentity URL with the cluster
//! name signed in `x-k8s-aws-id`). EKS accepts a token for 15 minutes; the client is rebuilt after 10, so a token
//! never expires mid-invocation. Locally, a kubeconfig.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use tokio::sync::Mutex;
use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use kube::client::{ClientBuilder, DynBody};

use crate::config::ClusterAccess;
use crate::retry::{Budget, Call};
use crate::{Error, Result};

const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// Rebuild the client (and token) this long after making it; EKS rejects tokens older than 15 minutes.
const TOKEN_REFRESH: Duration = Duration::from_secs(10 * 60);

pub struct Cluster {
    access: ClusterAccess,
    sdk: aws_config::SdkConfig,
    eks: aws_sdk_eks::Client,
    cached: Mutex<Option<(kube::Client, Instant)>>,
}

impl Cluster {
    pub fn new(access: ClusterAccess, sdk: &aws_config::SdkConfig) -> Self {
        Cluster { access, sdk: sdk.clone(), eks: aws_sdk_eks::Client::new(sdk), cached: Mutex::new(None) }
    }

    /// A client with a fresh-enough token, built once and reused across invocations. Its own retry layer is off:
    /// every call goes through [`crate::retry`], which keeps the invocation's deadline.
    pub async fn client(&self, budget: Budget<'_>) -> Result<kube::Client> {
        let mut cached = self.cached.lock().await;
        if let Some((client, made)) = cached.as_ref()
            && (made.elapsed() < TOKEN_REFRESH || matches!(self.access, ClusterAccess::Kubeconfig { .. }))
        {
            return Ok(client.clone());
        }
        let client = match &self.access {
            ClusterAccess::Eks { cluster_name } => self.eks_client(cluster_name, budget).await?,
            ClusterAccess::Kubeconfig { path } => kubeconfig_client(path).await?,
        };
        *cached = Some((client.clone(), Instant::now()));
        Ok(client)
    }

    async fn eks_client(&self, cluster_name: &str, budget: Budget<'_>) -> Result<kube::Client> {
        let described = budget
            .run(Call::new("eks", "DescribeCluster"), None, || async {
                self.eks
                    .describe_cluster()
                    .name(cluster_name)
                    .send()
                    .await
                    .map_err(|e| crate::aws::aws_error("eks", "DescribeCluster", e))
            })
            .await
            .map_err(|err| Error::Kube {
                message: format!("cannot describe EKS cluster {cluster_name:?}: {err}"),
                status: None,
                retryable: err.is_retryable(),
                retry_after: None,
            })?;
        let cluster =
            described.cluster().ok_or_else(|| cluster_error(cluster_name, "DescribeCluster returned no cluster"))?;
        let endpoint =
            cluster.endpoint().ok_or_else(|| cluster_error(cluster_name, "the cluster has no endpoint yet"))?;
        let ca_base64 = cluster
            .certificate_authority()
            .and_then(|ca| ca.data())
            .ok_or_else(|| cluster_error(cluster_name, "the cluster has no certificate authority data"))?;
        let ca_pem = base64::engine::general_purpose::STANDARD
            .decode(ca_base64.trim())
            .map_err(|e| cluster_error(cluster_name, &format!("certificate authority data is not base64: {e}")))?;
        let token = self.token(cluster_name).await?;
        let mut config = kube::Config::new(
            endpoint.parse().map_err(|e| cluster_error(cluster_name, &format!("bad endpoint {endpoint:?}: {e}")))?,
        );
        config.root_cert = Some(pem_certificates(&ca_pem).map_err(|e| cluster_error(cluster_name, &e))?);
        config.auth_info.token = Some(token.into());
        build_client(config).map_err(|e| cluster_error(cluster_name, &format!("building the client: {e}")))
    }

    /// The EKS bearer token for this container's credentials.
    pub async fn token(&self, cluster_name: &str) -> Result<String> {
        let provider = self
            .sdk
            .credentials_provider()
            .ok_or_else(|| Error::config("AWS_ACCESS_KEY_ID", "no AWS credentials provider is configured"))?;
        let credentials = provider.provide_credentials().await.map_err(|e| Error::Aws {
            service: "sts",
            operation: "credentials",
            code: None,
            status: None,
            message: format!("cannot load AWS credentials: {e}"),
            retryable: true,
            retry_after: None,
        })?;
        let region = self.sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
        eks_token(cluster_name, &region, &credentials.into(), SystemTime::now())
    }
}

fn cluster_error(cluster_name: &str, reason: &str) -> Error {
    Error::Kube {
        message: format!("EKS cluster {cluster_name:?}: {reason}"),
        status: None,
        retryable: false,
        retry_after: None,
    }
}

/// Builds the token exactly as aws-iam-authenticator expects it (query-parameter SigV4, 60 s expiry).
pub fn eks_token(
    cluster_name: &str,
    region: &str,
    identity: &aws_smithy_runtime_api::client::identity::Identity,
    time: SystemTime,
) -> Result<String> {
    let url = format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let signing_error = |e: &dyn std::fmt::Display| Error::Kube {
        message: format!("cannot sign the EKS token: {e}"),
        status: None,
        retryable: false,
        retry_after: None,
    };
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| signing_error(&e))?
        .into();
    let signable =
        SignableRequest::new("GET", &url, [("x-k8s-aws-id", cluster_name)].into_iter(), SignableBody::Bytes(&[]))
            .map_err(|e| signing_error(&e))?;
    let (instructions, _signature) = sign(signable, &params).map_err(|e| signing_error(&e))?.into_parts();
    let mut request = http::Request::builder().uri(&url).body(()).map_err(|e| signing_error(&e))?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)))
}

/// DER certificates from a PEM bundle.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "certificate authority data is not PEM text".to_string())?;
    let mut certificates = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match (line, current.as_mut()) {
            ("-----BEGIN CERTIFICATE-----", None) => current = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(body)) => {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body.as_bytes())
                    .map_err(|e| format!("certificate authority PEM is corrupt: {e}"))?;
                certificates.push(der);
                current = None;
            }
            (line, Some(body)) => body.push_str(line),
            _ => {}
        }
    }
    if certificates.is_empty() {
        return Err("certificate authority data contains no PEM certificate".into());
    }
    Ok(certificates)
}

/// How the claims this deployer makes name its cluster: the EKS cluster's ARN (in the deployer's account and
/// region, where DescribeCluster looks), or a kubeconfig's server URL.
pub fn identity(access: &ClusterAccess, deployer: &crate::deployer::Identity) -> String {
    match access {
        ClusterAccess::Eks { cluster_name } => {
            format!("arn:{}:eks:{}:{}:cluster/{cluster_name}", deployer.partition, deployer.region, deployer.account)
        }
        ClusterAccess::Kubeconfig { path } => kubeconfig_server(path).unwrap_or_else(|| format!("kubeconfig {path}")),
    }
}

/// The server of a kubeconfig's current context.
fn kubeconfig_server(path: &str) -> Option<String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).ok()?;
    let context_name = kubeconfig.current_context.as_deref()?;
    let context = kubeconfig.contexts.iter().find(|c| c.name == context_name)?.context.as_ref()?;
    let cluster = kubeconfig.clusters.iter().find(|c| c.name == context.cluster)?.cluster.as_ref()?;
    cluster.server.clone()
}

async fn kubeconfig_client(path: &str) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| Error::config("KUBECONFIG", format!("cannot read {path}: {e}")))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| Error::config("KUBECONFIG", format!("{path}: {e}")))?;
    build_client(config).map_err(|e| Error::config("KUBECONFIG", format!("{path}: {e}")))
}

/// kube's client without its own retry layer (it knows nothing of the deadline; [`crate::retry`] retries), and with
/// `Retry-After` kept: kube-apiserver's flow control answers an overload with a plain-text 429 and a `Retry-After`
/// header, of which kube's error would keep no trace. Such an answer becomes the `Status` kube decodes, with the
/// header's seconds in `details.retryAfterSeconds`.
fn build_client(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.default_retry = false;
    let keep_retry_after = tower::util::AndThenLayer::new(retry_after_as_status);
    Ok(ClientBuilder::try_from(config)?.with_layer(&keep_retry_after).build())
}

async fn retry_after_as_status(
    response: http::Response<Box<DynBody>>,
) -> Result<http::Response<Box<DynBody>>, tower::BoxError> {
    let code = response.status();
    let is_json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    let (Some(seconds), false) = (retry_after, is_json) else { return Ok(response) };
    if !code.is_client_error() && !code.is_server_error() {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let text = body.collect().await?.to_bytes();
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code.as_u16(),
        "reason": if code.as_u16() == 429 { "TooManyRequests" } else { "ServiceUnavailable" },
        "message": String::from_utf8_lossy(&text).trim(),
        "details": { "retryAfterSeconds": seconds },
    });
    parts.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let body = http_body_util::Full::new(Bytes::from(status.to_string()))
        .map_err(|never| -> tower::BoxError { match never {} });
    Ok(http::Response::from_parts(parts, Box::new(body) as Box<DynBody>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_a_presigned_sts_url_bound_to_the_cluster() {
        let credentials = aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let token = eks_token("prod", "eu-west-1", &credentials.into(), time).unwrap();
        let encoded = token.strip_prefix(TOKEN_PREFIX).expect("prefix");
        let url = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        assert!(url.starts_with("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"));
        for part in ["X-Amz-Expires=60", "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id", "X-Amz-Credential=AKIDEXAMPLE%2F"] {
            assert!(url.contains(part), "{part} missing in {url}");
        }
        assert!(!url.contains("secret"));
    }

    #[test]
    fn ca_data_that_is_not_a_certificate_is_rejected_clearly() {
        assert!(pem_certificates(b"\x00\xff random").unwrap_err().contains("not PEM"));
        assert!(pem_certificates(b"hello").unwrap_err().contains("no PEM certificate"));
    }
}
