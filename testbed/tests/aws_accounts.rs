//! Several accounts and two regions, as AWS keeps them apart: each account's and region's functions, quotas,
//! metrics, buckets, roles and alarms are its own; another account's function ARN is denied, another region's is not
//! reachable, and a region the testbed does not serve has no endpoint.

mod aws_support;

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic};
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_support::*;
use testbed::identity::{
    ACCOUNT_ID, ARTIFACT_BUCKET, AwsIdentity, REGION, SECOND_REGION, SECOND_REGION_ARTIFACT_BUCKET, TARGET_ACCOUNTS,
};
use testbed::up::{DEPLOYER_ROLE, FUNCTION_ROLE, TARGET_ROLE, Testbed, TestbedOptions, artifact_bucket_policy};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions::fast()).await
}

/// A client of `account`'s admin in `region`, without retries.
async fn lambda_of(tb: &Testbed, account: &str, region: &str) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&sdk_config_in(tb, credentials_of(&AwsIdentity::admin_of(account)), region, 1).await)
}

#[tokio::test]
async fn functions_are_kept_per_account_and_region_with_arns_that_say_where() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let (east, west) = (lambda_of(tb, target, REGION).await, lambda_of(tb, target, SECOND_REGION).await);
    let home = lambda(tb).await;
    let name = unique("placed");
    let east_config = create_function_in(&east, target, &name, &zip("east")).await;
    let west_config = create_function_in(&west, target, &name, &zip("west")).await;
    assert_eq!(east_config.function_arn(), Some(format!("arn:aws:lambda:{REGION}:{target}:function:{name}").as_str()));
    assert_eq!(
        west_config.function_arn(),
        Some(format!("arn:aws:lambda:{SECOND_REGION}:{target}:function:{name}").as_str())
    );
    assert_ne!(east_config.code_sha256(), west_config.code_sha256(), "two functions, not one");

    let got = west.get_function().function_name(&name).send().await.unwrap();
    let location = got.code().and_then(|c| c.location()).unwrap();
    assert!(location.contains(&format!("awslambda-{SECOND_REGION}-tasks")) && location.contains(target), "{location}");
    let missing = home.get_function().function_name(&name).send().await.unwrap_err();
    assert_eq!(missing.code(), Some("ResourceNotFoundException"));
    assert_eq!(missing.message(), Some(format!("Function not found: {}", function_arn(&name)).as_str()));
    let listed = west.list_functions().send().await.unwrap();
    assert!(listed.functions().iter().any(|f| f.function_name() == Some(name.as_str())));
    assert!(!home.list_functions().send().await.unwrap().functions().iter().any(|f| f.function_name() == Some(&name)));

    assert_eq!(tb.aws().history_in(target, SECOND_REGION, &name), Some(vec![sha256_b64(&zip("west"))]));
    assert_eq!(tb.aws().history(&name), None, "the deployer's account has no such function");
    let (status, body) = control(
        tb,
        "GET",
        &format!("/_testbed/functions/{name}/history?account={target}&region={SECOND_REGION}"),
        None,
    )
    .await;
    assert_eq!((status, body["CodeSha256History"][0].as_str()), (200, west_config.code_sha256()));

    let log = tb.aws().calls();
    let creates: Vec<_> = log.of("lambda", "CreateFunction").filter(|c| c.function.as_deref() == Some(&name)).collect();
    let places: Vec<_> = creates.iter().map(|c| (c.account.as_deref(), c.region.as_deref())).collect();
    assert_eq!(places, [(Some(target), Some(REGION)), (Some(target), Some(SECOND_REGION))]);
}

#[tokio::test]
async fn a_full_or_partial_arn_of_another_account_is_denied_with_awss_wording() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let name = unique("theirs");
    create_function_in(&lambda_of(tb, target, REGION).await, target, &name, &zip("theirs")).await;
    let home = lambda(tb).await;
    let arn = format!("arn:aws:lambda:{REGION}:{target}:function:{name}");
    let me = AwsIdentity::admin().caller_arn;
    let denied = |action: &str, resource: &str| {
        format!(
            "User: {me} is not authorized to perform: lambda:{action} on resource: {resource} because no \
             resource-based policy allows the lambda:{action} action"
        )
    };

    let err = home.get_function().function_name(&arn).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert_eq!(err.message(), Some(denied("GetFunction", &arn).as_str()));
    let partial = format!("{target}:function:{name}:live");
    let err = home.invoke().function_name(&partial).send().await.unwrap_err();
    assert_eq!(err.message(), Some(denied("InvokeFunction", &format!("{arn}:live")).as_str()));
    let err =
        home.update_function_code().function_name(&arn).zip_file(Blob::new(zip("mine"))).send().await.unwrap_err();
    assert_eq!(err.message(), Some(denied("UpdateFunctionCode", &arn).as_str()));
    assert_eq!(tb.aws().history_in(target, REGION, &name).map(|h| h.len()), Some(1), "nothing was changed");
}

