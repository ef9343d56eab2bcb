//! How long updates stay InProgress: AWS's seconds by default, drawn from a seeded distribution. Each test has a
//! Testbed of its own: the settings and the generator are global to a layer.

mod aws_support;

use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::LastUpdateStatus;
use aws_support::*;
use testbed::aws::{Fault, FaultAction, LayerConfig};
use testbed::identity::AwsIdentity;
use testbed::up::{Testbed, TestbedOptions};

/// Updates each function to `content` and returns the InProgress times the call log gives them, in order.
async fn update_all(tb: &Testbed, lambda: &aws_sdk_lambda::Client, names: &[String], content: &str) -> Vec<u64> {
    for name in names {
        lambda.update_function_code().function_name(name).zip_file(Blob::new(zip(content))).send().await.unwrap();
    }
    names
        .iter()
        .map(|name| {
            let calls = calls_about(tb, "UpdateFunctionCode", name);
            calls.last().and_then(|c| c.in_progress_ms).expect("an applied update has an InProgress time")
        })
        .collect()
}

#[tokio::test]
async fn update_times_are_drawn_within_the_jitter_differ_and_repeat_for_the_same_seed() {
    let opts = TestbedOptions {
        quotas: false,
        update_in_progress: Duration::from_millis(100),
        update_in_progress_jitter: Duration::from_millis(400),
        ..TestbedOptions::fast()
    };
    let tb = Testbed::start(opts).await.unwrap();
    let lambda = lambda(&tb).await;
    let names: Vec<String> = (0..6).map(|_| unique("drawn")).collect();
    for name in &names {
        create_function(&lambda, name, &zip("one")).await;
    }
    let seeded = LayerConfig { update_seed: 7, ..tb.aws().config() };
    tb.aws().set_config(seeded.clone());

    let first = update_all(&tb, &lambda, &names, "two").await;
    assert!(first.iter().all(|ms| (100..=500).contains(ms)), "within [100, 100 + 400]: {first:?}");
    assert!(first.iter().any(|ms| *ms != first[0]), "updates differ: {first:?}");
    for name in &names {
        settled(&lambda, name).await;
    }

    tb.aws().set_config(seeded);
    let again = update_all(&tb, &lambda, &names, "three").await;
    assert_eq!(again, first, "the same seed draws the same times");
    let fault = Fault::new("UpdateFunctionCode", FaultAction::InProgress { ms: 2_000 }).function(&names[0]);
    tb.aws().inject(fault).unwrap();
    settled(&lambda, &names[0]).await;
    assert_eq!(update_all(&tb, &lambda, &names[..1], "four").await, [2_000], "an in_progress fault overrides the draw");
}

#[tokio::test]
async fn a_default_testbed_keeps_updates_in_progress_for_seconds_as_aws_does() {
    let tb = Testbed::start(TestbedOptions::default()).await.unwrap();
    let config = tb.aws().config();
    assert_eq!((config.update_in_progress_ms, config.update_in_progress_jitter_ms), (1_500, 3_000));
    // Quotas are on too: polling until the update settles may meet a 429, which the SDK's retries ride out.
    let lambda = aws_sdk_lambda::Client::new(&sdk_config(&tb, &AwsIdentity::admin(), 5).await);
    let name = unique("seconds");
    create_function(&lambda, &name, &zip("one")).await;

    let started = Instant::now();
    let drawn = update_all(&tb, &lambda, std::slice::from_ref(&name), "two").await[0];
    assert!((1_500..=4_500).contains(&drawn), "{drawn} ms");
    let during = lambda.get_function_configuration().function_name(&name).send().await.unwrap();
    assert_eq!(during.last_update_status(), Some(&LastUpdateStatus::InProgress));
    settled(&lambda, &name).await;
    assert!(started.elapsed() >= Duration::from_millis(drawn), "InProgress for its drawn {drawn} ms");
}
