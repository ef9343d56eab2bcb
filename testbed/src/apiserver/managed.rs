//! `metadata.managedFields` and server-side apply. Field sets are kept as paths of map keys; lists are atomic
//! (owned as a whole), which is what CRD lists without `x-kubernetes-list-type: map|set` are.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::errors::ApiError;

type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

/// metadata fields that are tracked (the rest are system-owned).
const TRACKED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// Every owned path of `obj`: leaves and non-root maps (so an emptied map stays owned).
fn fields_of(obj: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    for mk in TRACKED_METADATA {
                        if let Some(mv) = v.get(*mk) {
                            collect(mv, vec!["metadata".into(), mk.to_string()], &mut set);
                        }
                    }
                }
                _ => collect(v, vec![k.clone()], &mut set),
            }
        }
    }
    set
}

fn collect(v: &Value, path: Path, set: &mut FieldSet) {
    if let Value::Object(m) = v {
        for (k, cv) in m {
            let mut p = path.clone();
            p.push(k.clone());
            collect(cv, p, set);
        }
    }
    set.insert(path);
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k.as_str()))
}

/// Paths of `new` whose values differ from `old` (all of `new` when there is no old).
fn changed(old: Option<&Value>, new: &Value) -> FieldSet {
    fields_of(new)
        .into_iter()
        .filter(|p| {
            let nv = at(new, p);
            let is_map = nv.is_some_and(|v| v.is_object());
            match old.and_then(|o| at(o, p)) {
                None => true,
                Some(ov) => !is_map && Some(ov) != nv,
            }
        })
        .collect()
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for k in path {
            let entry = cur.entry(format!("f:{k}")).or_insert_with(|| json!({}));
            let Value::Object(next) = entry else { break };
            cur = next;
        }
    }
    // A path that has children and is itself owned gets the "." marker.
    fn mark(m: &mut Map<String, Value>, set: &FieldSet, prefix: &mut Path) {
        for (k, v) in m.iter_mut() {
            let Some(name) = k.strip_prefix("f:") else { continue };
            prefix.push(name.to_string());
            if let Some(child) = v.as_object_mut()
                && !child.is_empty()
            {
                mark(child, set, prefix);
                if set.contains(prefix) {
                    child.insert(".".into(), json!({}));
                }
            }
            prefix.pop();
        }
    }
    mark(&mut root, set, &mut vec![]);
    Value::Object(root)
}

fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, set: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
            set.insert(path.clone());
        }
        for (k, cv) in m {
            if let Some(name) = k.strip_prefix("f:") {
                path.push(name.to_string());
                walk(cv, path, set);
                path.pop();
            }
        }
    }
    let mut set = FieldSet::new();
    walk(v, &mut vec![], &mut set);
    set
}

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: String,
    fields: FieldSet,
}

fn entries(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(|o| o["metadata"]["managedFields"].as_array())
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().into(),
            operation: e["operation"].as_str().unwrap_or_default().into(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
            subresource: e["subresource"].as_str().unwrap_or_default().into(),
            time: e["time"].as_str().unwrap_or_default().into(),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Drops paths that no longer exist and empty entries, then writes `metadata.managedFields`.
fn store_entries(obj: &mut Value, mut list: Vec<Entry>) {
    let snapshot = obj.clone();
    for e in &mut list {
        e.fields.retain(|p| at(&snapshot, p).is_some());
    }
    list.retain(|e| !e.fields.is_empty());
    let rendered: Vec<Value> = list
        .iter()
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = e.subresource.clone().into();
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        if rendered.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), rendered.into());
        }
    }
}

pub(crate) struct Manager<'a> {
    pub name: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub now: &'a str,
}

