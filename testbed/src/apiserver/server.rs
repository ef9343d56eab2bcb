//! HTTPS serving, routing, authentication/authorization, applying scripted faults, the request log and watch streams.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::auth::{self, Attributes, Authenticator, User};
use super::errors::{ApiError, ApiResult};
use super::faults::{Answer, Faults};
use super::handlers::{self, Call, Reply};
use super::select::{FieldSelector, LabelSelector};
use super::store::{ResourceDef, Store, WatchEvent, to_served};
use super::table::{self, Shape};
use super::{KubeFault, RequestRecord, discovery};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (etcd's limit is about this size).
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Longest a watch stays open (kube-apiserver's default minimum request timeout is 30 min).
const MAX_WATCH_SECS: u64 = 1800;
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);
/// The request log keeps this many most recent requests (bounded memory for soak runs).
const MAX_LOGGED: usize = 200_000;

pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub auth: Authenticator,
    pub requests: Mutex<VecDeque<RequestRecord>>,
    pub faults: Mutex<Faults>,
    pub server_address: String,
    /// Every EKS bearer token that authenticated, so tests can look for them where they must never appear.
    pub eks_tokens: Mutex<std::collections::BTreeSet<String>>,
}

/// Locks, recovering from poisoning (a panicking handler must not take the server down with it).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private");
    for w in warnings {
        b = b.header("warning", format!("299 - {}", serde_json::to_string(w).unwrap_or_default()));
    }
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    b.body(Full::new(bytes).boxed()).unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_json(), &[]);
    if let Some(seconds) = e.retry_after {
        r.headers_mut().insert("retry-after", seconds.into());
    }
    r
}

/// kube-apiserver's flow-control rejection (APF, max-in-flight): `http.Error` with `Retry-After`, not a `Status`.
fn throttled(retry_after: u64) -> Response<Body> {
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .header("retry-after", retry_after)
        .body(Full::new(Bytes::from_static(b"Too many requests, please try again later.\n")).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    OpenApiRoot,
    OpenApiDoc(String, String),
    Resource(ResourcePath),
    Control(String),
    NotFound,
}

#[derive(Debug, Default, Clone)]
struct ResourcePath {
    group: String,
    version: String,
    namespace: String,
    plural: String,
    name: String,
    subresource: String,
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] | ["livez"] | ["readyz"] => Route::Health,
        ["_testbed", what] => Route::Control(what.to_string()),
        ["api"] => Route::CoreVersions,
        ["api", v] => Route::Resources(String::new(), v.to_string()),
        ["api", v, rest @ ..] => resource_path("", v, rest),
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::Resources(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => resource_path(g, v, rest),
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", "api", v] => Route::OpenApiDoc(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiDoc(g.to_string(), v.to_string()),
        _ => Route::NotFound,
    }
}

/// kube-apiserver's RequestInfo parsing: `namespaces/<ns>/<resource>/...`, except the namespace's own subresources.
fn resource_path(group: &str, version: &str, mut rest: &[&str]) -> Route {
    let mut namespace = String::new();
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 && !matches!(rest[2], "status" | "finalize") {
        namespace = rest[1].to_string();
        rest = &rest[2..];
    }
    if rest.is_empty() || rest.len() > 3 {
        return Route::NotFound;
    }
    Route::Resource(ResourcePath {
        group: group.into(),
        version: version.into(),
        namespace,
        plural: rest[0].into(),
        name: rest.get(1).map(|s| s.to_string()).unwrap_or_default(),
        subresource: rest.get(2).map(|s| s.to_string()).unwrap_or_default(),
    })
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

fn verb_for(method: &Method, rp: &ResourcePath, query: &HashMap<String, String>) -> &'static str {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), rp.name.is_empty()) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", true) => "create",
        ("PUT", false) => "update",
        ("PATCH", false) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        _ => "",
    }
}

