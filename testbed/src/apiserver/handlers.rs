//! Resource operations with kube-apiserver's semantics: metadata, status subresource, validation and pruning,
//! optimistic concurrency, patches and server-side apply, finalizers, lists with selectors and pagination.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use super::auth::{self, Attributes, User};
use super::errors::{ApiError, ApiResult, Cause};
use super::managed::{self, Manager};
use super::meta::{meta_str, new_namespace, now_string, stamp_new};
use super::patch;
use super::proto;
use super::schema;
use super::select::{FieldSelector, LabelSelector};
use super::store::{Key, ResourceDef, Store, to_served, to_stored};
use super::table::{self, Shape};
use super::validation::{check_type, prepare_crd, validate_event, validate_labels, validate_name};

/// One resource request, parsed.
pub(crate) struct Call<'a> {
    pub def: Arc<ResourceDef>,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub query: &'a HashMap<String, String>,
    pub user: &'a User,
    pub user_agent: &'a str,
    pub accept: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

impl Call<'_> {
    fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    fn dry_run(&self) -> bool {
        self.q("dryRun").is_some_and(|v| v == "All")
    }

    /// The manager name for non-apply writes: `fieldManager`, else the User-Agent's program name, as kube-apiserver does.
    fn update_manager(&self) -> String {
        match self.q("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => self.user_agent.split('/').next().filter(|s| !s.is_empty()).unwrap_or("unknown").to_string(),
        }
    }

    fn key(&self, name: &str) -> Key {
        Store::key(&self.def, &self.namespace, name)
    }
}

pub(crate) struct Reply {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

fn reply(code: u16, body: Value) -> Reply {
    Reply { code, body, warnings: vec![] }
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn invalid(def: &ResourceDef, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&def.group, &def.kind, name, causes)
}

/// The part of an object whose change bumps `generation`.
fn generation_relevant(def: &ResourceDef, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if def.status_subresource {
            m.remove("status");
        }
    }
    v
}

/// How managedFields are maintained for a write.
enum Managed {
    Update(String),
    /// Server-side apply already computed them.
    Precomputed,
}

