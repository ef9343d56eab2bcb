//! EKS through the layer: forwarded to moto, except that DescribeCluster of the testbed cluster answers with the
//! Kubernetes testbed's endpoint and CA.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::accounts::{Caller, Place};
use super::moto_client::{Body, full};
use super::route::eks_operation;
use super::{Call, EksCluster, Protocol, Reset, Shared, admit, drop_connection, forward};

pub(super) async fn eks_request(
    shared: &Shared,
    caller: &Caller,
    req: Request<Incoming>,
    call: &mut Call,
) -> Result<Response<Body>, Reset> {
    let (operation, cluster) = eks_operation(req.method(), req.uri().path());
    call.operation = operation;
    if let Some(name) = &cluster {
        call.params.insert("Name".into(), name.clone());
    }
    let fired = match admit(shared, caller, call, Protocol::RestJson, req.method()).await? {
        Ok(fired) => fired,
        Err(answer) => return Ok(answer),
    };
    if let Some(action) = fired.instead {
        drop_connection(&action).await?;
    }
    // The testbed cluster is the deployer account's, in the main region.
    let testbed =
        shared.eks.as_ref().filter(|eks| cluster.as_ref() == Some(&eks.name) && caller.place == Place::default());
    let (parts, body) = req.into_parts();
    let response = forward(shared, caller, parts, body.boxed()).await;
    match testbed {
        Some(eks) if call.operation == "DescribeCluster" && response.status() == StatusCode::OK => {
            Ok(describe_testbed_cluster(eks, response).await)
        }
        _ => Ok(response),
    }
}

/// moto's record of the testbed cluster with the real endpoint and CA (moto's are random, and its CA is no PEM).
async fn describe_testbed_cluster(eks: &EksCluster, response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, full(Bytes::new()));
    };
    let bytes = collected.to_bytes();
    let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, full(bytes));
    };
    if let Some(cluster) = doc.get_mut("cluster").and_then(Value::as_object_mut) {
        cluster.insert("endpoint".into(), json!(eks.endpoint));
        cluster.insert("status".into(), json!("ACTIVE"));
        let ca = base64::engine::general_purpose::STANDARD.encode(&eks.ca_pem);
        cluster.insert("certificateAuthority".into(), json!({ "data": ca }));
    }
    let out = doc.to_string();
    parts.headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(parts, full(out))
}
