//! S3 across accounts and regions as AWS enforces it: Lambda reads another account's code only as the bucket
//! policy lets the caller (`s3:GetObjectVersion` for a version) and only from the function's region; S3 itself
//! refuses another account's requests the policy does not allow, and redirects requests sent to the wrong region.

mod aws_support;

use aws_credential_types::Credentials;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput as Configuration;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_support::*;

type UpdateError =
    aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError>;
use testbed::identity::{
    ACCOUNT_ID, ARTIFACT_BUCKET, AwsIdentity, REGION, SECOND_REGION, SECOND_REGION_ARTIFACT_BUCKET, TARGET_ACCOUNTS,
};
use testbed::up::{Testbed, TestbedOptions, target_role_arn};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions::fast()).await
}

/// The deployer's session in the target account's role.
async fn target_session(tb: &Testbed, account: &str) -> Credentials {
    assume(tb, &AwsIdentity::deployer(), &target_role_arn(account), None).await.unwrap()
}

/// A function in `account` and `region`, created by that account's admin; settled.
async fn function_in(tb: &Testbed, account: &str, region: &str, prefix: &str) -> String {
    let config = sdk_config_in(tb, credentials_of(&AwsIdentity::admin_of(account)), region, 1).await;
    let name = unique(prefix);
    create_function_in(&aws_sdk_lambda::Client::new(&config), account, &name, &zip(prefix)).await;
    name
}

/// Uploads as the deployer account's admin in `region`; the object's version.
async fn upload(tb: &Testbed, region: &str, bucket: &str, key: &str, bytes: &[u8]) -> String {
    let s3 = s3_of(&sdk_config_in(tb, credentials_of(&AwsIdentity::admin()), region, 1).await);
    let out = s3.put_object().bucket(bucket).key(key).body(bytes.to_vec().into()).send().await.unwrap();
    out.version_id().unwrap_or_default().to_string()
}

/// UpdateFunctionCode from S3 with `credentials` in `region`, then the settled configuration.
async fn deploy(
    tb: &Testbed,
    credentials: Credentials,
    region: &str,
    name: &str,
    (bucket, key, version): (&str, &str, Option<&str>),
) -> Result<Configuration, UpdateError> {
    let lambda = aws_sdk_lambda::Client::new(&sdk_config_in(tb, credentials, region, 1).await);
    let update = lambda
        .update_function_code()
        .function_name(name)
        .s3_bucket(bucket)
        .s3_key(key)
        .set_s3_object_version(version.map(str::to_string))
        .send()
        .await;
    update?;
    Ok(settled(&lambda, name).await)
}

fn access_denied(bucket: &str, key: &str) -> String {
    format!(
        "Your access has been denied by S3, please make sure your request credentials have permission to GetObject \
         for {bucket}/{key}. S3 Error Code: AccessDenied. S3 Error Message: Access Denied"
    )
}

#[tokio::test]
async fn a_target_account_deploys_a_version_from_the_deployers_bucket_as_its_policy_allows() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let name = function_in(tb, target, REGION, "cross").await;
    let key = format!("{name}/artifact.zip");
    let artifact = zip("deployed across accounts");
    let version = upload(tb, REGION, ARTIFACT_BUCKET, &key, &artifact).await;
    let session = target_session(tb, target).await;
    let config = deploy(tb, session, REGION, &name, (ARTIFACT_BUCKET, &key, Some(&version))).await.unwrap();
    assert_eq!(config.code_sha256(), Some(sha256_b64(&artifact).as_str()));
    let log = tb.aws().calls();
    let update = log.of("lambda", "UpdateFunctionCode").find(|c| c.function.as_deref() == Some(&name)).unwrap();
    assert_eq!((update.account.as_deref(), update.status), (Some(target), 200));

    // The second region's bucket carries the same policy for the functions there.
    let west = function_in(tb, target, SECOND_REGION, "cross-west").await;
    let key = format!("{west}/artifact.zip");
    upload(tb, SECOND_REGION, SECOND_REGION_ARTIFACT_BUCKET, &key, &artifact).await;
    let session = target_session(tb, target).await;
    deploy(tb, session, SECOND_REGION, &west, (SECOND_REGION_ARTIFACT_BUCKET, &key, None)).await.unwrap();
}

