//! Releases through an alias at fleet scale: (e) an in-sync sweep of a fleet whose every LambdaDeployment releases
//! through an alias (observed by GetFunction with the alias as qualifier: GetFunction's own quota), (f) a rollback by
//! commit to a released version (one alias move, nothing built), and (g) how late canary steps are taken after they
//! are due, the deployer woken through its SQS queue as an event source mapping would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::api::{Patch, PatchParams};
use lambda_deployer::crd::{Phase, RolloutState};
use lambda_deployer::deployer::Deployer;
use serde::Serialize;
use serde_json::{Value, json};
use testbed::aws::deliver_queue;

use super::support::commit;
use super::{Actor, BenchResult, Fleet, FloorInput, Quota, Scenario, measure, set_quotas, time_origin};

const ALIAS: &str = "live";
/// LambdaDeployments whose canary steps are timed (their steps fall due close together, as releases of one
/// commit to several environments do), the canary's weights, and the hold of each step.
const TIMED: usize = 5;
pub const WEIGHTS: [u32; 5] = [10, 20, 30, 40, 50];
pub const STEP: &str = "3s";

/// How late rollout steps were taken after they were due.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepLateness {
    pub steps: usize,
    pub median_ms: f64,
    pub max_ms: f64,
    pub late_ms: Vec<f64>,
}

/// A wake-up the queue delivered: which LambdaDeployment, its step's due time (ms since the epoch).
type Woken = Arc<Mutex<Vec<(String, f64)>>>;

impl Fleet {
    /// Scenarios e, f and g; returns their rows and the steps' lateness.
    pub async fn release_scenarios(&self, quota: Quota) -> BenchResult<(Vec<Scenario>, StepLateness)> {
        let world = &self.world;
        let actor = Actor::deployer();
        let n = self.size;
        let queue = world.queue("bench-rollouts").await;
        let deployer = Arc::new(world.deployer(&[("ROLLOUT_QUEUE_URL", &queue)]).await);
        let mut scenarios = Vec::new();

        // Setup, quotas off: every LambdaDeployment releases its commit through alias `live` (publish + create).
        set_quotas(world, false);
        for member in &self.members {
            self.patch(&member.ld, json!({"spec": {"alias": ALIAS}})).await?;
        }
        let summary = deployer.handle(&json!({"action": "sweep"}), None).await?;
        set_quotas(world, true);
        println!(
            "fleet {n}: every LambdaDeployment released through alias {ALIAS} (quotas off): {} promoted",
            summary.promoted
        );

        // (e) In sync: each alias observed by GetFunction(Qualifier=alias), on its own 100/s quota.
        let floor = FloorInput {
            observed: n,
            in_account: self.in_account,
            updates: 0,
            tags: 0,
            confirm: false,
            listable: false,
        };
        let s = measure(
            world,
            &format!("e: sweep, all {n} with an alias, in sync"),
            "alias",
            &actor,
            floor,
            quota,
            async { Ok(serde_json::to_value(deployer.handle(&json!({"action": "sweep"}), None).await?)?) },
        )
        .await?;
        scenarios.push(s);

        // (f) Rollback by commit: one LambdaDeployment moves to commit 2 (built, published), then back to commit 1.
        let member = &self.members[n / 3];
        let c1 = member.key.rsplit('/').next().unwrap_or_default().trim_end_matches(".zip").to_string();
        let c2 = commit(&format!("{}-rollback", member.function));
        world.upload_with_checksum(&format!("{}/{c2}.zip", member.function), "release 2 (to roll back)").await;
        self.patch(&member.ld, json!({"spec": {"commit": c2}})).await?;
        deployer.handle(&wakeups(world, &[&member.ld]), None).await?;
        self.patch(&member.ld, json!({"spec": {"commit": c1}})).await?;
        let floor = FloorInput { observed: 1, in_account: 1, updates: 1, tags: 0, confirm: false, listable: false };
        let s = measure(world, "f: rollback by commit to a released version", "alias", &actor, floor, quota, async {
            Ok(serde_json::to_value(deployer.handle(&wakeups(world, &[&member.ld]), None).await?)?)
        })
        .await?;
        scenarios.push(s);

        Ok((scenarios, self.time_steps(&deployer, &queue).await?))
    }

