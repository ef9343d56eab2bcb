//! Lambda's code, listing, naming, versions, aliases and tags through aws-sdk-lambda against the testbed.
//! Quotas off and no InProgress window here: those are proven in aws_quotas and aws_lifecycle.

mod aws_support;

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::operation::create_function::CreateFunctionError;
use aws_sdk_lambda::operation::update_alias::UpdateAliasError;
use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::FunctionCode;
use aws_support::*;
use testbed::identity::{ACCOUNT_ID, ARTIFACT_BUCKET};
use testbed::up::{Testbed, TestbedOptions};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

async fn testbed() -> &'static Testbed {
    let opts = TestbedOptions { quotas: false, update_in_progress: Duration::ZERO, ..TestbedOptions::fast() };
    shared(&TESTBED, opts).await
}

#[tokio::test]
async fn code_from_s3_is_the_exact_object_version_named() {
    let tb = testbed().await;
    let (lambda, s3) = (lambda(tb).await, s3(tb).await);
    let name = unique("s3version");
    let key = format!("{name}/bootstrap.zip");
    let (v1_zip, v2_zip) = (zip("v1"), zip("v2"));
    let v1 = put_artifact(&s3, &key, &v1_zip).await;
    put_artifact(&s3, &key, &v2_zip).await;
    create_function(&lambda, &name, &zip("initial")).await;

    let out = lambda
        .update_function_code()
        .function_name(&name)
        .s3_bucket(ARTIFACT_BUCKET)
        .s3_key(&key)
        .s3_object_version(&v1)
        .send()
        .await
        .expect("code from the older version");
    assert_eq!(out.code_sha256(), Some(sha256_b64(&v1_zip).as_str()));
    assert_eq!(out.code_size(), v1_zip.len() as i64);

    let out = lambda.update_function_code().function_name(&name).s3_bucket(ARTIFACT_BUCKET).s3_key(&key).send().await;
    assert_eq!(out.expect("latest version").code_sha256(), Some(sha256_b64(&v2_zip).as_str()));
}

