//! Authentication the way EKS does it (admin bearer token, or `k8s-aws-v1.` presigned STS GetCallerIdentity URLs
//! verified by recomputing their SigV4 signature, as aws-iam-authenticator does), and RBAC authorization from the
//! Role/ClusterRole/RoleBinding/ClusterRoleBinding objects in the store.

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::errors::group_resource;
use super::store::Store;
use crate::identity::{AccessEntry, AwsIdentity};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

pub(crate) const ADMIN_USER: &str = "kubernetes-admin";
/// The only query parameters aws-iam-authenticator accepts in a token's URL.
const ALLOWED_PARAMS: &[&str] = &[
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];
/// aws-iam-authenticator's limit on a token's age.
const MAX_TOKEN_AGE_SECS: i64 = 15 * 60;

pub(crate) struct Authenticator {
    pub admin_token: String,
    pub cluster_name: String,
    pub identities: Vec<AwsIdentity>,
    pub access_entries: Vec<AccessEntry>,
}

impl Authenticator {
    /// The user for an `Authorization` header value, or None (→ 401).
    pub fn authenticate(&self, header: Option<&str>, now: jiff::Timestamp) -> Option<User> {
        let token = header?.strip_prefix("Bearer ")?.trim();
        if token == self.admin_token {
            return Some(User {
                name: ADMIN_USER.into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            });
        }
        let url = token.strip_prefix("k8s-aws-v1.")?;
        let identity = self.verify_eks_token(url, now).ok()?;
        let entry = self.access_entries.iter().find(|e| e.principal_arn == identity.principal_arn)?;
        let mut groups = entry.groups.clone();
        groups.push("system:authenticated".into());
        Some(User { name: entry.username.clone(), groups })
    }

    /// Decodes and verifies the presigned URL; the error says why (kept for debugging, clients only see 401).
    fn verify_eks_token(&self, encoded: &str, now: jiff::Timestamp) -> Result<&AwsIdentity, String> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|e| format!("bad base64: {e}"))?;
        let url = String::from_utf8(raw).map_err(|_| "not utf-8".to_string())?;
        let rest = url.strip_prefix("https://").ok_or("not https")?;
        let (host, path_query) = rest.split_once('/').ok_or("no path")?;
        let query = path_query.strip_prefix('?').ok_or("path must be /")?;
        let params = parse_query(query)?;
        if let Some(other) = params.keys().find(|k| !ALLOWED_PARAMS.contains(&k.to_ascii_lowercase().as_str())) {
            return Err(format!("non-whitelisted query parameter {other:?}"));
        }
        let p = |k: &str| params.get(k).map(String::as_str).ok_or(format!("missing {k}"));
        if p("Action")? != "GetCallerIdentity" {
            return Err("unexpected action".into());
        }
        if p("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
            return Err("unsupported algorithm".into());
        }
        let credential = p("X-Amz-Credential")?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key, date, region, service, terminator] = scope[..] else {
            return Err("bad credential scope".into());
        };
        if service != "sts" || terminator != "aws4_request" {
            return Err("bad credential scope".into());
        }
        if host != "sts.amazonaws.com" && host != format!("sts.{region}.amazonaws.com") {
            return Err(format!("unexpected host {host}"));
        }
        let signed_headers = p("X-Amz-SignedHeaders")?;
        let signed: Vec<&str> = signed_headers.split(';').collect();
        if !signed.contains(&"x-k8s-aws-id") {
            return Err("client did not sign the x-k8s-aws-id header in the pre-signed URL".into());
        }
        if signed.iter().any(|h| *h != "host" && *h != "x-k8s-aws-id") {
            return Err("unexpected signed headers".into());
        }
        let amz_date = p("X-Amz-Date")?;
        let signed_at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", amz_date)
            .ok()
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .ok_or("bad X-Amz-Date")?
            .timestamp();
        let age = now.as_second() - signed_at.as_second();
        if age > MAX_TOKEN_AGE_SECS {
            return Err("X-Amz-Date parameter is expired (15 minute expiration)".into());
        }
        if age < -MAX_TOKEN_AGE_SECS {
            return Err("X-Amz-Date parameter is in the future".into());
        }
        if !amz_date.starts_with(date) {
            return Err("credential date does not match X-Amz-Date".into());
        }
        let identity = self.identities.iter().find(|i| i.access_key_id == access_key).ok_or("unknown access key")?;

        let mut canonical_query: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| *k != "X-Amz-Signature")
            .map(|(k, v)| (uri_encode(k), uri_encode(v)))
            .collect();
        canonical_query.sort();
        let canonical_query: Vec<String> = canonical_query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let header_value = |h: &str| if h == "host" { host.to_string() } else { self.cluster_name.clone() };
        let canonical_headers: String = signed.iter().map(|h| format!("{h}:{}\n", header_value(h))).collect();
        let canonical_request = format!(
            "GET\n/\n{}\n{canonical_headers}\n{signed_headers}\n{}",
            canonical_query.join("&"),
            hex::encode(Sha256::digest(b""))
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", identity.secret_access_key).as_bytes(), date.as_bytes());
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        if expected != p("X-Amz-Signature")? {
            return Err("signature mismatch".into());
        }
        Ok(identity)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("hmac takes any key"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn parse_query(query: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "bad percent-encoding".to_string())
        };
        out.insert(decode(k)?, decode(v)?);
    }
    Ok(out)
}

