//! CloudWatch in the protocol aws-sdk-cloudwatch speaks (Smithy RPC v2 CBOR: `POST /service/SERVICE/operation/OP`,
//! `application/cbor`), translated to the awsJson 1.0 protocol moto 5.2.5 serves for CloudWatch (it answers the
//! CBOR path with 404). The documents are the same shapes; only timestamps and blobs need their member names to
//! be told apart from plain numbers and text on the way back.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::accounts::Caller;
use super::cbor::{self, Kind};
use super::moto_client::{Body, full};
use super::{Call, FaultAction, Protocol, Reset, Shared, admit, drop_connection, read_body};

/// Every member of the CloudWatch model (botocore `cloudwatch/2010-08-01/service-2.json`) whose shape is a
/// timestamp or a list of timestamps; no member name is used for another type.
const TIMESTAMPS: [&str; 16] = [
    "AlarmConfigurationUpdatedTimestamp",
    "CreatedAt",
    "CreationDate",
    "EndDate",
    "EndTime",
    "ExpireDate",
    "LastModified",
    "LastUpdateDate",
    "LastUpdatedTimestamp",
    "StartDate",
    "StartTime",
    "StateTransitionedTimestamp",
    "StateUpdatedTimestamp",
    "Timestamp",
    "Timestamps",
    "UpdatedAt",
];
/// The model's only blob member (GetMetricWidgetImage's output).
const BLOBS: [&str; 1] = ["MetricWidgetImage"];

fn member_kind(name: &str) -> Kind {
    if TIMESTAMPS.contains(&name) {
        Kind::Timestamp
    } else if BLOBS.contains(&name) {
        Kind::Blob
    } else {
        Kind::Plain
    }
}

/// A CBOR response with the RPC v2 headers.
fn cbor_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(cbor::from_json(body, &member_kind))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/cbor"));
    headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

pub(super) fn cbor_error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    cbor_response(status, &json!({ "__type": kind, "message": message }))
}

/// `POST /service/SERVICE/operation/OP` with a CBOR body: translated, sent to moto as awsJson, answered in CBOR.
pub(super) async fn cbor_request(
    shared: &Shared,
    caller: &Caller,
    req: Request<Incoming>,
    call: &mut Call,
) -> Result<Response<Body>, Reset> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["service", service, "operation", operation] = segments[..] else {
        call.operation = format!("{} {path}", req.method());
        return Ok(cbor_error(StatusCode::NOT_FOUND, "UnknownOperationException", "Unknown operation"));
    };
    call.operation = operation.to_string();
    let (parts, bytes) = read_body(req).await?;
    let input = if bytes.is_empty() { Ok(json!({})) } else { cbor::to_json(&bytes) };
    let input = match input {
        Ok(input) => input,
        Err(e) => return Ok(cbor_error(StatusCode::BAD_REQUEST, "SerializationException", &e.to_string())),
    };
    if let Some(alarm) = input.get("AlarmName").and_then(Value::as_str) {
        call.params.insert("AlarmName".into(), alarm.to_string());
    }
    let fired = match admit(shared, caller, call, Protocol::Cbor, &parts.method).await? {
        Ok(fired) => fired,
        Err(answer) => return Ok(answer),
    };
    if let Some(action) = fired.instead {
        drop_connection(&action).await?;
        match action {
            FaultAction::AccessDenied => {
                let message = format!(
                    "User is not authorized to perform: cloudwatch:{operation} because no identity-based policy allows \
                     the cloudwatch:{operation} action"
                );
                return Ok(cbor_error(StatusCode::FORBIDDEN, "AccessDenied", &message));
            }
            FaultAction::ServiceException => {
                return Ok(cbor_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServiceFault",
                    "Internal service error",
                ));
            }
            FaultAction::Throttle => {
                return Ok(cbor_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded"));
            }
            _ => {}
        }
    }
    let access_key = call.access_key_id.clone().unwrap_or_default();
    let target = format!("{service}.{operation}");
    let moto = shared.moto.at(&caller.place.account, &caller.place.region);
    let (status, answer) = match moto.call_json(&access_key, "monitoring", &target, &input).await {
        Ok(answer) => answer,
        Err(e) => return Ok(cbor_error(StatusCode::BAD_GATEWAY, "ServiceUnavailable", &format!("moto: {e}"))),
    };
    let output = if answer.is_empty() { Ok(json!({})) } else { serde_json::from_slice::<Value>(&answer) };
    Ok(match output {
        Ok(output) => cbor_response(status, &output),
        Err(_) => cbor_error(
            StatusCode::BAD_GATEWAY,
            "InternalServiceFault",
            &format!("moto answered {status} with: {}", String::from_utf8_lossy(&answer)),
        ),
    })
}
