//! The real binary under the Lambda runtime emulator: sizes, cold init (spawn → its first
//! `GET /runtime/invocation/next`) and peak RSS of a sweep of the largest fleet.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::support::{Children, free_port};
use super::{BenchResult, Fleet, target_dir};

pub async fn binary_figures(fleet: &Fleet, cold_runs: usize) -> Value {
    println!("\n== the binary ==");
    let sizes = sizes();
    match binary_runtime(fleet, cold_runs).await {
        Ok(runtime) => json!({"sizes": sizes, "runtime": runtime}),
        Err(err) => {
            println!("cold init / RSS not measured: {err}");
            json!({"sizes": sizes, "runtime": {"error": err.to_string()}})
        }
    }
}

fn sizes() -> Value {
    let lambda_dir = target_dir().join("lambda");
    let bootstrap = lambda_dir.join("lambda-deployer/bootstrap");
    let package = lambda_dir.join("lambda-deployer.zip");
    let host = Path::new(env!("CARGO_BIN_EXE_lambda-deployer")).to_path_buf();
    let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    // No package yet (`make build` without `make package`): zip the bootstrap here exactly as `make package` does.
    let package = if !package.exists() && bootstrap.exists() {
        let zipped = target_dir().join("bench/lambda-deployer.zip");
        let script = "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED, compresslevel=9); \
                      z.write(sys.argv[2], 'bootstrap'); z.close()";
        let made = Command::new("python3").args(["-c", script]).arg(&zipped).arg(&bootstrap).status();
        if made.is_ok_and(|status| status.success()) { zipped } else { package }
    } else {
        package
    };
    let mut out = serde_json::Map::new();
    for (label, path) in [("arm64Bootstrap", &bootstrap), ("arm64Zip", &package), ("hostBinary", &host)] {
        match size(path) {
            Some(bytes) => {
                println!("{label:<16} {:>10} bytes ({:.1} MiB)  {}", bytes, bytes as f64 / 1048576.0, path.display());
                out.insert(label.into(), json!({"bytes": bytes, "path": path.display().to_string()}));
            }
            None => {
                println!(
                    "{label:<16} {:>10}  {} is missing: run `make package` (arm64 bootstrap + zip)",
                    "-",
                    path.display()
                );
                out.insert(label.into(), json!(null));
            }
        }
    }
    Value::Object(out)
}

/// Spawn → first `GET .../runtime/invocation/next`, `runs` times, through a TCP proxy in front of
/// `cargo lambda watch`; then a sweep of the fleet through the emulator by the last process, and its VmHWM.
async fn binary_runtime(fleet: &Fleet, runs: usize) -> BenchResult<Value> {
    let cargo_lambda = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/cargo-lambda");
    if !cargo_lambda.exists() {
        return Err(format!("{} is missing: run `make tools`", cargo_lambda.display()).into());
    }
    let binary = env!("CARGO_BIN_EXE_lambda-deployer");
    let port = free_port();
    let mut children = Children(Vec::new());
    children.0.push(
        Command::new(&cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for_port(port, Duration::from_secs(30)).await?;
    let proxy = RuntimeProxy::start(port).await?;
    let logs = target_dir().join("bench/binary.log");
    std::fs::create_dir_all(logs.parent().unwrap_or(Path::new(".")))?;
    let mut init_ms = Vec::new();
    let mut last = None;
    for run in 0..runs.max(1) {
        proxy.reset();
        let started = Instant::now();
        let child = Command::new(binary)
            .env_clear()
            .envs(fleet.world.testbed.deployer_env().into_iter().filter(|(k, _)| k != "KUBECONFIG"))
            .env("WATCH_NAMESPACES", &fleet.world.namespace)
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{}/.rt", proxy.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .stdout(std::fs::File::create(&logs)?)
            .stderr(Stdio::null())
            .spawn()?;
        children.0.push(child);
        let first_next = proxy.wait_first_next(started, Duration::from_secs(30)).await?;
        init_ms.push(first_next.as_secs_f64() * 1000.0);
        if run + 1 < runs {
            if let Some(mut child) = children.0.pop() {
                let _ = child.kill();
                let _ = child.wait();
            }
        } else {
            last = children.0.last().map(Child::id);
        }
    }
    let pid = last.ok_or("no deployer process")?;
    let hwm_after_init = vm_hwm_kib(pid)?;
    let started = Instant::now();
    let output = Command::new(&cargo_lambda)
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .args(["--data-ascii", r#"{"action":"sweep"}"#])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()?;
    let sweep_s = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let summary: Value = text
        .find('{')
        .and_then(|i| serde_json::from_str(text[i..].trim()).ok())
        .unwrap_or_else(|| json!({"raw": text}));
    let hwm_after_sweep = vm_hwm_kib(pid)?;
    let mut sorted = init_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "cold init (spawn → first GET /runtime/invocation/next, {} runs): median {median:.0} ms, min {:.0} ms, max {:.0} ms",
        sorted.len(),
        sorted[0],
        sorted[sorted.len() - 1]
    );
    println!(
        "peak RSS (VmHWM): {:.1} MiB after init, {:.1} MiB after a sweep of {} LDs ({sweep_s:.1} s through the emulator, \
         summary: considered {}, upToDate {}, failed {})",
        hwm_after_init as f64 / 1024.0,
        hwm_after_sweep as f64 / 1024.0,
        fleet.size,
        summary["considered"],
        summary["upToDate"],
        summary["failed"]
    );
    Ok(json!({
        "binary": binary,
        "coldInitMs": {"runs": init_ms, "median": median, "min": sorted[0], "max": sorted[sorted.len() - 1]},
        "vmHwmKib": {"afterInit": hwm_after_init, "afterSweep": hwm_after_sweep},
        "sweep": {"lds": fleet.size, "wallSeconds": sweep_s, "summary": summary},
    }))
}

fn vm_hwm_kib(pid: u32) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status").into())
}

async fn wait_for_port(port: u16, timeout: Duration) -> BenchResult<()> {
    let until = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > until {
            return Err(format!("nothing listens on 127.0.0.1:{port} after {}s", timeout.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A TCP proxy in front of the runtime API emulator that notes when the first request for the next invocation
/// passes through it.
struct RuntimeProxy {
    port: u16,
    first_next: Arc<Mutex<Option<Instant>>>,
}

impl RuntimeProxy {
    async fn start(upstream: u16) -> BenchResult<RuntimeProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let first_next = Arc::new(Mutex::new(None));
        let seen = first_next.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = pipe(client, server, seen).await;
                    }
                });
            }
        });
        Ok(RuntimeProxy { port, first_next })
    }

    fn reset(&self) {
        *self.first_next.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn wait_first_next(&self, since: Instant, timeout: Duration) -> BenchResult<Duration> {
        while since.elapsed() < timeout {
            if let Some(at) = *self.first_next.lock().unwrap_or_else(|p| p.into_inner()) {
                return Ok(at.saturating_duration_since(since));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Err(format!("the binary did not ask for an invocation within {}s", timeout.as_secs()).into())
    }
}

async fn pipe(client: TcpStream, server: TcpStream, seen: Arc<Mutex<Option<Instant>>>) -> std::io::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buffer).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            let chunk = &buffer[..n];
            if chunk.starts_with(b"GET ") && chunk.windows(24).any(|w| w == b"/runtime/invocation/next") {
                let mut first = seen.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(Instant::now);
            }
            server_write.write_all(chunk).await?;
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    let (up, down) = tokio::join!(upstream, downstream);
    up.and(down.map(|_| ()))
}