/// Answers one request; an error closes the connection without a response (a fault's `reset` or `hang`).
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> io::Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let query = parse_query(&raw_query);
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (accept, content_type, user_agent) = (header("accept"), header("content-type"), header("user-agent"));
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(error_response(&ApiError::new(413, "RequestEntityTooLarge", "request body too large"))),
    };
    let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
    let user = shared.auth.authenticate(authorization, jiff::Timestamp::now());
    if let (Some(user), Some(token)) = (&user, authorization.and_then(|a| a.strip_prefix("Bearer ")))
        && !user.is_admin()
    {
        lock(&shared.eks_tokens).insert(token.trim().to_string());
    }
    let impersonated = impersonation(&parts.headers);
    let route = route(&path);

    if let Route::Control(what) = &route {
        return Ok(match &user {
            Some(u) if u.is_admin() => control(&shared, &method, what, &body),
            _ => error_response(&ApiError::unauthorized()),
        });
    }

    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: raw_query.clone(),
        verb: if method == Method::GET { "get".into() } else { method.as_str().to_lowercase() },
        user: user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| "system:anonymous".into()),
        ..Default::default()
    };
    let rp = match &route {
        Route::Resource(rp) => {
            record.verb = verb_for(&method, rp, &query).to_string();
            record.group = rp.group.clone();
            record.resource = rp.plural.clone();
            record.subresource = rp.subresource.clone();
            record.namespace = rp.namespace.clone();
            record.name = rp.name.clone();
            Some(rp.clone())
        }
        _ => None,
    };
    let mut logged = Logged { shared: shared.clone(), record };

    let response = match (&user, &route) {
        (_, Route::Version | Route::Health) => Ok(respond_plain(&route)),
        (None, _) => Ok(error_response(&ApiError::unauthorized())),
        (Some(user), _) if impersonated.is_some() && !user.is_admin() => {
            let as_user = impersonated.as_ref().map(|u| u.name.as_str()).unwrap_or_default();
            let message = format!(
                "users \"{as_user}\" is forbidden: User \"{}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
                user.name
            );
            Ok(error_response(&ApiError::forbidden(message, "", "users", as_user)))
        }
        (Some(user), _) => {
            // Admins may act as someone else (kubectl --as/--as-group), which is how RBAC is checked by hand.
            let user = impersonated.as_ref().unwrap_or(user);
            logged.record.user = user.name.clone();
            let ctx = Ctx {
                method: &method,
                query: &query,
                accept: &accept,
                content_type: &content_type,
                user_agent: &user_agent,
                body: &body,
            };
            let record = &logged.record;
            match admit(&shared, user, rp.as_ref(), record) {
                Err(e) => Ok(error_response(&e)),
                Ok(()) => {
                    let fault = lock(&shared.faults).fire(record);
                    let respond = || {
                        serve(&shared, user, &route, rp.as_ref(), record, ctx).unwrap_or_else(|e| error_response(&e))
                    };
                    under_fault(fault, record, respond).await
                }
            }
        }
    };
    logged.record.status = response.as_ref().map_or(0, |r| r.status().as_u16());
    response
}

/// A request's log entry, written when its handling ends: also when hyper drops the handler because the client went
/// away, with status 0 as for a connection a fault dropped.
struct Logged {
    shared: Arc<Shared>,
    record: RequestRecord,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let mut log = lock(&self.shared.requests);
        if log.len() >= MAX_LOGGED {
            log.pop_front();
        }
        log.push_back(std::mem::take(&mut self.record));
    }
}

/// Serves a request under the fault that fired for it, if any: its latency, then its answer instead of the response,
/// given before serving or, `after_apply`, once the request has taken effect.
async fn under_fault(
    fault: Option<KubeFault>,
    record: &RequestRecord,
    respond: impl FnOnce() -> Response<Body>,
) -> io::Result<Response<Body>> {
    let Some(fault) = fault else { return Ok(respond()) };
    if fault.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
    }
    let Some(answer) = fault.answer(record) else { return Ok(respond()) };
    if fault.after_apply {
        // The write is stored (and watchers see it); the client never gets this response.
        drop(respond());
    }
    match answer {
        Answer::Status(e) => Ok(error_response(&e)),
        Answer::Throttled { retry_after } => Ok(throttled(retry_after)),
        Answer::Drop(after) => {
            tokio::time::sleep(after).await;
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection dropped by a scripted fault"))
        }
    }
}

/// `Impersonate-User` / `Impersonate-Group` headers, as a user.
fn impersonation(headers: &http::HeaderMap) -> Option<User> {
    let name = headers.get("impersonate-user")?.to_str().ok()?.to_string();
    let mut groups: Vec<String> =
        headers.get_all("impersonate-group").iter().filter_map(|g| g.to_str().ok()).map(String::from).collect();
    groups.push("system:authenticated".into());
    Some(User { name, groups })
}

fn respond_plain(route: &Route) -> Response<Body> {
    match route {
        Route::Version => json_response(200, &discovery::version(), &[]),
        _ => Response::builder()
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(b"ok")).boxed())
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())),
    }
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    method: &'a Method,
    query: &'a HashMap<String, String>,
    accept: &'a str,
    content_type: &'a str,
    user_agent: &'a str,
    body: &'a Bytes,
}

