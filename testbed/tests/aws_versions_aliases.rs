//! Versions, weighted aliases and provisioned concurrency as AWS validates them, through aws-sdk-lambda: what a
//! guarded release (publish, then move or weight an alias) meets. Quotas off; updates InProgress a fixed 300 ms.

mod aws_support;

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::operation::create_alias::CreateAliasError;
use aws_sdk_lambda::operation::publish_version::PublishVersionError;
use aws_sdk_lambda::operation::update_alias::UpdateAliasError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, DeadLetterConfig, ProvisionedConcurrencyStatusEnum};
use aws_support::*;
use testbed::aws::{Fault, FaultAction, Trigger};
use testbed::identity::ACCOUNT_ID;
use testbed::up::{DEPLOYER_ROLE, FUNCTION_ROLE, Testbed, TestbedOptions};
use tokio::sync::OnceCell;

static TESTBED: OnceCell<Testbed> = OnceCell::const_new();

async fn testbed() -> &'static Testbed {
    shared(&TESTBED, TestbedOptions { quotas: false, ..TestbedOptions::fast() }).await
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
}

fn weights(version: &str, weight: f64) -> AliasRoutingConfiguration {
    AliasRoutingConfiguration::builder().additional_version_weights(version, weight).build()
}

/// A function with versions 1..=n, each with its own code.
async fn function_with_versions(lambda: &aws_sdk_lambda::Client, prefix: &str, n: u32) -> String {
    let name = unique(prefix);
    create_function(lambda, &name, &zip("v1")).await;
    publish(lambda, &name).await;
    for i in 2..=n {
        lambda
            .update_function_code()
            .function_name(&name)
            .zip_file(Blob::new(zip(&format!("v{i}"))))
            .send()
            .await
            .unwrap();
        publish(lambda, &name).await;
    }
    name
}

/// The error code and message a refused call got.
fn refusal(err: &impl ProvideErrorMetadata) -> (String, String) {
    (err.code().unwrap_or_default().to_string(), err.message().unwrap_or_default().to_string())
}

#[tokio::test]
async fn publish_version_is_refused_while_an_update_is_in_progress_and_returns_the_last_version_when_nothing_changed() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("publish409");
    create_function(&lambda, &name, &zip("one")).await;
    assert_eq!(publish(&lambda, &name).await, "1");
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.unwrap();

    let err = lambda.publish_version().function_name(&name).send().await.unwrap_err().into_service_error();
    assert!(matches!(err, PublishVersionError::ResourceConflictException(_)), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("An update is in progress for resource"), "{err:?}");
    assert_eq!(publish(&lambda, &name).await, "2", "once the update ended");
    let again = lambda.publish_version().function_name(&name).send().await.unwrap();
    assert_eq!(again.version(), Some("2"), "nothing changed since version 2: no version 3");
    let versions = lambda.list_versions_by_function().function_name(&name).send().await.unwrap();
    assert_eq!(versions.versions().len(), 3, "$LATEST, 1 and 2");
}

#[tokio::test]
async fn publish_version_refuses_a_code_sha256_or_revision_id_that_latest_no_longer_has() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("publishguard");
    let one = create_function(&lambda, &name, &zip("one")).await;
    let two = zip("two");
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(two.clone())).send().await.unwrap();
    let latest = settled(&lambda, &name).await;

    let stale_code = sha256_b64(&zip("one"));
    let err = lambda.publish_version().function_name(&name).code_sha256(&stale_code).send().await.unwrap_err();
    let err = err.into_service_error();
    assert!(matches!(err, PublishVersionError::InvalidParameterValueException(_)), "{err:?}");
    assert_eq!(
        err.message().unwrap_or_default(),
        format!(
            "CodeSHA256 ({stale_code}) is different from current CodeSHA256 in $LATEST ({}). Please try again with \
             the CodeSHA256 in $LATEST.",
            sha256_b64(&two)
        )
    );
    let err = lambda.publish_version().function_name(&name).revision_id(one.revision_id().unwrap()).send().await;
    assert!(matches!(err.unwrap_err().into_service_error(), PublishVersionError::PreconditionFailedException(_)));
    let v1 = lambda
        .publish_version()
        .function_name(&name)
        .code_sha256(sha256_b64(&two))
        .revision_id(latest.revision_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!((v1.version(), v1.code_sha256()), (Some("1"), Some(sha256_b64(&two).as_str())));
}

