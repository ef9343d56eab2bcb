//! Kubernetes calls under the invocation's deadline: an API server that throttles, fails or stops answering never
//! keeps an invocation past its deadline, what was done is told truthfully, and what could not be written is
//! written by the next sweep.

mod support;

use std::time::Duration;

use lambda_deployer::crd::Phase;
use serde_json::json;
use support::{World, commit};
use testbed::apiserver::KubeFault;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Faults are global to the testbed: the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn sweep() -> serde_json::Value {
    json!({"action": "sweep"})
}

/// `count` LDs, each for its own new function, with their artifacts uploaded; their names.
async fn lds(world: &World, count: usize) -> Vec<String> {
    let c = commit(&world.namespace);
    let mut names = Vec::new();
    for n in 0..count {
        let name = format!("fn{n}");
        let arn = world.create_function(&name, "initial").await;
        let function = world.function_name(&name);
        world.apply_ld(&name, &arn, &function, &c).await;
        world.upload(&format!("{function}/{c}.zip"), &format!("release of {name}")).await;
        names.push(name);
    }
    names
}

async fn phases(world: &World, names: &[String]) -> Vec<Option<Phase>> {
    let mut phases = Vec::new();
    for name in names {
        phases.push(world.ld(name).await.status.and_then(|s| s.phase));
    }
    phases
}

#[tokio::test]
async fn status_writes_failing_until_the_deadline_leave_a_truthful_summary_and_the_next_sweep_writes_them() {
    let _serial = SERIAL.lock().await;
    let world = World::new("kube-deadline").await;
    let names = lds(&world, 3).await;
    let deployer = world.deployer(&[]).await;
    let kube = world.testbed.kube();
    // Every status write gets no answer (each attempt is given up after CALL_TIMEOUT_SECONDS, 10 s, and retried),
    // every Event a 503.
    kube.inject(
        KubeFault::hang(Duration::from_secs(60)).on_status_writes("lambdadeployments").in_namespace(&world.namespace),
    );
    kube.inject(KubeFault::status(503).on_verbs(&["create"]).in_namespace(&world.namespace));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    let summary = deployer.handle(&sweep(), Some(deadline)).await.unwrap();
    let returned = Instant::now();
    kube.clear_faults();
    assert!(returned < deadline, "returned {:?} after the deadline", returned - deadline);
    assert_eq!(summary.deployed, 3, "the deploys happened and are counted: {summary:?}");
    assert_eq!((summary.status_writes, summary.events_recorded), (0, 0), "nothing claimed written: {summary:?}");
    assert!(
        summary.errors.iter().any(|e| e.contains("status")),
        "the summary says statuses were not written: {summary:?}"
    );
    assert_eq!(phases(&world, &names).await, vec![None; 3], "no status was written");
    for name in &names {
        assert_eq!(world.successful_updates(&world.function_name(name)), 1);
    }

    // The next sweep writes what was left, records the deploys' Events, and deploys nothing again.
    let summary = deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!(summary.status_writes, 3, "{summary:?}");
    assert_eq!(phases(&world, &names).await, vec![Some(Phase::Deployed); 3]);
    for name in &names {
        assert_eq!(world.successful_updates(&world.function_name(name)), 1, "{name} deployed once");
    }
}

#[tokio::test]
async fn a_listing_that_never_succeeds_fails_the_invocation_before_its_deadline() {
    let _serial = SERIAL.lock().await;
    let world = World::new("kube-down").await;
    let names = lds(&world, 1).await;
    let deployer = world.deployer(&[]).await;
    let kube = world.testbed.kube();
    kube.inject(KubeFault::status(503).on_verbs(&["list"]).in_namespace(&world.namespace));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(8);
    let result = deployer.handle(&sweep(), Some(deadline)).await;
    let returned = Instant::now();
    kube.clear_faults();
    assert!(returned < deadline, "returned {:?} after the deadline", returned - deadline);
    let err = result.expect_err("nothing could be listed");
    let message = err.to_string();
    assert_eq!(lambda_runtime::Diagnostic::from(err).error_type, "ClusterUnavailable", "{message}");
    assert_eq!(world.successful_updates(&world.function_name(&names[0])), 0);

    let summary = deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!((summary.deployed, summary.status_writes), (1, 1), "{summary:?}");
}

#[tokio::test]
async fn an_overloaded_api_server_is_waited_out_as_its_retry_after_says() {
    let _serial = SERIAL.lock().await;
    let world = World::new("kube-retry-after").await;
    lds(&world, 1).await;
    let deployer = world.deployer(&[]).await;
    // kube-apiserver's flow control: a plain-text 429 with Retry-After, here 3 s, on the listing once.
    world
        .testbed
        .kube()
        .inject(KubeFault::status(429).retry_after(3).on_verbs(&["list"]).in_namespace(&world.namespace).times(1));
    let started = Instant::now();
    let summary = deployer.handle(&sweep(), None).await.unwrap();
    assert_eq!((summary.deployed, summary.throttled), (1, 1), "{summary:?}");
    assert!(started.elapsed() >= Duration::from_secs(3), "retried after {:?}, before Retry-After", started.elapsed());
}
