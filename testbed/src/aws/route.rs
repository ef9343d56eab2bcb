//! Which service and operation a request is: from its SigV4 credential scope, method, path and parameters.

use std::collections::BTreeMap;

use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;

/// The SigV4 credential scope's access key id, region and service.
#[derive(Debug, PartialEq)]
pub(crate) struct Scope {
    pub(crate) access_key_id: String,
    pub(crate) region: String,
    pub(crate) service: String,
}

/// From `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, ...`, or from the
/// `X-Amz-Credential` query parameter of a presigned URL.
pub(crate) fn credential_scope(headers: &HeaderMap, query: &[(String, String)]) -> Option<Scope> {
    let from_header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split_once("Credential="))
        .map(|(_, rest)| rest.split([',', ' ']).next().unwrap_or_default().to_string());
    let credential = from_header.or_else(|| param(query, "X-Amz-Credential").map(str::to_string))?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [akid, _date, region, service, "aws4_request"] => {
            Some(Scope { access_key_id: akid.to_string(), region: region.to_string(), service: service.to_string() })
        }
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` pairs (also used for URL query strings).
pub(crate) fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_form(k), decode_form(v))
        })
        .collect()
}

fn decode_form(s: &str) -> String {
    percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

pub(crate) fn decode_path(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn has(pairs: &[(String, String)], name: &str) -> bool {
    pairs.iter().any(|(k, _)| k == name)
}

/// The S3 operation of a path-style request, with its bucket/key/versionId parameters.
pub(crate) fn s3_operation(
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> (String, BTreeMap<String, String>) {
    let trimmed = path.trim_start_matches('/');
    let (bucket, key) = match trimmed.split_once('/') {
        Some((b, k)) if !k.is_empty() => (decode_path(b), Some(decode_path(k))),
        _ => (decode_path(trimmed.trim_end_matches('/')), None),
    };
    let mut params = BTreeMap::new();
    if !bucket.is_empty() {
        params.insert("Bucket".to_string(), bucket.clone());
    }
    if let Some(k) = &key {
        params.insert("Key".to_string(), k.clone());
    }
    if let Some(v) = param(query, "versionId") {
        params.insert("VersionId".to_string(), v.to_string());
    }
    let op = match (method.as_str(), bucket.is_empty(), key.is_some()) {
        ("GET", true, _) => "ListBuckets",
        ("GET", false, true) if has(query, "tagging") => "GetObjectTagging",
        ("GET", false, true) if has(query, "uploadId") => "ListParts",
        ("GET", false, true) => "GetObject",
        ("HEAD", false, true) => "HeadObject",
        ("PUT", false, true) if has(query, "partNumber") => "UploadPart",
        ("PUT", false, true) if has(query, "tagging") => "PutObjectTagging",
        ("PUT", false, true) if headers.contains_key("x-amz-copy-source") => "CopyObject",
        ("PUT", false, true) => "PutObject",
        ("DELETE", false, true) if has(query, "uploadId") => "AbortMultipartUpload",
        ("DELETE", false, true) => "DeleteObject",
        ("POST", false, true) if has(query, "uploads") => "CreateMultipartUpload",
        ("POST", false, true) if has(query, "uploadId") => "CompleteMultipartUpload",
        ("GET", false, false) if has(query, "versioning") => "GetBucketVersioning",
        ("GET", false, false) if has(query, "versions") => "ListObjectVersions",
        ("GET", false, false) if has(query, "location") => "GetBucketLocation",
        ("GET", false, false) if has(query, "policy") => "GetBucketPolicy",
        ("GET", false, false) if param(query, "list-type") == Some("2") => "ListObjectsV2",
        ("GET", false, false) => "ListObjects",
        ("HEAD", false, false) => "HeadBucket",
        ("PUT", false, false) if has(query, "versioning") => "PutBucketVersioning",
        ("PUT", false, false) if has(query, "notification") => "PutBucketNotificationConfiguration",
        ("PUT", false, false) if has(query, "policy") => "PutBucketPolicy",
        ("PUT", false, false) => "CreateBucket",
        ("POST", false, false) if has(query, "delete") => "DeleteObjects",
        ("DELETE", false, false) if has(query, "policy") => "DeleteBucketPolicy",
        ("DELETE", false, false) => "DeleteBucket",
        _ => return (format!("{method} {path}"), params),
    };
    (op.to_string(), params)
}

/// The EKS operation of a REST-JSON request and the cluster it names.
pub(crate) fn eks_operation(method: &Method, path: &str) -> (String, Option<String>) {
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode_path).collect();
    let op = match (method.as_str(), segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice()) {
        ("GET", ["clusters"]) => "ListClusters",
        ("POST", ["clusters"]) => "CreateCluster",
        ("GET", ["clusters", _]) => "DescribeCluster",
        ("DELETE", ["clusters", _]) => "DeleteCluster",
        ("GET", ["clusters", _, "access-entries"]) => "ListAccessEntries",
        ("POST", ["clusters", _, "access-entries"]) => "CreateAccessEntry",
        _ => return (format!("{method} {path}"), None),
    };
    let cluster = (segments.len() > 1).then(|| segments[1].clone());
    (op.to_string(), cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_scope_is_read_from_authorization_or_presigned_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0"
                .parse()
                .unwrap(),
        );
        let scope = credential_scope(&headers, &[]).unwrap();
        assert_eq!(scope, Scope { access_key_id: "AKID".into(), region: "us-east-1".into(), service: "lambda".into() });
        let query =
            form_pairs("Action=GetCallerIdentity&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fsts%2Faws4_request");
        assert_eq!(credential_scope(&HeaderMap::new(), &query).unwrap().service, "sts");
        assert_eq!(credential_scope(&HeaderMap::new(), &[]), None);
    }

    #[test]
    fn s3_requests_are_named_like_the_api() {
        let q = form_pairs("versionId=v1");
        let (op, params) = s3_operation(&Method::GET, "/bucket/a/b%20c.zip", &q, &HeaderMap::new());
        assert_eq!(op, "GetObject");
        assert_eq!(params["Key"], "a/b c.zip");
        assert_eq!(params["VersionId"], "v1");
        let (op, _) = s3_operation(&Method::GET, "/bucket", &form_pairs("list-type=2"), &HeaderMap::new());
        assert_eq!(op, "ListObjectsV2");
    }
}
