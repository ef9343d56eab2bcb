//! What an SQS event source mapping does, as `testbed::aws::deliver_queue` and `testbed deliver-queue` play it: a
//! message sent with DelaySeconds reaches the function when its delay ends, as Lambda's SQS event; what the
//! function processed is deleted, what it failed comes back after the visibility timeout.

mod aws_support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use aws_support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use testbed::aws::{QueueDelivery, deliver_queue};
use testbed::identity::{ACCOUNT_ID, REGION};
use testbed::up::{Testbed, TestbedOptions};
use tokio::sync::{OnceCell, mpsc};

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions::fast()).await
}

async fn queue(sqs: &aws_sdk_sqs::Client, visibility_timeout_s: u32) -> (String, String) {
    let name = unique("wake");
    let out = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_timeout_s.to_string())
        .send()
        .await
        .expect("queue created");
    (out.queue_url().expect("a queue URL").to_string(), name)
}

/// Messages in the queue, visible or in flight.
async fn messages_left(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let out = sqs.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::All).send().await.unwrap();
    let attributes = out.attributes().cloned().unwrap_or_default();
    [QueueAttributeName::ApproximateNumberOfMessages, QueueAttributeName::ApproximateNumberOfMessagesNotVisible]
        .iter()
        .map(|a| attributes.get(a).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
}

/// Polls (≤ 5 s) until the queue is empty.
async fn drained(sqs: &aws_sdk_sqs::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while messages_left(sqs, url).await > 0 {
        assert!(Instant::now() < deadline, "{url} still holds messages");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls (≤ 5 s) until the delivery counts `deleted` and `kept` messages (it counts once SQS answered).
async fn counted(delivery: &QueueDelivery, deleted: u64, kept: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while (delivery.stats().deleted, delivery.stats().kept) != (deleted, kept) {
        assert!(Instant::now() < deadline, "{:?}", delivery.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn records(event: &Value) -> Vec<Value> {
    event["Records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_delayed_message_reaches_the_handler_when_its_delay_ends_and_is_deleted_after_ok() {
    let tb = testbed().await;
    let sqs = sqs(tb).await;
    let (url, name) = queue(&sqs, 30).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let delivery = deliver_queue(&url, 10, move |event| {
        let tx = tx.clone();
        async move {
            for record in records(&event) {
                let _ = tx.send((Instant::now(), record));
            }
            Ok(json!({}))
        }
    })
    .unwrap();

    let sent = Instant::now();
    for delay in [1, 2, 3] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(format!("after {delay} s"))
            .delay_seconds(delay)
            .send()
            .await
            .unwrap();
    }
    let mut latencies = BTreeMap::new();
    for _ in 0..3 {
        let (at, record) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        let body = record["body"].as_str().unwrap().to_string();
        let delay: u64 = body.trim_start_matches("after ").trim_end_matches(" s").parse().unwrap();
        let late = at.duration_since(sent).checked_sub(Duration::from_secs(delay));
        let late = late.unwrap_or_else(|| panic!("{body} arrived early: after {:?}", at.duration_since(sent)));
        latencies.insert(delay, late);
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"));
        assert_eq!(record["awsRegion"], REGION);
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
        assert!(
            record["messageId"].is_string() && record["receiptHandle"].is_string() && record["md5OfBody"].is_string()
        );
    }
    println!("delivery latency after the delay ended: {latencies:?}");
    assert!(latencies.values().all(|late| *late < Duration::from_millis(500)), "{latencies:?}");
    drained(&sqs, &url).await;
    counted(&delivery, 3, 0).await;
}

#[tokio::test]
async fn a_batch_item_failure_stays_in_the_queue_and_comes_back_after_the_visibility_timeout() {
    let tb = testbed().await;
    let sqs = sqs(tb).await;
    let (url, _) = queue(&sqs, 1).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let delivery = deliver_queue(&url, 10, move |event| {
        let tx = tx.clone();
        async move {
            let mut failures = Vec::new();
            for record in records(&event) {
                let first = record["attributes"]["ApproximateReceiveCount"] == "1";
                if record["body"] == "keep" && first {
                    failures.push(json!({ "itemIdentifier": record["messageId"] }));
                }
                let _ = tx.send((Instant::now(), record));
            }
            Ok(json!({ "batchItemFailures": failures }))
        }
    })
    .unwrap();
    for body in ["keep", "done"] {
        sqs.send_message().queue_url(&url).message_body(body).send().await.unwrap();
    }

    let mut deliveries: Vec<(Instant, String, String)> = Vec::new();
    while deliveries.len() < 3 {
        let (at, record) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        let count = record["attributes"]["ApproximateReceiveCount"].as_str().unwrap().to_string();
        deliveries.push((at, record["body"].as_str().unwrap().to_string(), count));
    }
    let kept: Vec<&(Instant, String, String)> = deliveries.iter().filter(|(_, body, _)| body == "keep").collect();
    assert_eq!(kept.iter().map(|(_, _, count)| count.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert!(kept[1].0.duration_since(kept[0].0) >= Duration::from_millis(900), "back after its visibility timeout");
    assert_eq!(deliveries.iter().filter(|(_, body, _)| body == "done").count(), 1, "done was deleted at once");
    drained(&sqs, &url).await;
    counted(&delivery, 2, 1).await;
}

/// Stands in for the runtime emulator's invoke endpoint: answers the first event with a function error (an
/// error document without `X-Amz-Function-Error`, as emulators send it), then `{}`.
async fn emulator() -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/2015-03-31/functions/wake/invocations", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let served = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, served) = (tx.clone(), served.clone());
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (tx, served) = (tx.clone(), served.clone());
                async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap());
                    let first = served.fetch_add(1, Ordering::SeqCst) == 0;
                    let answer = if first { r#"{"errorType":"Boom","errorMessage":"scripted"}"# } else { "{}" };
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(answer))))
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (url, rx)
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_cli_posts_each_batch_to_the_invoke_url_and_a_function_error_keeps_the_batch() {
    let tb = testbed().await;
    let sqs = sqs(tb).await;
    let (url, _) = queue(&sqs, 1).await;
    let (invoke_url, mut events) = emulator().await;
    let child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["deliver-queue", "--queue-url", &url, "--invoke-url", &invoke_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    sqs.send_message().queue_url(&url).message_body("deploy step 2").send().await.unwrap();

    let mut counts = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap();
        let record = &records(&event)[0];
        assert_eq!(record["body"], "deploy step 2");
        counts.push(record["attributes"]["ApproximateReceiveCount"].as_str().unwrap().to_string());
    }
    assert_eq!(counts, ["1", "2"], "the function error left the message for a second delivery");
    drained(&sqs, &url).await;

    let killed = Command::new("kill").args(["-TERM", &guard.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let child = std::mem::replace(&mut guard.0, Command::new("true").spawn().unwrap());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 batches, 2 messages: 1 deleted, 1 kept"), "{stdout}");
}
