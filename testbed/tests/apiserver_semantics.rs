//! The testbed API server driven by kube-rs (typed and dynamic APIs), one test per behaviour a client can observe.

use std::time::{Duration, SystemTime};

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Client, Config, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use testbed::apiserver::{ApiServer, ApiServerOptions, KubeFault};
use testbed::identity::{self, AwsIdentity};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[kube(group = "lambda-deployer.dev", version = "v1", kind = "LambdaDeployment", namespaced, status = "LdStatus")]
#[serde(rename_all = "camelCase")]
struct LdSpec {
    function_name: String,
    commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct LdStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
}

/// The CRD as crds/ will ship it (hand-written schema, so validation rules are explicit).
fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "lambdadeployments.lambda-deployer.dev"},
        "spec": {
            "group": "lambda-deployer.dev",
            "scope": "Namespaced",
            "names": {"plural": "lambdadeployments", "singular": "lambdadeployment", "kind": "LambdaDeployment",
                      "shortNames": ["ld"], "categories": ["all"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "selectableFields": [{"jsonPath": ".spec.functionName"}, {"jsonPath": ".spec.commit"}],
                "additionalPrinterColumns": [
                    {"name": "Function", "type": "string", "jsonPath": ".spec.functionName"},
                    {"name": "Commit", "type": "string", "jsonPath": ".spec.commit"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["functionName", "commit"],
                            "properties": {
                                "functionName": {"type": "string", "minLength": 1, "maxLength": 64},
                                "commit": {"type": "string", "pattern": "^[0-9a-f]{7,40}$"},
                                "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                                "strategy": {"type": "string", "enum": ["AllAtOnce", "Canary"], "default": "AllAtOnce"},
                                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            },
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": {"type": "string", "enum": ["Pending", "Deployed", "Failed"]},
                                "observedGeneration": {"type": "integer"},
                            },
                        },
                    },
                }},
            }],
        },
    })
}

async fn client_with_token(server: &ApiServer, token: &str) -> Client {
    let yaml = server.kubeconfig().replace(server.admin_token(), token);
    let kubeconfig = Kubeconfig::from_yaml(&yaml).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(config).expect("client")
}

/// A server with the CRD installed, and an admin client.
async fn setup() -> (ApiServer, Client) {
    let server = ApiServer::start(ApiServerOptions::default()).await.expect("server starts");
    let client = client_with_token(&server, server.admin_token()).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &serde_json::from_value(crd()).expect("crd")).await.expect("crd created");
    (server, client)
}

fn lds(client: &Client, ns: &str) -> Api<LambdaDeployment> {
    Api::namespaced(client.clone(), ns)
}

fn ld(name: &str, function: &str, commit: &str) -> LambdaDeployment {
    LambdaDeployment::new(name, LdSpec { function_name: function.into(), commit: commit.into(), ..Default::default() })
}

fn dynamic_lds(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("lambda-deployer.dev", "v1", "LambdaDeployment");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// The Status of a failed call.
fn status_of<T: std::fmt::Debug>(r: kube::Result<T>) -> Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn raw_get(client: &Client, path: &str, accept: &str) -> Value {
    let req = http::Request::get(path).header("accept", accept).body(vec![]).expect("request");
    client.request::<Value>(req).await.expect("raw get")
}

fn rv(obj: &impl ResourceExt) -> u64 {
    obj.resource_version().expect("resourceVersion").parse().expect("numeric resourceVersion")
}

#[tokio::test]
async fn discovery_serves_crd_resources_with_short_names_and_status_subresource() {
    let (_server, client) = setup().await;
    let list = raw_get(&client, "/apis/lambda-deployer.dev/v1", "application/json").await;
    let names: Vec<&str> = list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lambdadeployments", "lambdadeployments/status"]);
    assert_eq!(list["resources"][0]["shortNames"], json!(["ld"]));
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await.expect("discovery");
    assert!(discovery.has_group("lambda-deployer.dev") && discovery.has_group("events.k8s.io"));
    let version = client.apiserver_version().await.expect("version");
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "37"));
}

#[tokio::test]
async fn openapi_v3_advertises_field_validation_and_the_crd_schema() {
    let (_server, client) = setup().await;
    let root = raw_get(&client, "/openapi/v3", "application/json").await;
    let url = root["paths"]["apis/lambda-deployer.dev/v1"]["serverRelativeURL"].as_str().expect("gv listed");
    let doc = raw_get(&client, url, "application/json").await;
    let patch = &doc["paths"]["/apis/lambda-deployer.dev/v1/namespaces/{namespace}/lambdadeployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "LambdaDeployment");
    assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
    let schema = &doc["components"]["schemas"]["dev.lambda-deployer.v1.LambdaDeployment"];
    assert_eq!(schema["properties"]["spec"]["required"], json!(["functionName", "commit"]));
}

#[tokio::test]
async fn create_assigns_uid_resource_version_generation_and_timestamp() {
    let (_server, client) = setup().await;
    let created = lds(&client, "default").create(&PostParams::default(), &ld("a", "fn-a", "abc1234")).await.unwrap();
    assert!(created.uid().is_some_and(|u| u.len() == 36));
    assert!(rv(&created) > 0);
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.spec.strategy.as_deref(), Some("AllAtOnce"), "schema default applied");
    let second = lds(&client, "default").create(&PostParams::default(), &ld("b", "fn-b", "abc1234")).await.unwrap();
    assert!(rv(&second) > rv(&created), "resourceVersion is monotonic");
}

