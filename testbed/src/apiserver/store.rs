//! The in-memory object store: resource types (built-in and from live CRDs), objects keyed like etcd keys,
//! a monotonic resourceVersion and a bounded watch history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::meta::{meta_str, new_namespace, now_string, stamp_new};

/// How many watch events are kept for resuming watches; older resourceVersions get 410 Gone.
const HISTORY: usize = 2000;

/// One served resource type at one group/version.
#[derive(Debug, Clone)]
pub(crate) struct ResourceDef {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// Where objects live: (group, plural). core/v1 and events.k8s.io/v1 events share one storage, as in kube-apiserver.
    pub storage: (String, String),
    /// Only resources served from a CRD have one.
    pub custom: Option<Custom>,
    /// Create-only review resources (SelfSubjectAccessReview) are not stored.
    pub verbs: &'static [&'static str],
}

#[derive(Debug, Clone)]
pub(crate) struct Custom {
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
    /// Field paths without the leading dot, e.g. `spec.functionName`.
    pub selectable_fields: Vec<String>,
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const CREATE_ONLY: &[&str] = &["create"];

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool, short: &[&str]) -> Self {
        ResourceDef {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: vec![],
            status_subresource: false,
            storage: (group.into(), plural.into()),
            custom: None,
            verbs: ALL_VERBS,
        }
    }

    pub fn is_event(&self) -> bool {
        self.storage == (String::new(), "events".to_string())
    }

    /// Custom resources and CRDs have a `generation`.
    pub fn tracks_generation(&self) -> bool {
        self.custom.is_some() || self.group == "apiextensions.k8s.io"
    }
}

pub(crate) fn builtin_defs() -> Vec<ResourceDef> {
    const RBAC: &str = "rbac.authorization.k8s.io";
    let mut ns = ResourceDef::builtin("", "namespaces", "Namespace", false, &["ns"]);
    ns.status_subresource = true;
    let mut events_v1 = ResourceDef::builtin("events.k8s.io", "events", "Event", true, &["ev"]);
    events_v1.storage = (String::new(), "events".into());
    let mut crd = ResourceDef::builtin(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
    );
    crd.status_subresource = true;
    crd.categories = vec!["api-extensions".into()];
    let mut ssar =
        ResourceDef::builtin("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview", false, &[]);
    ssar.verbs = CREATE_ONLY;
    let mut ssr = ResourceDef::builtin("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview", false, &[]);
    ssr.verbs = CREATE_ONLY;
    vec![
        ns,
        ResourceDef::builtin("", "events", "Event", true, &["ev"]),
        ResourceDef::builtin("", "configmaps", "ConfigMap", true, &["cm"]),
        ResourceDef::builtin("", "serviceaccounts", "ServiceAccount", true, &["sa"]),
        events_v1,
        ResourceDef::builtin(RBAC, "roles", "Role", true, &[]),
        ResourceDef::builtin(RBAC, "rolebindings", "RoleBinding", true, &[]),
        ResourceDef::builtin(RBAC, "clusterroles", "ClusterRole", false, &[]),
        ResourceDef::builtin(RBAC, "clusterrolebindings", "ClusterRoleBinding", false, &[]),
        crd,
        ssar,
        ssr,
    ]
}