/// What is checked before faults apply: a verb for the method, then RBAC. Non-resource URLs (discovery, OpenAPI) are
/// readable by every authenticated user, as system:discovery grants.
fn admit(shared: &Shared, user: &User, rp: Option<&ResourcePath>, record: &RequestRecord) -> ApiResult<()> {
    let Some(rp) = rp else { return Ok(()) };
    if record.verb.is_empty() {
        return Err(ApiError::method_not_allowed());
    }
    let attrs = Attributes {
        verb: record.verb.clone(),
        group: rp.group.clone(),
        resource: rp.plural.clone(),
        subresource: rp.subresource.clone(),
        namespace: rp.namespace.clone(),
        name: rp.name.clone(),
    };
    if !auth::authorize(&lock(&shared.store), user, &attrs) {
        let msg = auth::forbidden_message(user, &attrs);
        return Err(ApiError::forbidden(msg, &rp.group, &rp.plural, &rp.name));
    }
    Ok(())
}

fn serve(
    shared: &Shared,
    user: &User,
    route: &Route,
    rp: Option<&ResourcePath>,
    record: &RequestRecord,
    ctx: Ctx<'_>,
) -> ApiResult<Response<Body>> {
    let Some(rp) = rp else {
        if ctx.method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        let store = lock(&shared.store);
        let doc = match route {
            Route::CoreVersions => Some(discovery::core_versions(&shared.server_address)),
            Route::Groups => Some(discovery::group_list(&store)),
            Route::Group(g) => discovery::group(&store, g),
            Route::Resources(g, v) => discovery::resource_list(&store, g, v),
            Route::OpenApiRoot => Some(discovery::openapi_root(&store)),
            Route::OpenApiDoc(g, v) => discovery::openapi_doc(&store, g, v),
            _ => None,
        };
        return doc.map(|d| json_response(200, &d, &[])).ok_or_else(ApiError::not_found_path);
    };
    let def = lock(&shared.store).find_def(&rp.group, &rp.version, &rp.plural).ok_or_else(ApiError::not_found_path)?;
    check_scope(&def, rp)?;
    if !def.verbs.contains(&record.verb.as_str()) {
        return Err(ApiError::method_not_allowed());
    }
    if record.verb == "watch" {
        return watch(shared, def, rp, ctx.query, ctx.accept);
    }
    let call = Call {
        def,
        namespace: rp.namespace.clone(),
        name: rp.name.clone(),
        subresource: rp.subresource.clone(),
        query: ctx.query,
        user,
        user_agent: ctx.user_agent,
        accept: ctx.accept,
        content_type: ctx.content_type,
        body: ctx.body,
    };
    let mut store = lock(&shared.store);
    let Reply { code, body, warnings } = match record.verb.as_str() {
        "get" => handlers::get(&store, &call)?,
        "list" => handlers::list(&store, &call)?,
        "create" => handlers::create(&mut store, &call)?,
        "update" => handlers::update(&mut store, &call)?,
        "patch" => handlers::patch(&mut store, &call)?,
        "delete" => handlers::delete(&mut store, &call)?,
        "deletecollection" => handlers::delete_collection(&mut store, &call)?,
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(code, &body, &warnings))
}

/// Namespaced resources need a namespace for single objects; cluster-scoped ones must not have one.
fn check_scope(def: &ResourceDef, rp: &ResourcePath) -> ApiResult<()> {
    let status_ok = rp.subresource == "status" && def.status_subresource;
    let bad_sub = !(rp.subresource.is_empty() || status_ok);
    let bad_scope =
        if def.namespaced { !rp.name.is_empty() && rp.namespace.is_empty() } else { !rp.namespace.is_empty() };
    if bad_sub || bad_scope { Err(ApiError::not_found_path()) } else { Ok(()) }
}

fn control(shared: &Shared, method: &Method, what: &str, body: &Bytes) -> Response<Body> {
    let result: ApiResult<Value> = match (method.as_str(), what) {
        ("POST", "faults") => serde_json::from_slice::<KubeFault>(body)
            .map_err(|e| ApiError::bad_request(format!("bad fault: {e}")))
            .map(|f| {
                lock(&shared.faults).push(f);
                json!({"injected": true})
            }),
        ("DELETE", "faults") => {
            lock(&shared.faults).clear();
            Ok(json!({"cleared": true}))
        }
        ("POST", "raw") => serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("bad object: {e}")))
            .and_then(|obj| lock(&shared.store).insert_raw(obj).map_err(ApiError::bad_request)),
        ("GET", "requests") => Ok(serde_json::to_value(&*lock(&shared.requests)).unwrap_or_default()),
        ("DELETE", "requests") => {
            lock(&shared.requests).clear();
            Ok(json!({"cleared": true}))
        }
        _ => Err(ApiError::not_found_path()),
    };
    match result {
        Ok(v) => json_response(200, &v, &[]),
        Err(e) => error_response(&e),
    }
}

