//! Function states and RevisionId preconditions: Pending after create, InProgress after updates (with AWS's 409),
//! stale RevisionIds rejected with 412 — as aws-sdk-lambda sees them.

mod aws_support;

use std::time::{Duration, Instant};

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::operation::publish_version::PublishVersionError;
use aws_sdk_lambda::operation::tag_resource::TagResourceError;
use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError;
use aws_sdk_lambda::operation::update_function_configuration::UpdateFunctionConfigurationError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, LastUpdateStatus, State};
use aws_support::*;
use testbed::aws::{Fault, FaultAction};
use testbed::identity::ACCOUNT_ID;
use testbed::up::{FUNCTION_ROLE, Testbed, TestbedOptions};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

// Long enough that the calls a test makes inside these windows land inside them on a loaded machine.
const PENDING: Duration = Duration::from_millis(1_500);
const IN_PROGRESS: Duration = Duration::from_millis(1_500);

async fn testbed() -> &'static Testbed {
    let opts = TestbedOptions {
        quotas: false,
        update_in_progress: IN_PROGRESS,
        create_pending: PENDING,
        ..TestbedOptions::fast()
    };
    shared(&TESTBED, opts).await
}

#[tokio::test]
async fn a_new_function_is_pending_then_active_with_a_new_revision_id() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("pending");
    let created = lambda
        .create_function()
        .function_name(&name)
        .role(format!("arn:aws:iam::{ACCOUNT_ID}:role/{FUNCTION_ROLE}"))
        .handler("bootstrap")
        .code(FunctionCode::builder().zip_file(Blob::new(zip("code"))).build())
        .send()
        .await
        .unwrap();
    assert_eq!(created.state(), Some(&State::Pending));
    assert_eq!(created.state_reason_code().map(|c| c.as_str()), Some("Creating"));

    let err = lambda
        .update_function_code()
        .function_name(&name)
        .zip_file(Blob::new(zip("too early")))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, UpdateFunctionCodeError::ResourceConflictException(_)), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("Pending"));

    let active = settled(&lambda, &name).await;
    assert_ne!(active.revision_id(), created.revision_id(), "Pending→Active is a change");
}

#[tokio::test]
async fn an_update_is_in_progress_then_successful_and_conflicting_calls_meanwhile_get_409() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("inprogress");
    create_function(&lambda, &name, &zip("one")).await;

    let started = Instant::now();
    let updated =
        lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.unwrap();
    assert_eq!(updated.last_update_status(), Some(&LastUpdateStatus::InProgress));

    let expected = format!(
        "The operation cannot be performed at this time. An update is in progress for resource: {}",
        function_arn(&name)
    );
    let code = lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("three"))).send().await;
    let code = code.unwrap_err().into_service_error();
    assert!(matches!(code, UpdateFunctionCodeError::ResourceConflictException(_)), "{code:?}");
    assert_eq!(code.message(), Some(expected.as_str()));

    let env = Environment::builder().variables("A", "1").build();
    let config = lambda.update_function_configuration().function_name(&name).environment(env).send().await;
    let config = config.unwrap_err().into_service_error();
    assert!(matches!(config, UpdateFunctionConfigurationError::ResourceConflictException(_)), "{config:?}");

    let publish = lambda.publish_version().function_name(&name).send().await.unwrap_err().into_service_error();
    assert!(matches!(publish, PublishVersionError::ResourceConflictException(_)), "{publish:?}");

    let tag = lambda.tag_resource().resource(function_arn(&name)).tags("k", "v").send().await;
    let tag = tag.unwrap_err().into_service_error();
    assert!(matches!(tag, TagResourceError::ResourceConflictException(_)), "{tag:?}");

    let done = settled(&lambda, &name).await;
    assert!(started.elapsed() >= IN_PROGRESS, "InProgress lasts the configured time");
    assert_ne!(done.revision_id(), updated.revision_id(), "InProgress→Successful is a change");
    assert_eq!(done.code_sha256(), Some(sha256_b64(&zip("two")).as_str()));
    assert_eq!(tb.aws().history(&name), Some(vec![sha256_b64(&zip("one")), sha256_b64(&zip("two"))]));
}

#[tokio::test]
async fn a_stale_revision_id_is_rejected_with_412_and_changes_nothing() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("revision");
    let first = create_function(&lambda, &name, &zip("one")).await;
    let stale = first.revision_id().unwrap().to_string();
    let env = Environment::builder().variables("A", "1").build();
    lambda
        .update_function_configuration()
        .function_name(&name)
        .environment(env)
        .revision_id(&stale)
        .send()
        .await
        .unwrap();
    let now = settled(&lambda, &name).await;
    assert_ne!(now.revision_id(), Some(stale.as_str()), "a configuration change is a new revision");

    let err = lambda
        .update_function_code()
        .function_name(&name)
        .zip_file(Blob::new(zip("two")))
        .revision_id(&stale)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, UpdateFunctionCodeError::PreconditionFailedException(_)), "{err:?}");
    let after = lambda.get_function_configuration().function_name(&name).send().await.unwrap();
    assert_eq!(after.code_sha256(), Some(sha256_b64(&zip("one")).as_str()));
    assert_eq!(after.revision_id(), now.revision_id());

    let ok = lambda
        .update_function_code()
        .function_name(&name)
        .zip_file(Blob::new(zip("two")))
        .revision_id(now.revision_id().unwrap())
        .send()
        .await;
    assert!(ok.is_ok(), "the current RevisionId is accepted: {ok:?}");
}

#[tokio::test]
async fn an_in_progress_fault_lengthens_one_update() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("longupdate");
    create_function(&lambda, &name, &zip("one")).await;
    let fault = Fault::new("UpdateFunctionCode", FaultAction::InProgress { ms: 4_000 }).function(&name);
    tb.aws().inject(fault).unwrap();
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.unwrap();
    tokio::time::sleep(IN_PROGRESS + Duration::from_millis(500)).await;
    let c = lambda.get_function_configuration().function_name(&name).send().await.unwrap();
    assert_eq!(c.last_update_status(), Some(&LastUpdateStatus::InProgress), "still InProgress past the default");
    settled(&lambda, &name).await;
}