#[tokio::test]
async fn creating_an_existing_name_gets_409_already_exists() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let s = status_of(api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, "lambdadeployments.lambda-deployer.dev \"a\" already exists");
}

#[tokio::test]
async fn creating_in_a_missing_namespace_gets_404() {
    let (_server, client) = setup().await;
    let s = status_of(lds(&client, "nowhere").create(&PostParams::default(), &ld("a", "fn", "abc1234")).await);
    assert_eq!((s.code, s.message.as_str()), (404, "namespaces \"nowhere\" not found"));
}

#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_resource_version() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    let created = api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let replaced = api.replace("a", &PostParams::default(), &created).await.unwrap();
    assert_eq!(rv(&replaced), rv(&created));
    let status = Patch::Merge(json!({"status": {"phase": "Deployed"}}));
    let first = api.patch_status("a", &PatchParams::default(), &status).await.unwrap();
    let again = api.patch_status("a", &PatchParams::default(), &status).await.unwrap();
    assert!(rv(&first) > rv(&created));
    assert_eq!(rv(&again), rv(&first));
}

#[tokio::test]
async fn generation_bumps_on_spec_changes_only() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let labelled = api
        .patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let status = api
        .patch_status("a", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Pending"}})))
        .await
        .unwrap();
    assert_eq!(status.metadata.generation, Some(1));
    let spec =
        api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"commit": "def5678"}}))).await.unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
}

#[tokio::test]
async fn main_endpoint_ignores_status_and_status_endpoint_ignores_everything_else() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    let mut obj = ld("a", "fn", "abc1234");
    obj.status = Some(LdStatus { phase: Some("Deployed".into()), ..Default::default() });
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.status.is_none(), "status dropped on create");
    let patch = Patch::Merge(json!({"spec": {"commit": "fff0000"}, "status": {"phase": "Failed"}}));
    let via_status = api.patch_status("a", &PatchParams::default(), &patch).await.unwrap();
    assert_eq!(via_status.spec.commit, "abc1234");
    assert_eq!(via_status.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed"));
    let via_main =
        api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Pending"}}))).await.unwrap();
    assert_eq!(via_main.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed"));
    let mut full = via_main.clone();
    full.status = Some(LdStatus { phase: Some("Deployed".into()), observed_generation: Some(1) });
    let replaced = api.replace_status("a", &PostParams::default(), &full).await.unwrap();
    assert_eq!(replaced.status.and_then(|s| s.observed_generation), Some(1));
}

#[tokio::test]
async fn stale_resource_version_is_rejected_with_409() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    let created = api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    let s = status_of(api.replace("a", &PostParams::default(), &created).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        "Operation cannot be fulfilled on lambdadeployments.lambda-deployer.dev \"a\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    let s = status_of(api.replace_status("a", &PostParams::default(), &created).await);
    assert_eq!(s.code, 409, "status writes are optimistic too");
}

#[tokio::test]
async fn invalid_objects_get_422_naming_each_field() {
    let (_server, client) = setup().await;
    let api = dynamic_lds(&client, "default");
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment", "metadata": {"name": "bad"},
        "spec": {"functionName": "", "commit": "XYZ", "replicas": "three", "strategy": "YOLO", "tags": ["a", "b", "c"]},
    }))
    .unwrap();
    let s = status_of(api.create(&PostParams::default(), &bad).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = s.details.unwrap().causes.into_iter().map(|c| c.field).collect();
    for f in ["spec.functionName", "spec.commit", "spec.replicas", "spec.strategy", "spec.tags"] {
        assert!(fields.iter().any(|x| x == f), "{f} not named in {fields:?}");
    }
    assert!(s.message.starts_with("LambdaDeployment.lambda-deployer.dev \"bad\" is invalid: ["), "{}", s.message);
    assert!(
        s.message.contains("spec.commit: Invalid value: \"XYZ\": spec.commit in body should match '^[0-9a-f]{7,40}$'")
    );
    let missing: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment", "metadata": {"name": "m"}, "spec": {"commit": "abc1234"},
    }))
    .unwrap();
    let s = status_of(api.create(&PostParams::default(), &missing).await);
    assert_eq!(s.message, "LambdaDeployment.lambda-deployer.dev \"m\" is invalid: spec.functionName: Required value");
}

#[tokio::test]
async fn unknown_fields_are_pruned_unless_the_schema_preserves_them() {
    let (_server, client) = setup().await;
    let api = dynamic_lds(&client, "default");
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment", "metadata": {"name": "a"},
        "spec": {"functionName": "fn", "commit": "abc1234", "bogus": 1, "extra": {"anything": {"goes": true}}},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.data["spec"].get("bogus").is_none());
    assert_eq!(created.data["spec"]["extra"]["anything"]["goes"], true);
    let status = Patch::Merge(json!({"status": {"phase": "Deployed", "notInSchema": "dropped"}}));
    let patched = api.patch_status("a", &PatchParams::default(), &status).await.unwrap();
    assert_eq!(
        patched.data["status"],
        json!({"phase": "Deployed"}),
        "a status field missing from the schema is pruned"
    );
}

#[tokio::test]
async fn strict_field_validation_rejects_unknown_fields_with_400() {
    let (_server, client) = setup().await;
    let obj = json!({
        "apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment", "metadata": {"name": "a"},
        "spec": {"functionName": "fn", "commit": "abc1234", "bogus": 1},
    });
    let path = "/apis/lambda-deployer.dev/v1/namespaces/default/lambdadeployments";
    let post = |validation: &str| {
        http::Request::post(format!("{path}?fieldValidation={validation}"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&obj).unwrap())
            .unwrap()
    };
    let s = status_of(client.request::<Value>(post("Strict")).await);
    assert_eq!((s.code, s.message.as_str()), (400, "strict decoding error: unknown field \"spec.bogus\""));
    let created = client.request::<Value>(post("Ignore")).await.unwrap();
    assert!(created["spec"].get("bogus").is_none());
}

