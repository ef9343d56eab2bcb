//! Lambda requests on the layer's endpoint: the faults around the served call (a competing writer first, an
//! answer instead of the service, or one after the service performed the call), the quota, the REST-JSON answer;
//! and Invoke, which answers with the function's own payload and reports its metrics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::accounts::Caller;
use super::lambda::{self, Invocation, LambdaError, Op, Reply, UpdateFailure, reach};
use super::moto_client::{Body, full};
use super::route::param;
use super::{Call, CompetingChange, FaultAction, Protocol, Reset, Shared, admit, json_response, lock, read_body};
use super::{Fired, drop_connection};

/// The access key id the call log gives a competing writer's writes.
const COMPETITOR: &str = "competitor";

fn lambda_error(e: &LambdaError) -> Response<Body> {
    let mut response = json_response(e.status, &e.body());
    let headers = response.headers_mut();
    headers.insert("x-amzn-errortype", HeaderValue::from_static(e.kind));
    if let Some(secs) = e.retry_after {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn reply_response(reply: &Reply) -> Response<Body> {
    match reply {
        Ok((status, value)) => json_response(*status, value),
        Err(e) => lambda_error(e),
    }
}

/// The Lambda error a fault answers with.
fn fault_error(action: &FaultAction, call: &Call) -> LambdaError {
    match action {
        FaultAction::Throttle => LambdaError::throttled(Duration::from_secs(1)),
        FaultAction::Conflict => LambdaError::update_in_progress(call.function.as_deref().unwrap_or("unknown")),
        FaultAction::StaleRevision => LambdaError::precondition_failed(),
        FaultAction::AccessDenied => LambdaError::access_denied(&call.operation),
        _ => LambdaError::service("An internal error occurred (fault injected by the testbed)."),
    }
}

/// The key parameters the call log shows for a Lambda call.
fn key_params(query: &[(String, String)], body: &Value) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    if let Some(q) = param(query, "Qualifier") {
        params.insert("Qualifier".into(), q.to_string());
    }
    for key in ["RevisionId", "S3Bucket", "S3Key", "S3ObjectVersion", "Publish", "Name", "FunctionVersion"] {
        match body.get(key) {
            Some(Value::String(s)) => params.insert(key.into(), s.clone()),
            Some(Value::Bool(b)) => params.insert(key.into(), b.to_string()),
            _ => None,
        };
    }
    params
}

/// The faults that fire for a call about a function the caller can reach, or the answer instead (refused
/// credentials, a function of another account or region).
async fn admit_lambda(
    shared: &Shared,
    caller: &Caller,
    call: &mut Call,
    op: &Op,
    body: &Value,
    method: &http::Method,
) -> Result<Result<Fired, Response<Body>>, Reset> {
    let fired = match admit(shared, caller, call, Protocol::RestJson, method).await? {
        Ok(fired) => fired,
        Err(answer) => return Ok(Err(answer)),
    };
    match op.function_ref(body).map(|raw| reach(raw, caller, op.action())) {
        Some(Err(e)) => Ok(Err(lambda_error(&e))),
        _ => Ok(Ok(fired)),
    }
}

/// In order: refused credentials or an unreachable function, competing writes, a fault that answers instead of the
/// service, the quota (the account's in that region), the service, a fault that answers after the service
/// performed the call.
pub(super) async fn lambda_request(
    shared: &Shared,
    caller: &Caller,
    req: Request<Incoming>,
    query: Vec<(String, String)>,
    call: &mut Call,
) -> Result<Response<Body>, Reset> {
    let Some(op) = Op::parse(req.method(), req.uri().path()) else {
        call.operation = format!("{} {}", req.method(), req.uri().path());
        return Ok(lambda_error(&LambdaError::unknown_operation()));
    };
    call.operation = op.name().to_string();
    let (parts, bytes) = read_body(req).await?;
    if let Op::Invoke(_) = &op {
        return invoke(shared, caller, &op, &query, &parts, bytes, call).await;
    }
    let body: Value = if bytes.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => return Ok(lambda_error(&LambdaError::invalid("Could not parse request body into json"))),
        }
    };
    call.function = op.function(&body);
    call.params = key_params(&query, &body);
    let fired = match admit_lambda(shared, caller, call, &op, &body, &parts.method).await? {
        Ok(fired) => fired,
        Err(answer) => return Ok(answer),
    };
    if let Some(name) = &call.function {
        for change in &fired.competing {
            compete(shared, caller, call, *change, name, &body, fired.fails.as_ref()).await;
        }
    }
    if let Some(action) = &fired.instead {
        drop_connection(action).await?;
        return Ok(lambda_error(&fault_error(action, call)));
    }
    let config = lock(&shared.config).clone();
    let quota = || {
        let mut quotas = lock(&shared.quotas);
        quotas.entry(caller.place.clone()).or_insert_with(|| config.quotas()).take(op.name())
    };
    let served = if config.quotas
        && let Err(wait) = quota()
    {
        lambda::Served { reply: Err(LambdaError::throttled(wait)), update: None }
    } else {
        let request = lambda::Request {
            caller: caller.clone(),
            op,
            query,
            body,
            in_progress: fired.in_progress,
            fails: fired.fails,
            pending: Duration::from_millis(config.create_pending_ms),
        };
        shared.lambda.handle(request).await
    };
    call.applied = served.reply.as_ref().is_ok_and(|(status, _)| status.is_success());
    call.in_progress_ms = served.update.map(|d| d.as_millis() as u64);
    if !fired.slow_answer.is_zero() {
        tokio::time::sleep(fired.slow_answer).await;
    }
    match &fired.after {
        Some(action) => {
            drop_connection(action).await?;
            Ok(lambda_error(&fault_error(action, call)))
        }
        None => Ok(reply_response(&served.reply)),
    }
}