/// SigV4 URI encoding: everything except unreserved characters, upper-case hex.
fn uri_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// What is being asked, in RBAC terms.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str()).collect()).unwrap_or_default()
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(&rule["verbs"]);
    let groups = strings(&rule["apiGroups"]);
    let resources = strings(&rule["resources"]);
    let names = strings(&rule["resourceNames"]);
    let combined =
        if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (a.subresource.is_empty() && *r == a.resource)
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    verbs.iter().any(|v| *v == "*" || *v == a.verb)
        && groups.iter().any(|g| *g == "*" || *g == a.group)
        && resource_ok
        && (names.is_empty() || (!a.name.is_empty() && names.contains(&a.name.as_str())))
}

fn subject_matches(binding: &Value, user: &User, binding_ns: &str) -> bool {
    binding["subjects"].as_array().into_iter().flatten().any(|s| {
        let name = s["name"].as_str().unwrap_or_default();
        match s["kind"].as_str() {
            Some("User") => name == user.name,
            Some("Group") => user.groups.iter().any(|g| g == name),
            Some("ServiceAccount") => {
                let ns = s["namespace"].as_str().unwrap_or(binding_ns);
                user.name == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

/// RBAC: does any binding for this user grant the request? (No deny rules, as in Kubernetes.)
pub(crate) fn authorize(store: &Store, user: &User, a: &Attributes) -> bool {
    if user.is_admin() {
        return true;
    }
    let rbac = "rbac.authorization.k8s.io";
    let role_rules = |kind: &str, name: &str, ns: &str| -> Vec<Value> {
        let (plural, ns) = if kind == "ClusterRole" { ("clusterroles", "") } else { ("roles", ns) };
        store
            .objects
            .get(&(rbac.into(), plural.into(), ns.into(), name.into()))
            .and_then(|r| r["rules"].as_array().cloned())
            .unwrap_or_default()
    };
    let grants = |binding: &Value, ns: &str| {
        let kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
        let name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        subject_matches(binding, user, ns) && role_rules(kind, name, ns).iter().any(|r| rule_allows(r, a))
    };
    if store.range(rbac, "clusterrolebindings").any(|(_, b)| grants(b, "")) {
        return true;
    }
    !a.namespace.is_empty()
        && store
            .range(rbac, "rolebindings")
            .filter(|((_, _, ns, _), _)| *ns == a.namespace)
            .any(|((_, _, ns, _), b)| grants(b, ns))
}

/// `lambdadeployments.lambda-deployer.dev "x" is forbidden: User "u" cannot get resource "lambdadeployments" in API
/// group "lambda-deployer.dev" in the namespace "default"` — kube-apiserver's wording.
pub(crate) fn forbidden_message(user: &User, a: &Attributes) -> String {
    let gr = group_resource(&a.group, &a.resource);
    let subject = if a.name.is_empty() { gr } else { format!("{gr} \"{}\"", a.name) };
    let resource =
        if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    )
}