    /// (g) `TIMED` LambdaDeployments release a new commit through a canary of `WEIGHTS` every `STEP`; each step's lateness
    /// is its UpdateAlias's time minus the due time its wake-up carried.
    async fn time_steps(&self, deployer: &Arc<Deployer>, queue: &str) -> BenchResult<StepLateness> {
        let world = &self.world;
        let timed = &self.members[..TIMED.min(self.size)];
        for member in timed {
            let c3 = commit(&format!("{}-canary", member.function));
            world.upload_with_checksum(&format!("{}/{c3}.zip", member.function), "release 3 (canary)").await;
            let strategy = json!({"canary": WEIGHTS, "interval": STEP});
            self.patch(&member.ld, json!({"spec": {"commit": c3, "strategy": strategy}})).await?;
        }
        let woken: Woken = Arc::default();
        // Two pollers, as the template's reserved concurrency of 2 lets the event source mapping run two at once.
        let deliver = || {
            let (deployer, woken) = (deployer.clone(), woken.clone());
            deliver_queue(queue, 10, move |event: Value| {
                for record in event["Records"].as_array().into_iter().flatten() {
                    let body: Value =
                        serde_json::from_str(record["body"].as_str().unwrap_or_default()).unwrap_or_default();
                    let due = body["due"].as_str().and_then(|d| d.parse::<jiff::Timestamp>().ok());
                    if let (Some(name), Some(due)) = (body["name"].as_str(), due) {
                        woken
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((name.to_string(), due.as_millisecond() as f64));
                    }
                }
                let deployer = deployer.clone();
                async move { deployer.handle(&event, None).await.map(|_| json!({})).map_err(|e| e.to_string()) }
            })
        };
        let deliveries = [deliver()?, deliver()?];
        let (origin, origin_layer_ms) = time_origin(world).await?;
        let origin_wall_ms =
            SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as f64 - origin.elapsed().as_millis() as f64;
        let names: Vec<&str> = timed.iter().map(|m| m.ld.as_str()).collect();
        deployer.handle(&wakeups(world, &names), None).await?;
        let promoted = self.until_promoted(&names, Duration::from_secs(120)).await;
        for delivery in deliveries {
            delivery.finish().await;
        }
        promoted?;

        let function_of: HashMap<&str, &str> = timed.iter().map(|m| (m.ld.as_str(), m.function.as_str())).collect();
        let calls = world.testbed.aws().calls();
        let woken = woken.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut late_ms = Vec::new();
        for (name, due_wall_ms) in &woken {
            let due_layer_ms = origin_layer_ms + (due_wall_ms - origin_wall_ms);
            let function = function_of.get(name.as_str()).copied().unwrap_or_default();
            let taken = calls
                .of("lambda", "UpdateAlias")
                .filter(|c| {
                    c.function.as_deref() == Some(function) && c.applied && c.at_ms as f64 >= due_layer_ms - 1.0
                })
                .map(|c| c.at_ms as f64)
                .fold(f64::INFINITY, f64::min);
            if taken.is_finite() {
                late_ms.push(taken - due_layer_ms);
            }
        }
        late_ms.sort_by(f64::total_cmp);
        let median_ms = late_ms.get(late_ms.len() / 2).copied().unwrap_or(f64::NAN);
        let max_ms = late_ms.last().copied().unwrap_or(f64::NAN);
        Ok(StepLateness { steps: late_ms.len(), median_ms, max_ms, late_ms })
    }

    async fn until_promoted(&self, names: &[&str], within: Duration) -> BenchResult<()> {
        let started = std::time::Instant::now();
        loop {
            let mut pending = 0;
            for name in names {
                let status = self.world.ld(name).await.status.unwrap_or_default();
                let promoted = status.phase == Some(Phase::Deployed)
                    && status.rollout.is_some_and(|r| r.state == RolloutState::Promoted && r.step > 1);
                pending += usize::from(!promoted);
            }
            if pending == 0 {
                return Ok(());
            }
            if started.elapsed() > within {
                return Err(format!("{pending} canaries not promoted after {within:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn patch(&self, ld: &str, patch: Value) -> BenchResult<()> {
        self.world.lds().patch(ld, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }
}

/// The rollout queue's message naming `names`, due now: what the event source mapping hands the deployer.
fn wakeups(world: &super::World, names: &[&str]) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let records: Vec<Value> = names
        .iter()
        .map(|name| {
            let body = json!({"action": "advance", "namespace": world.namespace, "name": name, "due": now});
            json!({"eventSource": "aws:sqs", "body": body.to_string(), "messageId": name})
        })
        .collect();
    json!({ "Records": records })
}
