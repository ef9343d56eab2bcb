//! What a Lambda event source mapping does for an SQS queue: polls the queue (moto's SQS, which holds a message
//! back for its `DelaySeconds` in wall-clock time), hands each batch to a handler as the event Lambda gives a
//! function, deletes what the handler processed, and leaves the rest to come back after its visibility timeout.
//!
//! The handler's answer is read as a function's answer with `ReportBatchItemFailures` on: `Ok` deletes the batch
//! except the `batchItemFailures` it names (one failure naming no message of the batch fails the whole batch, as
//! Lambda treats it); `Err` (a function error) keeps the whole batch.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::MotoClient;
use super::lock;
use crate::identity::REGION;

/// How often an empty queue is polled again. moto's long poll (`WaitTimeSeconds` > 0) only notices a delayed
/// message on its next one-second wake-up, so short polls at this interval deliver sooner.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// After a failed poll (queue deleted, moto unreachable).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The access key the poller's SQS calls carry (they are the Lambda service's, not the account's).
const POLLER_KEY: &str = "AKIATESTBEDSQSPOLLER";

/// What a delivery did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStats {
    /// Batches handed to the handler.
    pub batches: u64,
    /// Messages in them (a message kept and received again counts again).
    pub delivered: u64,
    pub deleted: u64,
    /// Messages left in the queue after a function error or as batch item failures.
    pub kept: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot deliver the queue: {0}")]
pub struct InvalidQueue(pub String);

/// A running delivery. [`QueueDelivery::finish`] stops it after the batch in hand; dropping it stops it at once
/// (a batch being handled then comes back after its visibility timeout).
pub struct QueueDelivery {
    stop: tokio::sync::watch::Sender<bool>,
    /// None once finished.
    task: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<Mutex<DeliveryStats>>,
}

impl QueueDelivery {
    pub fn stats(&self) -> DeliveryStats {
        *lock(&self.stats)
    }

    /// Stops polling once the batch in hand (if any) is handled and deleted; returns what the delivery did.
    pub async fn finish(mut self) -> DeliveryStats {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.stats()
    }
}

impl Drop for QueueDelivery {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The queue a URL names: where to send its API calls and its ARN.
struct Queue {
    url: String,
    endpoint: String,
    arn: String,
}

fn queue_of(url: &str) -> Result<Queue, InvalidQueue> {
    let uri: http::Uri = url.parse().map_err(|e| InvalidQueue(format!("{url}: {e}")))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(InvalidQueue(format!("{url} is no absolute URL")));
    };
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let [account, name] = segments[..] else {
        return Err(InvalidQueue(format!("{url} is no queue URL (http://HOST/ACCOUNT/NAME)")));
    };
    Ok(Queue {
        url: url.to_string(),
        endpoint: format!("{scheme}://{authority}"),
        arn: format!("arn:aws:sqs:{REGION}:{account}:{name}"),
    })
}

/// Polls `queue_url` (on the current tokio runtime) and hands batches of at most `batch_size` (1–10, ReceiveMessage's
/// limit) messages to `handler` as Lambda's SQS event, until the returned delivery is stopped or dropped.
pub fn deliver_queue<F, Fut>(queue_url: &str, batch_size: u32, handler: F) -> Result<QueueDelivery, InvalidQueue>
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    if !(1..=10).contains(&batch_size) {
        return Err(InvalidQueue(format!("batch_size must be within 1..=10, got {batch_size}")));
    }
    let queue = queue_of(queue_url)?;
    let stats = Arc::new(Mutex::new(DeliveryStats::default()));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(poll(queue, batch_size, handler, stats.clone(), stopping));
    Ok(QueueDelivery { stop, task: Some(task), stats })
}

/// Sleeps `pause`; false if the delivery was asked to stop meanwhile (or before).
async fn pause(pause: Duration, stopping: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *stopping.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(pause) => !*stopping.borrow(),
        _ = stopping.changed() => false,
    }
}