#[tokio::test]
async fn status_can_be_written_on_an_object_with_an_invalid_spec_inserted_raw() {
    let (server, client) = setup().await;
    server
        .insert_raw(json!({
            "apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment",
            "metadata": {"name": "hostile", "namespace": "default"},
            "spec": {"functionName": "", "commit": "not a sha", "injected": {"x": 1}},
        }))
        .unwrap();
    let api = dynamic_lds(&client, "default");
    let stored = api.get("hostile").await.unwrap();
    assert_eq!(stored.data["spec"]["injected"]["x"], 1, "raw objects bypass pruning");
    let patched = api
        .patch_status("hostile", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed"}})))
        .await
        .unwrap();
    assert_eq!(
        patched.data["status"]["phase"], "Failed",
        "unchanged invalid fields do not block the write (ratcheting)"
    );
    let s = status_of(
        api.patch("hostile", &PatchParams::default(), &Patch::Merge(json!({"spec": {"commit": "still bad"}}))).await,
    );
    assert_eq!(s.code, 422, "a changed invalid field is still rejected");
}

#[tokio::test]
async fn json_patch_test_operation_guards_the_write() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let guarded = |expected: &str| -> Patch<LambdaDeployment> {
        Patch::Json(
            serde_json::from_value(json!([
                {"op": "test", "path": "/spec/commit", "value": expected},
                {"op": "replace", "path": "/spec/commit", "value": "def5678"},
                {"op": "add", "path": "/metadata/labels", "value": {"patched": "yes"}},
            ]))
            .unwrap(),
        )
    };
    let s = status_of(api.patch("a", &PatchParams::default(), &guarded("0000000")).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let patched = api.patch("a", &PatchParams::default(), &guarded("abc1234")).await.unwrap();
    assert_eq!(patched.spec.commit, "def5678");
    assert_eq!(patched.labels().get("patched").map(String::as_str), Some("yes"));
}

#[tokio::test]
async fn strategic_merge_patch_on_a_custom_resource_gets_415() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let s =
        status_of(api.patch("a", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"replicas": 1}}))).await);
    assert_eq!((s.code, s.reason.as_str()), (415, "UnsupportedMediaType"));
}

#[tokio::test]
async fn server_side_apply_tracks_managers_and_reports_conflicts() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    let config = |replicas: i64| {
        json!({"apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment", "metadata": {"name": "a"},
               "spec": {"functionName": "fn", "commit": "abc1234", "replicas": replicas}})
    };
    let created = api.patch("a", &PatchParams::apply("alice"), &Patch::Apply(config(1))).await.unwrap();
    assert_eq!(created.spec.replicas, Some(1));
    let managers: Vec<_> = created.managed_fields().iter().map(|m| (m.manager.clone(), m.operation.clone())).collect();
    assert_eq!(managers, [(Some("alice".into()), Some("Apply".into()))]);

    let s = status_of(api.patch("a", &PatchParams::apply("bob"), &Patch::Apply(config(2))).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        "Apply failed with 1 conflict: conflict with \"alice\" using lambda-deployer.dev/v1: .spec.replicas"
    );

    let forced = api.patch("a", &PatchParams::apply("bob").force(), &Patch::Apply(config(2))).await.unwrap();
    assert_eq!(forced.spec.replicas, Some(2));
    let same = api.patch("a", &PatchParams::apply("bob").force(), &Patch::Apply(config(2))).await.unwrap();
    assert_eq!(rv(&same), rv(&forced), "re-applying the same config is a no-op");
}

#[tokio::test]
async fn server_side_apply_removes_fields_the_manager_stopped_applying() {
    let (_server, client) = setup().await;
    let api = dynamic_lds(&client, "default");
    let with_tags = json!({"apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment", "metadata": {"name": "a"},
                           "spec": {"functionName": "fn", "commit": "abc1234", "tags": ["x"]}});
    api.patch("a", &PatchParams::apply("alice"), &Patch::Apply(&with_tags)).await.unwrap();
    let mut without = with_tags.clone();
    without["spec"].as_object_mut().unwrap().remove("tags");
    let applied = api.patch("a", &PatchParams::apply("alice"), &Patch::Apply(&without)).await.unwrap();
    assert!(applied.data["spec"].get("tags").is_none());
}

