//! `testbed kube --listen ADDR --dir DIR` — the Kubernetes API server alone.
//! `testbed up --dir DIR [--no-quotas] [--in-progress-ms N] [--in-progress-jitter-ms N] [--pending-ms N]` — moto,
//! the AWS layer and the Kubernetes API server; writes DIR/env and the kube files; runs until SIGTERM/SIGINT, then
//! stops everything. Updates stay InProgress `--in-progress-ms` plus a uniform draw up to `--in-progress-jitter-ms`
//! (default 1500 + 3000, as AWS shows for a small zip function).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use testbed::up::{Testbed, TestbedOptions};

const USAGE: &str = "usage:
  testbed kube --listen ADDR --dir DIR
  testbed up --dir DIR [--no-quotas] [--in-progress-ms N] [--in-progress-jitter-ms N] [--pending-ms N]";

enum Command {
    Kube { listen: SocketAddr, dir: PathBuf },
    Up { dir: PathBuf, opts: TestbedOptions },
}

fn parse(args: &[String]) -> Result<Command, String> {
    let (command, rest) = args.split_first().ok_or("no command")?;
    if command != "kube" && command != "up" {
        return Err(format!("unknown command {command}"));
    }
    let mut listen = None;
    let mut dir = None;
    let mut opts = TestbedOptions::default();
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
            other => return Err(format!("unknown argument {other}")),
        }
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
            Ok(Command::Kube { .. }) => panic!("parsed as kube"),
            Err(e) => panic!("{e}"),
        }
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