/// The common write path. `old`/`new` are in served form.
fn commit(
    store: &mut Store,
    call: &Call,
    old: Option<Value>,
    mut new: Value,
    managed: Managed,
    require_rv: bool,
) -> ApiResult<Reply> {
    let def = call.def.clone();
    check_type(&def, &mut new)?;
    let mut warnings = vec![];

    // Identity: name and namespace.
    let mut name = meta_str(&new, "name").to_string();
    if old.is_none() && name.is_empty() {
        let prefix = meta_str(&new, "generateName").to_string();
        if prefix.is_empty() {
            return Err(invalid(
                &def,
                "",
                vec![Cause {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                }],
            ));
        }
        let suffix: String =
            (0..5).map(|_| fastrand::choice(b"bcdfghjklmnpqrstvwxz2456789").map_or('x', |c| *c as char)).collect();
        name = format!("{prefix}{suffix}");
        new["metadata"]["name"] = name.clone().into();
    }
    if !call.name.is_empty() && name != call.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            call.name
        )));
    }
    if def.namespaced {
        match new["metadata"]["namespace"].as_str() {
            Some(ns) if !ns.is_empty() && ns != call.namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => new["metadata"]["namespace"] = call.namespace.clone().into(),
        }
    } else if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("namespace");
    }

    // Optimistic concurrency.
    if let Some(o) = &old {
        match new["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
            Some(rv) if rv != meta_str(o, "resourceVersion") => {
                return Err(ApiError::stale(&def.group, &def.plural, &name));
            }
            None if require_rv && def.custom.is_some() => {
                return Err(invalid(
                    &def,
                    &name,
                    vec![Cause {
                        reason: "FieldValueInvalid",
                        field: "metadata.resourceVersion".into(),
                        message: "Invalid value: 0x0: must be specified for an update".into(),
                    }],
                ));
            }
            _ => {}
        }
    }

    // Pruning and field validation (fieldValidation=Strict|Warn|Ignore; Warn is the server default).
    let schema_root = def.custom.as_ref().and_then(|c| c.schema.clone());
    if let Some(schema) = &schema_root {
        let dropped = schema::prune(schema, &mut new);
        if !dropped.is_empty() {
            let listed: Vec<String> = dropped.iter().map(|f| format!("unknown field \"{f}\"")).collect();
            match call.q("fieldValidation").unwrap_or("Warn") {
                "Strict" => return Err(ApiError::bad_request(format!("strict decoding error: {}", listed.join(", ")))),
                "Ignore" => {}
                _ => warnings.extend(listed),
            }
        }
    }

    // Strategy: what each endpoint may change.
    let applied_managed = new["metadata"]["managedFields"].clone();
    if let Some(o) = &old {
        if call.subresource == "status" {
            let status = new.get("status").cloned();
            new = o.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else if def.status_subresource {
            match o.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        let meta = &mut new["metadata"];
        for f in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ] {
            match o["metadata"].get(f) {
                Some(v) => meta[f] = v.clone(),
                None => {
                    if let Some(m) = meta.as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        meta["resourceVersion"] = o["metadata"]["resourceVersion"].clone();
    } else {
        if def.status_subresource
            && let Some(m) = new.as_object_mut()
        {
            m.remove("status");
        }
        if let Some(m) = new["metadata"].as_object_mut() {
            for f in [
                "uid",
                "resourceVersion",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
            ] {
                m.remove(f);
            }
        }
        if def.plural == "namespaces" && def.group.is_empty() {
            new = new_namespace(new);
        }
    }
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("selfLink");
    }

    // Defaulting and validation (with ratcheting: errors on fields the update did not touch are ignored).
    let mut causes = vec![];
    if old.is_none()
        && let Some(c) = validate_name(&def, &name)
    {
        causes.push(c);
    }
    let labels_changed = old.as_ref().is_none_or(|o| {
        o["metadata"]["labels"] != new["metadata"]["labels"]
            || o["metadata"]["annotations"] != new["metadata"]["annotations"]
    });
    if labels_changed {
        causes.extend(validate_labels(&new["metadata"]));
    }
    if def.group == "apiextensions.k8s.io" && call.subresource.is_empty() {
        causes.extend(prepare_crd(&mut new, old.as_ref()));
    }
    if def.is_event() && old.is_none() {
        causes.extend(validate_event(&def, &new));
    }
    if let Some(schema) = &schema_root {
        schema::apply_defaults(schema, &mut new);
        let issues = schema::validate(schema, &new);
        causes.extend(
            issues
                .into_iter()
                .filter(|i| old.as_ref().is_none_or(|o| schema::lookup(o, &i.path) != schema::lookup(&new, &i.path)))
                .map(|i| i.cause),
        );
    }
    if !causes.is_empty() {
        return Err(invalid(&def, &name, causes));
    }

    // Generation: only spec-like changes bump it.
    if let Some(o) = &old
        && def.tracks_generation()
        && generation_relevant(&def, o) != generation_relevant(&def, &new)
    {
        let g = o["metadata"]["generation"].as_i64().unwrap_or(0);
        new["metadata"]["generation"] = (g + 1).into();
    }

    let now = now_string();
    let api_version = def.api_version();
    match managed {
        Managed::Update(manager) => {
            let m = Manager { name: &manager, api_version: &api_version, subresource: &call.subresource, now: &now };
            managed::record_update(old.as_ref(), &mut new, &m);
        }
        Managed::Precomputed => {
            if applied_managed.is_null() {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
            } else {
                new["metadata"]["managedFields"] = applied_managed;
            }
        }
    }

    let key = call.key(&name);
    if let Some(o) = &old {
        if managed::same_object(o, &new) {
            return Ok(Reply { code: 200, body: o.clone(), warnings });
        }
        let finalizers_done = new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        if o["metadata"].get("deletionTimestamp").is_some() && finalizers_done {
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("finalizers");
            }
            return finish_delete(store, call, &key, new);
        }
    } else {
        if def.namespaced
            && !store.objects.contains_key(&(String::new(), "namespaces".into(), String::new(), call.namespace.clone()))
        {
            return Err(ApiError::not_found("", "namespaces", &call.namespace));
        }
        if store.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&def.group, &def.plural, &name));
        }
        new = stamp_new(new, 0, def.tracks_generation());
    }
    if call.dry_run() {
        return Ok(Reply { code: if old.is_none() { 201 } else { 200 }, body: new, warnings });
    }
    let rv = store.next_rv();
    new["metadata"]["resourceVersion"] = rv.to_string().into();
    let stored = to_stored(&def, new);
    store.save(key, stored.clone(), if old.is_none() { "ADDED" } else { "MODIFIED" });
    if def.group == "apiextensions.k8s.io" {
        store.rebuild_defs();
    }
    Ok(Reply { code: if old.is_none() { 201 } else { 200 }, body: to_served(&def, stored), warnings })
}

