//! Just enough of Kubernetes' protobuf encoding to read the bodies kubectl's typed clients send
//! (`kubectl create namespace|configmap|serviceaccount|role|clusterrole|rolebinding|clusterrolebinding`,
//! `kubectl auth can-i|whoami`). Other kinds are answered with 415, naming the JSON media type to use instead.

use serde_json::{Map, Value, json};

/// `k8s\0`: the prefix of every protobuf-encoded Kubernetes object.
const MAGIC: &[u8] = b"k8s\0";

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

/// The fields of one message, in order (repeated fields appear repeatedly).
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = vec![];
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if wire == 1 { 8 } else { 4 };
                continue;
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length overflow")?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len()).ok_or("truncated field")?;
                let bytes = &buf[pos..end];
                pos = end;
                Field::Bytes(bytes)
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((number, field));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<Value, String> {
    std::str::from_utf8(b).map(|s| Value::String(s.into())).map_err(|_| "invalid utf-8".into())
}

/// Field number → JSON name, with how to read it.
enum Kind {
    Str,
    Strs,
    Bool,
    Map,
    Msg(&'static [(u64, &'static str, Kind)]),
    Msgs(&'static [(u64, &'static str, Kind)]),
}

const OBJECT_META: &[(u64, &str, Kind)] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (11, "labels", Kind::Map),
    (12, "annotations", Kind::Map),
    (14, "finalizers", Kind::Strs),
];
const POLICY_RULE: &[(u64, &str, Kind)] = &[
    (1, "verbs", Kind::Strs),
    (2, "apiGroups", Kind::Strs),
    (3, "resources", Kind::Strs),
    (4, "resourceNames", Kind::Strs),
    (5, "nonResourceURLs", Kind::Strs),
];
const SUBJECT: &[(u64, &str, Kind)] =
    &[(1, "kind", Kind::Str), (2, "apiGroup", Kind::Str), (3, "name", Kind::Str), (4, "namespace", Kind::Str)];
const ROLE_REF: &[(u64, &str, Kind)] = &[(1, "apiGroup", Kind::Str), (2, "kind", Kind::Str), (3, "name", Kind::Str)];
const RESOURCE_ATTRIBUTES: &[(u64, &str, Kind)] = &[
    (1, "namespace", Kind::Str),
    (2, "verb", Kind::Str),
    (3, "group", Kind::Str),
    (4, "version", Kind::Str),
    (5, "resource", Kind::Str),
    (6, "subresource", Kind::Str),
    (7, "name", Kind::Str),
];
const SSAR_SPEC: &[(u64, &str, Kind)] = &[(1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES))];

const NAMESPACE: &[(u64, &str, Kind)] = &[(1, "metadata", Kind::Msg(OBJECT_META))];
const CONFIG_MAP: &[(u64, &str, Kind)] =
    &[(1, "metadata", Kind::Msg(OBJECT_META)), (2, "data", Kind::Map), (4, "immutable", Kind::Bool)];
const ROLE: &[(u64, &str, Kind)] = &[(1, "metadata", Kind::Msg(OBJECT_META)), (2, "rules", Kind::Msgs(POLICY_RULE))];
const BINDING: &[(u64, &str, Kind)] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "subjects", Kind::Msgs(SUBJECT)),
    (3, "roleRef", Kind::Msg(ROLE_REF)),
];
const SSAR: &[(u64, &str, Kind)] = &[(1, "metadata", Kind::Msg(OBJECT_META)), (2, "spec", Kind::Msg(SSAR_SPEC))];

fn message(buf: &[u8], layout: &[(u64, &str, Kind)]) -> Result<Value, String> {
    let mut out = Map::new();
    for (number, field) in fields(buf)? {
        let Some((_, name, kind)) = layout.iter().find(|(n, _, _)| *n == number) else { continue };
        let name = name.to_string();
        match (kind, field) {
            // Go's encoder writes empty strings too; JSON clients would have omitted them.
            (Kind::Str, Field::Bytes([])) => {}
            (Kind::Str, Field::Bytes(b)) => {
                out.insert(name, text(b)?);
            }
            (Kind::Bool, Field::Varint(v)) => {
                out.insert(name, Value::Bool(v != 0));
            }
            (Kind::Strs, Field::Bytes(b)) => push(&mut out, name, text(b)?),
            (Kind::Msg(inner), Field::Bytes(b)) => {
                out.insert(name, message(b, inner)?);
            }
            (Kind::Msgs(inner), Field::Bytes(b)) => push(&mut out, name, message(b, inner)?),
            (Kind::Map, Field::Bytes(b)) => {
                let entry = message(b, &[(1, "k", Kind::Str), (2, "v", Kind::Str)])?;
                let key = entry["k"].as_str().unwrap_or_default().to_string();
                let slot = out.entry(name).or_insert_with(|| json!({}));
                slot[key] = entry.get("v").cloned().unwrap_or_else(|| "".into());
            }
            _ => return Err(format!("field {number} has an unexpected wire type")),
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, name: String, v: Value) {
    if let Value::Array(a) = out.entry(name).or_insert_with(|| json!([])) {
        a.push(v);
    }
}

/// Decodes a protobuf body into its JSON form, or says why it cannot.
pub(crate) fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body.strip_prefix(MAGIC).ok_or("missing the k8s protobuf prefix")?;
    let mut api_version = Value::Null;
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (number, field) in fields(envelope)? {
        match (number, field) {
            (1, Field::Bytes(type_meta)) => {
                let tm = message(type_meta, &[(1, "apiVersion", Kind::Str), (2, "kind", Kind::Str)])?;
                api_version = tm["apiVersion"].clone();
                kind = tm["kind"].as_str().unwrap_or_default().to_string();
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let layout = match kind.as_str() {
        "Namespace" | "ServiceAccount" | "SelfSubjectReview" => NAMESPACE,
        "ConfigMap" => CONFIG_MAP,
        "Role" | "ClusterRole" => ROLE,
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        "SelfSubjectAccessReview" => SSAR,
        other => return Err(format!("protobuf bodies of kind {other:?} are not supported; send application/json")),
    };
    let mut obj = message(raw, layout)?;
    obj["apiVersion"] = api_version;
    obj["kind"] = kind.into();
    Ok(obj)
}
