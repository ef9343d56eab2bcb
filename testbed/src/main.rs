//! `testbed kube --listen ADDR --dir DIR` — the Kubernetes API server alone.
//! `testbed up --dir DIR [--no-quotas] [--in-progress-ms N] [--pending-ms N]` — moto, the AWS layer and the
//! Kubernetes API server; writes DIR/env and the kube files; runs until SIGTERM/SIGINT, then stops everything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use testbed::up::{Testbed, TestbedOptions};

const USAGE: &str = "usage:
  testbed kube --listen ADDR --dir DIR
  testbed up --dir DIR [--no-quotas] [--in-progress-ms N] [--pending-ms N]";

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