/// Removes an object for good (no finalizers left), cascading for namespaces and CRDs.
fn finish_delete(store: &mut Store, call: &Call, key: &Key, mut obj: Value) -> ApiResult<Reply> {
    let def = &call.def;
    if call.dry_run() {
        return Ok(reply(200, obj));
    }
    let (group, plural) = (def.group.as_str(), def.plural.as_str());
    let dependants: Vec<Key> = if group.is_empty() && plural == "namespaces" {
        store.objects.keys().filter(|k| k.2 == key.3 && !k.2.is_empty()).cloned().collect()
    } else if group == "apiextensions.k8s.io" {
        let crd_group = obj["spec"]["group"].as_str().unwrap_or_default().to_string();
        let crd_plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default().to_string();
        store.objects.keys().filter(|k| k.0 == crd_group && k.1 == crd_plural).cloned().collect()
    } else {
        vec![]
    };
    for k in dependants {
        if let Some(mut o) = store.objects.get(&k).cloned() {
            let rv = store.next_rv();
            o["metadata"]["resourceVersion"] = rv.to_string().into();
            store.remove(&k, o);
        }
    }
    let rv = store.next_rv();
    obj["metadata"]["resourceVersion"] = rv.to_string().into();
    let stored = to_stored(def, obj);
    store.remove(key, stored.clone());
    if group == "apiextensions.k8s.io" {
        store.rebuild_defs();
    }
    Ok(reply(200, to_served(def, stored)))
}

fn current(store: &Store, call: &Call) -> ApiResult<Value> {
    store
        .objects
        .get(&call.key(&call.name))
        .map(|o| to_served(&call.def, o.clone()))
        .ok_or_else(|| ApiError::not_found(&call.def.group, &call.def.plural, &call.name))
}

pub(crate) fn get(store: &Store, call: &Call) -> ApiResult<Reply> {
    let obj = current(store, call)?;
    let body = match table::shape(call.accept) {
        Shape::Table => {
            let stored = store.objects.get(&call.key(&call.name)).cloned().unwrap_or_default();
            let meta = json!({"resourceVersion": meta_str(&obj, "resourceVersion")});
            table::table(&call.def, &[stored], &[obj], meta, call.q("includeObject").unwrap_or("Metadata"))
        }
        Shape::Metadata => table::partial(&obj),
        Shape::Object => obj,
    };
    Ok(reply(200, body))
}

pub(crate) fn selectors(call: &Call) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(call.q("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(call.q("fieldSelector").unwrap_or_default(), &call.def)?;
    Ok((labels, fields))
}

fn encode_continue(key: &Key, rv: u64) -> String {
    let raw = json!({"rv": rv, "ns": key.2, "name": key.3}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// (resourceVersion, namespace, name) of a continue token.
fn decode_continue(token: &str) -> ApiResult<(u64, String, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    Ok((rv, v["ns"].as_str().ok_or_else(bad)?.to_string(), v["name"].as_str().ok_or_else(bad)?.to_string()))
}

pub(crate) fn list(store: &Store, call: &Call) -> ApiResult<Reply> {
    let (labels, fields) = selectors(call)?;
    let limit: usize = match call.q("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let start = call.q("continue").filter(|c| !c.is_empty()).map(decode_continue).transpose()?;
    if let Some((rv, _, _)) = &start
        && *rv < store.compacted()
    {
        // kube-apiserver cannot continue a list whose snapshot etcd has compacted away.
        return Err(ApiError::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list \
             without the continue parameter.",
        ));
    }
    let ns = (call.def.namespaced && !call.namespace.is_empty()).then_some(call.namespace.as_str());
    let matching = store
        .scan(&call.def, ns)
        .filter(|(k, _)| start.as_ref().is_none_or(|(_, sns, sname)| (&k.2, &k.3) > (sns, sname)))
        .filter(|(_, o)| labels.matches(o) && fields.matches(o));
    let mut items: Vec<(&Key, &Value)> = vec![];
    let mut remaining = 0usize;
    for (k, o) in matching {
        if limit > 0 && items.len() >= limit {
            remaining += 1;
        } else {
            items.push((k, o));
        }
    }
    let rv = store.current_rv();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if remaining > 0
        && let Some((k, _)) = items.last()
    {
        meta["continue"] = encode_continue(k, rv).into();
        if call.q("labelSelector").is_none() && call.q("fieldSelector").is_none() {
            meta["remainingItemCount"] = remaining.into();
        }
    }
    let stored: Vec<Value> = items.iter().map(|(_, o)| (*o).clone()).collect();
    let served: Vec<Value> = stored.iter().map(|o| to_served(&call.def, o.clone())).collect();
    let body = match table::shape(call.accept) {
        Shape::Table => table::table(&call.def, &stored, &served, meta, call.q("includeObject").unwrap_or("Metadata")),
        Shape::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": served.iter().map(table::partial).collect::<Vec<_>>(),
        }),
        Shape::Object => json!({
            "kind": call.def.list_kind,
            "apiVersion": call.def.api_version(),
            "metadata": meta,
            "items": served,
        }),
    };
    Ok(reply(200, body))
}

/// A create/update body: JSON, YAML, or the protobuf kubectl's typed clients send.
fn decode_body(call: &Call) -> ApiResult<Value> {
    match call.content_type.split(';').next().unwrap_or_default().trim() {
        "" | "application/json" => parse_json(call.body),
        "application/yaml" => {
            std::str::from_utf8(call.body).map_err(|_| ApiError::bad_request("request body is not UTF-8")).and_then(
                |t| serde_saphyr::from_str(t).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
            )
        }
        "application/vnd.kubernetes.protobuf" => {
            proto::decode(call.body).map_err(|e| ApiError::new(415, "UnsupportedMediaType", e))
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: \
                 application/json, application/yaml, application/vnd.kubernetes.protobuf"
            ),
        )),
    }
}