/// A competing writer's write to `name` (in the same account and region as `preceded`), logged as its own call just
/// before the call it precedes. It is not counted against the quotas, and no fault fires on it; but the very code
/// the preceded call names fails as that call's update would (`fails`): a zip Lambda cannot use fails for anyone.
async fn compete(
    shared: &Shared,
    caller: &Caller,
    preceded: &Call,
    change: CompetingChange,
    name: &str,
    request_body: &Value,
    fails: Option<&UpdateFailure>,
) {
    let started = Instant::now();
    let (op, body, fails) = match change {
        CompetingChange::Configuration => {
            let description = format!("edited in the console ({})", uuid::Uuid::new_v4().simple());
            (Op::UpdateFunctionConfiguration(name.to_string()), json!({ "Description": description }), None)
        }
        CompetingChange::SameCode => {
            let source: Map<String, Value> = ["S3Bucket", "S3Key", "S3ObjectVersion", "ZipFile"]
                .into_iter()
                .filter_map(|key| request_body.get(key).map(|v| (key.to_string(), v.clone())))
                .collect();
            (Op::UpdateFunctionCode(name.to_string()), Value::Object(source), fails.cloned())
        }
    };
    let mut call = Call {
        service: "lambda".into(),
        operation: op.name().to_string(),
        function: Some(name.to_string()),
        params: key_params(&[], &body),
        access_key_id: Some(COMPETITOR.into()),
        account: preceded.account.clone(),
        region: preceded.region.clone(),
        at_ms: shared.started.elapsed().as_millis() as u64,
        fault: Some(format!("competing_write: {}", change.name())),
        ..Call::default()
    };
    let request = lambda::Request {
        caller: caller.clone(),
        op,
        query: Vec::new(),
        body,
        in_progress: None,
        fails,
        pending: Duration::ZERO,
    };
    let served = shared.lambda.handle(request).await;
    call.status = match &served.reply {
        Ok((status, _)) => status.as_u16(),
        Err(e) => e.status.as_u16(),
    };
    call.applied = (200..300).contains(&call.status);
    call.in_progress_ms = served.update.map(|d| d.as_millis() as u64);
    call.duration_ms = started.elapsed().as_millis() as u64;
    lock(&shared.calls).push(call);
}