#[tokio::test]
async fn an_arn_of_another_region_is_not_reachable_from_this_region() {
    let tb = testbed().await;
    let name = unique("west");
    create_function(&lambda_of(tb, ACCOUNT_ID, SECOND_REGION).await, &name, &zip("west")).await;
    let arn = format!("arn:aws:lambda:{SECOND_REGION}:{ACCOUNT_ID}:function:{name}");
    let err = lambda(tb).await.get_function_configuration().function_name(&arn).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    assert_eq!(
        err.message(),
        Some(format!("Functions from '{SECOND_REGION}' are not reachable in this region ('{REGION}')").as_str())
    );
}

#[tokio::test]
async fn a_region_the_testbed_does_not_serve_has_no_endpoint() {
    let tb = testbed().await;
    let config = sdk_config_in(tb, credentials_of(&AwsIdentity::admin()), "eu-west-1", 1).await;
    let err = aws_sdk_lambda::Client::new(&config).list_functions().send().await.unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "no answer at all: {err:?}");
    let err = s3_of(&config).list_buckets().send().await.unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    let log = tb.aws().calls();
    let refused = log.of("lambda", "ListFunctions").find(|c| c.region.as_deref() == Some("eu-west-1")).unwrap();
    assert_eq!(refused.status, 0, "the connection was dropped unanswered");
}

#[tokio::test]
async fn quotas_are_kept_per_account_and_region_so_throttling_one_leaves_the_others_budget() {
    let tb = testbed().await;
    // Nothing else in this binary calls Lambda in these places.
    let target = TARGET_ACCOUNTS[1];
    let throttled = lambda_of(tb, target, SECOND_REGION).await;
    let calls = (0..30).map(|_| {
        let lambda = throttled.clone();
        tokio::spawn(async move { lambda.list_functions().send().await })
    });
    let results = futures::future::join_all(calls).await;
    let refused = results.iter().filter(|r| matches!(r, Ok(Err(e)) if e.code() == Some("TooManyRequestsException")));
    assert!(refused.count() >= 10, "30 calls at once exceed 15/s");

    for other in [lambda_of(tb, target, REGION).await, lambda_of(tb, ACCOUNT_ID, SECOND_REGION).await] {
        for _ in 0..10 {
            other.list_functions().send().await.expect("another account's or region's budget is intact");
        }
    }
    let log = tb.aws().calls();
    let mine = log.of("lambda", "ListFunctions").filter(|c| c.account.as_deref() == Some(target));
    assert!(mine.filter(|c| c.status == 429).all(|c| c.region.as_deref() == Some(SECOND_REGION)));
}

#[tokio::test]
async fn each_account_has_its_own_buckets_roles_and_alarms_and_knows_who_it_is() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[1];
    let admin = AwsIdentity::admin_of(target);
    let theirs = sdk_config_in(tb, credentials_of(&admin), REGION, 1).await;
    let home = sdk_config(tb, &AwsIdentity::admin(), 1).await;

    let me = aws_sdk_sts::Client::new(&theirs).get_caller_identity().send().await.unwrap();
    assert_eq!((me.account(), me.arn()), (Some(target), Some(admin.caller_arn.as_str())));

    let bucket = unique("theirs").to_lowercase();
    s3_of(&theirs).create_bucket().bucket(&bucket).send().await.unwrap();
    let names = |out: aws_sdk_s3::operation::list_buckets::ListBucketsOutput| {
        out.buckets().iter().filter_map(|b| b.name().map(str::to_string)).collect::<Vec<_>>()
    };
    let their_buckets = names(s3_of(&theirs).list_buckets().send().await.unwrap());
    assert!(their_buckets.contains(&bucket) && !their_buckets.contains(&ARTIFACT_BUCKET.to_string()));
    assert!(!names(s3_of(&home).list_buckets().send().await.unwrap()).contains(&bucket));

    let roles = role_names(tb, &admin).await;
    assert!(roles.contains(&TARGET_ROLE.to_string()) && roles.contains(&FUNCTION_ROLE.to_string()), "{roles:?}");
    assert!(!roles.contains(&DEPLOYER_ROLE.to_string()));

    let alarm = unique("their-alarm");
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&theirs);
    cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .unwrap();
    let found = |client: aws_sdk_cloudwatch::Client| {
        let alarm = alarm.clone();
        async move { client.describe_alarms().alarm_names(alarm).send().await.unwrap().metric_alarms().len() }
    };
    assert_eq!(found(cloudwatch.clone()).await, 1);
    assert_eq!(found(aws_sdk_cloudwatch::Client::new(&home)).await, 0);
}

/// The role names IAM ListRoles shows `identity`.
async fn role_names(tb: &Testbed, identity: &AwsIdentity) -> Vec<String> {
    let (_, xml) = query_call(tb, identity, "iam", "Action=ListRoles&Version=2010-05-08").await;
    xml.split("<RoleName>").skip(1).filter_map(|s| s.split("</RoleName>").next()).map(str::to_string).collect()
}