/// What a watcher wants to see.
struct WatchFilter {
    def: Arc<ResourceDef>,
    shape: Shape,
    include: String,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event this watcher sees, if any: a modification that moves an object into (out of) the selection is ADDED
    /// (DELETED), as kube-apiserver's watch cache reports it.
    fn event(&self, ev: &WatchEvent) -> Option<Bytes> {
        if ev.storage != self.def.storage || self.namespace.as_ref().is_some_and(|ns| *ns != ev.namespace) {
            return None;
        }
        let now = self.selects(&ev.object);
        let before = ev.previous.as_ref().is_some_and(|p| self.selects(p));
        let kind = match (ev.kind, before, now) {
            ("MODIFIED", false, true) => "ADDED",
            ("MODIFIED", true, false) => "DELETED",
            ("MODIFIED", false, false) => return None,
            (kind, _, true) => kind,
            _ => return None,
        };
        Some(self.line(kind, self.render(&ev.object)))
    }

    fn line(&self, kind: &str, object: Value) -> Bytes {
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// A stored object as the watcher asked for it (object, one-row Table, or metadata only).
    fn render(&self, stored: &Value) -> Value {
        let served = to_served(&self.def, stored.clone());
        match self.shape {
            Shape::Object => served,
            Shape::Metadata => table::partial(&served),
            Shape::Table => {
                let meta = json!({"resourceVersion": served["metadata"]["resourceVersion"]});
                table::table(&self.def, std::slice::from_ref(stored), &[served], meta, &self.include)
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line("BOOKMARK", json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta}))
    }

    fn gone(&self, message: String) -> Bytes {
        self.line("ERROR", ApiError::new(410, "Expired", message).to_json())
    }
}

/// `?watch=1`: replays history after `resourceVersion` (or the current objects as ADDED), then streams live events.
fn watch(
    shared: &Shared,
    def: Arc<ResourceDef>,
    rp: &ResourcePath,
    query: &HashMap<String, String>,
    accept: &str,
) -> ApiResult<Response<Body>> {
    let q = |k: &str| query.get(k).map(String::as_str);
    let filter = WatchFilter {
        labels: LabelSelector::parse(q("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(q("fieldSelector").unwrap_or_default(), &def)?,
        namespace: (def.namespaced && !rp.namespace.is_empty()).then(|| rp.namespace.clone()),
        def,
        shape: table::shape(accept),
        include: q("includeObject").unwrap_or("Metadata").to_string(),
    };
    let bookmarks = q("allowWatchBookmarks") == Some("true");
    let send_initial = q("sendInitialEvents") == Some("true");
    let timeout = q("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(MAX_WATCH_SECS).min(MAX_WATCH_SECS);
    let from: u64 = match q("resourceVersion").filter(|v| !v.is_empty()) {
        Some(v) => v.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
        None => 0,
    };

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut initial: Vec<Bytes> = vec![];
    let (live, mut last_rv) = {
        let store = lock(&shared.store);
        let current = store.current_rv();
        let mut expired = false;
        if from == 0 || send_initial {
            for (_, obj) in store.scan(&filter.def, filter.namespace.as_deref()) {
                if filter.selects(obj) {
                    initial.push(filter.line("ADDED", filter.render(obj)));
                }
            }
            if send_initial && bookmarks {
                initial.push(filter.bookmark(current, true));
            }
        } else if let Some(events) = store.events_since(from) {
            initial.extend(events.iter().filter_map(|e| filter.event(e)));
        } else {
            expired = true;
            initial.push(filter.gone(format!("too old resource version: {from} ({})", store.compacted() + 1)));
        }
        ((!expired).then(|| store.tx.subscribe()), current.max(from))
    };

    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let Some(mut live) = live else { return };
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            let line = tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => filter.bookmark(last_rv, false),
                ev = live.recv() => match ev {
                    Ok(ev) if ev.rv <= last_rv => continue,
                    Ok(ev) => {
                        last_rv = ev.rv;
                        match filter.event(&ev) {
                            Some(line) => line,
                            None => continue,
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(filter.gone(format!("too old resource version: {last_rv}"))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });

    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(StreamBody::new(stream).boxed())
        .map_err(|e| ApiError::internal(e.to_string()))
}
