//! Releases through published versions and an alias, end to end against the testbed: the alias created on the first
//! release; canary and linear steps judged by CloudWatch (alarms, the new version's own error rate from simulated
//! traffic through the alias) and a smoke test; automatic rollback; rollback by commit as one alias move; the
//! rollout resumed by another container and advanced exactly once by concurrent invocations; supersede, suspend,
//! drift of the alias, lost status writes (the alias is the truth), old versions deleted; and the bad input the
//! issue names. The deployer wakes itself through its SQS queue, delivered as an event source mapping would.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_deployer::crd::{
    Analysis, LambdaDeployment, LambdaDeploymentSpec, Phase, RETRY_ANNOTATION, RolloutState, Strategy,
};
use lambda_deployer::deployer::{Deployer, Summary};
use serde_json::{Value, json};
use support::{World, commit};
use testbed::aws::{Fault, FaultAction, QueueDelivery, Trigger, deliver_queue};
use tokio::sync::Mutex;

/// Faults are global to the testbed: the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

const ALIAS: &str = "live";

/// A release test: a function, its queue, a deployer woken by the queue.
struct Release {
    world: World,
    function: String,
    arn: String,
    deployer: Arc<Deployer>,
    queue: String,
}

impl Release {
    async fn new(namespace: &str) -> Release {
        let world = World::new(namespace).await;
        let arn = world.create_function("fn", "initial").await;
        let function = world.function_name("fn");
        let queue = world.queue("rollouts").await;
        let deployer = Arc::new(world.deployer(&[("ROLLOUT_QUEUE_URL", &queue)]).await);
        Release { world, function, arn, deployer, queue }
    }

    /// Delivers the rollout queue to `deployers` (each batch to all of them at once).
    fn deliver(&self, deployers: Vec<Arc<Deployer>>) -> QueueDelivery {
        deliver_queue(&self.queue, 10, move |event: Value| {
            let handling: Vec<_> = deployers
                .iter()
                .map(|deployer| {
                    let (deployer, event) = (deployer.clone(), event.clone());
                    tokio::spawn(
                        async move { deployer.handle(&event, None).await.map(|_| ()).map_err(|e| e.to_string()) },
                    )
                })
                .collect();
            async move {
                for handled in futures::future::join_all(handling).await {
                    handled.map_err(|e| e.to_string())??;
                }
                Ok(json!({}))
            }
        })
        .expect("the queue is deliverable")
    }

    fn spec(&self, commit: &str, strategy: Option<Strategy>, analysis: Option<Analysis>) -> LambdaDeploymentSpec {
        LambdaDeploymentSpec {
            function_arn: self.arn.clone(),
            function_name: self.function.clone(),
            commit: commit.into(),
            alias: Some(ALIAS.into()),
            strategy,
            analysis,
            ..Default::default()
        }
    }

    /// Uploads a release whose code is `content` (markers script how it behaves); returns its commit.
    async fn upload(&self, label: &str, content: &str) -> String {
        let c = commit(&format!("{}-{label}", self.world.namespace));
        self.world.upload(&format!("{}/{c}.zip", self.function), content).await;
        c
    }

    async fn sweep(&self) -> Summary {
        self.deployer.handle(&json!({"action": "sweep"}), None).await.expect("a sweep")
    }

    async fn ld(&self) -> LambdaDeployment {
        self.world.ld("app").await
    }

    /// The alias as Lambda has it: its main version and the additional version's weight.
    async fn alias(&self) -> (String, Option<(String, f64)>) {
        let alias = self.world.lambda.get_alias().function_name(&self.function).name(ALIAS).send().await.unwrap();
        let weights = alias.routing_config().and_then(|r| r.additional_version_weights());
        let additional = weights.and_then(|w| w.iter().next()).map(|(v, w)| (v.clone(), *w));
        (alias.function_version().unwrap_or_default().to_string(), additional)
    }