#[tokio::test]
async fn invocation_metrics_land_in_the_functions_own_account_and_region() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let west = lambda_of(tb, target, SECOND_REGION).await;
    let name = unique("counted");
    create_function_in(&west, target, &name, &zip("counted")).await;
    west.invoke().function_name(&name).send().await.unwrap();

    let query = |id: &str| {
        let metric = Metric::builder()
            .namespace("AWS/Lambda")
            .metric_name("Invocations")
            .dimensions(Dimension::builder().name("FunctionName").value(&name).build())
            .build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(MetricStat::builder().metric(metric).period(60).stat("Sum").build())
            .build()
    };
    let sum = |config: aws_config::SdkConfig| {
        let q = query("m");
        async move {
            let now = aws_sdk_cloudwatch::primitives::DateTime::from(std::time::SystemTime::now());
            let start = aws_sdk_cloudwatch::primitives::DateTime::from_secs(now.secs() - 600);
            let end = aws_sdk_cloudwatch::primitives::DateTime::from_secs(now.secs() + 60);
            let out = aws_sdk_cloudwatch::Client::new(&config)
                .get_metric_data()
                .metric_data_queries(q)
                .start_time(start)
                .end_time(end)
                .send()
                .await
                .unwrap();
            out.metric_data_results().iter().flat_map(|r| r.values()).sum::<f64>()
        }
    };
    let theirs = sdk_config_in(tb, credentials_of(&AwsIdentity::admin_of(target)), SECOND_REGION, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sum(theirs.clone()).await < 1.0 {
        assert!(Instant::now() < deadline, "the invocation never showed in {target} {SECOND_REGION}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let home = sdk_config_in(tb, credentials_of(&AwsIdentity::admin()), SECOND_REGION, 1).await;
    assert_eq!(sum(home).await, 0.0, "not in the deployer's account");
}

#[tokio::test]
async fn up_creates_the_target_roles_the_second_region_bucket_and_the_artifact_bucket_policies() {
    let tb = testbed().await;
    let s3 = s3(tb).await;
    let west = s3_of(&sdk_config_in(tb, credentials_of(&AwsIdentity::admin()), SECOND_REGION, 1).await);
    for (client, bucket) in [(&s3, ARTIFACT_BUCKET), (&west, SECOND_REGION_ARTIFACT_BUCKET)] {
        let policy = client.get_bucket_policy().bucket(bucket).send().await.unwrap();
        assert_eq!(policy.policy(), Some(artifact_bucket_policy(bucket).as_str()));
    }
    let location = s3.get_bucket_location().bucket(SECOND_REGION_ARTIFACT_BUCKET).send().await.unwrap();
    assert_eq!(location.location_constraint().map(|l| l.as_str()), Some(SECOND_REGION));
    // (moto's GetBucketVersioning answer does not parse in the SDK: an upload's version id shows it instead.)
    let key = format!("{}/a.zip", unique("versioned"));
    let put = west.put_object().bucket(SECOND_REGION_ARTIFACT_BUCKET).key(&key).body(zip("a").into()).send().await;
    assert!(put.unwrap().version_id().is_some(), "the bucket is versioned");

    for account in TARGET_ACCOUNTS {
        let body = format!("Action=GetRole&Version=2010-05-08&RoleName={TARGET_ROLE}");
        let (_, xml) = query_call(tb, &AwsIdentity::admin_of(account), "iam", &body).await;
        let trust = xml.split("<AssumeRolePolicyDocument>").nth(1).and_then(|s| s.split('<').next()).unwrap();
        let trust = percent_encoding::percent_decode_str(trust).decode_utf8_lossy().into_owned();
        assert!(trust.contains(&format!("arn:aws:iam::{ACCOUNT_ID}:role/{DEPLOYER_ROLE}")), "{trust}");
        assert!(!trust.contains("ExternalId"), "no external id by default: {trust}");
    }
}

#[tokio::test]
async fn a_fault_scoped_to_one_account_fires_there_only_even_for_a_function_of_the_same_name_elsewhere() {
    let tb = testbed().await;
    let (throttled, spared) = (TARGET_ACCOUNTS[0], TARGET_ACCOUNTS[1]);
    let (in_throttled, in_spared) = (lambda_of(tb, throttled, REGION).await, lambda_of(tb, spared, REGION).await);
    let name = unique("scoped-fault");
    create_function_in(&in_throttled, throttled, &name, &zip("a")).await;
    create_function_in(&in_spared, spared, &name, &zip("b")).await;
    let fault = testbed::aws::Fault::new("GetFunction", testbed::aws::FaultAction::Throttle).function(&name);
    tb.aws().inject(fault.in_account(throttled)).unwrap();

    let refused = in_throttled.get_function().function_name(&name).send().await.unwrap_err();
    assert_eq!(refused.code(), Some("TooManyRequestsException"));
    assert!(in_spared.get_function().function_name(&name).send().await.is_ok(), "the other account is served");
    let log = tb.aws().calls();
    let statuses: Vec<(Option<&str>, u16)> = log
        .of("lambda", "GetFunction")
        .filter(|c| c.function.as_deref() == Some(name.as_str()))
        .map(|c| (c.account.as_deref(), c.status))
        .collect();
    assert!(statuses.contains(&(Some(throttled), 429)) && statuses.contains(&(Some(spared), 200)), "{statuses:?}");
}