async fn poll<F, Fut>(
    queue: Queue,
    batch_size: u32,
    handler: F,
    stats: Arc<Mutex<DeliveryStats>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    F: Fn(Value) -> Fut,
    Fut: Future<Output = Result<Value, String>>,
{
    let sqs = MotoClient::new(&queue.endpoint);
    let receive = json!({
        "QueueUrl": queue.url,
        "MaxNumberOfMessages": batch_size,
        "WaitTimeSeconds": 0,
        "AttributeNames": ["All"],
        "MessageSystemAttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    });
    while !*stopping.borrow() {
        let messages = match sqs.call_json(POLLER_KEY, "sqs", "AmazonSQS.ReceiveMessage", &receive).await {
            Ok((status, body)) if status.is_success() => serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| b.get("Messages").and_then(Value::as_array).cloned())
                .unwrap_or_default(),
            Ok((status, body)) => {
                tracing::warn!(queue = %queue.url, %status, body = %String::from_utf8_lossy(&body), "ReceiveMessage refused");
                if !pause(RETRY_AFTER, &mut stopping).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(queue = %queue.url, error = %e, "ReceiveMessage failed");
                if !pause(RETRY_AFTER, &mut stopping).await {
                    return;
                }
                continue;
            }
        };
        if messages.is_empty() {
            if !pause(POLL_EVERY, &mut stopping).await {
                return;
            }
            continue;
        }
        let records: Vec<Value> = messages.iter().map(|m| record(m, &queue.arn)).collect();
        let ids: HashSet<&str> = records.iter().filter_map(|r| r["messageId"].as_str()).collect();
        let answer = handler(json!({ "Records": records })).await;
        let kept = match &answer {
            Ok(answer) => failed_items(answer, &ids),
            Err(e) => {
                tracing::info!(queue = %queue.url, error = %e, "the function failed: the batch stays in the queue");
                ids.clone()
            }
        };
        let entries: Vec<Value> = records
            .iter()
            .filter(|r| r["messageId"].as_str().is_some_and(|id| !kept.contains(id)))
            .enumerate()
            .map(|(i, r)| json!({ "Id": i.to_string(), "ReceiptHandle": r["receiptHandle"] }))
            .collect();
        let deleted = entries.len() as u64;
        if !entries.is_empty() {
            let delete = json!({ "QueueUrl": queue.url, "Entries": entries });
            if let Err(e) = sqs.call_json(POLLER_KEY, "sqs", "AmazonSQS.DeleteMessageBatch", &delete).await {
                tracing::warn!(queue = %queue.url, error = %e, "DeleteMessageBatch failed: the batch comes back");
            }
        }
        let mut s = lock(&stats);
        s.batches += 1;
        s.delivered += records.len() as u64;
        s.deleted += deleted;
        s.kept += records.len() as u64 - deleted;
    }
}

/// The message IDs a function's answer reports failed; all of them if a failure names no message of the batch.
fn failed_items<'a>(answer: &Value, ids: &HashSet<&'a str>) -> HashSet<&'a str> {
    let Some(failures) = answer.get("batchItemFailures").and_then(Value::as_array) else {
        return HashSet::new();
    };
    let mut failed = HashSet::new();
    for failure in failures {
        match failure.get("itemIdentifier").and_then(Value::as_str).and_then(|id| ids.get(id)) {
            Some(id) => failed.insert(*id),
            None => return ids.clone(),
        };
    }
    failed
}

/// One record of Lambda's SQS event (docs: with-sqs, "Example standard queue message event").
fn record(message: &Value, queue_arn: &str) -> Value {
    let field = |name: &str| message.get(name).cloned().unwrap_or(Value::Null);
    let attributes: serde_json::Map<String, Value> = message
        .get("MessageAttributes")
        .and_then(Value::as_object)
        .map(|attrs| {
            attrs
                .iter()
                .map(|(name, a)| {
                    let mut out = json!({
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": a.get("DataType").cloned().unwrap_or(Value::Null),
                    });
                    if let Some(v) = a.get("StringValue") {
                        out["stringValue"] = v.clone();
                    }
                    if let Some(v) = a.get("BinaryValue") {
                        out["binaryValue"] = v.clone();
                    }
                    (name.clone(), out)
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": field("MessageId"),
        "receiptHandle": field("ReceiptHandle"),
        "body": field("Body"),
        "attributes": message.get("Attributes").cloned().unwrap_or_else(|| json!({})),
        "messageAttributes": attributes,
        "md5OfBody": field("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_gives_the_endpoint_and_the_arn() {
        let q = queue_of("http://127.0.0.1:4566/123456789012/wake").unwrap();
        assert_eq!(q.endpoint, "http://127.0.0.1:4566");
        assert_eq!(q.arn, "arn:aws:sqs:us-east-1:123456789012:wake");
        assert!(queue_of("not a url").is_err());
        assert!(queue_of("http://127.0.0.1:4566/wake").is_err());
    }

    #[test]
    fn a_failure_naming_no_message_of_the_batch_fails_the_whole_batch() {
        let ids: HashSet<&str> = ["a", "b"].into();
        assert_eq!(failed_items(&json!({"batchItemFailures": [{"itemIdentifier": "b"}]}), &ids), ["b"].into());
        assert_eq!(failed_items(&json!({"batchItemFailures": [{"itemIdentifier": "zz"}]}), &ids), ids);
        assert!(failed_items(&json!({"batchItemFailures": []}), &ids).is_empty());
        assert!(failed_items(&Value::Null, &ids).is_empty());
    }
}
