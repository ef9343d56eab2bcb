//! Scripted faults of the testbed API server as a kube-rs client meets them (without kube's own retries, as the
//! deployer runs), and the conditional status writes a client retrying through them relies on.

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};
use testbed::apiserver::{ApiServer, ApiServerOptions, KubeFault, RequestRecord};

const CONFLICT: &str = "Operation cannot be fulfilled on lambdadeployments.lambda-deployer.dev \"a\": the object has \
                        been modified; please apply your changes to the latest version and try again";

fn crd() -> Value {
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "lambdadeployments.lambda-deployer.dev"},
        "spec": {
            "group": "lambda-deployer.dev",
            "scope": "Namespaced",
            "names": {"plural": "lambdadeployments", "singular": "lambdadeployment", "kind": "LambdaDeployment"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": open, "status": open}}},
            }],
        },
    })
}

/// An admin client that does not retry by itself; `tune` adjusts its config (timeouts, kube's retries).
async fn client_with(server: &ApiServer, tune: impl FnOnce(&mut Config)) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).expect("kubeconfig parses");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    config.default_retry = false;
    tune(&mut config);
    Client::try_from(config).expect("client")
}

/// A server with the CRD installed, an admin client, and object "a" in default.
async fn setup() -> (ApiServer, Client, DynamicObject) {
    let server = ApiServer::start(ApiServerOptions::default()).await.expect("server starts");
    let client = client_with(&server, |_| {}).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &serde_json::from_value(crd()).expect("crd")).await.expect("crd created");
    let created = lds(&client).create(&PostParams::default(), &ld("a")).await.expect("created");
    server.clear_requests();
    (server, client, created)
}

fn lds(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("lambda-deployer.dev", "v1", "LambdaDeployment");
    Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk(&gvk))
}

fn ld(name: &str) -> DynamicObject {
    let gvk = GroupVersionKind::gvk("lambda-deployer.dev", "v1", "LambdaDeployment");
    DynamicObject::new(name, &ApiResource::from_gvk(&gvk))
        .data(json!({"spec": {"functionName": "fn", "commit": "abc1234"}}))
}

fn phase(obj: &DynamicObject) -> Option<&str> {
    obj.data["status"]["phase"].as_str()
}

fn rv(obj: &DynamicObject) -> u64 {
    obj.resource_version().expect("resourceVersion").parse().expect("numeric resourceVersion")
}

/// The Status of a failed call.
fn status_of<T: std::fmt::Debug>(r: kube::Result<T>) -> Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A call that got no HTTP response at all.
fn transport_error<T: std::fmt::Debug>(r: kube::Result<T>) -> kube::Error {
    match r {
        Err(kube::Error::Api(s)) => panic!("expected no response, got the Status {s:?}"),
        Err(e) => e,
        Ok(v) => panic!("expected no response, got {v:?}"),
    }
}

/// Whether the error comes from the client's own timeout.
fn timed_out(e: &kube::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        source = err.source();
    }
    false
}

/// A status merge patch, conditional when it carries a resourceVersion.
fn phase_patch(resource_version: Option<String>, phase: &str) -> Patch<Value> {
    let mut patch = json!({"status": {"phase": phase}});
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    Patch::Merge(patch)
}

