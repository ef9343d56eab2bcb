//! How the deployer wakes itself when a rollout step is due: a message to its own SQS queue, delayed until then
//! (`DelaySeconds`, at most 15 minutes: a longer wait is a chain of messages). The queue's event source mapping
//! invokes the deployer with the message. Second precision, retries and a dead-letter queue come with SQS, and it
//! needs no role to pass (EventBridge Scheduler's one-time schedules have minute precision and need one).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::retry::{Budget, Call};

/// SQS's limit on `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// The message: which LambdaDeployment, and when its step is due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wakeup {
    /// Always `"advance"`: what the deployer does with it.
    pub action: String,
    pub namespace: String,
    pub name: String,
    /// RFC 3339.
    pub due: String,
}

impl Wakeup {
    pub fn new(namespace: &str, name: &str, due: jiff::Timestamp) -> Wakeup {
        Wakeup { action: "advance".into(), namespace: namespace.into(), name: name.into(), due: due.to_string() }
    }

    /// When the step is due (`None`: `due` is not a time).
    pub fn due_at(&self) -> Option<jiff::Timestamp> {
        self.due.parse().ok()
    }
}

pub struct Wakeups {
    sqs: aws_sdk_sqs::Client,
    /// `ROLLOUT_QUEUE_URL`; without it, due steps are taken by the scheduled sweeps.
    queue_url: Option<String>,
}

impl Wakeups {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: Option<String>) -> Self {
        Wakeups { sqs, queue_url }
    }

    /// Sends the wake-up for `wakeup.due` (or, if that is further than SQS can delay, for as far as it can: the
    /// deployer then sends the next link). `Ok(false)` when no queue is configured.
    pub async fn schedule(&self, wakeup: &Wakeup, budget: Budget<'_>) -> Result<bool, Error> {
        let Some(queue_url) = &self.queue_url else { return Ok(false) };
        let due: jiff::Timestamp =
            wakeup.due.parse().map_err(|e| Error::Payload(format!("due {:?}: {e}", wakeup.due)))?;
        let wait = due.duration_since(jiff::Timestamp::now()).unsigned_abs();
        // Rounded up: waking a little late is fine, early would need another message.
        let delay = wait.min(MAX_DELAY).as_secs() + u64::from(wait.subsec_nanos() > 0);
        let body = serde_json::to_string(wakeup).unwrap_or_default();
        budget
            .run(Call::new("sqs", "SendMessage"), None, || async {
                self.sqs
                    .send_message()
                    .queue_url(queue_url)
                    .message_body(&body)
                    .delay_seconds(delay.min(MAX_DELAY.as_secs()) as i32)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| crate::aws::aws_error("sqs", "SendMessage", e))
            })
            .await?;
        Ok(true)
    }
}
