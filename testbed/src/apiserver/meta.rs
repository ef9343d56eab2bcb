//! What the server writes into the metadata of objects it stores, shared by the store (its seed objects) and the
//! handlers.

use serde_json::{Value, json};

/// RFC 3339 with whole seconds, as Kubernetes timestamps are.
pub(crate) fn now_string() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).map(|t| t.to_string()).unwrap_or_default()
}

/// Metadata of a newly created object.
pub(crate) fn stamp_new(mut obj: Value, rv: u64, generation: bool) -> Value {
    let meta = &mut obj["metadata"];
    meta["uid"] = uuid::Uuid::new_v4().to_string().into();
    meta["creationTimestamp"] = now_string().into();
    meta["resourceVersion"] = rv.to_string().into();
    if generation {
        meta["generation"] = 1.into();
    }
    obj
}

/// What kube-apiserver adds to every Namespace.
pub(crate) fn new_namespace(mut ns: Value) -> Value {
    let name = ns["metadata"]["name"].clone();
    ns["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    ns["spec"]["finalizers"] = json!(["kubernetes"]);
    ns["status"] = json!({"phase": "Active"});
    ns
}

/// `metadata.<field>` as a string ("" when absent or not a string).
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}