/// Records a non-apply write: `manager` takes the fields it changed from everyone else.
pub(crate) fn record_update(old: Option<&Value>, new: &mut Value, m: &Manager) {
    let mut list = entries(old);
    let mut touched = changed(old, new);
    if m.subresource == "status" {
        touched.retain(|p| p.first().is_some_and(|k| k == "status"));
    }
    if !touched.is_empty() {
        for e in &mut list {
            e.fields.retain(|p| !touched.contains(p));
        }
        match list.iter_mut().find(|e| e.manager == m.name && e.operation == "Update" && e.subresource == m.subresource)
        {
            Some(e) => {
                e.fields.extend(touched);
                e.time = m.now.into();
                e.api_version = m.api_version.into();
            }
            None => list.push(Entry {
                manager: m.name.into(),
                operation: "Update".into(),
                api_version: m.api_version.into(),
                subresource: m.subresource.into(),
                time: m.now.into(),
                fields: touched,
            }),
        }
    }
    store_entries(new, list);
}

fn deep_merge(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = obj;
    for k in parents {
        match cur.get_mut(k.as_str()) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Server-side apply of `config` onto `current` (None: create). Returns the merged object with managedFields, or a
/// 409 listing the fields other managers own with different values (unless `force`, which takes them over).
pub(crate) fn apply(
    current: Option<&Value>,
    config: &Value,
    m: &Manager,
    force: bool,
    keep: impl Fn(&Path) -> bool,
) -> Result<Value, ApiError> {
    let mut list = entries(current);
    let applied: FieldSet = fields_of(config).into_iter().filter(|p| keep(p)).collect();
    let mine = |e: &Entry| e.manager == m.name && e.operation == "Apply" && e.subresource == m.subresource;
    let previous = list.iter().find(|e| mine(e)).map(|e| e.fields.clone()).unwrap_or_default();

    let mut conflicts: Vec<(String, String, Path)> = vec![];
    if let Some(cur) = current {
        for p in &applied {
            let (Some(live), Some(want)) = (at(cur, p), at(config, p)) else { continue };
            if live.is_object() || live == want {
                continue;
            }
            for e in list.iter().filter(|e| !mine(e) && e.fields.contains(p)) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    if force {
        let taken: FieldSet = conflicts.iter().map(|(_, _, p)| p.clone()).collect();
        for e in list.iter_mut().filter(|e| !mine(e)) {
            e.fields.retain(|p| !taken.contains(p));
        }
    }

    let mut result = current.cloned().unwrap_or_else(|| json!({}));
    deep_merge(&mut result, config);
    // Fields this manager applied before, does not apply now, and nobody else owns: removed (deepest first).
    let others: FieldSet = list.iter().filter(|e| !mine(e)).flat_map(|e| e.fields.iter().cloned()).collect();
    for p in previous.iter().rev() {
        let owned_below = others.iter().chain(applied.iter()).any(|o| o.starts_with(p));
        if !applied.contains(p) && !owned_below {
            remove_path(&mut result, p);
        }
    }

    list.retain(|e| !mine(e));
    list.push(Entry {
        manager: m.name.into(),
        operation: "Apply".into(),
        api_version: m.api_version.into(),
        subresource: m.subresource.into(),
        time: m.now.into(),
        fields: applied,
    });
    store_entries(&mut result, list);
    Ok(result)
}

fn conflict_error(conflicts: &[(String, String, Path)]) -> ApiError {
    let conflicts: Vec<(&String, &String, String)> =
        conflicts.iter().map(|(m, av, p)| (m, av, format!(".{}", p.join(".")))).collect();
    let n = conflicts.len();
    let message = if n == 1 {
        let (mgr, av, f) = &conflicts[0];
        format!("Apply failed with 1 conflict: conflict with \"{mgr}\" using {av}: {f}")
    } else {
        let lines: Vec<String> =
            conflicts.iter().map(|(mgr, av, f)| format!("conflict with \"{mgr}\" using {av}: {f}")).collect();
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let mut e = ApiError::new(409, "Conflict", message);
    e.details = Some(json!({
        "causes": conflicts
            .iter()
            .map(|(mgr, av, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{mgr}\" using {av}"), "field": f}))
            .collect::<Vec<_>>()
    }));
    e
}

/// Equal apart from managedFields timestamps and resourceVersion: such a write changes nothing.
pub(crate) fn same_object(a: &Value, b: &Value) -> bool {
    fn normalized(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("resourceVersion");
            if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
                for e in entries {
                    if let Some(e) = e.as_object_mut() {
                        e.remove("time");
                    }
                }
            }
        }
        v
    }
    normalized(a) == normalized(b)
}