#[tokio::test]
async fn a_version_keeps_its_code_role_and_dead_letter_queue_when_latest_changes() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("keeps");
    let dlq = |queue: &str| {
        DeadLetterConfig::builder().target_arn(format!("arn:aws:sqs:us-east-1:{ACCOUNT_ID}:{queue}")).build()
    };
    create_function(&lambda, &name, &zip("one")).await;
    lambda.update_function_configuration().function_name(&name).dead_letter_config(dlq("first")).send().await.unwrap();
    publish(&lambda, &name).await;
    lambda
        .update_function_configuration()
        .function_name(&name)
        .role(role(DEPLOYER_ROLE))
        .dead_letter_config(dlq("second"))
        .send()
        .await
        .unwrap();
    settled(&lambda, &name).await;
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("two"))).send().await.unwrap();
    settled(&lambda, &name).await;

    let v1 = lambda.get_function().function_name(&name).qualifier("1").send().await.unwrap();
    let v1 = v1.configuration().unwrap();
    assert_eq!(v1.code_sha256(), Some(sha256_b64(&zip("one")).as_str()));
    assert_eq!(v1.role(), Some(role(FUNCTION_ROLE).as_str()));
    assert!(v1.dead_letter_config().and_then(|d| d.target_arn()).unwrap().ends_with(":first"));
    let latest = lambda.get_function_configuration().function_name(&name).send().await.unwrap();
    assert_eq!(latest.role(), Some(role(DEPLOYER_ROLE).as_str()));
    assert!(latest.dead_letter_config().and_then(|d| d.target_arn()).unwrap().ends_with(":second"));
    let cleared = DeadLetterConfig::builder().target_arn("").build();
    let out = lambda.update_function_configuration().function_name(&name).dead_letter_config(cleared).send().await;
    assert_eq!(out.unwrap().dead_letter_config(), None, "an empty TargetArn removes the dead-letter queue");
}

#[tokio::test]
async fn weighted_routing_is_refused_with_aws_messages_and_a_refused_update_changes_nothing() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = function_with_versions(&lambda, "routing", 2).await;
    let arn = function_arn(&name);
    let create = |version: &str, routing: AliasRoutingConfiguration| {
        lambda
            .create_alias()
            .function_name(&name)
            .name(unique("a"))
            .function_version(version)
            .routing_config(routing)
            .send()
    };

    let err = create("$LATEST", weights("1", 0.1)).await.unwrap_err().into_service_error();
    assert!(matches!(err, CreateAliasError::InvalidParameterValueException(_)), "{err:?}");
    assert_eq!(err.message(), Some("$LATEST is not supported for an alias pointing to more than 1 version"));
    let two = AliasRoutingConfiguration::builder()
        .additional_version_weights("1", 0.1)
        .additional_version_weights("2", 0.1)
        .build();
    let err = create("1", two).await.unwrap_err().into_service_error();
    assert!(matches!(err, CreateAliasError::InvalidParameterValueException(_)), "{err:?}");
    assert_eq!(err.message(), Some("Number of items in AdditionalVersionWeights cannot be greater than 1"));
    let err = create("1", weights("2", 1.5)).await.unwrap_err().into_service_error();
    assert_eq!(
        refusal(&err),
        (
            "ValidationException".into(),
            "1 validation error detected: Value '{2=1.5}' at 'routingConfig.additionalVersionWeights' failed to \
             satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to \
             1.0, Member must have value greater than or equal to 0.0, Member must not be null]"
                .into()
        )
    );
    let err = create("1", weights("1", 0.5)).await.unwrap_err().into_service_error();
    assert_eq!(
        err.message(),
        Some("Invalid function version 1. Function version 1 is already included in routing configuration.")
    );
    let err = create("1", weights("9", 0.5)).await.unwrap_err().into_service_error();
    assert!(matches!(err, CreateAliasError::ResourceNotFoundException(_)), "{err:?}");
    assert_eq!(err.message(), Some(format!("Function not found: {arn}:9").as_str()));
    let err = create("1", weights("$LATEST", 0.5)).await.unwrap_err().into_service_error();
    assert_eq!(refusal(&err).0, "ValidationException");
    assert!(refusal(&err).1.contains("Map keys must satisfy constraint"), "{err:?}");

    let live = lambda.create_alias().function_name(&name).name("live").function_version("1").send().await.unwrap();
    let moved_onto_latest = lambda
        .update_alias()
        .function_name(&name)
        .name("live")
        .function_version("$LATEST")
        .routing_config(weights("2", 0.1))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(moved_onto_latest, UpdateAliasError::InvalidParameterValueException(_)));
    let after = lambda.get_alias().function_name(&name).name("live").send().await.unwrap();
    assert_eq!((after.function_version(), after.revision_id()), (Some("1"), live.revision_id()));
    assert_eq!(after.routing_config(), None);
}

