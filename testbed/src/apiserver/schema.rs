//! Structural-schema semantics of CRD `openAPIV3Schema`: pruning unknown fields, defaulting and validation,
//! with error wording taken from kube-apiserver.

use serde_json::{Map, Value};

use super::errors::Cause;

/// A step in a field path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// `spec.items[0].name`
pub(crate) fn path_string(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

pub(crate) fn lookup<'a>(v: &'a Value, segs: &[Seg]) -> Option<&'a Value> {
    segs.iter().try_fold(v, |cur, seg| match seg {
        Seg::Key(k) => cur.get(k.as_str()),
        Seg::Index(i) => cur.get(*i),
    })
}

fn child(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// ObjectMeta fields a client may send; anything else under `metadata` is unknown.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

/// Drops fields the schema does not declare (and nulls it does not allow). Returns the dropped paths.
pub(crate) fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut dropped = vec![];
    if let Some(m) = obj.as_object_mut() {
        if let Some(meta) = m.get_mut("metadata").and_then(|v| v.as_object_mut()) {
            meta.retain(|mk, _| {
                let known = OBJECT_META_FIELDS.contains(&mk.as_str());
                if !known {
                    dropped.push(format!("metadata.{mk}"));
                }
                known
            });
        }
        let props = schema["properties"].as_object();
        m.retain(|k, v| {
            if k == "apiVersion" || k == "kind" || k == "metadata" {
                return true;
            }
            match props.and_then(|p| p.get(k)) {
                Some(s) => prune_value(s, v, &[Seg::Key(k.clone())], &mut dropped),
                None if preserves(schema) => true,
                None => {
                    dropped.push(k.clone());
                    false
                }
            }
        });
    }
    dropped
}

/// Prunes inside `v`; returns false when `v` itself must go (a null the schema does not allow).
fn prune_value(schema: &Value, v: &mut Value, path: &[Seg], dropped: &mut Vec<String>) -> bool {
    if v.is_null() {
        return schema["nullable"].as_bool() == Some(true);
    }
    match v {
        Value::Object(m) => prune_object(schema, m, path, dropped),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    // A null list item is kept (not pruned) so that validation can report it.
                    let _ = prune_value(item_schema, item, &child(path, Seg::Index(i)), dropped);
                }
            }
        }
        _ => {}
    }
    true
}

fn prune_object(schema: &Value, m: &mut Map<String, Value>, path: &[Seg], dropped: &mut Vec<String>) {
    let embedded = schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
    let props = schema["properties"].as_object();
    let additional = schema.get("additionalProperties");
    m.retain(|k, v| {
        let p = child(path, Seg::Key(k.clone()));
        if let Some(s) = props.and_then(|p| p.get(k)) {
            return prune_value(s, v, &p, dropped);
        }
        if let Some(s) = additional.filter(|a| a.is_object()) {
            return prune_value(s, v, &p, dropped);
        }
        if additional == Some(&Value::Bool(true)) || preserves(schema) {
            return true;
        }
        if embedded && (k == "apiVersion" || k == "kind" || k == "metadata") {
            return true;
        }
        dropped.push(path_string(&p));
        false
    });
}

/// Fills in `default`s for absent properties, recursively (after pruning, as kube-apiserver does).
pub(crate) fn apply_defaults(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, s) in props {
                    if !m.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
                for (k, child_v) in m.iter_mut() {
                    if let Some(s) = props.get(k) {
                        apply_defaults(s, child_v);
                    }
                }
            } else if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child_v in m.values_mut() {
                    apply_defaults(s, child_v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for item in items {
                    apply_defaults(s, item);
                }
            }
        }
        _ => {}
    }
}

/// A validation failure with its structured path (for ratcheting).
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub path: Vec<Seg>,
    pub cause: Cause,
}

/// Validates a whole object (root schema; metadata is validated elsewhere).
pub(crate) fn validate(schema: &Value, obj: &Value) -> Vec<Issue> {
    let mut issues = vec![];
    let Some(m) = obj.as_object() else {
        return issues;
    };
    let props = schema["properties"].as_object();
    for (k, v) in m {
        if k == "apiVersion" || k == "kind" || k == "metadata" {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(k)) {
            validate_value(s, v, &[Seg::Key(k.clone())], &mut issues);
        }
    }
    required(schema, m, &[], &mut issues);
    issues
}