/// The logged requests on lambdadeployments with this verb, waiting for one to be logged (a request the client gave up
/// on is logged when the server lets go of it).
async fn logged(server: &ApiServer, verb: &str) -> Vec<RequestRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits: Vec<RequestRecord> =
            server.requests().into_iter().filter(|r| r.resource == "lambdadeployments" && r.verb == verb).collect();
        if !hits.is_empty() || Instant::now() > deadline {
            return hits;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_status_patch_answered_500_after_it_was_applied_is_stored_and_a_retry_with_the_old_resource_version_gets_409()
{
    let (server, client, created) = setup().await;
    let api = lds(&client);
    server.inject(KubeFault::status(500).on_status_writes("lambdadeployments").after_apply().times(1));
    let patch = phase_patch(created.resource_version(), "Deployed");
    let s = status_of(api.patch_status("a", &PatchParams::default(), &patch).await);
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    let stored = api.get("a").await.unwrap();
    assert_eq!(phase(&stored), Some("Deployed"), "the write took effect although the client saw 500");
    assert!(rv(&stored) > rv(&created));
    let s = status_of(api.patch_status("a", &PatchParams::default(), &patch).await);
    assert_eq!((s.code, s.reason.as_str(), s.message.as_str()), (409, "Conflict", CONFLICT));
    let codes: Vec<u16> = server.requests().iter().filter(|r| r.is_status_write()).map(|r| r.status).collect();
    assert_eq!(codes, [500, 409]);
}

#[tokio::test]
async fn a_fault_without_after_apply_answers_before_anything_is_stored() {
    let (server, client, created) = setup().await;
    let api = lds(&client);
    server.inject(KubeFault::status(500).on_status_writes("lambdadeployments").times(1));
    let s = status_of(api.patch_status("a", &PatchParams::default(), &phase_patch(None, "Deployed")).await);
    assert_eq!(s.code, 500);
    let stored = api.get("a").await.unwrap();
    assert_eq!((phase(&stored), rv(&stored)), (None, rv(&created)));
}

#[tokio::test]
async fn an_event_created_under_an_after_apply_timeout_exists_and_creating_it_again_gets_409_already_exists() {
    let (server, client, _) = setup().await;
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
    server.inject(KubeFault::status(504).on_verbs(&["create"]).on_resource("events").after_apply().times(1));
    let s = status_of(events.create(&PostParams::default(), &event).await);
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (504, "Timeout", "Timeout: request did not complete within requested timeout - context deadline exceeded")
    );
    assert_eq!(events.get("a.1").await.unwrap().note.as_deref(), Some("deployed abc1234"));
    let s = status_of(events.create(&PostParams::default(), &event).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert!(s.message.ends_with("\"a.1\" already exists"), "{}", s.message);
}

#[tokio::test]
async fn an_overload_429_is_plain_text_with_retry_after_as_kube_apiserver_flow_control_sends_it() {
    let (server, client, _) = setup().await;
    server.inject(KubeFault::status(429).on_verbs(&["list"]).retry_after(3));
    let path = "/apis/lambda-deployer.dev/v1/namespaces/default/lambdadeployments";
    let raw = client.send(http::Request::get(path).body(kube::client::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(raw.status(), 429);
    assert_eq!(raw.headers()["retry-after"], "3");
    assert_eq!(raw.headers()["content-type"], "text/plain; charset=utf-8");
    let body = raw.into_body().collect_bytes().await.unwrap();
    assert_eq!(&body[..], b"Too many requests, please try again later.\n");
    // kube-rs makes a Status of the text: the code and message, but no retryAfterSeconds (the header is not kept).
    let s = status_of(lds(&client).list(&ListParams::default()).await);
    assert_eq!((s.code, s.message.as_str()), (429, "Too many requests, please try again later."));
    assert_eq!(s.details, None);
}

#[tokio::test]
async fn kube_rs_own_retries_wait_out_the_retry_after_of_an_overload_429() {
    let (server, _, _) = setup().await;
    let retrying = client_with(&server, |c| c.default_retry = true).await;
    server.inject(KubeFault::status(429).on_verbs(&["list"]).times(1));
    let started = Instant::now();
    lds(&retrying).list(&ListParams::default()).await.expect("the retry succeeds");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}, not the default Retry-After: 1",
        started.elapsed()
    );
    let codes: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(codes, [429, 200]);
}

#[tokio::test]
async fn a_storage_initializing_429_carries_retry_after_seconds_that_kube_rs_surfaces() {
    let (server, client, _) = setup().await;
    server.inject(KubeFault::storage_initializing().on_verbs(&["get"]).retry_after(2));
    let s = status_of(lds(&client).get("a").await);
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (429, "TooManyRequests", "storage is (re)initializing")
    );
    assert_eq!(s.details.map(|d| d.retry_after_seconds), Some(2));
    let path = "/apis/lambda-deployer.dev/v1/namespaces/default/lambdadeployments/a";
    let raw = client.send(http::Request::get(path).body(kube::client::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(raw.headers()["retry-after"], "2");
}

#[tokio::test]
async fn a_503_can_be_injected_on_list_and_on_create_and_the_create_stores_nothing() {
    let (server, client, _) = setup().await;
    let api = lds(&client);
    server.inject(KubeFault::status(503).on_verbs(&["list", "create"]).times(2));
    for s in [
        status_of(api.list(&ListParams::default()).await),
        status_of(api.create(&PostParams::default(), &ld("b")).await),
    ] {
        assert_eq!(
            (s.code, s.reason.as_str(), s.message.as_str()),
            (503, "ServiceUnavailable", "the server is currently unable to handle the request")
        );
    }
    assert!(api.get_opt("b").await.unwrap().is_none());
}

#[tokio::test]
async fn a_reset_leaves_the_client_without_a_response_and_is_logged_with_status_0() {
    let (server, client, _) = setup().await;
    server.inject(KubeFault::reset().on_verbs(&["get"]).times(1));
    let started = Instant::now();
    let e = transport_error(lds(&client).get("a").await);
    assert!(!timed_out(&e) && started.elapsed() < Duration::from_secs(5), "dropped at once, not timed out: {e:?}");
    let gets: Vec<u16> = logged(&server, "get").await.iter().map(|r| r.status).collect();
    assert_eq!(gets, [0]);
    lds(&client).get("a").await.expect("the next request is answered");
}

#[tokio::test]
async fn a_create_reset_after_it_was_applied_is_stored() {
    let (server, client, _) = setup().await;
    let api = lds(&client);
    server.inject(KubeFault::reset().on_verbs(&["create"]).after_apply().times(1));
    transport_error(api.create(&PostParams::default(), &ld("b")).await);
    assert!(api.get_opt("b").await.unwrap().is_some());
    let s = status_of(api.create(&PostParams::default(), &ld("b")).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn a_hanging_request_ends_when_the_clients_own_timeout_fires_and_is_logged_with_status_0() {
    let (server, _, _) = setup().await;
    let impatient = client_with(&server, |c| c.read_timeout = Some(Duration::from_millis(300))).await;
    server.inject(KubeFault::hang(Duration::from_secs(3)).on_verbs(&["list"]));
    let started = Instant::now();
    let e = transport_error(lds(&impatient).list(&ListParams::default()).await);
    assert!(timed_out(&e), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "the client gave up before the server let go");
    let lists: Vec<u16> = logged(&server, "list").await.iter().map(|r| r.status).collect();
    assert_eq!(lists, [0]);
}

#[tokio::test]
async fn a_status_patch_that_hangs_after_it_was_applied_is_stored() {
    let (server, client, _) = setup().await;
    let impatient = client_with(&server, |c| c.read_timeout = Some(Duration::from_millis(300))).await;
    server.inject(KubeFault::hang(Duration::from_secs(3)).on_status_writes("lambdadeployments").after_apply());
    let e = transport_error(
        lds(&impatient).patch_status("a", &PatchParams::default(), &phase_patch(None, "Deployed")).await,
    );
    assert!(timed_out(&e), "{e:?}");
    assert_eq!(phase(&lds(&client).get("a").await.unwrap()), Some("Deployed"));
}

#[tokio::test]
async fn faults_posted_as_json_take_their_camel_case_names_and_a_misspelt_field_is_rejected() {
    let (server, client, _) = setup().await;
    let post = async |fault: Value| {
        client.request_text(http::Request::post("/_testbed/faults").body(fault.to_string().into_bytes()).unwrap()).await
    };
    let s = status_of(post(json!({"status": 500, "after_apply": true})).await);
    assert_eq!(s.code, 400);
    assert!(s.message.contains("unknown field `after_apply`"), "{}", s.message);
    for fault in [
        json!({"verbs": ["get"], "status": 429, "storageInitializing": true, "retryAfterSeconds": 4, "times": 1}),
        json!({"verbs": ["patch"], "subresource": "status", "status": 500, "afterApply": true, "times": 1}),
        json!({"verbs": ["delete"], "reset": true, "times": 1}),
        json!({"verbs": ["list"], "hangMs": 2000, "times": 1}),
    ] {
        post(fault).await.expect("fault accepted");
    }
    let api = lds(&client);
    assert_eq!(status_of(api.get("a").await).details.map(|d| d.retry_after_seconds), Some(4));
    status_of(api.patch_status("a", &PatchParams::default(), &phase_patch(None, "Deployed")).await);
    assert_eq!(phase(&api.get("a").await.unwrap()), Some("Deployed"));
    transport_error(api.delete("a", &Default::default()).await);
    let impatient = client_with(&server, |c| c.read_timeout = Some(Duration::from_millis(300))).await;
    assert!(timed_out(&transport_error(lds(&impatient).list(&ListParams::default()).await)));
}

/// A status write carrying a stale resourceVersion gets kube-apiserver's Conflict and stores nothing; with the
/// current one it succeeds and bumps the resourceVersion.
async fn status_write_is_conditional(write: impl AsyncFn(&Api<DynamicObject>, String) -> kube::Result<DynamicObject>) {
    let (_server, client, created) = setup().await;
    let api = lds(&client);
    let stale = created.resource_version().unwrap();
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
    let current = api.patch("a", &PatchParams::default(), &relabel).await.unwrap();
    let s = status_of(write(&api, stale).await);
    assert_eq!((s.code, s.reason.as_str(), s.message.as_str()), (409, "Conflict", CONFLICT));
    let unchanged = api.get("a").await.unwrap();
    assert_eq!((phase(&unchanged), rv(&unchanged)), (None, rv(&current)), "nothing stored");
    let written = write(&api, current.resource_version().unwrap()).await.unwrap();
    assert_eq!(phase(&written), Some("Deployed"));
    assert!(rv(&written) > rv(&current));
}

#[tokio::test]
async fn a_status_merge_patch_carrying_a_resource_version_is_conditional() {
    status_write_is_conditional(async |api, rv| {
        api.patch_status("a", &PatchParams::default(), &phase_patch(Some(rv), "Deployed")).await
    })
    .await;
}

#[tokio::test]
async fn a_status_json_patch_carrying_a_resource_version_is_conditional() {
    status_write_is_conditional(async |api, rv| {
        let ops = json!([
            {"op": "replace", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/status", "value": {"phase": "Deployed"}},
        ]);
        let patch: Patch<Value> = Patch::Json(serde_json::from_value(ops).unwrap());
        api.patch_status("a", &PatchParams::default(), &patch).await
    })
    .await;
}

#[tokio::test]
async fn a_status_update_carrying_a_resource_version_is_conditional() {
    status_write_is_conditional(async |api, rv| {
        let mut obj = api.get("a").await?;
        obj.metadata.resource_version = Some(rv);
        obj.data["status"] = json!({"phase": "Deployed"});
        api.replace_status("a", &PostParams::default(), &obj).await
    })
    .await;
}
