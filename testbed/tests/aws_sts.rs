//! STS AssumeRole as AWS enforces it: the role must exist and trust the caller (with the external id it requires);
//! the credentials act in the role's account until they expire, then every protocol refuses them with its own
//! ExpiredToken answer; a control expires sessions at will.

mod aws_support;

use aws_credential_types::Credentials;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_support::*;
use testbed::identity::{ACCOUNT_ID, AwsIdentity, REGION, SECOND_REGION, TARGET_ACCOUNTS};
use testbed::up::{DEPLOYER_ROLE, TARGET_ROLE, Testbed, TestbedOptions, target_role_arn};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions::fast()).await
}

/// A trust policy letting `principal` (an `AWS` principal) assume the role, with optional extra JSON members.
fn trust(principal: &str, extra: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"sts:AssumeRole"{extra}}}]}}"#
    )
}

fn denied(caller: &AwsIdentity, role_arn: &str) -> String {
    format!("User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}", caller.caller_arn)
}

async fn lambda_as(tb: &Testbed, credentials: Credentials, region: &str) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&sdk_config_in(tb, credentials, region, 1).await)
}

#[tokio::test]
async fn the_deployer_assumes_a_target_role_whose_credentials_act_in_that_account() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let session = assume(tb, &AwsIdentity::deployer(), &target_role_arn(target), None).await.unwrap();
    assert!(session.access_key_id().starts_with("ASIA") && session.session_token().is_some());

    let config = sdk_config_in(tb, session.clone(), SECOND_REGION, 1).await;
    let me = aws_sdk_sts::Client::new(&config).get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some(target));
    assert_eq!(me.arn(), Some(format!("arn:aws:sts::{target}:assumed-role/{TARGET_ROLE}/lambda-deployer").as_str()));
    assert!(me.user_id().is_some_and(|id| id.starts_with("AROA") && id.ends_with(":lambda-deployer")));

    let bucket = unique("target-bucket").to_lowercase();
    let admin = sdk_config_in(tb, credentials_of(&AwsIdentity::admin_of(target)), REGION, 1).await;
    s3_of(&admin).create_bucket().bucket(&bucket).send().await.unwrap();
    let east = s3_of(&sdk_config_in(tb, session.clone(), REGION, 1).await);
    let buckets = east.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().iter().any(|b| b.name() == Some(bucket.as_str())), "the target account's buckets");

    let name = unique("assumed");
    let lambda = aws_sdk_lambda::Client::new(&config);
    let created = create_function_in(&lambda, target, &name, &zip("assumed")).await;
    let arn = format!("arn:aws:lambda:{SECOND_REGION}:{target}:function:{name}");
    assert_eq!(created.function_arn(), Some(arn.as_str()));
    let log = tb.aws().calls();
    let create = log.of("lambda", "CreateFunction").find(|c| c.function.as_deref() == Some(&name)).unwrap();
    assert_eq!(create.access_key_id.as_deref(), Some(session.access_key_id()));
    assert_eq!((create.account.as_deref(), create.region.as_deref()), (Some(target), Some(SECOND_REGION)));
}

#[tokio::test]
async fn the_sdks_assume_role_provider_reuses_its_session_until_the_testbed_expires_it() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[1];
    let base = sdk_config(tb, &AwsIdentity::deployer(), 1).await;
    let provider = aws_config::sts::AssumeRoleProvider::builder(target_role_arn(target))
        .session_name("deployer-sweep")
        .configure(&base)
        .build()
        .await;
    let config = base
        .into_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider))
        .build();
    let lambda = aws_sdk_lambda::Client::new(&config);
    let name = unique("provided");
    create_function_in(&lambda, target, &name, &zip("provided")).await;
    lambda.get_function().function_name(&name).send().await.unwrap();
    let assumed = |tb: &Testbed| {
        tb.aws()
            .calls()
            .of("sts", "AssumeRole")
            .filter(|c| c.params.get("RoleSessionName").map(String::as_str) == Some("deployer-sweep"))
            .count()
    };
    assert_eq!(assumed(tb), 1, "one session serves every call until near its expiry");

    let session = tb.aws().sessions().into_iter().find(|s| s.session_name == "deployer-sweep").unwrap();
    assert!(tb.aws().expire_session(&session.access_key_id));
    let err = lambda.get_function().function_name(&name).send().await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredTokenException"), "the SDK keeps the session it cached: {err:?}");
    assert_eq!(assumed(tb), 1);
}