    /// Waits (≤ `within`) until the LD's phase is `phase`.
    async fn until_phase(&self, phase: Phase, within: Duration) -> LambdaDeployment {
        let started = Instant::now();
        loop {
            let ld = self.ld().await;
            if ld.status.as_ref().and_then(|s| s.phase) == Some(phase) {
                return ld;
            }
            assert!(started.elapsed() < within, "not {phase:?} after {within:?}: {:?}", ld.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Successful (2xx) calls of `operation` about the function.
    fn successful(&self, operation: &str) -> usize {
        self.world.calls_to(&self.function, operation).into_iter().filter(|s| (200..300).contains(s)).count()
    }
}

/// A test's simulated traffic stops with it.
impl Drop for Release {
    fn drop(&mut self) {
        self.world.testbed.aws().stop_traffic(&self.function, ALIAS);
    }
}

fn canary(weights: &[u32], interval: &str) -> Option<Strategy> {
    Some(Strategy { canary: Some(weights.to_vec()), interval: Some(interval.into()), ..Default::default() })
}

fn error_gate(max_error_rate: f64, min_invocations: u32) -> Option<Analysis> {
    Some(Analysis {
        max_error_rate: Some(max_error_rate),
        min_invocations: Some(min_invocations),
        ..Default::default()
    })
}

/// The first release creates the alias on version 1; the traffic starts.
async fn first_release(release: &Release, strategy: Option<Strategy>, analysis: Option<Analysis>) -> String {
    let c1 = release.upload("1", "release 1").await;
    release.world.apply_spec("app", release.spec(&c1, strategy, analysis)).await;
    let summary = release.sweep().await;
    assert_eq!((summary.deployed, summary.promoted), (1, 1), "{summary:?}");
    assert_eq!(release.alias().await, ("1".to_string(), None));
    release.world.testbed.aws().start_traffic(&release.function, ALIAS, 100.0).unwrap();
    c1
}

#[tokio::test]
async fn a_healthy_canary_is_promoted_on_schedule_and_a_bad_one_is_rolled_back_and_not_retried() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-canary").await;
    let (strategy, analysis) = (canary(&[20], "3s"), error_gate(10.0, 3));
    first_release(&release, strategy.clone(), analysis.clone()).await;
    let _delivery = release.deliver(vec![release.deployer.clone()]);

    // A healthy release: 20% for 3 s, judged by its own error rate, then all of it.
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, strategy.clone(), analysis.clone())).await;
    let started = release.sweep().await;
    assert_eq!(started.progressing, 1, "{started:?}");
    assert_eq!(release.alias().await, ("1".to_string(), Some(("2".to_string(), 0.2))));
    let ld = release.ld().await;
    let status = ld.status.unwrap();
    assert_eq!((status.phase, status.rollout.as_ref().map(|r| r.weight)), (Some(Phase::Progressing), Some(20)));
    let due: jiff::Timestamp = status.rollout.unwrap().next_step_at.unwrap().parse().unwrap();
    let ld = release.until_phase(Phase::Deployed, Duration::from_secs(15)).await;
    let promoted_at = jiff::Timestamp::now();
    assert_eq!(release.alias().await, ("2".to_string(), None));
    let status = ld.status.unwrap();
    assert_eq!(status.version.as_deref(), Some("2"));
    assert_eq!(status.deployed_commit.as_deref(), Some(c2.as_str()));
    let outcomes: Vec<(String, RolloutState)> = status.history.iter().map(|h| (h.version.clone(), h.outcome)).collect();
    assert_eq!(outcomes, [("2".into(), RolloutState::Promoted), ("1".into(), RolloutState::Promoted)]);
    let late = promoted_at.duration_since(due).as_secs_f64();
    assert!(late < 3.0, "promoted {late:.2} s after the step was due");
    let reasons = release.world.event_reasons("app").await;
    assert!(reasons.iter().any(|r| r == "ReleaseStarted") && reasons.iter().any(|r| r == "Promoted"), "{reasons:?}");
    let v2 = release.world.testbed.aws().traffic().into_iter().find(|t| t.qualifier == ALIAS).unwrap().versions["2"];
    assert!(v2.invocations >= 5 && v2.errors == 0, "version 2 was judged on its own traffic: {v2:?}");

    // A release whose version fails half its invocations: rolled back to version 2, all traffic restored.
    let c3 = release.upload("3", "release 3 testbed:error-rate=0.5").await;
    release.world.apply_spec("app", release.spec(&c3, strategy.clone(), analysis.clone())).await;
    release.sweep().await;
    let ld = release.until_phase(Phase::RolledBack, Duration::from_secs(15)).await;
    assert_eq!(release.alias().await, ("2".to_string(), None), "all traffic back on the stable version");
    let status = ld.status.unwrap();
    let message = status.message.unwrap();
    assert!(message.contains("error rate of version 3 is") && message.contains("above 10%"), "{message}");
    assert!(release.world.event_reasons("app").await.iter().any(|r| r == "RolledBack"));
    assert_eq!(status.deployed_commit.as_deref(), Some(c2.as_str()), "the stable commit still runs");