#[tokio::test]
async fn missing_s3_key_version_or_bucket_is_rejected_and_leaves_the_code_unchanged() {
    let tb = testbed().await;
    let (lambda, s3) = (lambda(tb).await, s3(tb).await);
    let name = unique("missing");
    let initial = zip("initial");
    let before = create_function(&lambda, &name, &initial).await;
    let key = format!("{name}/present.zip");
    put_artifact(&s3, &key, &zip("present")).await;

    let attempts = [
        (ARTIFACT_BUCKET.to_string(), format!("{name}/absent.zip"), None, "NoSuchKey"),
        (ARTIFACT_BUCKET.to_string(), key.clone(), Some("no-such-version".to_string()), "NoSuchVersion"),
        ("no-such-bucket".to_string(), key, None, "NoSuchBucket"),
    ];
    for (bucket, key, version, s3_code) in attempts {
        let err = lambda
            .update_function_code()
            .function_name(&name)
            .s3_bucket(bucket)
            .s3_key(key)
            .set_s3_object_version(version)
            .send()
            .await
            .expect_err("missing object must fail")
            .into_service_error();
        assert!(matches!(err, UpdateFunctionCodeError::InvalidParameterValueException(_)), "{err:?}");
        let message = err.message().unwrap_or_default();
        assert!(
            message
                .starts_with(&format!("Error occurred while GetObject. S3 Error Code: {s3_code}. S3 Error Message:")),
            "{message}"
        );
    }
    let err = lambda
        .update_function_code()
        .function_name(&name)
        .s3_bucket(ARTIFACT_BUCKET)
        .s3_key(format!("{name}/absent.zip"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some(
            "Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The specified key does not exist."
        )
    );

    let after = lambda.get_function().function_name(&name).send().await.unwrap();
    let config = after.configuration().unwrap();
    assert_eq!(config.code_sha256(), Some(sha256_b64(&initial).as_str()));
    assert_eq!(config.revision_id(), before.revision_id(), "a failed update changes nothing");
    assert_eq!(tb.aws().history(&name), Some(vec![sha256_b64(&initial)]));
}

#[tokio::test]
async fn an_object_that_is_not_a_zip_is_rejected() {
    let tb = testbed().await;
    let (lambda, s3) = (lambda(tb).await, s3(tb).await);
    let name = unique("notzip");
    create_function(&lambda, &name, &zip("initial")).await;
    let key = format!("{name}/script.sh");
    put_artifact(&s3, &key, b"#!/bin/sh\necho hi\n").await;

    let from_s3 =
        lambda.update_function_code().function_name(&name).s3_bucket(ARTIFACT_BUCKET).s3_key(&key).send().await;
    let inline =
        lambda.update_function_code().function_name(&name).zip_file(Blob::new(b"not a zip".to_vec())).send().await;
    for result in [from_s3, inline] {
        let err = result.expect_err("not a zip").into_service_error();
        assert!(matches!(err, UpdateFunctionCodeError::InvalidParameterValueException(_)), "{err:?}");
        assert!(err.message().unwrap_or_default().contains("Could not unzip uploaded file"));
    }
}

#[tokio::test]
async fn list_functions_pages_at_most_fifty_and_honours_max_items_and_marker() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let prefix = unique("page");
    let mine: HashSet<String> = (0..55).map(|i| format!("{prefix}-{i:02}")).collect();
    for name in &mine {
        create_function(&lambda, name, &zip(name)).await;
    }

    let mut seen = Vec::new();
    let mut marker = None;
    for _ in 0..100 {
        let page = lambda.list_functions().set_marker(marker.clone()).send().await.unwrap();
        assert!(page.functions().len() <= 50, "a page has at most 50 functions");
        seen.extend(page.functions().iter().filter_map(|f| f.function_name()).map(str::to_string));
        marker = page.next_marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    let listed: Vec<&String> = seen.iter().filter(|n| mine.contains(*n)).collect();
    assert_eq!(listed.len(), mine.len(), "every function exactly once");
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), mine.len());

    let first = lambda.list_functions().max_items(7).send().await.unwrap();
    assert_eq!(first.functions().len(), 7);
    let listed = &first.functions()[0];
    assert!(listed.state().is_none() && listed.last_update_status().is_none(), "as in AWS, lists omit states");
    let second = lambda.list_functions().max_items(7).marker(first.next_marker().unwrap()).send().await.unwrap();
    let last_of_first = first.functions()[6].function_name().unwrap();
    assert!(second.functions()[0].function_name().unwrap() > last_of_first, "the next page starts after the marker");
}

#[tokio::test]
async fn account_settings_count_the_functions_a_listing_would_page_through() {
    // Its own testbed: the other tests create functions concurrently in the shared one.
    static OWN: OnceCell<Testbed> = OnceCell::const_new();
    let opts = TestbedOptions { quotas: false, update_in_progress: Duration::ZERO, ..TestbedOptions::fast() };
    let tb = shared(&OWN, opts).await;
    let lambda = lambda(tb).await;
    let count =
        || async { lambda.get_account_settings().send().await.unwrap().account_usage().unwrap().function_count() };
    let before = count().await;
    let name = unique("counted");
    create_function(&lambda, &name, &zip("code")).await;
    assert_eq!(count().await, before + 1, "a created function is counted at once");
    lambda.delete_function().function_name(&name).send().await.unwrap();
    assert_eq!(count().await, before);
}