pub(crate) fn create(store: &mut Store, call: &Call) -> ApiResult<Reply> {
    let mut body = decode_body(call)?;
    match call.def.plural.as_str() {
        "selfsubjectaccessreviews" => return Ok(access_review(store, call, body)),
        "selfsubjectreviews" => {
            body["status"] = json!({"userInfo": {"username": call.user.name, "groups": call.user.groups}});
            body["apiVersion"] = call.def.api_version().into();
            body["kind"] = call.def.kind.clone().into();
            return Ok(reply(201, body));
        }
        _ => {}
    }
    check_type(&call.def, &mut body)?;
    let body = to_served(&call.def, to_stored(&call.def, body));
    commit(store, call, None, body, Managed::Update(call.update_manager()), false)
}

pub(crate) fn update(store: &mut Store, call: &Call) -> ApiResult<Reply> {
    let mut body = decode_body(call)?;
    check_type(&call.def, &mut body)?;
    let old = current(store, call)?;
    commit(store, call, Some(old), body, Managed::Update(call.update_manager()), true)
}

pub(crate) fn patch(store: &mut Store, call: &Call) -> ApiResult<Reply> {
    let media = call.content_type.split(';').next().unwrap_or_default().trim();
    if media == "application/apply-patch+yaml" || media == "application/apply-patch+cbor" {
        return apply(store, call);
    }
    let old = current(store, call)?;
    let mut doc = old.clone();
    match media {
        "application/merge-patch+json" => patch::merge_patch(&mut doc, &parse_json(call.body)?),
        "application/json-patch+json" => patch::json_patch(&mut doc, &parse_json(call.body)?)?,
        "application/strategic-merge-patch+json" if call.def.custom.is_none() => {
            patch::strategic_merge_patch(&mut doc, &parse_json(call.body)?)
        }
        _ => return Err(ApiError::unsupported_patch()),
    }
    commit(store, call, Some(old), doc, Managed::Update(call.update_manager()), false)
}

/// Server-side apply (`application/apply-patch+yaml`).
fn apply(store: &mut Store, call: &Call) -> ApiResult<Reply> {
    let manager = call
        .q("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set"))?
        .to_string();
    let text = std::str::from_utf8(call.body).map_err(|_| ApiError::bad_request("apply body is not UTF-8"))?;
    let mut config: Value =
        serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    check_type(&call.def, &mut config)?;
    if meta_str(&config, "name").is_empty() {
        config["metadata"]["name"] = call.name.clone().into();
    }
    let force = call.q("force").is_some_and(|f| f == "true");
    let old = store.objects.get(&call.key(&call.name)).map(|o| to_served(&call.def, o.clone()));
    if old.is_none() && call.subresource == "status" {
        return Err(ApiError::not_found(&call.def.group, &call.def.plural, &call.name));
    }
    let api_version = call.def.api_version();
    let now = now_string();
    let m = Manager { name: &manager, api_version: &api_version, subresource: &call.subresource, now: &now };
    let on_status = call.subresource == "status";
    let status_sub = call.def.status_subresource;
    let keep = |p: &Vec<String>| {
        let is_status = p.first().is_some_and(|k| k == "status");
        if on_status { is_status } else { !(status_sub && is_status) }
    };
    let mut merged = managed::apply(old.as_ref(), &config, &m, force, keep)?;
    // Identity fields come from the config; the rest of metadata is the server's.
    for f in ["name", "namespace"] {
        if let Some(v) = config["metadata"].get(f) {
            merged["metadata"][f] = v.clone();
        }
    }
    merged["apiVersion"] = config["apiVersion"].clone();
    merged["kind"] = config["kind"].clone();
    commit(store, call, old, merged, Managed::Precomputed, false)
}

