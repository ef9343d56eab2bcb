//! The Kubernetes adapter: list LambdaDeployments (paginated, tolerant of objects that do not decode), write
//! status through the status subresource, and record Events.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::crd::{LambdaDeployment, LambdaDeploymentStatus};
use crate::error::KUBERNETES;
use crate::retry::{Budget, Call};
use crate::{Error, Result};

/// Page size for listing: kubectl's default, and a bounded response for the apiserver.
const PAGE_SIZE: u32 = 500;
pub const REPORTING_CONTROLLER: &str = "lambda-deployer.dev/deployer";

/// One listed object: a LambdaDeployment, or an object of the kind that does not decode (stored with validation
/// bypassed, or under an older schema). The latter is reported as Failed, and never stops the others.
#[derive(Clone, Debug)]
// Both variants carry an object's worth of data; boxing one would not shrink a list of them.
#[allow(clippy::large_enum_variant)]
pub enum Listed {
    Valid(LambdaDeployment),
    Undecodable { metadata: ObjectMeta, status: Option<LambdaDeploymentStatus>, reason: String },
}

impl Listed {
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Listed::Valid(ld) => &ld.metadata,
            Listed::Undecodable { metadata, .. } => metadata,
        }
    }

    /// The commit the spec declares (none when the spec does not decode).
    pub fn commit(&self) -> Option<&str> {
        match self {
            Listed::Valid(ld) => Some(ld.spec.commit.as_str()),
            Listed::Undecodable { .. } => None,
        }
    }

    pub fn status(&self) -> Option<&LambdaDeploymentStatus> {
        match self {
            Listed::Valid(ld) => ld.status.as_ref(),
            Listed::Undecodable { status, .. } => status.as_ref(),
        }
    }
}

fn api_resource() -> ApiResource {
    ApiResource::erase::<LambdaDeployment>(&())
}

fn decode(object: DynamicObject) -> Listed {
    let metadata = object.metadata.clone();
    let status = object.data.get("status").cloned().and_then(|s| serde_json::from_value(s).ok());
    let mut value = object.data;
    if let Value::Object(map) = &mut value {
        map.insert("metadata".into(), serde_json::to_value(&metadata).unwrap_or(Value::Null));
        map.insert("apiVersion".into(), json!("lambda-deployer.dev/v1"));
        map.insert("kind".into(), json!("LambdaDeployment"));
    }
    match serde_json::from_value::<LambdaDeployment>(value) {
        Ok(ld) => Listed::Valid(ld),
        Err(err) => Listed::Undecodable { metadata, status, reason: format!("spec does not decode: {err}") },
    }
}

pub fn kube_error(action: &str, err: kube::Error) -> Error {
    match err {
        kube::Error::Api(status) => Error::Kube {
            message: format!("{action}: {} ({})", status.message, status.code),
            status: Some(status.code),
            retryable: status.code >= 500 || status.code == 429 || status.code == 409,
            retry_after: status
                .details
                .as_ref()
                .map(|details| details.retry_after_seconds)
                .filter(|secs| *secs > 0 && *secs < 300)
                .map(|secs| std::time::Duration::from_secs(secs.into())),
        },
        other => {
            Error::Kube { message: format!("{action}: {other}"), status: None, retryable: true, retry_after: None }
        }
    }
}

const fn kube(operation: &'static str) -> Call {
    Call::new(KUBERNETES, operation)
}

/// How far a listing has got: at least this many objects exist (listed so far plus what the server says remains),
/// and whether the listing is complete. Bulk reads that only pay off for large fleets start on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListProgress {
    pub at_least: usize,
    pub complete: bool,
}

