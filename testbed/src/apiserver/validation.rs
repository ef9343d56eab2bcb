//! What kube-apiserver checks in an object before storing it: the body's type, names, labels and annotations, Events
//! (`ValidateEventCreate`), and a CRD (with the status its controller would give it).

use std::sync::LazyLock;

use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult, Cause};
use super::meta::{meta_str, now_string};
use super::store::ResourceDef;

/// Checks apiVersion/kind of a request body against the endpoint (filling them in when absent).
pub(crate) fn check_type(def: &ResourceDef, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let want = def.api_version();
    match obj["apiVersion"].as_str() {
        None | Some("") => obj["apiVersion"] = want.clone().into(),
        Some(v) if v == want => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )));
        }
    }
    match obj["kind"].as_str() {
        None | Some("") => obj["kind"] = def.kind.clone().into(),
        Some(k) if k == def.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    Ok(())
}

/// A regex from a constant pattern, compiled once.
macro_rules! static_regex {
    ($name:ident = $pattern:expr) => {
        static $name: LazyLock<Option<regex::Regex>> = LazyLock::new(|| regex::Regex::new($pattern).ok());
    };
}

static_regex!(DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
static_regex!(DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
static_regex!(LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$");
static_regex!(QUALIFIED_NAME = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$");

fn matches(re: &LazyLock<Option<regex::Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

pub(crate) fn validate_name(def: &ResourceDef, name: &str) -> Option<Cause> {
    let invalid = |msg: String| Cause { reason: "FieldValueInvalid", field: "metadata.name".into(), message: msg };
    if def.group == "rbac.authorization.k8s.io" {
        // RBAC names only need to be valid path segments.
        let bad = name == "." || name == ".." || name.contains('/') || name.contains('%');
        return bad.then(|| invalid(format!("Invalid value: {name:?}: may not contain '/' or '%'")));
    }
    let (re, max, what) = if def.plural == "namespaces" && def.group.is_empty() {
        (
            &DNS_LABEL,
            63,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    } else {
        (
            &DNS_SUBDOMAIN,
            253,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    };
    let ok = name.len() <= max && matches(re, name);
    (!ok).then(|| invalid(format!("Invalid value: {name:?}: {what}")))
}

/// Label keys and values, and annotation keys, as kube-apiserver checks them.
pub(crate) fn validate_labels(meta: &Value) -> Vec<Cause> {
    let mut causes = vec![];
    let mut bad = |field: &str, shown: &str, why: String| {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown:?}: {why}"),
        })
    };
    for field in ["labels", "annotations"] {
        let path = format!("metadata.{field}");
        for (key, value) in meta[field].as_object().into_iter().flatten() {
            let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key.as_str()));
            if name.len() > 63 || !matches(&QUALIFIED_NAME, name) {
                bad(&path, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
            }
            if key.contains('/') && (prefix.len() > 253 || !matches(&DNS_SUBDOMAIN, prefix)) {
                bad(&path, key, "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
            }
            if field == "labels" {
                let v = value.as_str().unwrap_or_default();
                if v.len() > 63 {
                    bad(&path, v, "must be no more than 63 characters".into());
                } else if !matches(&LABEL_VALUE, v) {
                    bad(&path, v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
                }
            }
        }
    }
    causes
}

/// kube-apiserver's checks on a new Event (`ValidateEventCreate`), on the served form of `def`'s version. events.k8s.io/v1
/// requires the "new" fields; core/v1 checks them only when `eventTime` is set.
pub(crate) fn validate_event(def: &ResourceDef, ev: &Value) -> Vec<Cause> {
    let v1_api = def.group == "events.k8s.io";
    let mut causes = vec![];
    let required =
        |field: &str| Cause { reason: "FieldValueRequired", field: field.into(), message: "Required value".into() };
    let invalid = |field: &str, shown: &str, why: String| Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {shown:?}: {why}"),
    };
    let text = |k: &str| ev[k].as_str().unwrap_or_default();
    let has_time = !text("eventTime").is_empty();
    let namespace = meta_str(ev, "namespace");
    let involved_ns = ev[if v1_api { "regarding" } else { "involvedObject" }]["namespace"].as_str().unwrap_or_default();
    if !has_time {
        let defaultish = namespace.is_empty() || namespace == "default";
        if (involved_ns.is_empty() && !defaultish) || (!involved_ns.is_empty() && involved_ns != namespace) {
            causes.push(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace".into()));
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            causes.push(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace".into()));
        }
        let controller_field = if v1_api { "reportingController" } else { "reportingComponent" };
        if text(controller_field).is_empty() {
            causes.push(required(controller_field));
        }
        for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            if text(field).is_empty() {
                causes.push(required(field));
            } else if text(field).len() > limit {
                causes.push(invalid(field, "", format!("can have at most {limit} characters")));
            }
        }
        let note = if v1_api { "note" } else { "message" };
        if text(note).len() > 1024 {
            causes.push(invalid(note, "", "can have at most 1024 characters".into()));
        }
    }
    if v1_api {
        if !has_time {
            causes.push(required("eventTime"));
        }
        let kind = text("type");
        if kind != "Normal" && kind != "Warning" {
            causes.push(invalid("type", "", format!("has invalid value: {kind}")));
        }
        for field in ["deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedSource"] {
            if ev.get(field).is_some_and(|v| !v.is_null() && *v != json!({})) {
                causes.push(invalid(field, "", "needs to be unset".into()));
            }
        }
        if ev["deprecatedCount"].as_i64().is_some_and(|c| c != 0) {
            causes.push(invalid("deprecatedCount", "", "needs to be unset".into()));
        }
    }
    causes
}

/// The CRD controller's work, done synchronously: defaults, checks and status (names accepted, established).
pub(crate) fn prepare_crd(crd: &mut Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = vec![];
    let required =
        |field: &str| Cause { reason: "FieldValueRequired", field: field.into(), message: "Required value".into() };
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default().to_string();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default().to_string();
    for (value, field) in [(&group, "spec.group"), (&plural, "spec.names.plural"), (&kind, "spec.names.kind")] {
        if value.is_empty() {
            causes.push(required(field));
        }
    }
    let scope = spec["scope"].as_str().unwrap_or_default().to_string();
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.scope".into(),
            message: format!("Unsupported value: {scope:?}: supported values: \"Cluster\", \"Namespaced\""),
        });
    }
    if let Some(old_scope) = old.and_then(|o| o["spec"]["scope"].as_str())
        && old_scope != scope
    {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: "spec.scope".into(),
            message: format!("Invalid value: {scope:?}: field is immutable"),
        });
    }
    let name = meta_str(crd, "name").to_string();
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: "metadata.name".into(),
            message: format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        });
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage: Vec<&str> =
        versions.iter().filter(|v| v["storage"].as_bool() == Some(true)).filter_map(|v| v["name"].as_str()).collect();
    if versions.is_empty() {
        causes.push(required("spec.versions"));
    } else if storage.len() != 1 {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: "spec.versions".into(),
            message: format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                versions.len()
            ),
        });
    }
    if !causes.is_empty() {
        return causes;
    }
    let names = &mut crd["spec"]["names"];
    if names["singular"].as_str().is_none_or(str::is_empty) {
        names["singular"] = kind.to_lowercase().into();
    }
    if names["listKind"].as_str().is_none_or(str::is_empty) {
        names["listKind"] = format!("{kind}List").into();
    }
    if crd["spec"]["conversion"].is_null() {
        crd["spec"]["conversion"] = json!({"strategy": "None"});
    }
    let accepted = crd["spec"]["names"].clone();
    let mut stored: Vec<Value> =
        old.and_then(|o| o["status"]["storedVersions"].as_array().cloned()).unwrap_or_default();
    if let Some(s) = storage.first()
        && !stored.iter().any(|v| v == s)
    {
        stored.push((*s).into());
    }
    // Conditions keep their transition times across updates, so re-applying an unchanged CRD changes nothing.
    let now = now_string();
    let conditions = old.map(|o| o["status"]["conditions"].clone()).filter(|c| c.is_array()).unwrap_or_else(|| {
        json!([
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
             "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"},
        ])
    });
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": conditions,
        "storedVersions": stored,
    });
    vec![]
}