#[tokio::test]
async fn without_a_bucket_policy_allowing_it_another_accounts_code_is_denied_with_lambdas_wording() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[1];
    let admin = s3(tb).await;
    let bucket = unique("no-policy").to_lowercase();
    admin.create_bucket().bucket(&bucket).send().await.unwrap();
    let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    admin.put_bucket_versioning().bucket(&bucket).versioning_configuration(enabled).send().await.unwrap();
    let key = "app/artifact.zip";
    upload(tb, REGION, &bucket, key, &zip("forbidden")).await;
    let name = function_in(tb, target, REGION, "denied").await;
    let err = deploy(tb, target_session(tb, target).await, REGION, &name, (&bucket, key, None)).await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert_eq!(err.message(), Some(access_denied(&bucket, key).as_str()));
    assert_eq!(tb.aws().history_in(target, REGION, &name).map(|h| h.len()), Some(1), "the function is unchanged");

    // A policy granting GetObject allows the latest object, not a named version.
    let version = upload(tb, REGION, &bucket, key, &zip("allowed")).await;
    let policy = |actions: &str| {
        format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":{actions},"Resource":"arn:aws:s3:::{bucket}/app/*"}}]}}"#,
            target_role_arn(target)
        )
    };
    admin.put_bucket_policy().bucket(&bucket).policy(policy(r#""s3:GetObject""#)).send().await.unwrap();
    deploy(tb, target_session(tb, target).await, REGION, &name, (&bucket, key, None)).await.unwrap();
    let err =
        deploy(tb, target_session(tb, target).await, REGION, &name, (&bucket, key, Some(&version))).await.unwrap_err();
    assert_eq!(err.message(), Some(access_denied(&bucket, key).as_str()), "GetObjectVersion is not granted");
    admin.put_bucket_policy().bucket(&bucket).policy(policy(r#"["s3:Get*"]"#)).send().await.unwrap();
    deploy(tb, target_session(tb, target).await, REGION, &name, (&bucket, key, Some(&version))).await.unwrap();
}

#[tokio::test]
async fn code_in_a_bucket_of_another_region_is_lambdas_permanent_redirect() {
    let tb = testbed().await;
    let name = function_in(tb, ACCOUNT_ID, REGION, "far").await;
    let key = format!("{name}/artifact.zip");
    let version = upload(tb, SECOND_REGION, SECOND_REGION_ARTIFACT_BUCKET, &key, &zip("far away")).await;
    let admin = credentials_of(&AwsIdentity::admin());
    let source = (SECOND_REGION_ARTIFACT_BUCKET, key.as_str(), None);
    let err = deploy(tb, admin.clone(), REGION, &name, source).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValueException"));
    assert_eq!(
        err.message(),
        Some(
            "Error occurred while GetObject. S3 Error Code: PermanentRedirect. S3 Error Message: The bucket is in this \
             region: us-west-2. Please use this region to retry the request"
        )
    );
    let source = (SECOND_REGION_ARTIFACT_BUCKET, key.as_str(), Some(version.as_str()));
    let err = deploy(tb, admin, REGION, &name, source).await.unwrap_err();
    assert!(
        err.message()
            .is_some_and(|m| m.starts_with("Error occurred while GetObjectVersion. S3 Error Code: PermanentRedirect."))
    );
}

#[tokio::test]
async fn s3_refuses_another_accounts_requests_its_bucket_policy_does_not_allow() {
    let tb = testbed().await;
    let target = TARGET_ACCOUNTS[0];
    let key = format!("{}/artifact.zip", unique("s3-cross"));
    upload(tb, REGION, ARTIFACT_BUCKET, &key, &zip("read me")).await;

    // The policy names the target role, not the target account's other principals.
    let outsider = s3_of(&sdk_config_in(tb, credentials_of(&AwsIdentity::admin_of(target)), REGION, 1).await);
    let err = outsider.get_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!((err.code(), err.message()), (Some("AccessDenied"), Some("Access Denied")));
    let err = outsider.head_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap_err();
    let raw = err.raw_response().unwrap();
    assert_eq!((raw.status().as_u16(), raw.body().bytes().map(<[u8]>::len)), (403, Some(0)), "HEAD: no body");

    let reader = s3_of(&sdk_config_in(tb, target_session(tb, target).await, REGION, 1).await);
    let got = reader.get_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().to_vec(), zip("read me"));
    reader.head_object().bucket(ARTIFACT_BUCKET).key(&key).send().await.unwrap();
    let err = reader.list_objects_v2().bucket(ARTIFACT_BUCKET).send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "the policy grants no s3:ListBucket");
    let err =
        reader.put_object().bucket(ARTIFACT_BUCKET).key(&key).body(b"x".to_vec().into()).send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    let err = reader.get_bucket_policy().bucket(ARTIFACT_BUCKET).send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "only the owner reads the policy");
}

#[tokio::test]
async fn s3_requests_sent_to_another_region_than_the_buckets_are_permanently_redirected() {
    let tb = testbed().await;
    let key = format!("{}/artifact.zip", unique("redirected"));
    upload(tb, SECOND_REGION, SECOND_REGION_ARTIFACT_BUCKET, &key, &zip("west")).await;
    let east = s3(tb).await;
    let err = east.get_object().bucket(SECOND_REGION_ARTIFACT_BUCKET).key(&key).send().await.unwrap_err();
    let raw = err.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 301);
    assert_eq!(raw.headers().get("x-amz-bucket-region"), Some(SECOND_REGION));
    assert_eq!(err.code(), Some("PermanentRedirect"));
    let err = east.head_object().bucket(SECOND_REGION_ARTIFACT_BUCKET).key(&key).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(301));
    let location = east.get_bucket_location().bucket(SECOND_REGION_ARTIFACT_BUCKET).send().await.unwrap();
    assert_eq!(location.location_constraint().map(|l| l.as_str()), Some(SECOND_REGION), "any region may ask where");
}