#[tokio::test]
async fn versions_with_different_roles_or_dead_letter_queues_cannot_share_an_alias() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = unique("roles");
    create_function(&lambda, &name, &zip("one")).await;
    publish(&lambda, &name).await;
    lambda.update_function_configuration().function_name(&name).role(role(DEPLOYER_ROLE)).send().await.unwrap();
    assert_eq!(publish(&lambda, &name).await, "2");
    let dlq = DeadLetterConfig::builder().target_arn(format!("arn:aws:sqs:us-east-1:{ACCOUNT_ID}:dlq")).build();
    let update = lambda.update_function_configuration().function_name(&name).role(role(FUNCTION_ROLE));
    update.dead_letter_config(dlq).send().await.unwrap();
    assert_eq!(publish(&lambda, &name).await, "3");

    let alias = |extra: &str| {
        lambda
            .create_alias()
            .function_name(&name)
            .name(unique("a"))
            .function_version("1")
            .routing_config(weights(extra, 0.1))
            .send()
    };
    let err = alias("2").await.unwrap_err().into_service_error();
    assert!(matches!(err, CreateAliasError::InvalidParameterValueException(_)), "{err:?}");
    assert_eq!(err.message(), Some("Specified versions must be associated with the same execution role"));
    let err = alias("3").await.unwrap_err().into_service_error();
    assert!(matches!(err, CreateAliasError::InvalidParameterValueException(_)), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("same dead-letter queue configuration"), "{err:?}");
}

#[tokio::test]
async fn aliases_show_their_weights_and_an_empty_map_clears_them() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = function_with_versions(&lambda, "showweights", 2).await;
    lambda
        .create_alias()
        .function_name(&name)
        .name("live")
        .function_version("1")
        .routing_config(weights("2", 0.1))
        .send()
        .await
        .unwrap();

    let live = lambda.get_alias().function_name(&name).name("live").send().await.unwrap();
    let shown = live.routing_config().and_then(|r| r.additional_version_weights()).cloned();
    assert_eq!(shown, Some([("2".to_string(), 0.1)].into()));
    let listed = lambda.list_aliases().function_name(&name).send().await.unwrap();
    assert_eq!(listed.aliases()[0].routing_config(), live.routing_config());

    let cleared = AliasRoutingConfiguration::builder().set_additional_version_weights(Some(Default::default())).build();
    let out = lambda.update_alias().function_name(&name).name("live").routing_config(cleared).send().await.unwrap();
    assert_eq!(out.routing_config(), None);
    let live = lambda.get_alias().function_name(&name).name("live").send().await.unwrap();
    assert_eq!((live.function_version(), live.routing_config()), (Some("1"), None));
}

#[tokio::test]
async fn deleting_a_version_an_alias_routes_to_is_refused_and_an_unused_one_is_deleted() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = function_with_versions(&lambda, "delversion", 3).await;
    let routing = weights("2", 0.2);
    lambda
        .create_alias()
        .function_name(&name)
        .name("live")
        .function_version("1")
        .routing_config(routing)
        .send()
        .await
        .unwrap();

    for version in ["1", "2"] {
        let err = lambda.delete_function().function_name(&name).qualifier(version).send().await.unwrap_err();
        let err = err.into_service_error();
        assert!(err.is_resource_conflict_exception(), "{err:?}");
        assert_eq!(err.message(), Some("Unable to delete version because the following aliases reference it: [live]"));
    }
    lambda.delete_function().function_name(&name).qualifier("3").send().await.unwrap();
    let gone = lambda.get_function().function_name(&name).qualifier("3").send().await.unwrap_err();
    assert!(gone.into_service_error().is_resource_not_found_exception());
}

