//! Lambda's request quotas (on by default): GetFunction 100/s, other control-plane calls 15/s combined.

mod aws_support;

use std::time::{Duration, Instant};

use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::ThrottleReason;
use aws_support::*;
use testbed::identity::AwsIdentity;
use testbed::up::{Testbed, TestbedOptions};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();
/// The buckets are the account's: the tests that count on them take turns.
static CONTROL_PLANE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions::default()).await
}

/// A client whose standard retry strategy has enough attempts to ride out throttling.
async fn retrying_lambda(tb: &Testbed) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&sdk_config(tb, &AwsIdentity::admin(), 10).await)
}

#[tokio::test]
async fn a_burst_of_200_get_function_calls_is_throttled_and_sdk_retries_finish_in_about_two_seconds() {
    let _turn = CONTROL_PLANE.lock().await;
    let tb = testbed().await;
    let lambda = retrying_lambda(tb).await;
    let name = unique("burst");
    create_function(&lambda, &name, &zip("code")).await;
    // Let the GetFunction bucket refill after the polling above.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let started = Instant::now();
    let calls = (0..200).map(|_| {
        let lambda = lambda.clone();
        let name = name.clone();
        tokio::spawn(async move { lambda.get_function().function_name(name).send().await })
    });
    let results = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(ok, 200, "every call succeeds after retries");
    assert!(elapsed >= Duration::from_millis(900), "200 calls at 100/s cannot finish in under a second: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "retries finish in about two seconds: {elapsed:?}");

    let log = tb.aws().calls();
    let mine: Vec<_> = log.of("lambda", "GetFunction").filter(|c| c.function.as_deref() == Some(&name)).collect();
    let throttled = mine.iter().filter(|c| c.status == 429).count();
    let succeeded = mine.iter().filter(|c| c.status == 200).count();
    println!("200 GetFunction calls took {elapsed:?}; {throttled} attempts were throttled");
    assert!(throttled > 0, "the burst saw 429s");
    assert!(succeeded >= 200);
    assert_eq!(mine.len(), throttled + succeeded, "the call log has every attempt");
}

#[tokio::test]
async fn control_plane_calls_beyond_15_per_second_get_429_with_retry_after() {
    let _turn = CONTROL_PLANE.lock().await;
    let tb = testbed().await;
    let name = unique("throttle");
    create_function(&retrying_lambda(tb).await, &name, &zip("code")).await;

    let lambda = lambda(tb).await; // no retries: every 429 reaches us
    // Drain the shared control-plane bucket: the first 429 means it is empty right now.
    let mut drained = false;
    for _ in 0..200 {
        if lambda
            .list_functions()
            .max_items(1)
            .send()
            .await
            .is_err_and(|e| e.as_service_error().is_some_and(|e| e.is_too_many_requests_exception()))
        {
            drained = true;
            break;
        }
    }
    assert!(drained, "more than 15 calls in quick succession are throttled");
    let err = lambda
        .update_function_code()
        .function_name(&name)
        .zip_file(Blob::new(zip("new")))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let UpdateFunctionCodeError::TooManyRequestsException(e) = err else { panic!("expected throttling, got {err:?}") };
    assert_eq!(e.reason(), Some(&ThrottleReason::CallerRateLimitExceeded));
    assert_eq!(e.retry_after_seconds(), Some("1"));
    assert!(tb.aws().calls().of("lambda", "ListFunctions").any(|c| c.status == 429));
}

#[tokio::test]
async fn an_idle_caller_may_send_the_configured_burst_at_once_and_no_more() {
    let _turn = CONTROL_PLANE.lock().await;
    let tb = testbed().await;
    let aws = tb.aws();
    let lambda = lambda(tb).await; // no retries
    let before = aws.config();
    for (burst_seconds, expected) in [(1.0, 15), (2.0, 30)] {
        // Setting the config refills the buckets: the caller has been idle.
        aws.set_config(testbed::aws::LayerConfig { quota_burst_seconds: burst_seconds, ..before.clone() });
        let mut accepted = 0;
        for _ in 0..expected + 5 {
            match lambda.list_functions().max_items(1).send().await {
                Ok(_) => accepted += 1,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_too_many_requests_exception()) => break,
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        // Requests made while the burst is spent refill the bucket a little (15/s): allow one more.
        assert!((expected..=expected + 1).contains(&accepted), "burst {burst_seconds} s: {accepted} accepted");
    }
    aws.set_config(before);
}
