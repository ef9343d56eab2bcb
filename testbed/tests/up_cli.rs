//! `testbed up` as a user runs it, and the in-process Testbed's clean-up.

mod aws_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_support::unique;
use testbed::identity::AwsIdentity;
use testbed::up::{Testbed, TestbedOptions};

/// Kills the child if the test fails before it is stopped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "moto (pid {pid}) still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `export K='V'` lines → value of K.
fn env_value(env: &str, key: &str) -> String {
    let prefix = format!("export {key}='");
    let line = env.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{key} not in {env}"));
    line[prefix.len()..line.len() - 1].to_string()
}

#[tokio::test]
async fn up_writes_the_env_file_serves_and_stops_moto_on_sigterm() {
    let dir = std::env::temp_dir().join(unique("testbed-up"));
    let child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["up", "--dir"])
        .arg(&dir)
        .args(["--no-quotas", "--in-progress-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let stdout = guard.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let moto_pid: u32 = loop {
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("`testbed up` prints its summary");
        if let Some((_, pid)) = line.split_once(" pid ") {
            break pid.trim_end_matches(')').parse().unwrap();
        }
    };

    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    let deployer = AwsIdentity::deployer();
    assert_eq!(env_value(&env, "AWS_ACCESS_KEY_ID"), deployer.access_key_id);
    assert!(Path::new(&env_value(&env, "KUBECONFIG")).is_file());
    let endpoint = env_value(&env, "AWS_ENDPOINT_URL");
    let credentials = aws_credential_types::Credentials::new(
        env_value(&env, "AWS_ACCESS_KEY_ID"),
        env_value(&env, "AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "env",
    );
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(env_value(&env, "AWS_REGION")))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await;
    let me = aws_sdk_sts::Client::new(&conf).get_caller_identity().send().await.unwrap();
    assert_eq!(me.arn(), Some(deployer.caller_arn.as_str()), "the env's credentials are the deployer's");

    let killed = Command::new("kill").args(["-TERM", &guard.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut guard.0, Duration::from_secs(30));
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    wait_gone(moto_pid);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn up_without_moto_fails_with_a_message_naming_make_tools() {
    let dir = std::env::temp_dir().join(unique("testbed-nomoto"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["up", "--dir"])
        .arg(&dir)
        .env("TESTBED_VENV", "/nonexistent-venv")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("make tools"), "{stderr}");
    assert!(!dir.join("env").exists());
}

#[tokio::test]
async fn dropping_a_testbed_kills_its_moto() {
    let tb = Testbed::start(TestbedOptions::default()).await.unwrap();
    let pid = tb.moto_pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(tb);
    wait_gone(pid);
}