    // Not retried in a loop: sweeps leave it; the retry annotation starts it again.
    let moves = release.successful("UpdateAlias");
    for _ in 0..2 {
        assert_eq!(release.sweep().await.rolled_back, 1);
    }
    assert_eq!(release.successful("UpdateAlias"), moves, "a rolled-back commit is not released again");
    let annotate = json!({"metadata": {"annotations": {RETRY_ANNOTATION: "again"}}});
    release.world.lds().patch("app", &Default::default(), &kube::api::Patch::Merge(annotate)).await.unwrap();
    assert_eq!(release.sweep().await.progressing, 1, "the retry releases it again");
}

#[tokio::test]
async fn a_firing_alarm_rolls_back_and_names_the_alarm() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-alarm").await;
    let alarm = format!("{}-errors", release.world.namespace);
    release
        .world
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .unwrap();
    let analysis = Some(Analysis { alarms: vec![alarm.clone()], ..Default::default() });
    first_release(&release, canary(&[10], "3s"), analysis.clone()).await;
    let _delivery = release.deliver(vec![release.deployer.clone()]);
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, canary(&[10], "3s"), analysis)).await;
    release.sweep().await;
    release
        .world
        .cloudwatch
        .set_alarm_state()
        .alarm_name(&alarm)
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("errors")
        .send()
        .await
        .unwrap();
    let ld = release.until_phase(Phase::RolledBack, Duration::from_secs(15)).await;
    let message = ld.status.unwrap().message.unwrap();
    assert!(message.contains(&format!("alarm \"{alarm}\" is in ALARM")), "{message}");
    assert_eq!(release.alias().await, ("1".to_string(), None));
}

#[tokio::test]
async fn a_failing_smoke_test_rolls_back_with_no_traffic_moved() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-smoke").await;
    let analysis = Some(Analysis { smoke_test_payload: Some(r#"{"ping": true}"#.into()), ..Default::default() });
    first_release(&release, canary(&[10], "3s"), analysis.clone()).await;
    let c2 = release.upload("2", "release 2 testbed:invoke-error").await;
    release.world.apply_spec("app", release.spec(&c2, canary(&[10], "3s"), analysis)).await;
    let moves = release.successful("UpdateAlias");
    let summary = release.sweep().await;
    assert_eq!(summary.rolled_back, 1, "{summary:?}");
    assert_eq!(release.successful("UpdateAlias"), moves, "no traffic moved");
    assert_eq!(release.alias().await, ("1".to_string(), None));
    let message = release.ld().await.status.unwrap().message.unwrap();
    assert!(message.contains("smoke test of version 2 failed: Unhandled"), "{message}");
    let invoke = release.world.testbed.aws().calls();
    let invoked = invoke.of("lambda", "Invoke").find(|c| c.function.as_deref() == Some(&release.function)).unwrap();
    assert_eq!(invoked.params.get("Qualifier").map(String::as_str), Some("2"), "the version itself was invoked");
}

#[tokio::test]
async fn rolling_back_by_commit_to_a_released_version_is_one_alias_move() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-rollback").await;
    let c1 = first_release(&release, None, None).await;
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, canary(&[10], "1h"), None)).await;
    release.sweep().await;
    release.world.testbed.aws().clear_calls();
    // The canary of version 2 is still at 10%: the user goes back to commit 1.
    release.world.apply_spec("app", release.spec(&c1, canary(&[10], "1h"), None)).await;
    let summary = release.sweep().await;
    assert_eq!(release.alias().await, ("1".to_string(), None), "{summary:?}");
    assert_eq!(release.successful("UpdateFunctionCode"), 0);
    assert_eq!(release.successful("PublishVersion"), 0);
    assert_eq!(release.successful("UpdateAlias"), 1, "one move: version 2's traffic back, version 1 all of it");
    let status = release.ld().await.status.unwrap();
    assert_eq!((status.phase, status.deployed_commit.as_deref()), (Some(Phase::Deployed), Some(c1.as_str())));
    assert_eq!(status.history[0].outcome, RolloutState::Superseded);
}