#[tokio::test]
async fn assuming_a_missing_role_or_one_that_does_not_trust_the_caller_is_denied_with_awss_wording() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let deployer = AwsIdentity::deployer();
    let missing = format!("arn:aws:iam::{target}:role/no-such-role");
    let err = assume(tb, &deployer, &missing, None).await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!((err.code(), err.message()), (Some("AccessDenied"), Some(denied(&deployer, &missing).as_str())));

    let role = unique("other-trust");
    create_role(
        tb,
        &AwsIdentity::admin_of(target),
        &role,
        &trust(&format!("arn:aws:iam::{}:root", TARGET_ACCOUNTS[1]), ""),
    )
    .await;
    let arn = format!("arn:aws:iam::{target}:role/{role}");
    let err = assume(tb, &deployer, &arn, None).await.unwrap_err();
    assert_eq!(err.message(), Some(denied(&deployer, &arn).as_str()));

    // The target role trusts the deployer's role only, not other principals of its account.
    let outsider = AwsIdentity::outsider();
    let err = assume(tb, &outsider, &target_role_arn(target), None).await.unwrap_err();
    assert_eq!(err.message(), Some(denied(&outsider, &target_role_arn(target)).as_str()));
}

#[tokio::test]
async fn a_role_trusting_an_account_by_root_arn_or_id_lets_its_principals_assume_it() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[1];
    for principal in [format!("arn:aws:iam::{ACCOUNT_ID}:root"), ACCOUNT_ID.to_string()] {
        let role = unique("account-trust");
        create_role(tb, &AwsIdentity::admin_of(target), &role, &trust(&principal, "")).await;
        let arn = format!("arn:aws:iam::{target}:role/{role}");
        for caller in [AwsIdentity::admin(), AwsIdentity::deployer()] {
            assume(tb, &caller, &arn, None)
                .await
                .unwrap_or_else(|e| panic!("{principal} trusts {}: {e:?}", caller.caller_arn));
        }
    }
}

#[tokio::test]
async fn a_required_external_id_must_be_given_and_match() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let role = unique("external-id");
    let condition = r#","Condition":{"StringEquals":{"sts:ExternalId":"tenant-7"}}"#;
    let deployer_role = format!("arn:aws:iam::{ACCOUNT_ID}:role/{DEPLOYER_ROLE}");
    create_role(tb, &AwsIdentity::admin_of(target), &role, &trust(&deployer_role, condition)).await;
    let arn = format!("arn:aws:iam::{target}:role/{role}");
    let deployer = AwsIdentity::deployer();
    for external_id in [None, Some("tenant-8")] {
        let err = assume(tb, &deployer, &arn, external_id).await.unwrap_err();
        assert_eq!(err.message(), Some(denied(&deployer, &arn).as_str()), "{external_id:?}");
    }
    let session = assume(tb, &deployer, &arn, Some("tenant-7")).await.unwrap();
    let listed = tb.aws().sessions().into_iter().find(|s| s.access_key_id == session.access_key_id()).unwrap();
    assert_eq!((listed.external_id.as_deref(), listed.account.as_str()), (Some("tenant-7"), target));
}

#[tokio::test]
async fn assume_role_calls_are_logged_with_role_session_and_external_id_and_never_a_secret() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let role = unique("logged");
    create_role(tb, &AwsIdentity::admin_of(target), &role, &trust(ACCOUNT_ID, "")).await;
    let arn = format!("arn:aws:iam::{target}:role/{role}");
    let session = assume(tb, &AwsIdentity::deployer(), &arn, Some("ext-1")).await.unwrap();
    let log = tb.aws().calls();
    let call = log.of("sts", "AssumeRole").find(|c| c.params.get("RoleArn") == Some(&arn)).unwrap();
    assert_eq!(call.params.get("RoleSessionName").map(String::as_str), Some("lambda-deployer"));
    assert_eq!(call.params.get("ExternalId").map(String::as_str), Some("ext-1"));
    assert_eq!((call.status, call.account.as_deref()), (200, Some(ACCOUNT_ID)), "the caller's account");
    let (_, everything) = control(tb, "GET", "/_testbed/calls", None).await;
    let (_, sessions) = control(tb, "GET", "/_testbed/sessions", None).await;
    for shown in [everything.to_string(), sessions.to_string()] {
        assert!(!shown.contains(session.secret_access_key()), "the secret is never shown");
        assert!(!shown.contains(session.session_token().unwrap()), "nor the session token");
    }
}

