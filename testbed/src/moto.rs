//! Starts and stops moto_server (S3, IAM, STS, EKS) from the project's Python venv.
//!
//! moto runs under a small Python wrapper that exits when its stdin closes, so moto dies with the process that
//! started it even when that process never runs its destructors (a `static` Testbed, SIGKILL, a crashed test).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto imports ~100 modules on start; on a loaded 2-core machine that can take several seconds.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `moto.server.main` plus a thread that ends the process when stdin reaches EOF (our end of the pipe closed).
/// werkzeug's per-request access log is silenced: the layer's call log has every request, and the log file
/// then only holds start-up errors.
const WRAPPER: &str = "import logging, os, sys, threading
from moto.server import main
logging.getLogger('werkzeug').setLevel(logging.WARNING)
def watch_parent():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=watch_parent, daemon=True).start()
main(sys.argv[1:])
";

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("moto_server not found at {0} — run `make tools` to create the Python venv (or set TESTBED_VENV)")]
    Missing(PathBuf),
    #[error("could not start moto_server: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("moto_server exited during start-up ({status}); its output is in {log}")]
    Exited { status: std::process::ExitStatus, log: PathBuf },
    #[error("moto_server did not listen on {addr} within {secs} s; its output is in {log}")]
    Timeout { addr: SocketAddr, secs: u64, log: PathBuf },
}

/// A running moto_server on 127.0.0.1. Dropping it kills the process.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    url: String,
}

/// The venv that holds moto_server: `$TESTBED_VENV`, else the nearest `.venv` above this crate (the workspace root's).
pub fn venv_dir() -> Result<PathBuf, MotoError> {
    if let Some(dir) = std::env::var_os("TESTBED_VENV") {
        return Ok(PathBuf::from(dir));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join(".venv"))
        .find(|venv| venv.join("bin/moto_server").is_file())
        .ok_or_else(|| MotoError::Missing(manifest.parent().unwrap_or(manifest).join(".venv/bin/moto_server")))
}

impl Moto {
    /// Starts moto_server on a free port and waits until it accepts connections.
    pub async fn start() -> Result<Moto, MotoError> {
        let venv = venv_dir()?;
        if !venv.join("bin/moto_server").is_file() {
            return Err(MotoError::Missing(venv.join("bin/moto_server")));
        }
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("testbed-moto-{port}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(venv.join("bin/python"))
            .args(["-c", WRAPPER, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = moto.child.try_wait()? {
                return Err(MotoError::Exited { status, log });
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                tracing::info!(url = %moto.url, pid = moto.pid(), "moto_server is up");
                // The log only matters for a failed start; moto keeps writing to the unlinked file.
                let _ = std::fs::remove_file(&log);
                return Ok(moto);
            }
            if Instant::now() > deadline {
                return Err(MotoError::Timeout { addr, secs: START_TIMEOUT.as_secs(), log });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills moto and reaps it. Idempotent.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
