//! `meta.k8s.io/v1 Table` output for `kubectl get` (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`).

use serde_json::{Value, json};

use super::select::jsonpath;
use super::store::ResourceDef;

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some \
resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended \
for creation idempotence and configuration definition. Cannot be updated. More info: \
https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// What the Accept header asks for: the object, a Table, or only metadata (`PartialObjectMetadata[List]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    Object,
    Table,
    Metadata,
}

pub(crate) fn shape(accept: &str) -> Shape {
    let wants = |what: &str| {
        accept.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&what) && params.contains(&"g=meta.k8s.io")
        })
    };
    if wants("as=Table") {
        Shape::Table
    } else if wants("as=PartialObjectMetadata") || wants("as=PartialObjectMetadataList") {
        Shape::Metadata
    } else {
        Shape::Object
    }
}

/// `PartialObjectMetadata` of a served object.
pub(crate) fn partial(served: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": served["metadata"]})
}

/// A column: header, type, JSONPath, priority. Built-in kinds get kube-apiserver's columns (a subset).
struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    path: String,
}

fn col(name: &str, kind: &str, path: &str) -> Column {
    Column {
        name: name.into(),
        kind: kind.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        path: path.into(),
    }
}

/// A `date` column whose cells are the RFC 3339 time rather than an age (kube-apiserver's "Created At").
const TIMESTAMP: &str = "timestamp";
/// A `string` column showing a roleRef as `Kind/name`, as kube-apiserver prints bindings.
const ROLE_REF: &str = "roleRef";

fn columns(def: &ResourceDef) -> Vec<Column> {
    if let Some(c) = &def.custom {
        if c.printer_columns.is_empty() {
            return vec![col("Age", "date", ".metadata.creationTimestamp")];
        }
        return c
            .printer_columns
            .iter()
            .map(|p| Column {
                name: p["name"].as_str().unwrap_or_default().into(),
                kind: p["type"].as_str().unwrap_or("string").into(),
                format: p["format"].as_str().unwrap_or_default().into(),
                description: p["description"].as_str().unwrap_or_default().into(),
                priority: p["priority"].as_i64().unwrap_or(0),
                path: p["jsonPath"].as_str().unwrap_or_default().into(),
            })
            .collect();
    }
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => {
            vec![col("Status", "string", ".status.phase"), col("Age", "date", ".metadata.creationTimestamp")]
        }
        (_, "events") => vec![
            col("Last Seen", "date", ".lastTimestamp"),
            col("Type", "string", ".type"),
            col("Reason", "string", ".reason"),
            col("Object", "string", ".involvedObject.name"),
            col("Message", "string", ".message"),
        ],
        ("apiextensions.k8s.io", _) | ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
            vec![col("Created At", TIMESTAMP, ".metadata.creationTimestamp")]
        }
        ("rbac.authorization.k8s.io", _) => {
            vec![col("Role", ROLE_REF, ".roleRef"), col("Age", "date", ".metadata.creationTimestamp")]
        }
        _ => vec![col("Age", "date", ".metadata.creationTimestamp")],
    }
}

/// Builds the Table for stored objects (`objects` are in stored form; events are shown in core form).
pub(crate) fn table(def: &ResourceDef, objects: &[Value], served: &[Value], list_meta: Value, include: &str) -> Value {
    let cols = columns(def);
    let mut defs = vec![json!({
        "name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0
    })];
    defs.extend(cols.iter().map(|c| {
        let kind = match c.kind.as_str() {
            TIMESTAMP => "date",
            ROLE_REF => "string",
            other => other,
        };
        json!({"name": c.name, "type": kind, "format": c.format, "description": c.description, "priority": c.priority})
    }));
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .zip(served)
        .map(|(obj, served_obj)| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            for c in &cols {
                cells.push(cell(c, obj, now));
            }
            let mut row = json!({ "cells": cells });
            match include {
                "None" => {}
                "Object" => row["object"] = served_obj.clone(),
                _ => row["object"] = partial(served_obj),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// One cell, converted the way the CRD table convertor does (first JSONPath result; dates as ages).
fn cell(c: &Column, obj: &Value, now: jiff::Timestamp) -> Value {
    let Some(v) = jsonpath(obj, &c.path).and_then(|r| r.into_iter().next()) else {
        return Value::Null;
    };
    match c.kind.as_str() {
        "date" => v
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| Value::String(human_duration(now.as_second() - t.as_second())))
            .unwrap_or(Value::Null),
        TIMESTAMP => v,
        ROLE_REF => {
            format!("{}/{}", v["kind"].as_str().unwrap_or_default(), v["name"].as_str().unwrap_or_default()).into()
        }
        "integer" => v.as_f64().map(|f| json!(f as i64)).unwrap_or(Value::Null),
        "number" => v.as_f64().map(|f| json!(f)).unwrap_or(Value::Null),
        "boolean" => v.as_bool().map(Value::Bool).unwrap_or(Value::Null),
        _ => match v {
            Value::String(s) => Value::String(s),
            other => Value::String(other.to_string()),
        },
    }
}

/// k8s.io/apimachinery `duration.HumanDuration`.
pub(crate) fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 { format!("{m}m") } else { format!("{m}m{rem}s") };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let rem = m % 60;
        return if rem == 0 { format!("{h}h") } else { format!("{h}h{rem}m") };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if d < 8 {
        let rem = h % 24;
        return if rem == 0 { format!("{d}d") } else { format!("{d}d{rem}h") };
    }
    if d < 365 * 2 {
        return format!("{d}d");
    }
    let y = d / 365;
    if y < 8 {
        let rem = d % 365;
        return if rem == 0 { format!("{y}y") } else { format!("{y}y{rem}d") };
    }
    format!("{y}y")
}