/// `POST /2015-03-31/functions/NAME/invocations`: not on the control-plane quota (invocations have their own
/// concurrency limits, which the testbed does not model). Faults apply as to the other operations.
async fn invoke(
    shared: &Shared,
    caller: &Caller,
    op: &Op,
    query: &[(String, String)],
    parts: &http::request::Parts,
    payload: Bytes,
    call: &mut Call,
) -> Result<Response<Body>, Reset> {
    let raw = op.function_ref(&Value::Null).unwrap_or_default();
    call.function = op.function(&Value::Null);
    let invocation_type = parts
        .headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_string();
    call.params = key_params(query, &Value::Null);
    call.params.insert("InvocationType".into(), invocation_type.clone());
    let fired = match admit_lambda(shared, caller, call, op, &Value::Null, &parts.method).await? {
        Ok(fired) => fired,
        Err(answer) => return Ok(answer),
    };
    if let Some(action) = &fired.instead {
        drop_connection(action).await?;
        return Ok(lambda_error(&fault_error(action, call)));
    }
    let qualifier = param(query, "Qualifier");
    let place = &caller.place;
    let answer = match invocation_type.as_str() {
        "DryRun" => shared.lambda.invocable(place, raw, qualifier).map(|()| (StatusCode::NO_CONTENT, None)),
        "RequestResponse" | "Event" => match parse_payload(&payload) {
            Ok(()) => shared.lambda.invoke(place, raw, qualifier).map(|invocation| {
                shared.metrics.record(place, &invocation, jiff::Timestamp::now());
                if invocation_type == "Event" {
                    (StatusCode::ACCEPTED, None)
                } else {
                    (StatusCode::OK, Some(invocation))
                }
            }),
            Err(e) => Err(e),
        },
        other => Err(LambdaError::validation(format!(
            "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member \
             must satisfy enum value set: [Event, RequestResponse, DryRun]"
        ))),
    };
    call.applied = answer.is_ok();
    if !fired.slow_answer.is_zero() {
        tokio::time::sleep(fired.slow_answer).await;
    }
    if let Some(action) = &fired.after {
        drop_connection(action).await?;
        return Ok(lambda_error(&fault_error(action, call)));
    }
    Ok(match answer {
        Ok((status, invocation)) => invocation_response(status, invocation.as_ref(), payload),
        Err(e) => lambda_error(&e),
    })
}

/// The payload must be JSON (an empty one stands for `{}`).
fn parse_payload(payload: &[u8]) -> Result<(), LambdaError> {
    if payload.is_empty() {
        return Ok(());
    }
    serde_json::from_slice::<Value>(payload).map(|_| ()).map_err(|e| {
        LambdaError::invalid_content(format!(
            "Could not parse request body into json: Could not parse payload into json: {e}"
        ))
    })
}

/// As Lambda answers: the function's result with `X-Amz-Executed-Version`; a function error is still a 200, marked
/// `X-Amz-Function-Error: Unhandled`, its body the runtime's error document. Code without markers echoes the
/// payload.
fn invocation_response(status: StatusCode, invocation: Option<&Invocation>, payload: Bytes) -> Response<Body> {
    let body = match invocation {
        Some(i) if i.failed => Bytes::from(
            json!({
                "errorMessage": "The function failed, as a testbed marker in its code scripts it.",
                "errorType": "TestbedScriptedError",
            })
            .to_string(),
        ),
        Some(_) if payload.is_empty() => Bytes::from_static(b"{}"),
        Some(_) => payload,
        None => Bytes::new(),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(invocation) = invocation {
        if let Ok(version) = HeaderValue::from_str(&invocation.executed_version) {
            headers.insert("x-amz-executed-version", version);
        }
        if invocation.failed {
            headers.insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
        }
    }
    response
}
