//! HTTP to moto: forwarding clients' requests (bodies streamed), and the layer's own calls (IAM GetRole,
//! S3 GetObject for function code, CloudWatch metrics and alarm states, the testbed's setup).

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The access key the layer's own calls carry.
pub(crate) const LAYER_KEY: &str = "AKIATESTBEDLAYER0001";
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// moto takes the account a request acts in from this header before it looks at the access key.
const ACCOUNT_HEADER: &str = "x-moto-account-id";

/// A client for one moto_server, acting in one account and region. moto does not verify signatures, only reads the
/// credential scope to pick the service and region, so the layer's own calls carry a scope and a dummy signature.
#[derive(Clone)]
pub struct MotoClient {
    base: String,
    client: Client<HttpConnector, Body>,
    account: String,
    region: String,
}

impl MotoClient {
    /// `base`: `http://127.0.0.1:PORT`. Acts in the deployer's account in the main region.
    pub fn new(base: &str) -> MotoClient {
        MotoClient {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            account: crate::identity::ACCOUNT_ID.into(),
            region: crate::identity::REGION.into(),
        }
    }

    /// The same moto, acting in `account` and (for the calls of [`MotoClient::call`]) `region`.
    pub fn at(&self, account: &str, region: &str) -> MotoClient {
        MotoClient { account: account.into(), region: region.into(), ..self.clone() }
    }

    /// Sends a client's request on to moto, in this client's account, unchanged except for its target and
    /// hop-by-hop headers.
    pub(crate) async fn forward(&self, mut parts: http::request::Parts, body: Body) -> io::Result<Response<Incoming>> {
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        parts.uri = self.uri(path)?;
        strip_hop_by_hop(&mut parts.headers);
        // The account is the layer's to say, never the client's.
        parts.headers.insert(ACCOUNT_HEADER, http::HeaderValue::from_str(&self.account).map_err(io::Error::other)?);
        // The client's `Expect: 100-continue` was answered by our server already.
        parts.headers.remove(http::header::EXPECT);
        let mut response = self.client.request(Request::from_parts(parts, body)).await.map_err(io::Error::other)?;
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }

    /// One request of the layer's own; returns status and the whole body.
    pub async fn call(
        &self,
        service: &str,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> io::Result<(StatusCode, Bytes)> {
        let headers: Vec<(&str, &str)> = content_type.map(|ct| ("content-type", ct)).into_iter().collect();
        self.request(LAYER_KEY, service, method, path_and_query, &headers, body.into()).await
    }

    /// One awsJson 1.0 call (`X-Amz-Target: TARGET`), signed (in scope only) with `access_key_id`.
    pub(crate) async fn call_json(
        &self,
        access_key_id: &str,
        service: &str,
        target: &str,
        body: &serde_json::Value,
    ) -> io::Result<(StatusCode, Bytes)> {
        let headers = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", target)];
        self.request(access_key_id, service, Method::POST, "/", &headers, body.to_string().into()).await
    }

    async fn request(
        &self,
        access_key_id: &str,
        service: &str,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> io::Result<(StatusCode, Bytes)> {
        let date = jiff::Timestamp::now().strftime("%Y%m%d").to_string();
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={access_key_id}/{date}/{}/{service}/aws4_request, \
             SignedHeaders=host, Signature=0000",
            self.region
        );
        let mut request = Request::builder()
            .method(method)
            .uri(self.uri(path_and_query)?)
            .header("authorization", auth)
            .header(ACCOUNT_HEADER, self.account.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(full(body)).map_err(io::Error::other)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(io::Error::other)?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(io::Error::other)?.to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("moto did not answer {path_and_query}")))?
    }

    fn uri(&self, path_and_query: &str) -> io::Result<Uri> {
        format!("{}{path_and_query}", self.base).parse().map_err(io::Error::other)
    }
}

/// The text of the first `<tag>...</tag>` in an XML document (enough for AWS error and result documents).
pub(crate) fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + end])
}
