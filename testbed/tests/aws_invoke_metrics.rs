//! Invoke as Lambda answers it, the CloudWatch metrics Lambda reports for invocations (read back with
//! aws-sdk-cloudwatch through the layer), simulated traffic split by an alias's weights, and alarms that flap.
//! Quotas off; updates InProgress a fixed 300 ms; metrics visible 1 s after their second.

mod aws_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::operation::set_alarm_state::SetAlarmStateError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, StateValue, Statistic,
};
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, InvocationType};
use aws_support::*;
use serde_json::{Value, json};
use testbed::up::{Testbed, TestbedOptions};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions { quotas: false, ..TestbedOptions::fast() }).await
}

/// Sets $LATEST's code and publishes it.
async fn publish_code(lambda: &aws_sdk_lambda::Client, name: &str, code: &str) -> String {
    settled(lambda, name).await;
    lambda.update_function_code().function_name(name).zip_file(Blob::new(zip(code))).send().await.unwrap();
    publish(lambda, name).await
}

/// The datapoints of `AWS/Lambda` `metric` (Sum, `period` s) under exactly these dimensions, over the last 10 min.
async fn datapoints(
    cw: &aws_sdk_cloudwatch::Client,
    metric: &str,
    dimensions: &[(&str, &str)],
    period: i32,
) -> Vec<(DateTime, f64)> {
    let metric = Metric::builder()
        .namespace("AWS/Lambda")
        .metric_name(metric)
        .set_dimensions(Some(dimensions.iter().map(|(n, v)| Dimension::builder().name(*n).value(*v).build()).collect()))
        .build();
    let stat = MetricStat::builder().metric(metric).period(period).stat("Sum").build();
    let now = DateTime::from_secs(jiff::Timestamp::now().as_second());
    let out = cw
        .get_metric_data()
        .metric_data_queries(MetricDataQuery::builder().id("m").metric_stat(stat).build())
        .start_time(DateTime::from_secs(now.secs() - 600))
        .end_time(DateTime::from_secs(now.secs() + 60))
        .send()
        .await
        .expect("GetMetricData");
    let result = &out.metric_data_results()[0];
    result.timestamps().iter().copied().zip(result.values().iter().copied()).collect()
}

async fn sum(cw: &aws_sdk_cloudwatch::Client, metric: &str, dimensions: &[(&str, &str)]) -> f64 {
    datapoints(cw, metric, dimensions, 60).await.iter().map(|(_, v)| v).sum()
}

