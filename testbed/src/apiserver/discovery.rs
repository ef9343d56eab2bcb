//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) and OpenAPI v3 (`/openapi/v3`), derived from the
//! served resource types, so kubectl resolves short names, validates on the server and can `explain` CRDs.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::store::{ResourceDef, Store};

pub(crate) const GIT_VERSION: &str = "v1.37.0-testbed";

pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// group → versions in registration order (the first one is preferred).
fn groups(store: &Store) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in store.defs.iter().filter(|d| !d.group.is_empty()) {
        let versions = out.entry(d.group.clone()).or_default();
        if !versions.contains(&d.version) {
            versions.push(d.version.clone());
        }
    }
    out
}

pub(crate) fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = groups(store)
        .into_iter()
        .map(|(g, versions)| {
            let vs: Vec<Value> =
                versions.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
            let preferred = vs.first().cloned().unwrap_or_default();
            json!({"name": g, "versions": vs, "preferredVersion": preferred})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(crate) fn group(store: &Store, name: &str) -> Option<Value> {
    let versions = groups(store).remove(name)?;
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    let preferred = vs.first().cloned()?;
    Some(json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs, "preferredVersion": preferred}))
}

fn defs_of<'a>(store: &'a Store, group: &'a str, version: &'a str) -> impl Iterator<Item = &'a ResourceDef> {
    store.defs.iter().map(|d| d.as_ref()).filter(move |d| d.group == group && d.version == version)
}

pub(crate) fn resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
    let mut resources = vec![];
    for d in defs_of(store, group, version) {
        let mut r = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": d.verbs,
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        resources.push(r);
        if d.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced,
                "kind": d.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `/openapi/v3`: one entry per group/version, with a content hash so kubectl's cache notices CRD changes.
pub(crate) fn openapi_root(store: &Store) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = store.defs.iter().map(|d| (d.group.clone(), d.version.clone())).collect();
    gvs.dedup();
    gvs.sort();
    gvs.dedup();
    for (g, v) in gvs {
        let key = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
        if let Some(doc) = openapi_doc(store, &g, &v) {
            let hash = hex::encode_upper(Sha512::digest(doc.to_string().as_bytes()));
            paths.insert(key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}));
        }
    }
    json!({"paths": paths})
}

/// `io.k8s.api.core.v1.Namespace` / `dev.lambda-deployer.v1.LambdaDeployment` (reversed group, as kube-openapi names CRDs).
fn schema_name(d: &ResourceDef) -> String {
    if d.custom.is_some() {
        let reversed: Vec<&str> = d.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), d.version, d.kind);
    }
    let pkg = match d.group.as_str() {
        "" => "core".to_string(),
        "apiextensions.k8s.io" => {
            return format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{}.{}", d.version, d.kind);
        }
        g => g.split('.').next().unwrap_or(g).to_string(),
    };
    format!("io.k8s.api.{pkg}.{}.{}", d.version, d.kind)
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn object_meta_schema() -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    json!({
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "type": "object",
        "properties": {
            "name": s("Name must be unique within a namespace."),
            "generateName": s("GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."),
            "namespace": s("Namespace defines the space within which each name must be unique."),
            "uid": s("UID is the unique in time and space value for this object."),
            "resourceVersion": s("An opaque value that represents the internal version of this object."),
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": s("CreationTimestamp is a timestamp representing the server time when this object was created."),
            "deletionTimestamp": s("DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."),
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64", "description": "Number of seconds allowed for this object to gracefully terminate."},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values that can be used to organize and categorize objects."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Annotations is an unstructured key value map stored with a resource."},
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "List of objects depended by this object."},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow."},
        },
    })
}

fn kind_schema(d: &ResourceDef) -> Value {
    let gvk = json!([{"group": d.group, "version": d.version, "kind": d.kind}]);
    let mut schema = d
        .custom
        .as_ref()
        .and_then(|c| c.schema.clone())
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if schema["description"].is_null() {
        schema["description"] = format!("{} is served by the testbed API server.", d.kind).into();
    }
    schema["type"] = "object".into();
    let props = &mut schema["properties"];
    if !props.is_object() {
        *props = json!({});
    }
    props["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
    props["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
    props["metadata"] = json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "default": {},
        "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"});
    schema["x-kubernetes-group-version-kind"] = gvk;
    schema
}

/// One operation of a path item, marked with its GVK and action as kube-openapi does.
fn operation(d: &ResourceDef, action: &str, op_id: &str, params: Vec<Value>, body: Option<Value>) -> Value {
    let mut op = json!({
        "operationId": op_id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(d))}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": d.group, "version": d.version, "kind": d.kind},
    });
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

fn query_param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/<g>/<v>`.
pub(crate) fn openapi_doc(store: &Store, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = defs_of(store, group, version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(OBJECT_META.into(), object_meta_schema());
    let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
    for d in defs {
        let name = schema_name(d);
        schemas.insert(name.clone(), kind_schema(d));
        let body_ref = json!({"schema": {"$ref": format!("#/components/schemas/{name}")}});
        // Strategic merge is not advertised, so for built-in kinds kubectl computes it from its compiled-in types.
        let patch_types =
            ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];
        let patch_body = json!({"content": patch_types.iter().map(|t| (t.to_string(), json!({"schema": {"type": "object"}}))).collect::<Map<_, _>>()});
        let json_body = json!({"content": {"application/json": body_ref.clone(), "application/yaml": body_ref}});
        let write_params = vec![query_param("dryRun"), query_param("fieldManager"), query_param("fieldValidation")];
        let mut patch_params = write_params.clone();
        patch_params.push(query_param("force"));
        let base = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", d.plural)
        } else {
            format!("{prefix}/{}", d.plural)
        };
        let kind = &d.kind;
        paths.insert(
            base.clone(),
            json!({
                "get": operation(d, "list", &format!("list{kind}"), vec![query_param("labelSelector"), query_param("fieldSelector"), query_param("limit"), query_param("continue"), query_param("watch")], None),
                "post": operation(d, "post", &format!("create{kind}"), write_params.clone(), Some(json_body.clone())),
            }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": operation(d, "get", &format!("read{kind}"), vec![], None),
                "put": operation(d, "put", &format!("replace{kind}"), write_params.clone(), Some(json_body.clone())),
                "patch": operation(d, "patch", &format!("patch{kind}"), patch_params.clone(), Some(patch_body.clone())),
                "delete": operation(d, "delete", &format!("delete{kind}"), vec![query_param("dryRun")], None),
            }),
        );
        if d.status_subresource {
            paths.insert(
                format!("{base}/{{name}}/status"),
                json!({
                    "get": operation(d, "get", &format!("read{kind}Status"), vec![], None),
                    "put": operation(d, "put", &format!("replace{kind}Status"), write_params.clone(), Some(json_body)),
                    "patch": operation(d, "patch", &format!("patch{kind}Status"), patch_params, Some(patch_body)),
                }),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