#[tokio::test]
async fn delete_with_finalizers_sets_deletion_timestamp_until_they_are_removed() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    let mut obj = ld("a", "fn", "abc1234");
    obj.metadata.finalizers = Some(vec!["lambda-deployer.dev/cleanup".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let terminating = api.get("a").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none(), "gone once the last finalizer is removed");
    let s = status_of(api.delete("a", &DeleteParams::default()).await);
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn list_paginates_with_limit_and_continue() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    for i in 0..7 {
        api.create(&PostParams::default(), &ld(&format!("ld-{i}"), "fn", "abc1234")).await.unwrap();
    }
    let raw = raw_get(
        &client,
        "/apis/lambda-deployer.dev/v1/namespaces/default/lambdadeployments?limit=3",
        "application/json",
    )
    .await;
    assert_eq!(raw["kind"], "LambdaDeploymentList");
    assert_eq!(raw["items"][0]["kind"], "LambdaDeployment");
    assert_eq!(raw["metadata"]["remainingItemCount"], 4);
    let mut names = vec![];
    let mut token: Option<String> = None;
    for _ in 0..5 {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|o| o.name_any()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("ld-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_filters_by_label_selectors() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    for (name, env) in [("a", Some("prod")), ("b", Some("dev")), ("c", None)] {
        let mut obj = ld(name, "fn", "abc1234");
        if let Some(env) = env {
            obj.metadata.labels = Some([("env".to_string(), env.to_string())].into());
        }
        api.create(&PostParams::default(), &obj).await.unwrap();
    }
    let names = |sel: &'static str| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels(sel))
                .await
                .unwrap()
                .items
                .iter()
                .map(|o| o.name_any())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("env=prod").await, ["a"]);
    assert_eq!(names("env!=prod").await, ["b", "c"]);
    assert_eq!(names("env in (prod,dev)").await, ["a", "b"]);
    assert_eq!(names("env notin (prod)").await, ["b", "c"]);
    assert_eq!(names("env").await, ["a", "b"]);
    assert_eq!(names("!env").await, ["c"]);
}

#[tokio::test]
async fn list_filters_by_selectable_fields_and_rejects_other_fields_with_400() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    for (name, f, c) in [("a", "fn-1", "aaaaaaa"), ("b", "fn-1", "bbbbbbb"), ("c", "fn-2", "aaaaaaa")] {
        api.create(&PostParams::default(), &ld(name, f, c)).await.unwrap();
    }
    let listed = api.list(&ListParams::default().fields("spec.functionName=fn-1,spec.commit=aaaaaaa")).await.unwrap();
    assert_eq!(listed.items.iter().map(|o| o.name_any()).collect::<Vec<_>>(), ["a"]);
    let by_name = api.list(&ListParams::default().fields("metadata.name!=a")).await.unwrap();
    assert_eq!(by_name.items.len(), 2);
    let s = status_of(api.list(&ListParams::default().fields("spec.replicas=1")).await);
    assert_eq!((s.code, s.message.as_str()), (400, "field label not supported: spec.replicas"));
}

#[tokio::test]
async fn all_namespaces_list_returns_objects_from_every_namespace() {
    let (_server, client) = setup().await;
    create_namespace(&client, "team-b").await;
    lds(&client, "default").create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    lds(&client, "team-b").create(&PostParams::default(), &ld("b", "fn", "abc1234")).await.unwrap();
    let all: Api<LambdaDeployment> = Api::all(client.clone());
    let listed = all.list(&ListParams::default()).await.unwrap();
    let found: Vec<_> = listed.items.iter().map(|o| (o.namespace().unwrap(), o.name_any())).collect();
    assert_eq!(found, [("default".to_string(), "a".to_string()), ("team-b".into(), "b".into())]);
}

#[tokio::test]
async fn table_output_carries_the_printer_columns() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn-a", "abc1234")).await.unwrap();
    api.patch_status("a", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Deployed"}})))
        .await
        .unwrap();
    let table = raw_get(
        &client,
        "/apis/lambda-deployer.dev/v1/lambdadeployments?limit=500",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .await;
    assert_eq!(table["kind"], "Table");
    let headers: Vec<&str> =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(headers, ["Name", "Function", "Commit", "Phase", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells.as_array().unwrap()[..4], [json!("a"), json!("fn-a"), json!("abc1234"), json!("Deployed")]);
    assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "default");
}

#[tokio::test]
async fn watch_streams_added_modified_deleted_and_bookmarks() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    let start = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let stream = api.watch(&WatchParams::default().timeout(20), &start).await.unwrap();
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut seen = vec![];
    let mut stream = stream.boxed();
    let collected = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            seen.push(match ev {
                WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
                WatchEvent::Modified(o) => format!("MODIFIED {}", o.spec.replicas.unwrap_or(0)),
                WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
                WatchEvent::Bookmark(_) => "BOOKMARK".into(),
                WatchEvent::Error(e) => format!("ERROR {}", e.code),
            });
            if seen.last().is_some_and(|s| s == "BOOKMARK") {
                break;
            }
        }
    })
    .await;
    assert!(collected.is_ok(), "watch produced {seen:?} and then stalled");
    assert_eq!(seen, ["ADDED a", "MODIFIED 3", "DELETED a", "BOOKMARK"]);
}

#[tokio::test]
async fn compacted_resource_versions_get_410_for_watches_and_list_continuations() {
    let (server, client) = setup().await;
    let api = lds(&client, "default");
    for name in ["a", "b"] {
        api.create(&PostParams::default(), &ld(name, "fn", "abc1234")).await.unwrap();
    }
    let first_page = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = first_page.metadata.continue_.expect("a second page");
    for i in 0..2100 {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": "default"}});
        server.insert_raw(obj).unwrap();
    }
    let s = status_of(api.list(&ListParams::default().limit(1).continue_token(&token)).await);
    assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
    let mut stream = api.watch(&WatchParams::default(), "1").await.unwrap().boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.unwrap().unwrap();
    match first {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn events_written_as_events_k8s_io_are_readable_as_core_events() {
    let (_server, client) = setup().await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "a.1"},
        "eventTime": "2026-11-26T10:00:00.000000Z",
        "reportingController": "lambda-deployer.dev/deployer",
        "reportingInstance": "deployer-1",
        "action": "Deploy", "reason": "Deployed", "type": "Normal", "note": "deployed abc1234",
        "regarding": {"apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment", "name": "a", "namespace": "default"},
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let listed = core.list(&ListParams::default().fields("involvedObject.name=a")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].message.as_deref(), Some("deployed abc1234"));
    assert_eq!(listed.items[0].involved_object.kind.as_deref(), Some("LambdaDeployment"));
}