#[tokio::test]
async fn functions_are_addressed_by_name_partial_arn_and_full_arn() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("arns");
    create_function(&lambda, &name, &zip("code")).await;
    let arn = function_arn(&name);
    for reference in [name.clone(), format!("{ACCOUNT_ID}:function:{name}"), arn.clone(), format!("{arn}:$LATEST")] {
        let out = lambda.get_function_configuration().function_name(&reference).send().await.expect(&reference);
        assert_eq!(out.function_name(), Some(name.as_str()));
    }
    let err = lambda.get_function().function_name(unique("absent")).send().await.unwrap_err().into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn versions_and_aliases_have_their_own_revision_ids() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("alias");
    let code = zip("one");
    create_function(&lambda, &name, &code).await;

    let v1 = lambda.publish_version().function_name(&name).send().await.unwrap();
    assert_eq!(v1.version(), Some("1"));
    assert_eq!(v1.function_arn(), Some(format!("{}:1", function_arn(&name)).as_str()));
    let again = lambda.publish_version().function_name(&name).send().await.unwrap();
    assert_eq!(again.version(), Some("1"), "unchanged code and configuration publish no new version");

    let alias = lambda.create_alias().function_name(&name).name("live").function_version("1").send().await.unwrap();
    assert!(alias.revision_id().is_some());
    let stale = alias.revision_id().unwrap().to_string();
    let updated = lambda
        .update_alias()
        .function_name(&name)
        .name("live")
        .description("moved")
        .revision_id(&stale)
        .send()
        .await
        .unwrap();
    assert_ne!(updated.revision_id(), Some(stale.as_str()));
    let err = lambda
        .update_alias()
        .function_name(&name)
        .name("live")
        .function_version("$LATEST")
        .revision_id(stale)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, UpdateAliasError::PreconditionFailedException(_)), "{err:?}");

    let through_alias = lambda.get_function().function_name(&name).qualifier("live").send().await.unwrap();
    let config = through_alias.configuration().unwrap();
    assert_eq!(config.version(), Some("1"));
    assert_eq!(config.function_arn(), Some(format!("{}:live", function_arn(&name)).as_str()));
    let aliases = lambda.list_aliases().function_name(&name).send().await.unwrap();
    assert_eq!(aliases.aliases().len(), 1);
}

#[tokio::test]
async fn tags_are_added_listed_and_removed() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("tags");
    create_function(&lambda, &name, &zip("code")).await;
    let arn = function_arn(&name);
    lambda.tag_resource().resource(&arn).tags("team", "deploy").tags("tier", "test").send().await.unwrap();
    lambda.untag_resource().resource(&arn).tag_keys("tier").send().await.unwrap();
    let tags = lambda.list_tags().resource(&arn).send().await.unwrap();
    assert_eq!(tags.tags().unwrap().len(), 1);
    assert_eq!(tags.tags().unwrap().get("team").map(String::as_str), Some("deploy"));
    let got = lambda.get_function().function_name(&name).send().await.unwrap();
    assert_eq!(got.tags().unwrap().get("team").map(String::as_str), Some("deploy"));
}

#[tokio::test]
async fn create_function_needs_a_role_that_exists() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let err = lambda
        .create_function()
        .function_name(unique("norole"))
        .role(format!("arn:aws:iam::{ACCOUNT_ID}:role/no-such-role"))
        .handler("bootstrap")
        .code(FunctionCode::builder().zip_file(Blob::new(zip("x"))).build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, CreateFunctionError::InvalidParameterValueException(_)), "{err:?}");
    assert_eq!(err.message(), Some("The role defined for the function cannot be assumed by Lambda."));
}

#[tokio::test]
async fn code_history_records_every_code_sha256_the_function_had() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("history");
    let (a, b) = (zip("a"), zip("b"));
    create_function(&lambda, &name, &a).await;
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(b.clone())).send().await.unwrap();
    let expected = vec![sha256_b64(&a), sha256_b64(&b)];
    assert_eq!(tb.aws().history(&name), Some(expected.clone()));
    let (status, body) = control(tb, "GET", &format!("/_testbed/functions/{name}/history"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["CodeSha256History"], serde_json::json!(expected));
}
