//! The AWS fidelity and fault layer: one plain-HTTP endpoint on 127.0.0.1 (what `AWS_ENDPOINT_URL` points at).
//!
//! Requests are routed by their SigV4 credential scope's service and forwarded to moto (bodies streamed), in the
//! account their access key belongs to ([`accounts`]; moto keeps one state per account), except: a region the
//! testbed does not serve has no endpoint, and an expired session is refused as each protocol refuses it; Lambda's
//! control plane is served here ([`lambda`]) per account and region with AWS's contract (RevisionId, InProgress, S3
//! code, pagination, quotas, versions and weighted aliases, provisioned concurrency, cross-account denials), and so
//! are invocations, which report Lambda's CloudWatch metrics into moto ([`metrics`]); S3 requests to another
//! region's or another account's bucket are refused as S3 refuses them ([`s3`]); CloudWatch's CBOR protocol is
//! translated for moto ([`cloudwatch`]); STS GetCallerIdentity and AssumeRole are served here ([`sts`]); EKS
//! DescribeCluster for the testbed cluster answers with the Kubernetes testbed's endpoint and CA. Every request is
//! logged, and faults, simulated traffic and flapping alarms can be scripted — over HTTP under `/_testbed/`
//! ([`control`]) or with this module's Rust API. [`deliver_queue`] plays an SQS event source mapping.

mod accounts;
mod alarms;
mod calls;
mod cbor;
mod cloudwatch;
mod control;
mod eks;
mod faults;
mod lambda;
mod lambda_http;
mod metrics;
mod moto_client;
mod policy;
mod queue;
mod quota;
mod route;
mod s3;
mod sts;
mod traffic;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use accounts::Session;
pub use alarms::{Flap, InvalidFlap};
pub use calls::{Call, CallLog};
pub use faults::{CompetingChange, Fault, FaultAction, LastUpdateStatusReasonCode, Trigger};
pub use moto_client::MotoClient;
pub use queue::{DeliveryStats, InvalidQueue, QueueDelivery, deliver_queue};
pub use traffic::{InvalidTraffic, TrafficSummary, VersionCounts};

use crate::identity::AwsIdentity;
use accounts::{Accounts, Caller, Place, Refusal};
use lambda::{Lambda, UpdateFailure, UpdateTimes};
use moto_client::{Body, full};
use route::{credential_scope, form_pairs, param, s3_operation};

/// Settings that may change while the layer runs (`POST /_testbed/config` takes any subset of the fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LayerConfig {
    /// Lambda's request quotas; off = never 429 unless a fault says so.
    pub quotas: bool,
    pub get_function_per_second: f64,
    /// Shared by every Lambda control-plane operation except GetFunction.
    pub control_plane_per_second: f64,
    /// How many seconds' worth of requests each quota's bucket holds: the burst a caller that was idle may send at
    /// once. AWS documents rates, not bursts; one second is the token-bucket reading of "N requests per second".
    pub quota_burst_seconds: f64,
    /// How long LastUpdateStatus stays InProgress after UpdateFunctionCode/UpdateFunctionConfiguration: at least
    /// this long, plus a uniform draw in [0, `update_in_progress_jitter_ms`].
    pub update_in_progress_ms: u64,
    /// The width of that draw (0: every update takes `update_in_progress_ms`).
    pub update_in_progress_jitter_ms: u64,
    /// The seed of the generator those draws come from (setting the config restarts it).
    pub update_seed: u64,
    /// How long State stays Pending after CreateFunction.
    pub create_pending_ms: u64,
    /// How long after the end of its second an invocation's metrics become visible in CloudWatch (their timestamps
    /// stay the invocation's).
    pub metrics_delay_ms: u64,
    /// The seed of the generator that picks a weighted alias's version and scripted failures (setting the config
    /// restarts it).
    pub invoke_seed: u64,
}