#[tokio::test]
async fn deleting_the_crd_stops_serving_its_resources() {
    let (_server, client) = setup().await;
    lds(&client, "default").create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("lambdadeployments.lambda-deployer.dev", &DeleteParams::default()).await.unwrap();
    let s = status_of(lds(&client, "default").list(&ListParams::default()).await);
    assert_eq!(s.code, 404);
    crds.create(&PostParams::default(), &serde_json::from_value(crd()).unwrap()).await.unwrap();
    assert!(
        lds(&client, "default").list(&ListParams::default()).await.unwrap().items.is_empty(),
        "objects went with the CRD"
    );
}

/// An EKS token the way aws-iam-authenticator clients build it: a presigned STS GetCallerIdentity URL.
const STS_URL: &str = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15";

fn eks_token(id: &AwsIdentity, secret: &str, cluster: &str, at: SystemTime) -> String {
    eks_token_for(STS_URL, id, secret, cluster, at)
}

/// Assumed-role credentials (the deployer's) carry a session token, which ends up in the signed query.
fn eks_token_for(url: &str, id: &AwsIdentity, secret: &str, cluster: &str, at: SystemTime) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
    let session = id.caller_arn.contains(":assumed-role/").then(|| "FwoGZXIvYXdzEB4aD+session/token==".to_string());
    let creds = aws_credential_types::Credentials::new(&id.access_key_id, secret, session, None, "test");
    let identity: aws_smithy_runtime_api::client::identity::Identity = creds.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(identity::REGION)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable =
        SignableRequest::new("GET", url, [("x-k8s-aws-id", cluster)].into_iter(), SignableBody::Bytes(&[])).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().uri(url).body(()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    format!("k8s-aws-v1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(req.uri().to_string()))
}

fn valid_token(id: &AwsIdentity) -> String {
    eks_token(id, &id.secret_access_key, identity::CLUSTER_NAME, SystemTime::now())
}

/// What `crds/rbac.yaml` grants the deployer's group.
async fn grant_deployer_rbac(admin: &Client) {
    let rbac = |plural: &str| {
        let gvk = GroupVersionKind::gvk(
            "rbac.authorization.k8s.io",
            "v1",
            if plural == "clusterroles" { "ClusterRole" } else { "ClusterRoleBinding" },
        );
        Api::<DynamicObject>::all_with(admin.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural))
    };
    let role: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "lambda-deployer"},
        "rules": [
            {"apiGroups": ["lambda-deployer.dev"], "resources": ["lambdadeployments"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["lambda-deployer.dev"], "resources": ["lambdadeployments/status"], "verbs": ["patch", "update"]},
            {"apiGroups": ["events.k8s.io", ""], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    }))
    .unwrap();
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "lambda-deployer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lambda-deployer"},
        "subjects": [{"kind": "Group", "name": identity::DEPLOYER_GROUP, "apiGroup": "rbac.authorization.k8s.io"}],
    }))
    .unwrap();
    rbac("clusterroles").create(&PostParams::default(), &role).await.unwrap();
    rbac("clusterrolebindings").create(&PostParams::default(), &binding).await.unwrap();
}

#[tokio::test]
async fn deployer_eks_token_gets_exactly_the_rights_its_cluster_role_grants() {
    let (server, admin) = setup().await;
    lds(&admin, "default").create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let deployer = client_with_token(&server, &valid_token(&AwsIdentity::deployer())).await;
    let all: Api<LambdaDeployment> = Api::all(deployer.clone());
    let s = status_of(all.list(&ListParams::default()).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "lambdadeployments.lambda-deployer.dev is forbidden: User \"lambda-deployer\" cannot list resource \
         \"lambdadeployments\" in API group \"lambda-deployer.dev\" at the cluster scope"
    );

    grant_deployer_rbac(&admin).await;
    assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 1);
    let api = lds(&deployer, "default");
    api.patch_status("a", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Deployed"}})))
        .await
        .unwrap();
    let s = status_of(api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await);
    assert_eq!(
        s.message,
        "lambdadeployments.lambda-deployer.dev \"a\" is forbidden: User \"lambda-deployer\" cannot patch resource \
         \"lambdadeployments\" in API group \"lambda-deployer.dev\" in the namespace \"default\""
    );
    let user = server.requests().iter().rev().find(|r| r.verb == "patch").map(|r| r.user.clone());
    assert_eq!(user.as_deref(), Some("lambda-deployer"));
}

#[tokio::test]
async fn outsider_with_valid_credentials_but_no_rbac_gets_403() {
    let (server, _admin) = setup().await;
    let outsider = client_with_token(&server, &valid_token(&AwsIdentity::outsider())).await;
    let s = status_of(lds(&outsider, "default").get("a").await);
    assert_eq!(
        s.message,
        "lambdadeployments.lambda-deployer.dev \"a\" is forbidden: User \"outsider\" cannot get resource \
         \"lambdadeployments\" in API group \"lambda-deployer.dev\" in the namespace \"default\""
    );
}