#[tokio::test]
async fn role_chaining_is_limited_to_an_hour_and_every_session_to_its_roles_maximum() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[1];
    let role = unique("durations");
    create_role(tb, &AwsIdentity::admin_of(target), &role, &trust(ACCOUNT_ID, "")).await;
    let arn = format!("arn:aws:iam::{target}:role/{role}");
    let sts = |identity: AwsIdentity| async move { aws_sdk_sts::Client::new(&sdk_config(tb, &identity, 1).await) };
    let ask = |client: aws_sdk_sts::Client, seconds: i32, name: &'static str| {
        let arn = arn.clone();
        async move { client.assume_role().role_arn(arn).role_session_name(name).duration_seconds(seconds).send().await }
    };
    let err = ask(sts(AwsIdentity::deployer()).await, 7_200, "chained").await.unwrap_err();
    assert_eq!(err.code(), Some("ValidationError"));
    assert_eq!(
        err.message(),
        Some("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
    );
    let admin = sts(AwsIdentity::admin()).await;
    let err = ask(admin.clone(), 7_200, "longer").await.unwrap_err();
    assert_eq!(err.message(), Some("The requested DurationSeconds exceeds the MaxSessionDuration set for this role."));
    let err = ask(admin.clone(), 600, "shorter").await.unwrap_err();
    assert_eq!(
        err.message(),
        Some(
            "1 validation error detected: Value '600' at 'durationSeconds' failed to satisfy constraint: Member must \
             have value greater than or equal to 900"
        )
    );
    let ok = ask(admin, 900, "fifteen-minutes").await.unwrap();
    let expiration = ok.credentials().unwrap().expiration().secs();
    let in_fifteen = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 900;
    assert!((in_fifteen - expiration).abs() <= 5, "Expiration is DurationSeconds away");
}

#[tokio::test]
async fn expired_sessions_are_refused_by_each_protocol_with_its_own_expired_token_answer() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let session = assume(tb, &AwsIdentity::deployer(), &target_role_arn(target), None).await.unwrap();
    let config = sdk_config_in(tb, session.clone(), REGION, 1).await;
    aws_sdk_lambda::Client::new(&config).list_functions().send().await.expect("valid until expired");
    assert!(tb.aws().expire_session(session.access_key_id()));
    assert!(!tb.aws().expire_session(session.access_key_id()), "already expired");
    let expired = "The security token included in the request is expired";

    let err = aws_sdk_lambda::Client::new(&config).list_functions().send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!((err.code(), err.message()), (Some("ExpiredTokenException"), Some(expired)));
    let err = aws_sdk_sts::Client::new(&config).get_caller_identity().send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!((err.code(), err.message()), (Some("ExpiredToken"), Some(expired)));
    let err = s3_of(&config).list_buckets().send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert_eq!((err.code(), err.message()), (Some("ExpiredToken"), Some("The provided token has expired.")));

    let forged =
        Credentials::new(session.access_key_id(), session.secret_access_key(), Some("forged".into()), None, "x");
    let err = lambda_as(tb, forged, REGION).await.list_functions().send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "a token that is not the session's is invalid");
}

#[tokio::test]
async fn expiring_an_accounts_sessions_through_the_control_stops_them_mid_sweep_and_spares_the_others() {
    let tb = testbed().await;
    // No other test here has sessions in the deployer's own account, which this one expires wholesale.
    let (first, second) = (ACCOUNT_ID, TARGET_ACCOUNTS[1]);
    let role = unique("sweep");
    create_role(tb, &AwsIdentity::admin(), &role, &trust(ACCOUNT_ID, "")).await;
    let arn = format!("arn:aws:iam::{first}:role/{role}");
    let in_first = assume(tb, &AwsIdentity::admin(), &arn, None).await.unwrap();
    let in_second = assume(tb, &AwsIdentity::deployer(), &target_role_arn(second), None).await.unwrap();
    let (lambda_first, lambda_second) =
        (lambda_as(tb, in_first.clone(), REGION).await, lambda_as(tb, in_second.clone(), REGION).await);
    for _ in 0..3 {
        lambda_first.get_account_settings().send().await.expect("the sweep runs");
    }

    let (status, answer) =
        control(tb, "POST", "/_testbed/sessions/expire", Some(serde_json::json!({ "account": first }))).await;
    assert_eq!(status, 200);
    assert!(answer["expired"].as_u64().unwrap() >= 1, "{answer}");
    let err = lambda_first.get_account_settings().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredTokenException"));
    lambda_second.get_account_settings().send().await.expect("another account's session goes on");
    let (_, listed) = control(tb, "GET", "/_testbed/sessions", None).await;
    let state = |key: &str| {
        listed["sessions"].as_array().unwrap().iter().find(|s| s["access_key_id"] == key).unwrap()["expired"].clone()
    };
    assert_eq!((state(in_first.access_key_id()), state(in_second.access_key_id())), (true.into(), false.into()));

    let (_, answer) = control(
        tb,
        "POST",
        "/_testbed/sessions/expire",
        Some(serde_json::json!({ "access_key_id": in_second.access_key_id() })),
    )
    .await;
    assert_eq!(answer["expired"], 1);
    assert!(lambda_second.get_account_settings().send().await.is_err());
    let renewed = assume(tb, &AwsIdentity::admin(), &arn, None).await.unwrap();
    lambda_as(tb, renewed, REGION).await.get_account_settings().send().await.expect("a new session works");
}