fn required(schema: &Value, m: &Map<String, Value>, path: &[Seg], issues: &mut Vec<Issue>) {
    for r in schema["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str()) {
        if !m.contains_key(r) {
            let p = child(path, Seg::Key(r.to_string()));
            issues.push(issue(&p, "FieldValueRequired", "Required value".into()));
        }
    }
}

fn issue(path: &[Seg], reason: &'static str, message: String) -> Issue {
    Issue { path: path.to_vec(), cause: Cause { reason, field: path_string(path), message } }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How kube-apiserver prints a value in `Invalid value: ...`.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    let actual = json_type(v);
    match expected {
        "number" => actual == "number" || actual == "integer",
        "integer" => actual == "integer" || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => actual == expected,
    }
}

fn validate_value(schema: &Value, v: &Value, path: &[Seg], issues: &mut Vec<Issue>) {
    let p = path_string(path);
    if v.is_null() {
        if schema["nullable"].as_bool() != Some(true) {
            let want = schema["type"].as_str().unwrap_or("object");
            issues.push(issue(
                path,
                "FieldValueTypeInvalid",
                format!("Invalid value: \"null\": {p} in body must be of type {want}: \"null\""),
            ));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        if !(v.is_string() || type_matches("integer", v)) {
            issues.push(issue(
                path,
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: \"{}\": {p} in body must be of type int-or-string: \"{}\"",
                    json_type(v),
                    json_type(v)
                ),
            ));
            return;
        }
    } else if let Some(t) = schema["type"].as_str()
        && !type_matches(t, v)
    {
        issues.push(issue(
            path,
            "FieldValueTypeInvalid",
            format!("Invalid value: \"{}\": {p} in body must be of type {t}: \"{}\"", json_type(v), json_type(v)),
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        issues.push(issue(
            path,
            "FieldValueNotSupported",
            format!("Unsupported value: {}: supported values: {}", show(v), list.join(", ")),
        ));
    }
    match v {
        Value::String(s) => validate_string(schema, s, v, path, &p, issues),
        Value::Number(_) => validate_number(schema, v, path, &p, issues),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = schema["maxItems"].as_u64()
                && n > max
            {
                issues.push(issue(path, "FieldValueTooMany", format!("Too many: {n}: must have at most {max} items")));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && n < min
            {
                issues.push(issue(
                    path,
                    "FieldValueInvalid",
                    format!("Invalid value: {n}: {p} in body should have at least {min} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    validate_value(item_schema, item, &child(path, Seg::Index(i)), issues);
                }
            }
            list_type(schema, items, path, issues);
        }
        Value::Object(m) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, cv) in m {
                let cp = child(path, Seg::Key(k.clone()));
                if let Some(s) = props.and_then(|pr| pr.get(k)).or(additional) {
                    validate_value(s, cv, &cp, issues);
                }
            }
            required(schema, m, path, issues);
            let n = m.len() as u64;
            if let Some(max) = schema["maxProperties"].as_u64()
                && n > max
            {
                issues.push(issue(path, "FieldValueTooMany", format!("Too many: {n}: must have at most {max} items")));
            }
            if let Some(min) = schema["minProperties"].as_u64()
                && n < min
            {
                issues.push(issue(
                    path,
                    "FieldValueInvalid",
                    format!("Invalid value: {n}: {p} in body should have at least {min} properties"),
                ));
            }
        }
        _ => {}
    }
    combinators(schema, v, path, &p, issues);
}

/// `x-kubernetes-list-type: set` items and `map` keys must be unique (map keys also present).
fn list_type(schema: &Value, items: &[Value], path: &[Seg], issues: &mut Vec<Issue>) {
    let keys: Vec<&str> = match schema["x-kubernetes-list-type"].as_str() {
        Some("set") => vec![],
        Some("map") => {
            schema["x-kubernetes-list-map-keys"].as_array().into_iter().flatten().filter_map(|k| k.as_str()).collect()
        }
        _ => return,
    };
    let mut seen: Vec<Value> = vec![];
    for (i, item) in items.iter().enumerate() {
        let at = child(path, Seg::Index(i));
        let identity = if keys.is_empty() {
            item.clone()
        } else {
            let missing: Vec<&&str> = keys.iter().filter(|k| item.get(**k).is_none()).collect();
            for k in &missing {
                issues.push(issue(&child(&at, Seg::Key(k.to_string())), "FieldValueRequired", "Required value".into()));
            }
            if !missing.is_empty() {
                continue;
            }
            Value::Object(keys.iter().map(|k| (k.to_string(), item[*k].clone())).collect())
        };
        if seen.contains(&identity) {
            let shown = match &identity {
                Value::Object(m) => {
                    let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                    format!("map[string]interface {{}}{{{}}}", pairs.join(", "))
                }
                other => other.to_string(),
            };
            issues.push(issue(&at, "FieldValueDuplicate", format!("Duplicate value: {shown}")));
        } else {
            seen.push(identity);
        }
    }
}

fn validate_string(schema: &Value, s: &str, v: &Value, path: &[Seg], p: &str, issues: &mut Vec<Issue>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64()
        && len > max
    {
        issues.push(issue(path, "FieldValueTooLong", format!("Too long: may not be more than {max} bytes")));
    }
    if let Some(min) = schema["minLength"].as_u64()
        && len < min
    {
        issues.push(issue(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {}: {p} in body should be at least {min} chars long", show(v)),
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => issues.push(issue(
                path,
                "FieldValueInvalid",
                format!("Invalid value: {}: {p} in body should match '{pattern}'", show(v)),
            )),
            Ok(_) => {}
            Err(_) => {
                issues.push(issue(path, "FieldValueInvalid", format!("schema pattern '{pattern}' does not compile")))
            }
        }
    }
    if schema["format"].as_str() == Some("date-time") && s.parse::<jiff::Timestamp>().is_err() {
        issues.push(issue(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {}: {p} in body must be of type date-time: {}", show(v), show(v)),
        ));
    }
}

fn validate_number(schema: &Value, v: &Value, path: &[Seg], p: &str, issues: &mut Vec<Issue>) {
    let Some(x) = v.as_f64() else { return };
    let exclusive_max = schema["exclusiveMaximum"].as_bool() == Some(true);
    let exclusive_min = schema["exclusiveMinimum"].as_bool() == Some(true);
    if let Some(max) = schema["maximum"].as_f64()
        && (x > max || (exclusive_max && x == max))
    {
        let rel = if exclusive_max { "less than" } else { "less than or equal to" };
        issues.push(issue(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {v}: {p} in body should be {rel} {}", schema["maximum"]),
        ));
    }
    if let Some(min) = schema["minimum"].as_f64()
        && (x < min || (exclusive_min && x == min))
    {
        let rel = if exclusive_min { "greater than" } else { "greater than or equal to" };
        issues.push(issue(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {v}: {p} in body should be {rel} {}", schema["minimum"]),
        ));
    }
    if let Some(m) = schema["multipleOf"].as_f64()
        && m != 0.0
        && (x / m).fract() != 0.0
    {
        issues.push(issue(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {v}: {p} in body should be a multiple of {}", schema["multipleOf"]),
        ));
    }
}

/// allOf / anyOf / oneOf / not (value validation only, as in structural schemas).
fn combinators(schema: &Value, v: &Value, path: &[Seg], p: &str, issues: &mut Vec<Issue>) {
    let passes = |s: &Value| {
        let mut sub = vec![];
        validate_value(s, v, path, &mut sub);
        sub.is_empty()
    };
    for s in schema["allOf"].as_array().into_iter().flatten() {
        validate_value(s, v, path, issues);
    }
    if let Some(any) = schema["anyOf"].as_array()
        && !any.iter().any(passes)
    {
        issues.push(issue(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {}: {p} in body must match anyOf", show(v)),
        ));
    }
    if let Some(one) = schema["oneOf"].as_array()
        && one.iter().filter(|s| passes(s)).count() != 1
    {
        issues.push(issue(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {}: {p} in body must match exactly one schema in oneOf", show(v)),
        ));
    }
    if let Some(not) = schema.get("not").filter(|s| s.is_object())
        && passes(not)
    {
        issues.push(issue(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {}: {p} in body should not match", show(v)),
        ));
    }
}