#[tokio::test]
async fn role_binding_grants_only_in_its_namespace() {
    let (server, admin) = setup().await;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "reader", "namespace": "default"},
        "rules": [{"apiGroups": ["lambda-deployer.dev"], "resources": ["lambdadeployments"], "verbs": ["list"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "outsider-reads", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "User", "name": "outsider", "apiGroup": "rbac.authorization.k8s.io"}]});
    for (obj, plural) in [(role, "roles"), (binding, "rolebindings")] {
        let gvk = GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", obj["kind"].as_str().unwrap());
        let api = Api::<DynamicObject>::namespaced_with(
            admin.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        );
        api.create(&PostParams::default(), &serde_json::from_value(obj).unwrap()).await.unwrap();
    }
    let outsider = client_with_token(&server, &valid_token(&AwsIdentity::outsider())).await;
    lds(&outsider, "default").list(&ListParams::default()).await.unwrap();
    let s = status_of(lds(&outsider, "kube-system").list(&ListParams::default()).await);
    assert_eq!(s.code, 403);
}

async fn auth_status(server: &ApiServer, token: &str) -> u16 {
    let client = client_with_token(server, token).await;
    status_of(lds(&client, "default").list(&ListParams::default()).await).code
}

#[tokio::test]
async fn eks_token_signed_with_a_wrong_secret_gets_401() {
    let (server, _) = setup().await;
    let id = AwsIdentity::deployer();
    let token = eks_token(&id, "not-the-secret", identity::CLUSTER_NAME, SystemTime::now());
    assert_eq!(auth_status(&server, &token).await, 401);
}

#[tokio::test]
async fn eks_token_made_for_another_cluster_gets_401() {
    let (server, _) = setup().await;
    let id = AwsIdentity::deployer();
    let token = eks_token(&id, &id.secret_access_key, "some-other-cluster", SystemTime::now());
    assert_eq!(auth_status(&server, &token).await, 401);
}

#[tokio::test]
async fn eks_token_older_than_15_minutes_gets_401() {
    let (server, _) = setup().await;
    let id = AwsIdentity::deployer();
    let old = SystemTime::now() - Duration::from_secs(16 * 60);
    assert_eq!(auth_status(&server, &eks_token(&id, &id.secret_access_key, identity::CLUSTER_NAME, old)).await, 401);
    let recent = SystemTime::now() - Duration::from_secs(14 * 60);
    let token = eks_token(&id, &id.secret_access_key, identity::CLUSTER_NAME, recent);
    assert_eq!(auth_status(&server, &token).await, 403, "a 14-minute-old token still authenticates");
}

#[tokio::test]
async fn malformed_or_unmapped_tokens_get_401_while_the_global_sts_endpoint_is_accepted() {
    let (server, _) = setup().await;
    let admin_aws = valid_token(&AwsIdentity::admin());
    assert_eq!(auth_status(&server, &admin_aws).await, 401, "valid credentials without an access entry");
    let id = AwsIdentity::deployer();
    let extra = eks_token_for(
        &format!("{STS_URL}&Extra=1"),
        &id,
        &id.secret_access_key,
        identity::CLUSTER_NAME,
        SystemTime::now(),
    );
    assert_eq!(auth_status(&server, &extra).await, 401, "a signed but non-whitelisted query parameter");
    let wrong_action = STS_URL.replace("GetCallerIdentity", "AssumeRole");
    let action = eks_token_for(&wrong_action, &id, &id.secret_access_key, identity::CLUSTER_NAME, SystemTime::now());
    assert_eq!(auth_status(&server, &action).await, 401, "not GetCallerIdentity");
    let global = "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15";
    let global = eks_token_for(global, &id, &id.secret_access_key, identity::CLUSTER_NAME, SystemTime::now());
    assert_eq!(auth_status(&server, &global).await, 403, "the global STS endpoint is accepted (then RBAC denies)");
    assert_eq!(auth_status(&server, "k8s-aws-v1.bm90LWEtdXJs").await, 401);
    assert_eq!(auth_status(&server, "random-token").await, 401);
    let client = client_with_token(&server, "random-token").await;
    let s = status_of(lds(&client, "default").list(&ListParams::default()).await);
    assert_eq!((s.reason.as_str(), s.message.as_str()), ("Unauthorized", "Unauthorized"));
}

#[tokio::test]
async fn request_log_counts_calls_and_status_writes() {
    let (server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    server.clear_requests();
    api.list(&ListParams::default().fields("spec.functionName=fn")).await.unwrap();
    api.patch_status("a", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Deployed"}})))
        .await
        .unwrap();
    let log = server.requests();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].verb.as_str(), log[0].resource.as_str(), log[0].status), ("list", "lambdadeployments", 200));
    assert!(log[0].query.contains("fieldSelector"));
    assert!(log[1].is_status_write());
    assert_eq!(
        (log[1].namespace.as_str(), log[1].name.as_str(), log[1].user.as_str()),
        ("default", "a", "kubernetes-admin")
    );
}