#[tokio::test]
async fn a_rollout_is_resumed_by_another_container_and_concurrent_invocations_take_each_step_once() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-resume").await;
    first_release(&release, None, None).await;
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, canary(&[10, 50], "3s"), None)).await;
    release.sweep().await;
    assert_eq!(release.alias().await.1, Some(("2".to_string(), 0.1)));
    // That container is gone; two new ones get every wake-up at the same time.
    let (b, c) = (
        Arc::new(release.world.deployer(&[("ROLLOUT_QUEUE_URL", &release.queue)]).await),
        Arc::new(release.world.deployer(&[("ROLLOUT_QUEUE_URL", &release.queue)]).await),
    );
    release.world.testbed.aws().clear_calls();
    let _delivery = release.deliver(vec![b, c]);
    release.until_phase(Phase::Deployed, Duration::from_secs(20)).await;
    assert_eq!(release.alias().await, ("2".to_string(), None));
    let moves: Vec<u16> = release.world.calls_to(&release.function, "UpdateAlias");
    assert_eq!(
        moves.iter().filter(|s| (200..300).contains(*s)).count(),
        2,
        "one move per step (50%, then 100%): {moves:?}"
    );
}

#[tokio::test]
async fn a_new_commit_supersedes_the_rollout_and_its_release_starts_from_the_stable_version() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-supersede").await;
    first_release(&release, None, None).await;
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, canary(&[10], "1h"), None)).await;
    release.sweep().await;
    let c3 = release.upload("3", "release 3").await;
    release.world.apply_spec("app", release.spec(&c3, canary(&[10], "1h"), None)).await;
    release.sweep().await;
    assert_eq!(release.alias().await, ("1".to_string(), Some(("3".to_string(), 0.1))), "version 2 gets nothing");
    let status = release.ld().await.status.unwrap();
    assert_eq!(
        status.rollout.as_ref().map(|r| (r.version.as_str(), r.stable_version.as_deref())),
        Some(("3", Some("1")))
    );
    assert_eq!((status.history[0].version.as_str(), status.history[0].outcome), ("2", RolloutState::Superseded));
    assert!(release.world.event_reasons("app").await.iter().any(|r| r == "Superseded"));
}

#[tokio::test]
async fn suspend_pauses_a_rollout_where_it_is() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-suspend").await;
    first_release(&release, None, None).await;
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, canary(&[10], "2s"), None)).await;
    release.sweep().await;
    release
        .world
        .apply_spec("app", LambdaDeploymentSpec { suspend: Some(true), ..release.spec(&c2, canary(&[10], "2s"), None) })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(release.sweep().await.suspended, 1);
    assert_eq!(release.alias().await, ("1".to_string(), Some(("2".to_string(), 0.1))), "still at its step");
    assert_eq!(release.ld().await.status.unwrap().rollout.map(|r| r.weight), Some(10));
    release.world.apply_spec("app", release.spec(&c2, canary(&[10], "2s"), None)).await;
    release.sweep().await;
    assert_eq!(release.alias().await, ("2".to_string(), None), "resumed and promoted");
}

#[tokio::test]
async fn an_alias_moved_out_of_band_is_put_back_and_a_lost_status_write_is_recognised_from_the_alias() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-alias-truth").await;
    first_release(&release, None, None).await;
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, None, None)).await;
    release.sweep().await;
    assert_eq!(release.alias().await.0, "2");

    // Someone points the alias back at version 1 by hand: the sweep puts it back.
    release
        .world
        .lambda
        .update_alias()
        .function_name(&release.function)
        .name(ALIAS)
        .function_version("1")
        .send()
        .await
        .unwrap();
    let summary = release.sweep().await;
    assert_eq!(summary.deployed, 1, "{summary:?}");
    assert_eq!(release.alias().await, ("2".to_string(), None));
    assert!(release.world.event_reasons("app").await.iter().any(|r| r == "AliasRestored"));

    // A step whose status write is lost: the next invocation sees the step on the alias and does not take it again.
    let c3 = release.upload("3", "release 3").await;
    release.world.apply_spec("app", release.spec(&c3, canary(&[10, 50], "2s"), None)).await;
    release.sweep().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kube = release.world.testbed.kube();
    kube.inject(testbed::apiserver::KubeFault {
        namespace: Some(release.world.namespace.clone()),
        ..testbed::apiserver::KubeFault::status(500).on_status_writes("lambdadeployments").times(20)
    });
    release.sweep().await;
    kube.clear_faults();
    assert_eq!(release.alias().await.1, Some(("3".to_string(), 0.5)), "the step was taken");
    assert_eq!(release.ld().await.status.unwrap().rollout.map(|r| r.weight), Some(10), "its status write was lost");
    let moves = release.successful("UpdateAlias");
    release.sweep().await;
    assert_eq!(release.successful("UpdateAlias"), moves, "the step is not taken twice");
    let status = release.ld().await.status.unwrap();
    assert_eq!(status.rollout.map(|r| r.weight), Some(50), "the status follows the alias");
    assert!(release.world.event_reasons("app").await.iter().any(|r| r == "AliasDisagreed"));
}

