//! The Lambda entry point: configuration and clients once per container, then one handler call per invocation.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use lambda_deployer::config::Config;
use lambda_deployer::deployer::{Deployer, deadline_from_epoch_millis};
use lambda_deployer::metrics;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_logging();
    let config = Config::from_env().inspect_err(|err| tracing::error!(error = %err, "invalid configuration"))?;
    // The deployer retries by itself (honouring Retry-After, within the invocation's deadline).
    let sdk = aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled()).load().await;
    let identity = Deployer::identity(&sdk)
        .await
        .inspect_err(|err| tracing::error!(error = %err, "cannot resolve own identity"))?;
    let deployer = Deployer::new(config, &sdk, &identity);
    let deployer = &deployer;
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "lambda-deployer".into());
    let name = name.as_str();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline_from_epoch_millis(event.context.deadline);
        if deadline.is_none() {
            tracing::warn!(
                deadline_ms = event.context.deadline,
                "invocation deadline is not in the future; ignoring it"
            );
        }
        let summary = deployer.handle(&event.payload, deadline).await?;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        if let Some(line) = metrics::emf_line(&summary, name, &event.context.request_id, now_ms as u64) {
            // Its own line, outside the log formatter: CloudWatch Logs extracts metrics from a document at the root.
            println!("{line}");
        }
        Ok::<_, lambda_deployer::Error>(summary)
    }))
    .await
}

/// JSON log lines, as Lambda's advanced logging controls and the Rust runtime document them: the level from
/// `AWS_LAMBDA_LOG_LEVEL` (the template's `LoggingConfig`), else `RUST_LOG`; always JSON (with or without
/// `AWS_LAMBDA_LOG_FORMAT=JSON`). Each line carries its spans (`spans`), the first of which the runtime opens with
/// the invocation's `requestId`: every line an invocation logs names it.
fn init_logging() {
    // Lambda's levels are TRACE..ERROR and FATAL; tracing has no FATAL.
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|level| level.to_lowercase().replace("fatal", "error"));
    let directives = level.or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| "info".into());
    // The SDK's credential chatter stays out of INFO unless asked for by name.
    let directives =
        if directives.contains("aws_config") { directives } else { format!("{directives},aws_config=warn") };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|err| {
        let message = format!("log filter {directives:?} is invalid ({err}); using info");
        eprintln!("{}", serde_json::json!({"level": "WARN", "fields": {"message": message}}));
        "info,aws_config=warn".into()
    });
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        // The whole list, outermost first: the SDK opens spans of its own inside the invocation's.
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .without_time()
        .init();
}