#[tokio::test]
async fn provisioned_concurrency_is_ready_on_an_alias_and_excludes_weights_either_way() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = function_with_versions(&lambda, "provisioned", 2).await;
    lambda.create_alias().function_name(&name).name("live").function_version("1").send().await.unwrap();
    let put = || lambda.put_provisioned_concurrency_config().function_name(&name).provisioned_concurrent_executions(5);

    let err = put().qualifier("$LATEST").send().await.unwrap_err().into_service_error();
    assert!(err.is_invalid_parameter_value_exception(), "{err:?}");
    assert_eq!(
        err.message(),
        Some("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
    );
    let get = || lambda.get_provisioned_concurrency_config().function_name(&name).qualifier("live").send();
    assert!(get().await.unwrap_err().into_service_error().is_provisioned_concurrency_config_not_found_exception());
    let accepted = put().qualifier("live").send().await.unwrap();
    assert_eq!(accepted.status(), Some(&ProvisionedConcurrencyStatusEnum::InProgress));
    let ready = get().await.unwrap();
    assert_eq!(ready.status(), Some(&ProvisionedConcurrencyStatusEnum::Ready));
    assert_eq!(ready.allocated_provisioned_concurrent_executions(), Some(5));

    let weighted = lambda.update_alias().function_name(&name).name("live").routing_config(weights("2", 0.1)).send();
    let err = weighted.await.unwrap_err().into_service_error();
    assert!(matches!(err, UpdateAliasError::InvalidParameterValueException(_)), "{err:?}");
    assert_eq!(err.message(), Some("Alias with weights can not be used with Provisioned Concurrency"));

    lambda.delete_provisioned_concurrency_config().function_name(&name).qualifier("live").send().await.unwrap();
    lambda.update_alias().function_name(&name).name("live").routing_config(weights("2", 0.1)).send().await.unwrap();
    let err = put().qualifier("live").send().await.unwrap_err().into_service_error();
    assert!(err.is_invalid_parameter_value_exception(), "{err:?}");
    assert_eq!(err.message(), Some("Alias with weights can not be used with Provisioned Concurrency"));
    put().qualifier("2").send().await.expect("a version takes provisioned concurrency");
}

#[tokio::test]
async fn conflict_stale_revision_and_after_apply_faults_reach_publish_version_and_update_alias() {
    let tb = testbed().await;
    let lambda = lambda(tb).await;
    let name = function_with_versions(&lambda, "faults", 2).await;
    lambda.update_function_code().function_name(&name).zip_file(Blob::new(zip("three"))).send().await.unwrap();
    settled(&lambda, &name).await;
    let once = |op: &str, action| Fault::new(op, action).function(&name).when(Trigger::Nth(1));
    tb.aws().inject(once("PublishVersion", FaultAction::Conflict)).unwrap();
    tb.aws().inject(once("UpdateAlias", FaultAction::StaleRevision)).unwrap();
    lambda.create_alias().function_name(&name).name("live").function_version("1").send().await.unwrap();

    let err = lambda.publish_version().function_name(&name).send().await.unwrap_err().into_service_error();
    assert!(matches!(err, PublishVersionError::ResourceConflictException(_)), "{err:?}");
    let versions = lambda.list_versions_by_function().function_name(&name).send().await.unwrap();
    assert_eq!(versions.versions().len(), 3, "no version 3 behind the 409");
    let shift = || lambda.update_alias().function_name(&name).name("live").routing_config(weights("2", 0.1)).send();
    let err = shift().await.unwrap_err().into_service_error();
    assert!(matches!(err, UpdateAliasError::PreconditionFailedException(_)), "{err:?}");
    let live = lambda.get_alias().function_name(&name).name("live").send().await.unwrap();
    assert_eq!(live.routing_config(), None, "the 412 changed nothing");

    tb.aws().inject(once("UpdateAlias", FaultAction::ServiceException).after_apply()).unwrap();
    let err = shift().await.unwrap_err().into_service_error();
    assert!(err.is_service_exception(), "{err:?}");
    let live = lambda.get_alias().function_name(&name).name("live").send().await.unwrap();
    assert!(live.routing_config().is_some(), "the weights were set behind the 500");
}