#[tokio::test]
async fn old_versions_beyond_keep_versions_are_deleted_but_never_the_stable_or_current_one() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-prune").await;
    let keep = |commit: &str| LambdaDeploymentSpec { keep_versions: Some(2), ..release.spec(commit, None, None) };
    for n in 1..=4 {
        let c = release.upload(&n.to_string(), &format!("release {n}")).await;
        release.world.apply_spec("app", keep(&c)).await;
        release.sweep().await;
    }
    let versions =
        release.world.lambda.list_versions_by_function().function_name(&release.function).send().await.unwrap();
    let published: Vec<&str> =
        versions.versions().iter().filter_map(|v| v.version()).filter(|v| *v != "$LATEST").collect();
    assert_eq!(published, ["3", "4"], "versions 1 and 2 deleted; 3 and 4 kept");
    assert_eq!(release.alias().await.0, "4");
}

#[tokio::test]
async fn bad_release_input_gets_a_clear_answer_and_moves_no_traffic() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-bad-input").await;
    first_release(&release, None, None).await;
    let c2 = release.upload("2", "release 2").await;

    // Alarms that do not exist: nothing starts.
    let missing = Some(Analysis { alarms: vec!["no-such-alarm".into()], ..Default::default() });
    release.world.apply_spec("app", release.spec(&c2, canary(&[10], "1h"), missing)).await;
    let summary = release.sweep().await;
    assert_eq!(summary.failed, 1, "{summary:?}");
    let message = release.ld().await.status.unwrap().message.unwrap();
    assert!(message.contains("no alarm named [\"no-such-alarm\"] exists; no traffic was moved"), "{message}");
    assert_eq!(release.alias().await, ("1".to_string(), None));

    // A smoke-test payload that is not JSON, stored past the schema: invalid, named.
    let mut raw = serde_json::to_value(LambdaDeployment::new("raw", release.spec(&c2, None, None))).unwrap();
    raw["metadata"]["namespace"] = json!(release.world.namespace);
    raw["spec"]["analysis"] = json!({"smokeTestPayload": "{not json"});
    raw["spec"]["strategy"] = json!({"canary": [10]});
    release.world.testbed.kube().insert_raw(raw).unwrap();
    release.sweep().await;
    let message = release.world.ld("raw").await.status.unwrap().message.unwrap();
    assert!(message.starts_with("spec.analysis.smokeTestPayload is not JSON"), "{message}");

    // Strategy values out of range: the API server refuses them.
    let out_of_range = LambdaDeployment::new("range", release.spec(&c2, canary(&[150], "1m"), None));
    let refused = release.world.lds().create(&Default::default(), &out_of_range).await.unwrap_err();
    assert!(refused.to_string().contains("spec.strategy.canary"), "{refused}");

    // Provisioned concurrency on the alias and a weighted strategy: Lambda refuses; no traffic moved, not retried.
    release.world.lds().delete("raw", &Default::default()).await.unwrap();
    release
        .world
        .lambda
        .put_provisioned_concurrency_config()
        .function_name(&release.function)
        .qualifier(ALIAS)
        .provisioned_concurrent_executions(1)
        .send()
        .await
        .unwrap();
    release.world.apply_spec("app", release.spec(&c2, canary(&[10], "1h"), None)).await;
    let summary = release.sweep().await;
    assert_eq!(summary.rolled_back, 1, "{summary:?}");
    let message = release.ld().await.status.unwrap().message.unwrap();
    assert!(message.contains("Provisioned Concurrency"), "{message}");
    assert_eq!(release.alias().await, ("1".to_string(), None));
}