/// Namespaces kube-apiserver refuses to delete.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub(crate) fn delete(store: &mut Store, call: &Call) -> ApiResult<Reply> {
    let obj = current(store, call)?;
    if call.def.group.is_empty() && call.def.plural == "namespaces" && IMMORTAL_NAMESPACES.contains(&call.name.as_str())
    {
        let message = format!("namespaces \"{}\" is forbidden: this namespace may not be deleted", call.name);
        return Err(ApiError::forbidden(message, "", "namespaces", &call.name));
    }
    if !call.body.is_empty() {
        let opts = parse_json(call.body)?;
        let pre = &opts["preconditions"];
        if let Some(uid) = pre["uid"].as_str()
            && uid != meta_str(&obj, "uid")
        {
            let why = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&obj, "uid")
            );
            return Err(ApiError::conflict(&call.def.group, &call.def.plural, &call.name, &why));
        }
        if let Some(rv) = pre["resourceVersion"].as_str()
            && rv != meta_str(&obj, "resourceVersion")
        {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&obj, "resourceVersion")
            );
            return Err(ApiError::conflict(&call.def.group, &call.def.plural, &call.name, &why));
        }
    }
    delete_one(store, call, obj)
}

fn delete_one(store: &mut Store, call: &Call, mut obj: Value) -> ApiResult<Reply> {
    let key = call.key(meta_str(&obj, "name"));
    let has_finalizers = obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    if !has_finalizers {
        return finish_delete(store, call, &key, obj);
    }
    if obj["metadata"].get("deletionTimestamp").is_some() || call.dry_run() {
        return Ok(reply(200, obj));
    }
    obj["metadata"]["deletionTimestamp"] = now_string().into();
    obj["metadata"]["deletionGracePeriodSeconds"] = 0.into();
    let rv = store.next_rv();
    obj["metadata"]["resourceVersion"] = rv.to_string().into();
    let stored = to_stored(&call.def, obj);
    store.save(key, stored.clone(), "MODIFIED");
    if call.def.group == "apiextensions.k8s.io" {
        store.rebuild_defs();
    }
    Ok(reply(200, to_served(&call.def, stored)))
}

/// DELETE on a collection: every matching object, each with the single-object semantics.
pub(crate) fn delete_collection(store: &mut Store, call: &Call) -> ApiResult<Reply> {
    let (labels, fields) = selectors(call)?;
    let ns = (call.def.namespaced && !call.namespace.is_empty()).then_some(call.namespace.as_str());
    let victims: Vec<Value> = store
        .scan(&call.def, ns)
        .filter(|(_, o)| labels.matches(o) && fields.matches(o))
        .map(|(_, o)| to_served(&call.def, o.clone()))
        .collect();
    let mut items = vec![];
    for obj in victims {
        let per = Call { namespace: meta_str(&obj, "namespace").to_string(), ..clone_call(call) };
        items.push(delete_one(store, &per, obj)?.body);
    }
    Ok(reply(
        200,
        json!({"kind": call.def.list_kind, "apiVersion": call.def.api_version(),
               "metadata": {"resourceVersion": store.current_rv().to_string()}, "items": items}),
    ))
}

fn clone_call<'a>(c: &Call<'a>) -> Call<'a> {
    Call {
        def: c.def.clone(),
        namespace: c.namespace.clone(),
        name: c.name.clone(),
        subresource: c.subresource.clone(),
        query: c.query,
        user: c.user,
        user_agent: c.user_agent,
        accept: c.accept,
        content_type: c.content_type,
        body: c.body,
    }
}

/// SelfSubjectAccessReview (`kubectl auth can-i`): answered from RBAC, not stored.
fn access_review(store: &Store, call: &Call, mut review: Value) -> Reply {
    let ra = &review["spec"]["resourceAttributes"];
    let s = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
    let attrs = Attributes {
        verb: s("verb"),
        group: s("group"),
        resource: s("resource"),
        subresource: s("subresource"),
        namespace: s("namespace"),
        name: s("name"),
    };
    let allowed = auth::authorize(store, call.user, &attrs);
    review["status"] = json!({"allowed": allowed});
    review["apiVersion"] = call.def.api_version().into();
    review["kind"] = call.def.kind.clone().into();
    reply(201, review)
}