/// Polls (≤ 10 s) until the sum reaches `expected`.
async fn sum_reaches(cw: &aws_sdk_cloudwatch::Client, metric: &str, dimensions: &[(&str, &str)], expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = sum(cw, metric, dimensions).await;
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{metric} {dimensions:?}: {got}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the running traffic to `function` invoked so far, over all versions.
fn invocations_so_far(tb: &Testbed, function: &str) -> u64 {
    let streams = tb.aws().traffic().into_iter().filter(|t| t.function == function);
    streams.flat_map(|t| t.versions.into_values()).map(|c| c.invocations).sum()
}

#[tokio::test]
async fn invoking_a_version_answers_its_payload_and_the_version_that_ran() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("echo");
    create_function(&lambda, &name, &zip("plain")).await;
    publish(&lambda, &name).await;

    let out = lambda.invoke().function_name(&name).qualifier("1").payload(Blob::new(br#"{"a":1}"#.to_vec())).send();
    let out = out.await.unwrap();
    assert_eq!((out.status_code(), out.executed_version(), out.function_error()), (200, Some("1"), None));
    assert_eq!(out.payload().map(|p| p.as_ref()), Some(&br#"{"a":1}"#[..]));
    let unqualified = lambda.invoke().function_name(&name).send().await.unwrap();
    assert_eq!(unqualified.executed_version(), Some("$LATEST"));

    let dry = lambda.invoke().function_name(&name).qualifier("1").invocation_type(InvocationType::DryRun).send();
    assert_eq!(dry.await.unwrap().status_code(), 204);
    let err = lambda.invoke().function_name(&name).qualifier("nope").send().await.unwrap_err().into_service_error();
    assert!(matches!(err, InvokeError::ResourceNotFoundException(_)), "{err:?}");
    let err = lambda.invoke().function_name(&name).payload(Blob::new(b"not json".to_vec())).send().await;
    let err = err.unwrap_err().into_service_error();
    assert!(matches!(err, InvokeError::InvalidRequestContentException(_)), "{err:?}");
    let logged = calls_about(tb, "Invoke", &name);
    assert_eq!(logged.len(), 5);
    assert_eq!(logged[0].params.get("Qualifier").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn a_version_whose_code_says_invoke_error_fails_unhandled_even_after_latest_moves_on() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("fails");
    create_function(&lambda, &name, &zip("plain")).await;
    let good = publish(&lambda, &name).await;
    let bad = publish_code(&lambda, &name, "testbed:invoke-error").await;
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("fixed"))).send().await.unwrap();

    let out = lambda.invoke().function_name(&name).qualifier(&bad).send().await.unwrap();
    assert_eq!((out.status_code(), out.function_error()), (200, Some("Unhandled")));
    let error: Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert!(error["errorMessage"].is_string() && error["errorType"].is_string(), "{error}");
    let out = lambda.invoke().function_name(&name).qualifier(&good).send().await.unwrap();
    assert_eq!(out.function_error(), None);
}

#[tokio::test]
async fn latest_runs_its_previous_code_until_an_update_ends() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("inprogress");
    create_function(&lambda, &name, &zip("plain")).await;
    lambda
        .update_function_code()
        .function_name(&name)
        .zip_file(Blob::new(zip("testbed:invoke-error")))
        .send()
        .await
        .unwrap();

    let during = lambda.invoke().function_name(&name).send().await.unwrap();
    assert_eq!(during.function_error(), None, "the update is InProgress: the previous code runs");
    settled(&lambda, &name).await;
    let after = lambda.invoke().function_name(&name).send().await.unwrap();
    assert_eq!(after.function_error(), Some("Unhandled"));
}

#[tokio::test]
async fn an_alias_at_ten_percent_splits_traffic_ninety_ten_and_cloudwatch_counts_each_version() {
    let tb = testbed().await;
    let (lambda, cw) = (lambda(tb).await, cloudwatch(tb).await);
    let name = unique("canary");
    create_function(&lambda, &name, &zip("stable")).await;
    publish(&lambda, &name).await;
    publish_code(&lambda, &name, "testbed:error-rate=0.2").await;
    publish_code(&lambda, &name, "never invoked").await;
    let routing = AliasRoutingConfiguration::builder().additional_version_weights("2", 0.1).build();
    lambda
        .create_alias()
        .function_name(&name)
        .name("live")
        .function_version("1")
        .routing_config(routing)
        .send()
        .await
        .unwrap();

    tb.aws().start_traffic(&name, "live", 1_000.0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while invocations_so_far(tb, &name) < 1_000 {
        assert!(Instant::now() < deadline, "traffic did not reach 1,000 invocations");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = tb.aws().stop_traffic(&name, "live").unwrap();
    let (v1, v2) = (summary.versions["1"], summary.versions["2"]);
    let total = v1.invocations + v2.invocations;
    let share = v2.invocations as f64 / total as f64;
    assert!((0.07..=0.13).contains(&share), "v2 got {share} of {total}");
    assert_eq!(v1.errors, 0, "version 1 has no marker");
    let error_rate = v2.errors as f64 / v2.invocations as f64;
    assert!((0.08..=0.32).contains(&error_rate), "v2 failed {error_rate} of its {}", v2.invocations);

    let (live, fname) = (format!("{name}:live"), name.as_str());
    let by_version = |v: &'static str| [("FunctionName", fname), ("Resource", live.as_str()), ("ExecutedVersion", v)];
    sum_reaches(&cw, "Invocations", &by_version("2"), v2.invocations as f64).await;
    sum_reaches(&cw, "Invocations", &by_version("1"), v1.invocations as f64).await;
    assert_eq!(sum(&cw, "Errors", &by_version("2")).await, v2.errors as f64);
    let v1_errors = datapoints(&cw, "Errors", &by_version("1"), 60).await;
    assert!(
        !v1_errors.is_empty() && v1_errors.iter().all(|(_, v)| *v == 0.0),
        "zero errors are reported: {v1_errors:?}"
    );
    assert!(datapoints(&cw, "Invocations", &by_version("3"), 60).await.is_empty(), "no traffic, no datapoint");
    sum_reaches(&cw, "Invocations", &[("FunctionName", fname), ("Resource", live.as_str())], total as f64).await;
    sum_reaches(&cw, "Invocations", &[("FunctionName", fname)], total as f64).await;
}

#[tokio::test]
async fn traffic_follows_the_alias_as_it_is_moved() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("promote");
    create_function(&lambda, &name, &zip("one")).await;
    publish(&lambda, &name).await;
    publish_code(&lambda, &name, "two").await;
    lambda.create_alias().function_name(&name).name("live").function_version("1").send().await.unwrap();
    tb.aws().start_traffic(&name, "live", 200.0).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    lambda.update_alias().function_name(&name).name("live").function_version("2").send().await.unwrap();
    let moved_at = tb.aws().traffic().into_iter().find(|t| t.function == name).unwrap().versions["1"].invocations;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let summary = tb.aws().stop_traffic(&name, "live").unwrap();
    assert!(moved_at > 0);
    assert_eq!(summary.versions["1"].invocations, moved_at, "nothing ran version 1 after the move");
    assert!(summary.versions["2"].invocations > 0);
}

#[tokio::test]
async fn metrics_become_visible_only_after_the_delay_stamped_with_the_invocation_time() {
    static OWN: OnceCell<Testbed> = OnceCell::const_new();
    let opts = TestbedOptions { quotas: false, metrics_delay: Duration::from_millis(2_500), ..TestbedOptions::fast() };
    let tb = shared(&OWN, opts).await;
    let (lambda, cw) = (lambda(tb).await, cloudwatch(tb).await);
    let name = unique("late");
    create_function(&lambda, &name, &zip("plain")).await;
    let invoked = jiff::Timestamp::now();
    let started = Instant::now();
    lambda.invoke().function_name(&name).send().await.unwrap();

    let dims = [("FunctionName", name.as_str())];
    let deadline = Instant::now() + Duration::from_secs(10);
    let points = loop {
        let points = datapoints(&cw, "Invocations", &dims, 1).await;
        if !points.is_empty() {
            break points;
        }
        assert!(Instant::now() < deadline, "the datapoint never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(started.elapsed() >= Duration::from_millis(2_500), "visible after {:?}", started.elapsed());
    assert_eq!(points, vec![(DateTime::from_secs(invoked.as_second()), 1.0)]);
}

#[tokio::test]
async fn simulated_traffic_is_started_read_and_stopped_over_http() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("httptraffic");
    create_function(&lambda, &name, &zip("testbed:invoke-error")).await;
    let start = json!({ "function": name, "qualifier": "$LATEST", "per_second": 100.0 });
    assert_eq!(control(tb, "POST", "/_testbed/traffic", Some(start)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (_, running) = control(tb, "GET", "/_testbed/traffic", None).await;
    let mine = running["traffic"].as_array().unwrap().iter().find(|t| t["function"] == name.as_str()).unwrap().clone();
    assert!(mine["versions"]["$LATEST"]["invocations"].as_u64().unwrap() > 0, "{mine}");
    let stop = json!({ "function": name, "qualifier": "$LATEST" });
    let (status, stopped) = control(tb, "DELETE", "/_testbed/traffic", Some(stop.clone())).await;
    assert_eq!(status, 200);
    let counts = &stopped["stopped"][0]["versions"]["$LATEST"];
    assert_eq!(counts["invocations"], counts["errors"], "every invocation of invoke-error code fails: {stopped}");
    assert_eq!(control(tb, "DELETE", "/_testbed/traffic", Some(stop)).await.0, 404);

    for bad in [
        json!({ "function": name, "qualifier": "$LATEST", "per_second": 0 }),
        json!({ "function": unique("absent"), "qualifier": "1", "per_second": 5 }),
    ] {
        let (status, body) = control(tb, "POST", "/_testbed/traffic", Some(bad)).await;
        assert_eq!(status, 400, "{body}");
    }
}

async fn put_alarm(cw: &aws_sdk_cloudwatch::Client, alarm: &str) {
    cw.put_metric_alarm()
        .alarm_name(alarm)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .dimensions(Dimension::builder().name("FunctionName").value("f").build())
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
}

async fn alarm_state(cw: &aws_sdk_cloudwatch::Client, alarm: &str) -> StateValue {
    let out = cw.describe_alarms().alarm_names(alarm).send().await.expect("DescribeAlarms");
    out.metric_alarms()[0].state_value().cloned().expect("a state")
}

#[tokio::test]
async fn alarms_are_put_described_and_set_through_the_layer_with_aws_sdk_cloudwatch() {
    let tb = testbed().await;
    let cw = cloudwatch(tb).await;
    let alarm = unique("errors");
    put_alarm(&cw, &alarm).await;
    cw.set_alarm_state().alarm_name(&alarm).state_value(StateValue::Alarm).state_reason("test").send().await.unwrap();

    let out = cw.describe_alarms().alarm_names(&alarm).send().await.unwrap();
    let described = &out.metric_alarms()[0];
    assert_eq!(described.state_value(), Some(&StateValue::Alarm));
    assert_eq!(described.threshold(), Some(1.0));
    let updated = described.state_updated_timestamp().expect("a timestamp").secs();
    assert!((updated - jiff::Timestamp::now().as_second()).abs() < 60, "{updated}");
    let err = cw.set_alarm_state().alarm_name(unique("absent")).state_value(StateValue::Ok).state_reason("x").send();
    let err = err.await.unwrap_err().into_service_error();
    assert!(matches!(err, SetAlarmStateError::ResourceNotFound(_)), "{err:?}");
    assert!(tb.aws().calls().of("monitoring", "DescribeAlarms").count() > 0, "logged under its operation name");
}

#[tokio::test]
async fn a_flapping_alarm_is_seen_in_both_states_until_stopped() {
    let tb = testbed().await;
    let cw = cloudwatch(tb).await;
    let alarm = unique("flappy");
    put_alarm(&cw, &alarm).await;
    tb.aws().flap_alarm(&alarm, Duration::from_millis(200)).await.unwrap();

    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "seen only {seen:?}");
        seen.insert(alarm_state(&cw, &alarm).await.as_str().to_string());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, BTreeSet::from(["ALARM".to_string(), "OK".to_string()]));
    let stop = json!({ "alarm": alarm });
    assert_eq!(control(tb, "DELETE", "/_testbed/alarms/flap", Some(stop)).await.0, 204);
    // A SetAlarmState already on its way when the flapping stopped may still land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let settled = alarm_state(&cw, &alarm).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(alarm_state(&cw, &alarm).await, settled, "no longer flapping");

    let absent = json!({ "alarm": unique("absent"), "period_ms": 100 });
    assert_eq!(control(tb, "POST", "/_testbed/alarms/flap", Some(absent)).await.0, 400);
}

#[tokio::test]
async fn get_metric_data_denied_by_iam_reaches_the_sdk_as_access_denied() {
    let tb = testbed().await;
    let cloudwatch = cloudwatch(tb).await;
    let fault = testbed::aws::Fault::new("GetMetricData", testbed::aws::FaultAction::AccessDenied)
        .service("monitoring")
        .when(testbed::aws::Trigger::Nth(1));
    tb.aws().inject(fault).unwrap();
    let metric =
        aws_sdk_cloudwatch::types::Metric::builder().namespace("AWS/Lambda").metric_name("Invocations").build();
    let stat = aws_sdk_cloudwatch::types::MetricStat::builder().metric(metric).period(60).stat("Sum").build();
    let query = aws_sdk_cloudwatch::types::MetricDataQuery::builder().id("q").metric_stat(stat).build();
    let now = jiff::Timestamp::now().as_second();
    let (start, end) = (DateTime::from_secs(now - 120), DateTime::from_secs(now));
    let get = || cloudwatch.get_metric_data().metric_data_queries(query.clone()).start_time(start).end_time(end).send();
    let err = get().await.unwrap_err();
    let service = err.as_service_error().expect("a modeled error");
    assert_eq!(aws_sdk_cloudwatch::error::ProvideErrorMetadata::code(service), Some("AccessDenied"), "{service:?}");
    assert!(get().await.is_ok(), "the fault fired once");
}