#[tokio::test]
async fn a_deleted_version_is_rebuilt_and_a_conflicting_alias_move_is_retried() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-races").await;
    let c1 = first_release(&release, None, None).await;
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, None, None)).await;
    release.sweep().await;
    // Version 1 deleted by hand; the rollback to commit 1 builds it again.
    release.world.lambda.delete_function().function_name(&release.function).qualifier("1").send().await.unwrap();
    let aws = release.world.testbed.aws();
    aws.inject(Fault::new("UpdateAlias", FaultAction::StaleRevision).function(&release.function).when(Trigger::Nth(1)))
        .unwrap();
    release.world.apply_spec("app", release.spec(&c1, None, None)).await;
    let summary = release.sweep().await;
    aws.clear_faults();
    assert_eq!(summary.deployed, 1, "{summary:?}");
    let (version, _) = release.alias().await;
    assert_eq!(version, "3", "commit 1's code published again as version 3");
    let statuses = release.world.calls_to(&release.function, "UpdateAlias");
    assert!(
        statuses.contains(&412) && statuses.iter().filter(|s| (200..300).contains(*s)).count() >= 1,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_version_that_cannot_be_judged_is_held_then_rolled_back_after_three_intervals() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-unjudged").await;
    let (strategy, analysis) = (canary(&[10], "2s"), error_gate(5.0, 1));
    first_release(&release, strategy.clone(), analysis.clone()).await;
    let denied = Fault::new("GetMetricData", FaultAction::AccessDenied).service("monitoring");
    release.world.testbed.aws().inject(denied).unwrap();
    let _delivery = release.deliver(vec![release.deployer.clone()]);
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, strategy, analysis)).await;
    release.sweep().await;
    // After the step's interval the judgment fails: held, and the reason shown.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = release.ld().await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Progressing));
    let reason = status.rollout.and_then(|r| r.reason).unwrap_or_default();
    assert!(reason.starts_with("cannot judge yet:") && reason.contains("not authorized"), "{reason}");
    assert_eq!(release.alias().await, ("1".to_string(), Some(("2".to_string(), 0.1))), "held where it was");
    // Three intervals later without a judgment: rolled back, not kept on traffic unjudged.
    let ld = release.until_phase(Phase::RolledBack, Duration::from_secs(20)).await;
    release.world.testbed.aws().clear_faults();
    let message = ld.status.unwrap().message.unwrap();
    assert!(message.contains("could not be judged for 3 intervals"), "{message}");
    assert_eq!(release.alias().await, ("1".to_string(), None));
}

#[tokio::test]
async fn an_invocation_out_of_time_mid_rollout_leaves_it_for_the_next_which_takes_the_step_once() {
    let _serial = SERIAL.lock().await;
    let release = Release::new("release-deadline").await;
    first_release(&release, None, None).await;
    let c2 = release.upload("2", "release 2").await;
    release.world.apply_spec("app", release.spec(&c2, canary(&[10, 50], "2s"), None)).await;
    release.sweep().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A wake-up whose invocation has no time left (Lambda's deadline is 5 s away, all of it kept for reporting).
    let wakeup = json!({"Records": [{"eventSource": "aws:sqs", "body": json!({"action": "advance", "namespace": release.world.namespace, "name": "app", "due": jiff::Timestamp::now().to_string()}).to_string()}]});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let moves = release.successful("UpdateAlias");
    let summary = release.deployer.handle(&wakeup, Some(deadline)).await.unwrap();
    assert_eq!(summary.skipped, 1, "{summary:?}");
    assert_eq!(release.alias().await.1, Some(("2".to_string(), 0.1)), "no step taken out of time");
    // The wake-up was sent again, for at once: the next invocation takes the step.
    let messages =
        release.world.sqs.receive_message().queue_url(&release.queue).max_number_of_messages(10).send().await.unwrap();
    let resent: Vec<&str> = messages.messages().iter().filter_map(|m| m.body()).collect();
    assert!(resent.iter().any(|b| b.contains("\"name\":\"app\"")), "{resent:?}");
    let summary = release.deployer.handle(&wakeup, None).await.unwrap();
    assert_eq!(summary.progressing, 1, "{summary:?}");
    assert_eq!(release.alias().await.1, Some(("2".to_string(), 0.5)));
    assert_eq!(release.successful("UpdateAlias"), moves + 1, "the step taken once");
}
