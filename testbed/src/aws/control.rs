//! The layer's control API, `/_testbed/...` (JSON): faults, the call log, settings, code history, simulated
//! traffic, flapping alarms and STS sessions — what [`AwsLayer`]'s Rust API offers, over HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::moto_client::Body;
use super::route::{form_pairs, param};
use super::{AwsLayer, Fault, LayerConfig, Shared, json_response};
use crate::identity::{ACCOUNT_ID, REGION};

/// `POST /_testbed/traffic`.
#[derive(Deserialize)]
struct StartTraffic {
    function: String,
    qualifier: String,
    per_second: f64,
}

/// `DELETE /_testbed/traffic` with a body: one stream; without: all.
#[derive(Deserialize)]
struct StopTraffic {
    function: String,
    qualifier: String,
}

/// `POST /_testbed/alarms/flap`.
#[derive(Deserialize)]
struct StartFlap {
    alarm: String,
    period_ms: u64,
}

/// `DELETE /_testbed/alarms/flap` with a body: one alarm; without: all.
#[derive(Deserialize)]
struct StopFlap {
    alarm: String,
}

/// `POST /_testbed/sessions/expire`: the sessions of one access key, of one account, or (`{}`) all.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpireSessions {
    access_key_id: Option<String>,
    account: Option<String>,
}

/// `/_testbed/...`: faults, calls, config, code history, traffic, flapping alarms, sessions.
pub(super) async fn control(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let layer = AwsLayer { shared: shared.clone() };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = form_pairs(req.uri().query().unwrap_or(""));
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return control_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["_testbed", "faults"]) => json_response(StatusCode::OK, &json!({ "faults": layer.faults() })),
        (&Method::POST, ["_testbed", "faults"]) => {
            // One fault or a list of them.
            let parsed = serde_json::from_slice::<Vec<Fault>>(&bytes)
                .or_else(|_| serde_json::from_slice::<Fault>(&bytes).map(|f| vec![f]));
            let faults = match parsed {
                Ok(f) => f,
                Err(e) => return control_error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            for fault in faults {
                if let Err(e) = layer.inject(fault) {
                    return control_error(StatusCode::BAD_REQUEST, &e.to_string());
                }
            }
            json_response(StatusCode::OK, &json!({ "faults": layer.faults() }))
        }
        (&Method::DELETE, ["_testbed", "faults"]) => {
            layer.clear_faults();
            json_response(StatusCode::NO_CONTENT, &Value::Null)
        }
        (&Method::GET, ["_testbed", "calls"]) => json_response(StatusCode::OK, &json!(layer.calls())),
        (&Method::DELETE, ["_testbed", "calls"]) => {
            layer.clear_calls();
            json_response(StatusCode::NO_CONTENT, &Value::Null)
        }
        (&Method::GET, ["_testbed", "config"]) => json_response(StatusCode::OK, &json!(layer.config())),
        (&Method::POST, ["_testbed", "config"]) => {
            // A partial document: the given fields replace the current ones.
            let mut merged = json!(layer.config());
            match serde_json::from_slice::<BTreeMap<String, Value>>(&bytes) {
                Ok(patch) => patch.into_iter().for_each(|(k, v)| merged[k] = v),
                Err(e) => return control_error(StatusCode::BAD_REQUEST, &e.to_string()),
            }
            match serde_json::from_value::<LayerConfig>(merged) {
                Ok(config) => {
                    layer.set_config(config);
                    json_response(StatusCode::OK, &json!(layer.config()))
                }
                Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        (&Method::GET, ["_testbed", "functions", name, "history"]) => {
            let account = param(&query, "account").unwrap_or(ACCOUNT_ID);
            let region = param(&query, "region").unwrap_or(REGION);
            match layer.history_in(account, region, name) {
                Some(history) => {
                    json_response(StatusCode::OK, &json!({ "FunctionName": name, "CodeSha256History": history }))
                }
                None => control_error(StatusCode::NOT_FOUND, &format!("no function {name} in {account} {region}")),
            }
        }
        (&Method::GET, ["_testbed", "sessions"]) => {
            json_response(StatusCode::OK, &json!({ "sessions": layer.sessions() }))
        }
        (&Method::POST, ["_testbed", "sessions", "expire"]) => {
            let which = if bytes.is_empty() {
                Ok(ExpireSessions { access_key_id: None, account: None })
            } else {
                serde_json::from_slice::<ExpireSessions>(&bytes)
            };
            match which {
                Ok(ExpireSessions { access_key_id: Some(key), account: None }) => {
                    json_response(StatusCode::OK, &json!({ "expired": usize::from(layer.expire_session(&key)) }))
                }
                Ok(ExpireSessions { access_key_id: None, account }) => {
                    json_response(StatusCode::OK, &json!({ "expired": layer.expire_sessions(account.as_deref()) }))
                }
                Ok(_) => control_error(StatusCode::BAD_REQUEST, "give access_key_id or account, not both"),
                Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        (&Method::GET, ["_testbed", "traffic"]) => {
            json_response(StatusCode::OK, &json!({ "traffic": layer.traffic() }))
        }
        (&Method::POST, ["_testbed", "traffic"]) => match serde_json::from_slice::<StartTraffic>(&bytes) {
            Ok(t) => match layer.start_traffic(&t.function, &t.qualifier, t.per_second) {
                Ok(()) => json_response(StatusCode::OK, &json!({ "traffic": layer.traffic() })),
                Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
            },
            Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        (&Method::DELETE, ["_testbed", "traffic"]) if bytes.is_empty() => {
            json_response(StatusCode::OK, &json!({ "stopped": shared.traffic.stop_all() }))
        }
        (&Method::DELETE, ["_testbed", "traffic"]) => match serde_json::from_slice::<StopTraffic>(&bytes) {
            Ok(t) => match layer.stop_traffic(&t.function, &t.qualifier) {
                Some(summary) => json_response(StatusCode::OK, &json!({ "stopped": [summary] })),
                None => control_error(StatusCode::NOT_FOUND, &format!("no traffic to {}:{}", t.function, t.qualifier)),
            },
            Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        (&Method::GET, ["_testbed", "alarms", "flap"]) => {
            json_response(StatusCode::OK, &json!({ "flapping": layer.flapping() }))
        }
        (&Method::POST, ["_testbed", "alarms", "flap"]) => match serde_json::from_slice::<StartFlap>(&bytes) {
            Ok(f) => match shared.flaps.start(shared, super::Flap { alarm: f.alarm, period_ms: f.period_ms }).await {
                Ok(()) => json_response(StatusCode::OK, &json!({ "flapping": layer.flapping() })),
                Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
            },
            Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        (&Method::DELETE, ["_testbed", "alarms", "flap"]) if bytes.is_empty() => {
            shared.flaps.stop_all();
            json_response(StatusCode::NO_CONTENT, &Value::Null)
        }
        (&Method::DELETE, ["_testbed", "alarms", "flap"]) => match serde_json::from_slice::<StopFlap>(&bytes) {
            Ok(f) if layer.stop_flapping(&f.alarm) => json_response(StatusCode::NO_CONTENT, &Value::Null),
            Ok(f) => control_error(StatusCode::NOT_FOUND, &format!("{} is not flapping", f.alarm)),
            Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        _ => control_error(StatusCode::NOT_FOUND, &format!("no control endpoint {method} {path}")),
    }
}

fn control_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}
