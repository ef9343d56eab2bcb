//! The Lambda entry point: configuration and clients once per container, then one handler call per invocation.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use lambda_deployer::config::Config;
use lambda_deployer::deployer::{Deployer, deadline_from_epoch_millis};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,aws_config=warn".into()),
        )
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
    let config = Config::from_env().inspect_err(|err| tracing::error!(error = %err, "invalid configuration"))?;
    // The deployer retries by itself (honouring Retry-After, within the invocation's deadline).
    let sdk = aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled()).load().await;
    let identity = Deployer::identity(&sdk)
        .await
        .inspect_err(|err| tracing::error!(error = %err, "cannot resolve own identity"))?;
    let deployer = Deployer::new(config, &sdk, &identity);
    let deployer = &deployer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline_from_epoch_millis(event.context.deadline);
        if deadline.is_none() {
            tracing::warn!(
                deadline_ms = event.context.deadline,
                "invocation deadline is not in the future; ignoring it"
            );
        }
        deployer.handle(&event.payload, deadline).await
    }))
    .await
}