impl Default for LayerConfig {
    /// AWS's documented quotas (GetFunction 100 req/s, other control-plane calls 15 req/s), updates that stay
    /// InProgress 1.5–4.5 s, as AWS shows for a small zip function, and metrics a minute late: "Lambda sends metric
    /// data to CloudWatch in 1-minute intervals" (Lambda developer guide, monitoring-metrics).
    fn default() -> Self {
        LayerConfig {
            quotas: true,
            get_function_per_second: 100.0,
            control_plane_per_second: 15.0,
            quota_burst_seconds: 1.0,
            update_in_progress_ms: 1_500,
            update_in_progress_jitter_ms: 3_000,
            update_seed: 1,
            create_pending_ms: 0,
            metrics_delay_ms: 60_000,
            invoke_seed: 1,
        }
    }
}

impl LayerConfig {
    /// For tests that need updates to settle quickly: InProgress a fixed 300 ms, metrics 1 s late; otherwise the
    /// defaults.
    pub fn fast() -> LayerConfig {
        LayerConfig {
            update_in_progress_ms: 300,
            update_in_progress_jitter_ms: 0,
            metrics_delay_ms: 1_000,
            ..LayerConfig::default()
        }
    }

    fn quotas(&self) -> quota::Quotas {
        quota::Quotas::new(self.get_function_per_second, self.control_plane_per_second, self.quota_burst_seconds)
    }

    fn update_times(&self) -> UpdateTimes {
        UpdateTimes::new(self.update_in_progress_ms, self.update_in_progress_jitter_ms, self.update_seed)
    }
}

/// The EKS cluster DescribeCluster should describe as the Kubernetes testbed.
#[derive(Clone, Debug)]
pub struct EksCluster {
    pub name: String,
    /// `https://127.0.0.1:PORT`
    pub endpoint: String,
    pub ca_pem: String,
}

pub struct AwsLayerOptions {
    pub listen: SocketAddr,
    /// `http://127.0.0.1:PORT` of a running moto_server.
    pub moto_url: String,
    pub config: LayerConfig,
    /// Who an access key belongs to, and so the account it acts in (sessions AssumeRole issues are added).
    pub identities: Vec<AwsIdentity>,
    pub eks_cluster: Option<EksCluster>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid fault: {0}")]
pub struct InvalidFault(pub String);

/// Handle to a running layer; cheap to clone; usable from any thread or runtime.
#[derive(Clone)]
pub struct AwsLayer {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    moto: MotoClient,
    lambda: Lambda,
    accounts: Accounts,
    buckets: Arc<s3::Buckets>,
    config: Mutex<LayerConfig>,
    /// Per account and region, made full as each is first used.
    quotas: Mutex<HashMap<Place, quota::Quotas>>,
    faults: Mutex<faults::FaultSet>,
    calls: Mutex<calls::Recorder>,
    metrics: metrics::Metrics,
    traffic: traffic::Traffic,
    flaps: alarms::Flaps,
    eks: Option<EksCluster>,
    started: Instant,
    /// The runtime the layer was started on: its background tasks run there, whoever asks for them.
    runtime: tokio::runtime::Handle,
    /// The accept loop and the metrics flusher.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// Locks ignoring poison: the data behind these locks stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AwsLayer {
    /// Binds `opts.listen` and serves on the current tokio runtime until [`AwsLayer::shutdown`] or the runtime ends.
    pub async fn start(opts: AwsLayerOptions) -> io::Result<AwsLayer> {
        let listener = TcpListener::bind(opts.listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let moto = MotoClient::new(&opts.moto_url);
        let accounts = Accounts::new(opts.identities);
        let buckets = Arc::new(s3::Buckets::new(moto.clone(), accounts.all()));
        let shared = Arc::new(Shared {
            url,
            lambda: Lambda::new(moto.clone(), buckets.clone(), opts.config.update_times(), opts.config.invoke_seed),
            moto,
            accounts,
            buckets,
            quotas: Mutex::default(),
            config: Mutex::new(opts.config),
            faults: Mutex::default(),
            calls: Mutex::default(),
            metrics: metrics::Metrics::default(),
            traffic: traffic::Traffic::default(),
            flaps: alarms::Flaps::default(),
            eks: opts.eks_cluster,
            started: Instant::now(),
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::default(),
        });
        let server = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let shared = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
        });
        let flusher = tokio::spawn(metrics::flush_forever(Arc::downgrade(&shared)));
        lock(&shared.tasks).extend([task.abort_handle(), flusher.abort_handle()]);
        tracing::info!(url = %shared.url, "AWS layer listening");
        Ok(AwsLayer { shared })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// A client for the moto behind the layer (unlogged, no faults).
    pub fn moto(&self) -> &MotoClient {
        &self.shared.moto
    }