#[tokio::test]
async fn injected_conflicts_hit_only_the_next_status_writes() {
    let (server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    server.inject(KubeFault::status(409).on_status_writes("lambdadeployments").times(2));
    let (pp, patch) = (PatchParams::default(), Patch::Merge(json!({"status": {"phase": "Deployed"}})));
    let write = || api.patch_status("a", &pp, &patch);
    api.get("a").await.unwrap();
    assert_eq!(status_of(write().await).code, 409);
    assert_eq!(status_of(write().await).code, 409);
    write().await.unwrap();
    let codes: Vec<u16> = server.requests().iter().filter(|r| r.is_status_write()).map(|r| r.status).collect();
    assert_eq!(codes, [409, 409, 200]);
}

#[tokio::test]
async fn probabilistic_faults_repeat_with_the_same_seed() {
    let (server, client) = setup().await;
    let api = lds(&client, "default");
    let mut runs = vec![];
    for _ in 0..2 {
        server.clear_faults();
        server.inject(KubeFault::status(500).on_verbs(&["list"]).with_probability(0.3, 7));
        let mut outcome = vec![];
        for _ in 0..20 {
            outcome.push(api.list(&ListParams::default()).await.is_ok());
        }
        runs.push(outcome);
    }
    assert_eq!(runs[0], runs[1]);
    let failures = runs[0].iter().filter(|ok| !**ok).count();
    assert!((1..20).contains(&failures), "{failures} of 20 failed");
}

#[tokio::test]
async fn faults_can_be_scripted_over_http_and_add_latency() {
    let (server, client) = setup().await;
    let fault = json!({"verbs": ["get"], "resource": "lambdadeployments", "latencyMs": 300, "times": 1});
    let req = http::Request::post("/_testbed/faults").body(serde_json::to_vec(&fault).unwrap()).unwrap();
    client.request_text(req).await.expect("fault accepted");
    let api = lds(&client, "default");
    let started = std::time::Instant::now();
    let _ = api.get_opt("a").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = std::time::Instant::now();
    let _ = api.get_opt("a").await;
    assert!(started.elapsed() < Duration::from_millis(300), "the fault fired once");
    assert!(server.requests().iter().all(|r| !r.path.starts_with("/_testbed")));
}

#[tokio::test]
async fn metadata_only_lists_return_partial_object_metadata() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let listed = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].name_any(), "a");
    assert_eq!(listed.items[0].types.as_ref().map(|t| t.kind.as_str()), Some("PartialObjectMetadata"));
}

#[tokio::test]
async fn delete_collection_removes_only_matching_objects() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    for (name, f) in [("a", "fn-1"), ("b", "fn-1"), ("c", "fn-2")] {
        api.create(&PostParams::default(), &ld(name, f, "abc1234")).await.unwrap();
    }
    api.delete_collection(&DeleteParams::default(), &ListParams::default().fields("spec.functionName=fn-1"))
        .await
        .unwrap();
    let left: Vec<String> =
        api.list(&ListParams::default()).await.unwrap().items.iter().map(|o| o.name_any()).collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn generate_name_and_dry_run_behave_like_kube_apiserver() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    let mut obj = ld("", "fn", "abc1234");
    obj.metadata.name = None;
    obj.metadata.generate_name = Some("deploy-".into());
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.name_any().starts_with("deploy-") && created.name_any().len() == "deploy-".len() + 5);
    let dry = PostParams { dry_run: true, ..Default::default() };
    api.create(&dry, &ld("ghost", "fn", "abc1234")).await.unwrap();
    assert!(api.get_opt("ghost").await.unwrap().is_none(), "dry run stores nothing");
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_objects_but_default_namespaces_are_protected() {
    let (_server, client) = setup().await;
    let namespaces = create_namespace(&client, "team-b").await;
    lds(&client, "team-b").create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    namespaces.delete("team-b", &DeleteParams::default()).await.unwrap();
    let all: Api<LambdaDeployment> = Api::all(client.clone());
    assert!(all.list(&ListParams::default()).await.unwrap().items.is_empty());
    let s = status_of(namespaces.delete("default", &DeleteParams::default()).await);
    assert_eq!(
        (s.code, s.message.as_str()),
        (403, "namespaces \"default\" is forbidden: this namespace may not be deleted")
    );
}

#[tokio::test]
async fn replacing_a_crd_with_itself_changes_nothing() {
    let (_server, client) = setup().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let current = crds.get("lambdadeployments.lambda-deployer.dev").await.unwrap();
    let established =
        current.status.as_ref().and_then(|s| s.conditions.as_ref()).map(|c| c.iter().any(|c| c.type_ == "Established"));
    assert_eq!(established, Some(true));
    let replaced =
        crds.replace("lambdadeployments.lambda-deployer.dev", &PostParams::default(), &current).await.unwrap();
    assert_eq!(replaced.resource_version(), current.resource_version());
}