/// Lists LambdaDeployments in `namespaces` (None: all), optionally with a field selector, telling `progress`
/// after each page (it is not marked complete here: the caller may still filter).
pub async fn list(
    client: &kube::Client,
    namespaces: Option<&[String]>,
    field_selector: Option<&str>,
    progress: Option<&tokio::sync::watch::Sender<ListProgress>>,
    budget: Budget<'_>,
) -> Result<Vec<Listed>> {
    let resource = api_resource();
    let apis: Vec<Api<DynamicObject>> = match namespaces {
        None => vec![Api::all_with(client.clone(), &resource)],
        Some(namespaces) => namespaces.iter().map(|ns| Api::namespaced_with(client.clone(), ns, &resource)).collect(),
    };
    let mut listed = Vec::new();
    for api in apis {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(selector) = field_selector {
            params = params.fields(selector);
        }
        loop {
            let page = budget
                .run(kube("list"), None, || async {
                    api.list(&params).await.map_err(|e| kube_error("listing LambdaDeployments", e))
                })
                .await?;
            listed.extend(page.items.into_iter().map(decode));
            if let Some(progress) = progress {
                let remaining = page.metadata.remaining_item_count.unwrap_or(0).max(0) as usize;
                progress.send_modify(|p| p.at_least = p.at_least.max(listed.len() + remaining));
            }
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(listed)
}

/// Reads one LambdaDeployment again; `None` if it no longer exists.
pub async fn get(client: &kube::Client, metadata: &ObjectMeta, budget: Budget<'_>) -> Result<Option<Listed>> {
    let namespace = metadata.namespace.as_deref().unwrap_or_default();
    let name = metadata.name.as_deref().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource());
    let object = budget
        .run(kube("get"), None, || async {
            api.get_opt(name).await.map_err(|e| kube_error(&format!("reading {namespace}/{name}"), e))
        })
        .await?;
    Ok(object.map(decode))
}

/// Writes the status with a merge patch on the status subresource, on the condition that the resource is still
/// at the `resourceVersion` it was read at: a container that decided on an older read can never overwrite a newer
/// status (409 Conflict instead; the caller reads again). Fields the new status no longer has are removed
/// explicitly (a merge patch only removes what it sets to null).
pub async fn write_status(
    client: &kube::Client,
    metadata: &ObjectMeta,
    old: Option<&LambdaDeploymentStatus>,
    new: &LambdaDeploymentStatus,
    budget: Budget<'_>,
) -> Result<()> {
    let namespace = metadata.namespace.as_deref().unwrap_or_default();
    let name = metadata.name.as_deref().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource());
    let patch = json!({
        "metadata": { "resourceVersion": metadata.resource_version },
        "status": status_merge_patch(old, new),
    });
    budget
        .run(kube("patch status"), None, || async {
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(|e| kube_error(&format!("writing status of {namespace}/{name}"), e))
        })
        .await
}

fn status_merge_patch(old: Option<&LambdaDeploymentStatus>, new: &LambdaDeploymentStatus) -> Value {
    let mut patch = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    if let (Some(Value::Object(old)), Value::Object(patch)) =
        (old.map(serde_json::to_value).and_then(Result::ok), &mut patch)
    {
        for key in old.keys() {
            patch.entry(key.clone()).or_insert(Value::Null);
        }
    }
    patch
}

/// A Kubernetes Event (events.k8s.io/v1) about one LambdaDeployment.
pub struct EventRecord<'a> {
    pub reason: &'a str,
    pub note: String,
    pub warning: bool,
    pub action: &'a str,
}

/// Records the Event under a name chosen once, so that a retry after a lost answer finds it created (409
/// AlreadyExists) instead of recording it twice.
pub async fn record_event(
    client: &kube::Client,
    metadata: &ObjectMeta,
    event: EventRecord<'_>,
    budget: Budget<'_>,
) -> Result<()> {
    let namespace = metadata.namespace.as_deref().unwrap_or_default();
    let name = metadata.name.as_deref().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut note = event.note;
    if note.len() > 1024 {
        // The API rejects notes over 1 kB.
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str(" …");
    }
    let object = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}{:04x}", now.as_nanosecond() as u64, fastrand::u16(..))),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(event.action.to_string()),
        reason: Some(event.reason.to_string()),
        note: Some(note),
        type_: Some(if event.warning { "Warning" } else { "Normal" }.to_string()),
        reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
        reporting_instance: Some(
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "lambda-deployer".into()),
        ),
        regarding: Some(ObjectReference {
            api_version: Some("lambda-deployer.dev/v1".into()),
            kind: Some("LambdaDeployment".into()),
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            uid: metadata.uid.clone(),
            resource_version: metadata.resource_version.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = budget
        .run(kube("create event"), None, || async {
            api.create(&PostParams::default(), &object)
                .await
                .map(|_| ())
                .map_err(|e| kube_error(&format!("recording event {} on {namespace}/{name}", event.reason), e))
        })
        .await;
    match created {
        Err(err) if err.kube_status() == Some(409) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Phase;

    #[test]
    fn status_patch_clears_fields_the_new_status_drops() {
        let old = LambdaDeploymentStatus {
            phase: Some(Phase::Failed),
            message: Some("function missing".into()),
            ..Default::default()
        };
        let new = LambdaDeploymentStatus {
            phase: Some(Phase::Deployed),
            deployed_commit: Some("abcdef1".into()),
            ..Default::default()
        };
        let patch = status_merge_patch(Some(&old), &new);
        assert_eq!(patch, json!({ "phase": "Deployed", "deployedCommit": "abcdef1", "message": null }));
    }
}
