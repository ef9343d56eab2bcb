//! Flapping alarms. moto's CloudWatch never evaluates an alarm (its state changes only through SetAlarmState), so
//! the testbed plays the evaluation: a flapping alarm is set ALARM at once, then toggled OK↔ALARM every period.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::moto_client::LAYER_KEY;
use super::{Shared, lock};

const CLOUDWATCH: &str = "GraniteServiceVersion20100801";

/// An alarm the testbed toggles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flap {
    pub alarm: String,
    pub period_ms: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot flap the alarm: {0}")]
pub struct InvalidFlap(pub String);

#[derive(Default)]
pub(crate) struct Flaps {
    running: Mutex<BTreeMap<String, (u64, tokio::task::AbortHandle)>>,
}

impl Flaps {
    /// Starts toggling `flap.alarm` (restarting it if it already flaps). The alarm must exist.
    pub(super) async fn start(&self, shared: &Arc<Shared>, flap: Flap) -> Result<(), InvalidFlap> {
        if flap.period_ms == 0 {
            return Err(InvalidFlap("period_ms must be positive".into()));
        }
        let describe = json!({ "AlarmNames": [flap.alarm] });
        let target = format!("{CLOUDWATCH}.DescribeAlarms");
        let (status, answer) = shared
            .moto
            .call_json(LAYER_KEY, "monitoring", &target, &describe)
            .await
            .map_err(|e| InvalidFlap(format!("DescribeAlarms failed: {e}")))?;
        let found = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|d| d.get("MetricAlarms").and_then(Value::as_array).map(|a| !a.is_empty()));
        if !status.is_success() || found != Some(true) {
            return Err(InvalidFlap(format!("no alarm named {}", flap.alarm)));
        }
        let task = shared.runtime.spawn(toggle(Arc::downgrade(shared), flap.clone())).abort_handle();
        if let Some((_, old)) = lock(&self.running).insert(flap.alarm, (flap.period_ms, task)) {
            old.abort();
        }
        Ok(())
    }

    pub(super) fn stop(&self, alarm: &str) -> bool {
        lock(&self.running).remove(alarm).map(|(_, task)| task.abort()).is_some()
    }

    pub(super) fn stop_all(&self) {
        for (_, (_, task)) in std::mem::take(&mut *lock(&self.running)) {
            task.abort();
        }
    }

    pub(super) fn list(&self) -> Vec<Flap> {
        lock(&self.running)
            .iter()
            .map(|(alarm, (period_ms, _))| Flap { alarm: alarm.clone(), period_ms: *period_ms })
            .collect()
    }
}

async fn toggle(shared: Weak<Shared>, flap: Flap) {
    let target = format!("{CLOUDWATCH}.SetAlarmState");
    let reason = format!("testbed: flapping every {} ms", flap.period_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(flap.period_ms));
    for state in ["ALARM", "OK"].into_iter().cycle() {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let body = json!({ "AlarmName": flap.alarm, "StateValue": state, "StateReason": reason });
        match shared.moto.call_json(LAYER_KEY, "monitoring", &target, &body).await {
            Ok((status, _)) if status.is_success() => {}
            Ok((status, answer)) => {
                tracing::warn!(alarm = %flap.alarm, %status, answer = %String::from_utf8_lossy(&answer), "flap refused");
            }
            Err(e) => tracing::warn!(alarm = %flap.alarm, error = %e, "flap failed"),
        }
    }
}