#[tokio::test]
async fn the_admin_can_impersonate_to_check_rbac_but_others_cannot() {
    let (server, admin) = setup().await;
    grant_deployer_rbac(&admin).await;
    let as_deployer = |groups: &[&str]| {
        let mut req =
            http::Request::get("/apis/lambda-deployer.dev/v1/lambdadeployments").header("impersonate-user", "someone");
        for g in groups {
            req = req.header("impersonate-group", *g);
        }
        req.body(vec![]).unwrap()
    };
    admin.request::<Value>(as_deployer(&[identity::DEPLOYER_GROUP])).await.unwrap();
    assert_eq!(status_of(admin.request::<Value>(as_deployer(&[])).await).code, 403);
    let outsider = client_with_token(&server, &valid_token(&AwsIdentity::outsider())).await;
    let s = status_of(outsider.request::<Value>(as_deployer(&[identity::DEPLOYER_GROUP])).await);
    assert_eq!(
        s.message,
        "users \"someone\" is forbidden: User \"outsider\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
}

#[tokio::test]
async fn malformed_labels_are_rejected_with_422() {
    let (_server, client) = setup().await;
    let mut obj = ld("a", "fn", "abc1234");
    obj.metadata.labels = Some([("commit".to_string(), "not valid!".to_string())].into());
    let s = status_of(lds(&client, "default").create(&PostParams::default(), &obj).await);
    assert_eq!(s.code, 422);
    assert!(s.message.starts_with("LambdaDeployment.lambda-deployer.dev \"a\" is invalid: metadata.labels: Invalid value: \"not valid!\": a valid label must be"), "{}", s.message);
}

#[tokio::test]
async fn a_selector_watch_sees_objects_enter_and_leave_the_selection() {
    let (_server, client) = setup().await;
    let api = lds(&client, "default");
    api.create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let start = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default().labels("stage=live").timeout(20), &start).await.unwrap().boxed();
    let label = |v: Option<&str>| Patch::Merge(json!({"metadata": {"labels": {"stage": v}}}));
    api.patch("a", &PatchParams::default(), &label(Some("live"))).await.unwrap();
    api.patch("a", &PatchParams::default(), &label(Some("draft"))).await.unwrap();
    api.patch("a", &PatchParams::default(), &label(None)).await.unwrap();
    let mut seen = vec![];
    let kinds = tokio::time::timeout(Duration::from_secs(10), async {
        while seen.len() < 2 {
            match stream.try_next().await.unwrap() {
                Some(WatchEvent::Added(_)) => seen.push("ADDED"),
                Some(WatchEvent::Deleted(_)) => seen.push("DELETED"),
                Some(WatchEvent::Modified(_)) => seen.push("MODIFIED"),
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    assert!(kinds.is_ok(), "saw only {seen:?}");
    assert_eq!(seen, ["ADDED", "DELETED"]);
}

#[tokio::test]
async fn events_k8s_io_events_missing_required_fields_get_422() {
    let (_server, client) = setup().await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let fields_missing = |event: Value| {
        let events = events.clone();
        async move {
            let s = status_of(events.create(&PostParams::default(), &serde_json::from_value(event).unwrap()).await);
            assert_eq!(s.code, 422);
            s.details.unwrap().causes.into_iter().map(|c| c.field).collect::<Vec<_>>()
        }
    };
    let mut event = json!({
        "metadata": {"name": "b.1"},
        "reason": "Deployed", "type": "Normal", "note": "no action or reporter",
        "regarding": {"kind": "LambdaDeployment", "name": "a", "namespace": "default"},
    });
    assert_eq!(fields_missing(event.clone()).await, ["eventTime"]);
    event["eventTime"] = json!("2026-11-26T10:00:00.000000Z");
    assert_eq!(fields_missing(event).await, ["reportingController", "reportingInstance", "action"]);
}

#[tokio::test]
async fn a_crd_update_that_serves_a_new_version_serves_the_same_objects_under_it() {
    let (_server, client) = setup().await;
    lds(&client, "default").create(&PostParams::default(), &ld("a", "fn", "abc1234")).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut v2 = crd()["spec"]["versions"][0].clone();
    v2["name"] = json!("v2");
    v2["storage"] = json!(false);
    let patch = json!([{"op": "add", "path": "/spec/versions/-", "value": v2}]);
    crds.patch(
        "lambdadeployments.lambda-deployer.dev",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(patch).unwrap()),
    )
    .await
    .unwrap();
    let gvk = GroupVersionKind::gvk("lambda-deployer.dev", "v2", "LambdaDeployment");
    let v2_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk(&gvk));
    let obj = v2_api.get("a").await.unwrap();
    assert_eq!(obj.types.unwrap().api_version, "lambda-deployer.dev/v2");
    let group = raw_get(&client, "/apis/lambda-deployer.dev", "application/json").await;
    assert_eq!(group["versions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_rule_with_resource_names_grants_only_those_objects() {
    let (server, admin) = setup().await;
    let api = lds(&admin, "default");
    for name in ["mine", "theirs"] {
        api.create(&PostParams::default(), &ld(name, "fn", "abc1234")).await.unwrap();
    }
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "one-ld"},
        "rules": [{"apiGroups": ["lambda-deployer.dev"], "resources": ["lambdadeployments"], "resourceNames": ["mine"], "verbs": ["get", "list"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "one-ld"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "one-ld"},
        "subjects": [{"kind": "User", "name": "outsider", "apiGroup": "rbac.authorization.k8s.io"}]});
    for (obj, plural) in [(role, "clusterroles"), (binding, "clusterrolebindings")] {
        let gvk = GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", obj["kind"].as_str().unwrap());
        let rbac = Api::<DynamicObject>::all_with(admin.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural));
        rbac.create(&PostParams::default(), &serde_json::from_value(obj).unwrap()).await.unwrap();
    }
    let outsider = lds(&client_with_token(&server, &valid_token(&AwsIdentity::outsider())).await, "default");
    outsider.get("mine").await.unwrap();
    assert_eq!(status_of(outsider.get("theirs").await).code, 403);
    assert_eq!(status_of(outsider.list(&ListParams::default()).await).code, 403, "a list has no name to match");
}

#[tokio::test]
async fn duplicate_items_in_a_set_list_get_422() {
    let (_server, client) = setup().await;
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "lambda-deployer.dev/v1", "kind": "LambdaDeployment", "metadata": {"name": "a"},
        "spec": {"functionName": "fn", "commit": "abc1234", "tags": ["x", "x"]},
    }))
    .unwrap();
    let s = status_of(dynamic_lds(&client, "default").create(&PostParams::default(), &obj).await);
    assert_eq!(
        s.message,
        "LambdaDeployment.lambda-deployer.dev \"a\" is invalid: spec.tags[1]: Duplicate value: \"x\""
    );
}

/// Creates a namespace as the admin; returns the namespaces API.
async fn create_namespace(client: &kube::Client, name: &str) -> Api<Namespace> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
        .await
        .unwrap();
    namespaces
}
