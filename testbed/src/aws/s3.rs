//! S3 across accounts and regions as AWS enforces it, over moto (which serves every bucket to every account from
//! any region): a request must be sent to its bucket's region — else 301 `PermanentRedirect` — and a request from
//! another account than the bucket's owner must be allowed by the bucket policy — else 403 `AccessDenied`. Identity
//! policies are not evaluated: within its own account every identity may do everything. Errors in S3's XML shape.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Mutex;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::accounts::{Caller, Refusal};
use super::moto_client::{Body, MotoClient, full};
use super::policy::{self, Ask};
use super::{FaultAction, lock};
use crate::identity::REGION;

/// What a bucket name keeps unencoded in a path (moto does not decode `%2D` in one).
const BUCKET_NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// Where a bucket is and whose it is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) owner: String,
    pub(crate) region: String,
}

/// The buckets' owners and regions, looked up in moto on first use.
pub(crate) struct Buckets {
    moto: MotoClient,
    /// The accounts whose buckets are searched.
    accounts: Vec<String>,
    known: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    pub(crate) fn new(moto: MotoClient, accounts: Vec<String>) -> Buckets {
        Buckets { moto, accounts, known: Mutex::default() }
    }

    /// None if no account has the bucket.
    pub(crate) async fn find(&self, name: &str) -> io::Result<Option<Bucket>> {
        if let Some(bucket) = lock(&self.known).get(name) {
            return Ok(Some(bucket.clone()));
        }
        let encoded = utf8_percent_encode(name, BUCKET_NAME).to_string();
        for account in &self.accounts {
            let moto = self.moto.at(account, REGION);
            let (status, listing) =
                moto.call("s3", Method::GET, &format!("/?prefix={encoded}"), None, Bytes::new()).await?;
            let listed = String::from_utf8_lossy(&listing);
            if status != StatusCode::OK || !listed.contains(&format!("<Name>{name}</Name>")) {
                continue;
            }
            let (status, location) =
                moto.call("s3", Method::GET, &format!("/{encoded}?location"), None, Bytes::new()).await?;
            if status != StatusCode::OK {
                return Ok(None);
            }
            let bucket = Bucket { owner: account.clone(), region: location_constraint(&location) };
            lock(&self.known).insert(name.to_string(), bucket.clone());
            return Ok(Some(bucket));
        }
        Ok(None)
    }

    /// A created or deleted bucket is looked up again on its next use.
    fn forget(&self, name: &str) {
        lock(&self.known).remove(name);
    }

    /// Whether `caller` may perform `action` on `resource` (an ARN) of `bucket`: in its own account always, from
    /// another only as the bucket policy (read now, as its owner) allows.
    pub(crate) async fn allows(
        &self,
        caller: &Caller,
        name: &str,
        bucket: &Bucket,
        action: &str,
        resource: &str,
    ) -> io::Result<bool> {
        if bucket.owner == caller.place.account {
            return Ok(true);
        }
        let path = format!("/{}?policy", utf8_percent_encode(name, BUCKET_NAME));
        let moto = self.moto.at(&bucket.owner, &bucket.region);
        let (status, document) = moto.call("s3", Method::GET, &path, None, Bytes::new()).await?;
        if status != StatusCode::OK {
            return Ok(false);
        }
        let context = [("aws:principalaccount", caller.place.account.as_str())];
        let ask = Ask { principal: caller.principal(), action, resource: Some(resource), context: &context };
        Ok(policy::allows(&String::from_utf8_lossy(&document), &ask))
    }
}

/// GetBucketLocation's answer as a region: us-east-1's buckets have an empty (or self-closing, or no)
/// `LocationConstraint`, which may carry an `xmlns`.
fn location_constraint(xml: &[u8]) -> String {
    let xml = String::from_utf8_lossy(xml);
    let pattern = regex::Regex::new(r"<LocationConstraint[^>]*>([^<]+)</LocationConstraint>").expect("valid regex");
    pattern.captures(&xml).map_or(REGION.to_string(), |c| c[1].trim().to_string())
}

/// The IAM action an S3 operation needs and the ARN it is evaluated on; None for what only the owner may do (the
/// bucket policy operations) and unnamed requests.
fn action_of(operation: &str, params: &BTreeMap<String, String>) -> Option<(String, String)> {
    let bucket = params.get("Bucket")?;
    let object = || params.get("Key").map(|key| format!("arn:aws:s3:::{bucket}/{key}"));
    let versioned = |plain: &str, version: &str| {
        let action = if params.contains_key("VersionId") { version } else { plain };
        Some((format!("s3:{action}"), object()?))
    };
    let on_bucket = |action: &str| Some((format!("s3:{action}"), format!("arn:aws:s3:::{bucket}")));
    match operation {
        "GetObject" | "HeadObject" => versioned("GetObject", "GetObjectVersion"),
        "GetObjectTagging" => versioned("GetObjectTagging", "GetObjectVersionTagging"),
        "PutObjectTagging" => versioned("PutObjectTagging", "PutObjectVersionTagging"),
        "DeleteObject" => versioned("DeleteObject", "DeleteObjectVersion"),
        "PutObject" | "CopyObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload" => {
            Some(("s3:PutObject".into(), object()?))
        }
        "AbortMultipartUpload" => Some(("s3:AbortMultipartUpload".into(), object()?)),
        "ListParts" => Some(("s3:ListMultipartUploadParts".into(), object()?)),
        // Each key is evaluated in AWS; the keys are in the body, so here every key of the bucket must be allowed.
        "DeleteObjects" => Some(("s3:DeleteObject".into(), format!("arn:aws:s3:::{bucket}/*"))),
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => on_bucket("ListBucket"),
        "ListObjectVersions" => on_bucket("ListBucketVersions"),
        "PutBucketNotificationConfiguration" => on_bucket("PutBucketNotification"),
        "GetBucketVersioning" | "PutBucketVersioning" | "GetBucketLocation" | "DeleteBucket" => on_bucket(operation),
        _ => None,
    }
}