    pub fn calls(&self) -> CallLog {
        lock(&self.shared.calls).snapshot()
    }

    pub fn clear_calls(&self) {
        lock(&self.shared.calls).clear();
    }

    pub fn inject(&self, fault: Fault) -> Result<(), InvalidFault> {
        lock(&self.shared.faults).inject(fault).map_err(InvalidFault)
    }

    pub fn faults(&self) -> Vec<Fault> {
        lock(&self.shared.faults).list()
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    pub fn config(&self) -> LayerConfig {
        lock(&self.shared.config).clone()
    }

    /// Replaces the settings; every account's and region's quota buckets restart full at the new rates, the
    /// update-time and invocation generators from their seeds.
    pub fn set_config(&self, config: LayerConfig) {
        lock(&self.shared.quotas).clear();
        self.shared.lambda.set_generators(config.update_times(), config.invoke_seed);
        *lock(&self.shared.config) = config;
    }

    /// Every CodeSha256 the function (of the deployer's account, main region) was ever set to, oldest first (None:
    /// no such function); a failed update's code is followed by the previous code it restored.
    pub fn history(&self, function: &str) -> Option<Vec<String>> {
        self.shared.lambda.history(&Place::default(), function)
    }

    /// [`AwsLayer::history`] of a function in `account` and `region`.
    pub fn history_in(&self, account: &str, region: &str, function: &str) -> Option<Vec<String>> {
        self.shared.lambda.history(&Place::new(account, region), function)
    }

    /// The sessions STS AssumeRole issued, by access key; `expired` as of now.
    pub fn sessions(&self) -> Vec<Session> {
        self.shared.accounts.sessions(jiff::Timestamp::now())
    }

    /// The secret access key and session token of every session issued so far: what a leak test looks for (the
    /// control API never shows them).
    pub fn session_secrets(&self) -> Vec<String> {
        self.shared.accounts.secrets()
    }

    /// Expires now every session acting in `account` (None: every session); requests with their credentials then
    /// get `ExpiredToken`. Returns how many were still valid.
    pub fn expire_sessions(&self, account: Option<&str>) -> usize {
        self.shared.accounts.expire(|s| account.is_none_or(|a| s.account == a), jiff::Timestamp::now())
    }

    /// Expires now the session of one access key; false if it is no valid session's.
    pub fn expire_session(&self, access_key_id: &str) -> bool {
        self.shared.accounts.expire(|s| s.access_key_id == access_key_id, jiff::Timestamp::now()) == 1
    }

    /// Runs simulated invocations of `function`'s alias, version or `$LATEST` (`qualifier`) at `per_second`, split
    /// by the alias's weights of the moment, failing as each version's code markers script, counted in CloudWatch.
    /// A stream already running for them takes the new rate and keeps its counts.
    pub fn start_traffic(&self, function: &str, qualifier: &str, per_second: f64) -> Result<(), InvalidTraffic> {
        self.shared.traffic.start(&self.shared, function, qualifier, per_second)
    }

    /// Stops a stream; its final summary, or None if none ran.
    pub fn stop_traffic(&self, function: &str, qualifier: &str) -> Option<TrafficSummary> {
        self.shared.traffic.stop(function, qualifier)
    }

    /// The summaries of the running streams.
    pub fn traffic(&self) -> Vec<TrafficSummary> {
        self.shared.traffic.summaries()
    }

    /// Toggles a CloudWatch alarm ALARM↔OK every `period` (ALARM first, at once) until [`AwsLayer::stop_flapping`].
    pub async fn flap_alarm(&self, alarm: &str, period: Duration) -> Result<(), InvalidFlap> {
        let shared = self.shared.clone();
        let flap = Flap { alarm: alarm.to_string(), period_ms: period.as_millis() as u64 };
        // On the layer's runtime, whose moto client it uses.
        let started = self.shared.runtime.spawn(async move { shared.flaps.start(&shared, flap).await });
        started.await.map_err(|e| InvalidFlap(e.to_string()))?
    }

    /// Leaves the alarm in the state it last had; false if it was not flapping.
    pub fn stop_flapping(&self, alarm: &str) -> bool {
        self.shared.flaps.stop(alarm)
    }

    pub fn flapping(&self) -> Vec<Flap> {
        self.shared.flaps.list()
    }

    /// Stops accepting connections, the simulated traffic, the flapping alarms and the metrics flusher.
    pub fn shutdown(&self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
        self.shared.traffic.stop_all();
        self.shared.flaps.stop_all();
    }
}

/// The connection is dropped without a response (a `connection_reset` or `timeout` fault, or the client went away).
#[derive(Debug)]
struct Reset;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, io::Error> {
    if req.uri().path().starts_with("/_testbed/") {
        return Ok(control::control(&shared, req).await);
    }
    let started = Instant::now();
    let query = form_pairs(req.uri().query().unwrap_or(""));
    let first_seen = Call { at_ms: shared.started.elapsed().as_millis() as u64, ..Call::default() };
    let mut abandoned = LoggedIfAbandoned { shared: shared.clone(), started, call: Some(first_seen) };
    let call = abandoned.call.as_mut().expect("set above");
    let scope = credential_scope(req.headers(), &query);
    let token = req
        .headers()
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| param(&query, "X-Amz-Security-Token"));
    let caller = shared.accounts.caller(scope.as_ref(), token, jiff::Timestamp::now());
    match scope {
        Some(scope) => {
            call.service = scope.service;
            call.access_key_id = Some(scope.access_key_id);
            call.account = Some(caller.place.account.clone());
            call.region = Some(caller.place.region.clone());
        }
        None => call.service = "unsigned".into(),
    }
    let is_form = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let outcome = match call.service.as_str() {
        "lambda" => lambda_http::lambda_request(&shared, &caller, req, query, call).await,
        "eks" => eks::eks_request(&shared, &caller, req, call).await,
        "monitoring" if req.uri().path().starts_with("/service/") => {
            cloudwatch::cbor_request(&shared, &caller, req, call).await
        }
        "s3" | "unsigned" => other_request(&shared, &caller, req, &query, call).await,
        _ if is_form || param(&query, "Action").is_some() => query_request(&shared, &caller, req, query, call).await,
        _ => other_request(&shared, &caller, req, &query, call).await,
    };
    let mut call = abandoned.call.take().expect("taken once");
    call.duration_ms = started.elapsed().as_millis() as u64;
    let response = match outcome {
        Ok(response) => response,
        Err(Reset) => {
            lock(&shared.calls).push(call);
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by the testbed"));
        }
    };
    call.status = response.status().as_u16();
    // Lambda calls set `applied` from the service's own answer, which an after_apply fault hides from the client.
    call.applied |= response.status().is_success();
    tracing::debug!(service = %call.service, operation = %call.operation, status = call.status, "request");
    let seq = lock(&shared.calls).push(call);
    // Body bytes are counted as they are sent, so streamed S3 downloads are measured too.
    let (parts, body) = response.into_parts();
    let counter = shared.clone();
    let body = body
        .map_frame(move |frame: Frame<Bytes>| {
            if let Some(data) = frame.data_ref() {
                lock(&counter.calls).add_bytes(seq, data.len() as u64);
            }
            frame
        })
        .boxed();
    Ok(Response::from_parts(parts, body))
}

/// Logs a call whose client went away before the response (hyper then drops the handler): the request reached
/// the service, as it would have reached AWS. Logged with status 0, like a dropped connection.
struct LoggedIfAbandoned {
    shared: Arc<Shared>,
    started: Instant,
    call: Option<Call>,
}

impl Drop for LoggedIfAbandoned {
    fn drop(&mut self) {
        if let Some(mut call) = self.call.take() {
            call.duration_ms = self.started.elapsed().as_millis() as u64;
            lock(&self.shared.calls).push(call);
        }
    }
}

/// The effect of the faults that fired for one call.
#[derive(Default)]
struct Fired {
    /// A fault that answers instead of the service.
    instead: Option<FaultAction>,
    /// A fault that answers after the service performed the call (`after_apply`).
    after: Option<FaultAction>,
    /// `latency` after apply: how long the served answer takes to come back.
    slow_answer: Duration,
    /// An `in_progress` override for an update this call starts.
    in_progress: Option<Duration>,
    /// An `update_fails` fault for an update this call starts.
    fails: Option<UpdateFailure>,
    /// Writes of other writers, made before this call is served.
    competing: Vec<CompetingChange>,
}

/// Fires the faults matching the call, notes them in its log entry, and waits out any `latency`.
async fn fire_faults(shared: &Shared, call: &mut Call) -> Fired {
    let faults =
        lock(&shared.faults).fire(&call.service, &call.operation, call.function.as_deref(), call.account.as_deref());
    if !faults.is_empty() {
        call.fault = Some(faults.iter().map(Fault::describe).collect::<Vec<_>>().join(", "));
    }
    let mut fired = Fired::default();
    let mut delay = Duration::ZERO;
    for fault in faults {
        match fault.action {
            FaultAction::Latency { ms } if fault.after_apply => fired.slow_answer += Duration::from_millis(ms),
            FaultAction::Latency { ms } => delay += Duration::from_millis(ms),
            FaultAction::InProgress { ms } => fired.in_progress = Some(Duration::from_millis(ms)),
            FaultAction::UpdateFails { reason_code, reason } => {
                fired.fails = Some(UpdateFailure { code: reason_code, reason });
            }
            FaultAction::CompetingWrite { change } => fired.competing.push(change),
            action if fault.after_apply => {
                fired.after.get_or_insert(action);
            }
            action => {
                fired.instead.get_or_insert(action);
            }
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    fired
}

/// How a service shapes its errors.
#[derive(Clone, Copy)]
enum Protocol {
    /// Lambda, EKS: `x-amzn-ErrorType` and a JSON body.
    RestJson,
    /// S3.
    RestXml,
    /// STS, IAM, and any request with an `Action` parameter.
    Query,
    /// awsJson (`X-Amz-Target`): SQS and others.
    Json,
    /// Smithy RPC v2 CBOR: CloudWatch.
    Cbor,
}

/// Lets a request on to its service: a region without endpoint drops the connection, refused credentials are
/// answered (`Err`) as the service's protocol answers them; otherwise the call's faults fire.
async fn admit(
    shared: &Shared,
    caller: &Caller,
    call: &mut Call,
    protocol: Protocol,
    method: &Method,
) -> Result<Result<Fired, Response<Body>>, Reset> {
    match caller.refusal {
        Some(Refusal::NoEndpoint) => Err(Reset),
        Some(refusal) => Ok(Err(refusal_response(protocol, method, refusal))),
        None => Ok(Ok(fire_faults(shared, call).await)),
    }
}

/// Expired session credentials, or a token that is not the session's, as each protocol reports them: Lambda
/// (REST-JSON) 403 `ExpiredTokenException`, the query services 403 `ExpiredToken`, S3 400 `ExpiredToken`.
fn refusal_response(protocol: Protocol, method: &Method, refusal: Refusal) -> Response<Body> {
    let expired = refusal == Refusal::ExpiredToken;
    let message = if expired {
        "The security token included in the request is expired"
    } else {
        "The security token included in the request is invalid."
    };
    let kind = if expired { "ExpiredTokenException" } else { "UnrecognizedClientException" };
    match protocol {
        Protocol::RestXml => s3::refusal_error(method, refusal),
        Protocol::Query => {
            let code = if expired { "ExpiredToken" } else { "InvalidClientTokenId" };
            sts::query_error(StatusCode::FORBIDDEN, code, message)
        }
        Protocol::Cbor => cloudwatch::cbor_error(StatusCode::FORBIDDEN, kind, message),
        Protocol::RestJson | Protocol::Json => {
            let body = json!({ "__type": kind, "message": message, "Type": "User" });
            let mut response = json_response(StatusCode::FORBIDDEN, &body);
            response.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(kind));
            response
        }
    }
}

/// `connection_reset` drops the connection at once; `timeout` holds it first, unanswered (the client usually gives
/// up sooner). Other actions are answered by the caller, in its service's error shape.
async fn drop_connection(action: &FaultAction) -> Result<(), Reset> {
    match action {
        FaultAction::ConnectionReset => Err(Reset),
        FaultAction::Timeout { ms } => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Err(Reset)
        }
        _ => Ok(()),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

async fn read_body(req: Request<Incoming>) -> Result<(http::request::Parts, Bytes), Reset> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map_err(|_| Reset)?.to_bytes();
    Ok((parts, bytes))
}

/// Forwards to moto, in the caller's account; moto being unreachable is a 502.
async fn forward(shared: &Shared, caller: &Caller, parts: http::request::Parts, body: Body) -> Response<Body> {
    let moto = shared.moto.at(&caller.place.account, &caller.place.region);
    match moto.forward(parts, body).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(e) => {
            tracing::warn!(error = %e, "moto unreachable");
            let mut response = Response::new(full(format!("moto unreachable: {e}")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

/// AWS query protocol (IAM, STS, ...): the operation is the `Action` parameter of the form body or URL.
async fn query_request(
    shared: &Shared,
    caller: &Caller,
    req: Request<Incoming>,
    query: Vec<(String, String)>,
    call: &mut Call,
) -> Result<Response<Body>, Reset> {
    let (parts, bytes) = read_body(req).await?;
    let form = form_pairs(&String::from_utf8_lossy(&bytes));
    let action = param(&form, "Action").or_else(|| param(&query, "Action")).unwrap_or("Unknown");
    call.operation = action.to_string();
    if let Some(role) = param(&form, "RoleName") {
        call.params.insert("RoleName".into(), role.to_string());
    }
    let fired = match admit(shared, caller, call, Protocol::Query, &parts.method).await? {
        Ok(fired) => fired,
        Err(answer) => return Ok(answer),
    };
    if let Some(action) = fired.instead {
        drop_connection(&action).await?;
    }
    match (call.service.as_str(), action) {
        ("sts", "GetCallerIdentity") => Ok(sts::caller_identity(caller)),
        ("sts", "AssumeRole") => Ok(sts::assume_role(shared, caller, &form, call).await),
        _ => Ok(forward(shared, caller, parts, full(bytes)).await),
    }
}

/// S3 (path-style), JSON-protocol services (`X-Amz-Target`) and anything else: named, then streamed to moto.
async fn other_request(
    shared: &Shared,
    caller: &Caller,
    req: Request<Incoming>,
    query: &[(String, String)],
    call: &mut Call,
) -> Result<Response<Body>, Reset> {
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_string);
    let protocol = if let Some(target) = target {
        call.operation = target.rsplit('.').next().unwrap_or(&target).to_string();
        Protocol::Json
    } else if call.service == "s3" || call.service == "unsigned" {
        let (operation, params) = s3_operation(req.method(), req.uri().path(), query, req.headers());
        call.operation = operation;
        call.params = params;
        Protocol::RestXml
    } else {
        call.operation = format!("{} {}", req.method(), req.uri().path());
        Protocol::RestJson
    };
    let fired = match admit(shared, caller, call, protocol, req.method()).await? {
        Ok(fired) => fired,
        Err(answer) => return Ok(answer),
    };
    if let Some(action) = fired.instead {
        drop_connection(&action).await?;
        // What remains are S3's own errors: no other service takes these faults.
        return Ok(s3::fault_error(req.method(), &action));
    }
    // Anonymous requests are not held to accounts (moto serves them in the deployer's).
    if call.service == "s3"
        && let Some(answer) = s3::refuse(&shared.buckets, caller, req.method(), &call.operation, &call.params).await
    {
        return Ok(answer);
    }
    let (parts, body) = req.into_parts();
    Ok(forward(shared, caller, parts, body.boxed()).await)
}
