//! `testbed kube --listen ADDR --dir DIR` — the Kubernetes API server alone.
//! `testbed up --dir DIR [--no-quotas] [--in-progress-ms N] [--in-progress-jitter-ms N] [--pending-ms N]
//! [--metrics-delay-ms N]` — moto, the AWS layer and the Kubernetes API server; writes DIR/env and the kube files;
//! runs until SIGTERM/SIGINT, then stops everything. Updates stay InProgress `--in-progress-ms` plus a uniform draw
//! up to `--in-progress-jitter-ms` (default 1500 + 3000, as AWS shows for a small zip function); invocation metrics
//! show in CloudWatch `--metrics-delay-ms` after their second (default 60000, as Lambda sends them every minute).
//! `testbed deliver-queue --queue-url URL --invoke-url URL [--batch-size N]` — what an SQS event source mapping
//! does: each batch of the queue is POSTed as Lambda's SQS event to the invoke URL (e.g. the runtime emulator's
//! `http://127.0.0.1:PORT/2015-03-31/functions/NAME/invocations`); until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use testbed::up::{Testbed, TestbedOptions};

const USAGE: &str = "usage:
  testbed kube --listen ADDR --dir DIR
  testbed up --dir DIR [--no-quotas] [--in-progress-ms N] [--in-progress-jitter-ms N] [--pending-ms N]
             [--metrics-delay-ms N]
  testbed deliver-queue --queue-url URL --invoke-url URL [--batch-size N]";

enum Command {
    Kube { listen: SocketAddr, dir: PathBuf },
    Up { dir: PathBuf, opts: TestbedOptions },
    DeliverQueue { queue_url: String, invoke_url: String, batch_size: u32 },
}

fn parse(args: &[String]) -> Result<Command, String> {
    let (command, rest) = args.split_first().ok_or("no command")?;
    if !["kube", "up", "deliver-queue"].contains(&command.as_str()) {
        return Err(format!("unknown command {command}"));
    }
    let mut listen = None;
    let mut dir = None;
    let mut opts = TestbedOptions::default();
    let (mut queue_url, mut invoke_url, mut batch_size) = (None, None, 10);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let millis = |v: &String| v.parse::<u64>().map(Duration::from_millis).map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse::<SocketAddr>().map_err(|e| format!("--listen: {e}"))?),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--no-quotas" => opts.quotas = false,
            "--in-progress-ms" => opts.update_in_progress = millis(value()?)?,
            "--in-progress-jitter-ms" => opts.update_in_progress_jitter = millis(value()?)?,
            "--pending-ms" => opts.create_pending = millis(value()?)?,
            "--metrics-delay-ms" => opts.metrics_delay = millis(value()?)?,
            "--queue-url" => queue_url = Some(value()?.clone()),
            "--invoke-url" => invoke_url = Some(value()?.clone()),
            "--batch-size" => batch_size = value()?.parse::<u32>().map_err(|e| format!("--batch-size: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if command == "deliver-queue" {
        return Ok(Command::DeliverQueue {
            queue_url: queue_url.ok_or("--queue-url is required")?,
            invoke_url: invoke_url.ok_or("--invoke-url is required")?,
            batch_size,
        });
    }
    let dir = dir.ok_or("--dir is required")?;
    match command.as_str() {
        "kube" => Ok(Command::Kube { listen: listen.ok_or("--listen is required")?, dir }),
        _ => Ok(Command::Up { dir, opts }),
    }
}

async fn until_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}

async fn up(dir: PathBuf, opts: TestbedOptions) -> Result<(), String> {
    let testbed = Testbed::start(opts).await.map_err(|e| e.to_string())?;
    testbed.write_dir(&dir).map_err(|e| format!("writing {}: {e}", dir.display()))?;
    println!("testbed up");
    println!("  aws:  {} (moto {} pid {})", testbed.aws_endpoint(), testbed.moto_url(), testbed.moto_pid());
    println!("  kube: {}", testbed.kube().url());
    println!("  env:  source {}", dir.join("env").display());
    let waited = until_signal().await;
    tracing::info!("stopping");
    drop(testbed);
    waited.map_err(|e| format!("waiting for a signal: {e}"))
}

/// Hands one batch to the function behind `invoke_url` as Lambda would: its answer (maybe `batchItemFailures`), or
/// a function error — a non-2xx status, `X-Amz-Function-Error`, or an `errorType` document, which emulators send
/// without the header.
async fn invoke(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: String,
    event: Value,
) -> Result<Value, String> {
    let request = http::Request::post(&url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(event.to_string())))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| format!("POST {url}: {e}"))?;
    let (status, function_error) = (response.status(), response.headers().contains_key("x-amz-function-error"));
    let body = response.into_body().collect().await.map_err(|e| format!("POST {url}: {e}"))?.to_bytes();
    let answer = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    if !status.is_success() || function_error || answer.get("errorType").is_some() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(answer)
}

async fn deliver_queue(queue_url: String, invoke_url: String, batch_size: u32) -> Result<(), String> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let delivery = testbed::aws::deliver_queue(&queue_url, batch_size, move |event| {
        invoke(client.clone(), invoke_url.clone(), event)
    })
    .map_err(|e| e.to_string())?;
    println!("delivering {queue_url}");
    let waited = until_signal().await;
    let stats = delivery.finish().await;
    println!("{} batches, {} messages: {} deleted, {} kept", stats.batches, stats.delivered, stats.deleted, stats.kept);
    waited.map_err(|e| format!("waiting for a signal: {e}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("testbed: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("testbed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Kube { listen, dir } => {
                testbed::apiserver::serve_until_signal(listen, &dir).await.map_err(|e| e.to_string())
            }
            Command::Up { dir, opts } => up(dir, opts).await,
            Command::DeliverQueue { queue_url, invoke_url, batch_size } => {
                deliver_queue(queue_url, invoke_url, batch_size).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testbed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up_options(args: &[&str]) -> TestbedOptions {
        let args: Vec<String> = ["up", "--dir", "/tmp/tb"].iter().chain(args).map(|s| s.to_string()).collect();
        match parse(&args) {
            Ok(Command::Up { opts, .. }) => opts,
            Ok(_) => panic!("not parsed as up"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn deliver_queue_needs_the_queue_and_the_invoke_url_and_batches_ten_by_default() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match parse(&args(&["deliver-queue", "--queue-url", "http://q/1/n", "--invoke-url", "http://f"])) {
            Ok(Command::DeliverQueue { batch_size, .. }) => assert_eq!(batch_size, 10),
            _ => panic!("not parsed as deliver-queue"),
        }
        assert!(parse(&args(&["deliver-queue", "--queue-url", "http://q/1/n"])).is_err());
        let metrics = up_options(&["--metrics-delay-ms", "250"]).metrics_delay;
        assert_eq!(metrics, Duration::from_millis(250));
    }

    #[test]
    fn up_defaults_to_updates_of_aws_length_and_takes_a_fixed_or_jittered_time() {
        let default = up_options(&[]);
        assert_eq!(default.update_in_progress, Duration::from_millis(1_500));
        assert_eq!(default.update_in_progress_jitter, Duration::from_millis(3_000));
        let fixed = up_options(&["--in-progress-ms", "100", "--in-progress-jitter-ms", "0"]);
        assert_eq!(
            (fixed.update_in_progress, fixed.update_in_progress_jitter),
            (Duration::from_millis(100), Duration::ZERO)
        );
        assert!(
            parse(&["up".into(), "--dir".into(), "d".into(), "--in-progress-jitter-ms".into(), "x".into()]).is_err()
        );
    }
}