/// What S3 answers instead of serving the request, if it would not serve it: the bucket is in another region, or
/// in another account whose bucket policy does not allow the caller.
pub(super) async fn refuse(
    buckets: &Buckets,
    caller: &Caller,
    method: &Method,
    operation: &str,
    params: &BTreeMap<String, String>,
) -> Option<Response<Body>> {
    let name = params.get("Bucket")?;
    if operation == "CreateBucket" || operation == "DeleteBucket" {
        buckets.forget(name);
    }
    if operation == "CreateBucket" {
        return None;
    }
    // moto unreachable or no such bucket: moto answers.
    let bucket = buckets.find(name).await.ok()??;
    // Any region may ask where a bucket is.
    if bucket.region != caller.place.region && operation != "GetBucketLocation" {
        return Some(permanent_redirect(method, name, &bucket.region));
    }
    let allowed = match action_of(operation, params) {
        Some((action, resource)) => buckets.allows(caller, name, &bucket, &action, &resource).await.unwrap_or(false),
        None => bucket.owner == caller.place.account,
    };
    (!allowed).then(|| error(method, StatusCode::FORBIDDEN, "AccessDenied", "Access Denied", ""))
}

/// What S3 answers a request sent to another region than its bucket's (docs: "Amazon S3 returns an HTTP 301
/// PermanentRedirect"), with the `x-amz-bucket-region` header SDKs read.
fn permanent_redirect(method: &Method, bucket: &str, region: &str) -> Response<Body> {
    let extra = format!("<Endpoint>{bucket}.s3.{region}.amazonaws.com</Endpoint><Bucket>{bucket}</Bucket>");
    let mut response = error(
        method,
        StatusCode::MOVED_PERMANENTLY,
        "PermanentRedirect",
        "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all \
         future requests to this endpoint.",
        &extra,
    );
    if let Ok(region) = HeaderValue::from_str(region) {
        response.headers_mut().insert("x-amz-bucket-region", region);
    }
    response
}

/// A scripted fault's answer: 503 `SlowDown`, otherwise 500 `InternalError`.
pub(super) fn fault_error(method: &Method, action: &FaultAction) -> Response<Body> {
    match action {
        FaultAction::SlowDown => {
            error(method, StatusCode::SERVICE_UNAVAILABLE, "SlowDown", "Please reduce your request rate.", "")
        }
        _ => error(
            method,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
            "",
        ),
    }
}

/// S3's answers to credentials it does not take: 400, unlike the other services' 403.
pub(super) fn refusal_error(method: &Method, refusal: Refusal) -> Response<Body> {
    let (code, message) = match refusal {
        Refusal::InvalidToken => ("InvalidToken", "The provided token is malformed or otherwise invalid."),
        _ => ("ExpiredToken", "The provided token has expired."),
    };
    error(method, StatusCode::BAD_REQUEST, code, message, "")
}

/// An error in S3's XML shape (`extra`: more elements after the message); a HEAD response carries no body, as S3's
/// do.
fn error(method: &Method, status: StatusCode, code: &str, message: &str, extra: &str) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase();
    let xml = if method == Method::HEAD {
        String::new()
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{extra}\
             <RequestId>{request_id}</RequestId></Error>"
        )
    };
    let mut response = Response::new(full(xml));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amz-request-id", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_bucket_without_a_location_constraint_is_in_us_east_1() {
        let xmlns = r#"xmlns="http://s3.amazonaws.com/doc/2006-03-01/""#;
        let west = format!("<LocationConstraint {xmlns}>us-west-2</LocationConstraint>");
        assert_eq!(location_constraint(west.as_bytes()), "us-west-2");
        assert_eq!(location_constraint(format!("<LocationConstraint {xmlns}/>").as_bytes()), REGION);
        assert_eq!(location_constraint(b"<LocationConstraint></LocationConstraint>"), REGION);
    }

    #[test]
    fn a_version_needs_the_version_action_and_listing_is_on_the_bucket() {
        let object = params(&[("Bucket", "b"), ("Key", "k/a.zip")]);
        let version = params(&[("Bucket", "b"), ("Key", "k/a.zip"), ("VersionId", "v1")]);
        assert_eq!(action_of("HeadObject", &object), Some(("s3:GetObject".into(), "arn:aws:s3:::b/k/a.zip".into())));
        assert_eq!(action_of("GetObject", &version).unwrap().0, "s3:GetObjectVersion");
        assert_eq!(action_of("ListObjectsV2", &params(&[("Bucket", "b")])).unwrap().1, "arn:aws:s3:::b");
        assert_eq!(action_of("PutBucketPolicy", &params(&[("Bucket", "b")])), None);
    }
}