/// Resource types served by one stored CRD (one per served version).
fn defs_from_crd(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return vec![];
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| {
            let version = v["name"].as_str()?;
            Some(ResourceDef {
                group: group.into(),
                version: version.into(),
                plural: plural.into(),
                singular: names["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase()),
                kind: kind.into(),
                list_kind: names["listKind"].as_str().map(String::from).unwrap_or_else(|| format!("{kind}List")),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status_subresource: v["subresources"].get("status").is_some(),
                storage: (group.into(), plural.into()),
                custom: Some(Custom {
                    schema: v["schema"].get("openAPIV3Schema").cloned(),
                    printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
                    selectable_fields: v["selectableFields"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|f| f["jsonPath"].as_str())
                                .map(|p| p.trim_start_matches('.').to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                verbs: ALL_VERBS,
            })
        })
        .collect()
}

/// (storage group, storage plural, namespace, name) — the etcd key, so iteration order is etcd's.
pub(crate) type Key = (String, String, String, String);

#[derive(Debug)]
pub(crate) struct WatchEvent {
    pub kind: &'static str,
    pub storage: (String, String),
    pub namespace: String,
    pub rv: u64,
    /// Stored form (storage version).
    pub object: Value,
    /// The object before a MODIFIED change (so selector watches can see objects enter and leave).
    pub previous: Option<Value>,
}

pub(crate) struct Store {
    rv: u64,
    pub objects: BTreeMap<Key, Value>,
    pub defs: Vec<Arc<ResourceDef>>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Events at or below this resourceVersion are no longer in the history.
    compacted: u64,
    pub tx: broadcast::Sender<Arc<WatchEvent>>,
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        let mut s = Store { rv: 0, objects: BTreeMap::new(), defs: vec![], history: VecDeque::new(), compacted: 0, tx };
        s.rebuild_defs();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            s.seed(("".into(), "namespaces".into(), String::new(), ns.into()), new_namespace(obj));
        }
        // The bootstrap RBAC policy every cluster has that matters here.
        const RBAC: &str = "rbac.authorization.k8s.io";
        let roles = [
            (
                "cluster-admin",
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                     {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
                "system:masters",
            ),
            (
                "system:basic-user",
                json!([
                    {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                    {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
                ]),
                "system:authenticated",
            ),
        ];
        for (name, rules, group) in roles {
            let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
            let role = json!({"apiVersion": format!("{RBAC}/v1"), "kind": "ClusterRole",
                              "metadata": {"name": name, "labels": labels}, "rules": rules});
            let binding = json!({"apiVersion": format!("{RBAC}/v1"), "kind": "ClusterRoleBinding",
                "metadata": {"name": name, "labels": labels},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": group}]});
            s.seed((RBAC.into(), "clusterroles".into(), String::new(), name.into()), role);
            s.seed((RBAC.into(), "clusterrolebindings".into(), String::new(), name.into()), binding);
        }
        s
    }

    fn seed(&mut self, key: Key, obj: Value) {
        let rv = self.next_rv();
        let obj = stamp_new(obj, rv, false);
        self.save(key, obj, "ADDED");
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Re-derives the served resource types after a CRD changed.
    pub fn rebuild_defs(&mut self) {
        let mut defs: Vec<ResourceDef> = builtin_defs();
        for (_, crd) in self.range("apiextensions.k8s.io", "customresourcedefinitions") {
            if crd_established(crd) {
                defs.extend(defs_from_crd(crd));
            }
        }
        self.defs = defs.into_iter().map(Arc::new).collect();
    }

    pub fn find_def(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.defs.iter().find(|d| d.group == group && d.version == version && d.plural == plural).cloned()
    }

    pub fn key(def: &ResourceDef, namespace: &str, name: &str) -> Key {
        let ns = if def.namespaced { namespace } else { "" };
        (def.storage.0.clone(), def.storage.1.clone(), ns.to_string(), name.to_string())
    }

    /// Stores `obj` (already stamped with a fresh resourceVersion) and records the watch event.
    pub fn save(&mut self, key: Key, obj: Value, kind: &'static str) {
        let previous = self.objects.insert(key.clone(), obj.clone());
        self.record(kind, &key, obj, previous);
    }

    pub fn remove(&mut self, key: &Key, final_obj: Value) {
        self.objects.remove(key);
        self.record("DELETED", key, final_obj, None);
    }

    fn record(&mut self, kind: &'static str, key: &Key, object: Value, previous: Option<Value>) {
        let ev = Arc::new(WatchEvent {
            kind,
            storage: (key.0.clone(), key.1.clone()),
            namespace: key.2.clone(),
            rv: self.rv,
            object,
            previous,
        });
        if self.history.len() >= HISTORY
            && let Some(old) = self.history.pop_front()
        {
            self.compacted = old.rv;
        }
        self.history.push_back(ev.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// Events newer than `rv`, or None when `rv` is older than the retained history.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<WatchEvent>>> {
        if rv < self.compacted {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Objects of one storage (group, plural), in key order.
    pub fn range<'a>(&'a self, group: &str, plural: &str) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let (g, p) = (group.to_string(), plural.to_string());
        self.objects
            .range((g.clone(), p.clone(), String::new(), String::new())..)
            .take_while(move |((kg, kp, _, _), _)| *kg == g && *kp == p)
    }

    /// Objects of one resource, optionally in one namespace, in key order.
    pub fn scan<'a>(
        &'a self,
        def: &ResourceDef,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> {
        self.range(&def.storage.0, &def.storage.1)
            .filter(move |((_, _, kns, _), _)| namespace.is_none_or(|ns| kns == ns))
    }

    /// Stores an object without validation (for hostile-input tests). Replaces an existing object of the same name.
    pub fn insert_raw(&mut self, mut obj: Value) -> Result<Value, String> {
        let api_version = obj["apiVersion"].as_str().ok_or("apiVersion is required")?.to_string();
        let kind = obj["kind"].as_str().ok_or("kind is required")?.to_string();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
        let def = self
            .defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.kind == kind)
            .cloned()
            .ok_or_else(|| format!("no resource serves {api_version} {kind}"))?;
        let name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            return Err("metadata.name is required".into());
        }
        let namespace = if def.namespaced {
            let ns = meta_str(&obj, "namespace");
            if ns.is_empty() { "default".to_string() } else { ns.to_string() }
        } else {
            String::new()
        };
        if def.namespaced {
            obj["metadata"]["namespace"] = namespace.clone().into();
        }
        let key = Self::key(&def, &namespace, &name);
        let old = self.objects.get(&key).cloned();
        let meta = &mut obj["metadata"];
        if meta["uid"].is_null() {
            meta["uid"] = old
                .as_ref()
                .map(|o| o["metadata"]["uid"].clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string().into());
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = now_string().into();
        }
        if meta["generation"].is_null() && def.tracks_generation() {
            meta["generation"] = 1.into();
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = rv.to_string().into();
        let stored = to_stored(&def, obj);
        self.save(key, stored.clone(), if old.is_some() { "MODIFIED" } else { "ADDED" });
        if def.group == "apiextensions.k8s.io" {
            self.rebuild_defs();
        }
        Ok(to_served(&def, stored))
    }
}

fn crd_established(crd: &Value) -> bool {
    crd["metadata"].get("deletionTimestamp").is_none()
}

/// events.k8s.io/v1 field name ↔ core/v1 field name (storage is core/v1, as in kube-apiserver).
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename_top(obj: &mut Value, to_core: bool) {
    if let Some(m) = obj.as_object_mut() {
        let mut out = Map::new();
        for (k, v) in std::mem::take(m) {
            let renamed = EVENT_RENAMES
                .iter()
                .find(|(ev, core)| if to_core { ev == &k } else { core == &k })
                .map(|(ev, core)| if to_core { core.to_string() } else { ev.to_string() });
            out.insert(renamed.unwrap_or(k), v);
        }
        *m = out;
    }
}

/// Stored form → the form served at `def`'s group/version.
pub(crate) fn to_served(def: &ResourceDef, mut obj: Value) -> Value {
    if def.is_event() && def.group == "events.k8s.io" {
        rename_top(&mut obj, false);
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), def.api_version().into());
        m.insert("kind".into(), def.kind.clone().into());
    }
    obj
}

/// Served form at `def` → stored form.
pub(crate) fn to_stored(def: &ResourceDef, mut obj: Value) -> Value {
    if def.is_event() && def.group == "events.k8s.io" {
        rename_top(&mut obj, true);
        obj["apiVersion"] = "v1".into();
    }
    obj
}
