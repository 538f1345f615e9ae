//! The real `local` and `bridge` binaries, started as a user starts them: from
//! environment variables alone, on a free port, their output in a log file beside the
//! test's temporary files. Killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{ADMIN, SECRET_KEY};

/// The webhook secret of the demo user in every run started here.
pub const WEBHOOK_SECRET: &str = "whsec_local-binary-test-secret";

pub struct Process {
    child: Child,
    binary: &'static str,
    /// Where it serves HTTP: the API (`local`), the health port (`bridge`).
    pub base_url: String,
    pub log: PathBuf,
    vars: Vec<(String, String)>,
}

impl Process {
    /// Starts the `local` binary with the test defaults and `vars` (which win), and waits
    /// until its bridge is connected to the PBX.
    pub async fn start(vars: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut all: Vec<(String, String)> = [
            ("PATH", std::env::var("PATH").unwrap_or_default().as_str()),
            ("HOST", "127.0.0.1"),
            ("PORT", port.as_str()),
            ("SECRET_KEY", SECRET_KEY),
            ("ADMIN_USERNAME", ADMIN.0),
            ("ADMIN_PASSWORD", ADMIN.1),
            ("BCRYPT_COST", "4"),
            ("DIAL_ENDPOINT", "Local/{number}@test-pstn"),
            ("ALLOWED_CONTEXTS", "outbound-ivr"),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("WEBHOOK_ALLOW_INSECURE", "true"),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("NO_COLOR", "1"),
            ("RUST_LOG", "info"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in vars {
            all.retain(|(name, _)| name != k);
            all.push(((*k).to_owned(), (*v).to_owned()));
        }
        Self::spawn_and_wait("local", port, all).await
    }

    /// Starts the `bridge` binary (the always-on service of the AWS stack) with `vars`,
    /// its health port free, and waits until it is connected to the PBX.
    pub async fn bridge(vars: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut all: Vec<(String, String)> = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("BRIDGE_PORT".to_owned(), port.clone()),
            ("NO_COLOR".to_owned(), "1".to_owned()),
        ];
        all.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Self::spawn_and_wait("bridge", port, all).await
    }

    async fn spawn_and_wait(
        binary: &'static str,
        port: String,
        vars: Vec<(String, String)>,
    ) -> Self {
        // Named for this test process too: a port is free again once a test is done.
        let log =
            std::env::temp_dir().join(format!("dialer-{binary}-{port}-{}.log", std::process::id()));
        let child = spawn(binary, &vars, &log);
        let mut server = Self {
            child,
            binary,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
            vars,
        };
        server.wait_for_bridge().await;
        server
    }

    /// The process id, to read its memory and CPU time in `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or a lost host would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as ECS or systemd stops it; [`Process::exited`] waits for the end.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM sent");
    }

    /// Its exit status, once it has exited; panics, with its log, if it runs on past
    /// `limit`.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the {} binary still runs {limit:?} after it was told to stop\n{}",
                self.binary,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts it again with the same variables, on the same port (after [`kill`], or
    /// after it exited).
    pub async fn restart(&mut self) {
        self.child = spawn(self.binary, &self.vars, &self.log);
        self.wait_for_bridge().await;
    }

    /// Its log so far, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn wait_for_bridge(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!(
                    "the {} binary exited at start: {exit}\n{}",
                    self.binary,
                    self.log_tail()
                );
            }
            if let Ok(response) = http.get(format!("{}/health", self.base_url)).send().await
                && let Ok(body) = response.json::<Value>().await
                && (body["bridge"]["connected"] == true || body["connected"] == true)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the {} binary's bridge never connected\n{}",
                self.binary,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A workspace binary of this build, `local` or `bridge`, beside the test binary's folder
/// (`target/debug/deps/integration-…` → `target/debug/local`), which
/// `cargo nextest run --workspace` (`./scripts/test`) builds with the workspace's
/// features (PostgreSQL included). A run of this package alone does not rebuild it: a
/// binary older than the code it is built from is refused, not tested.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("a target folder");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "no binary at {}: run the tests with --workspace (./scripts/test does)",
                path.display()
            )
        });
    let root = crate::asterisk::repo_root();
    let mut sources = vec![root.join(format!("functions/{name}/src"))];
    if name == "local" {
        sources.push(root.join("tools/pbx-sim/src"));
    }
    if let Ok(crates) = std::fs::read_dir(root.join("shared")) {
        sources.extend(crates.filter_map(Result::ok).map(|c| c.path().join("src")));
    }
    for dir in sources {
        if let Some(newer) = newer_source(&dir, built) {
            panic!(
                "{} is older than {}: run the tests with --workspace (./scripts/test does) to rebuild it",
                path.display(),
                newer.display()
            );
        }
    }
    path
}

/// A Rust source file under `dir` changed after `built`, if any.
fn newer_source(dir: &Path, built: std::time::SystemTime) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(newer) = newer_source(&path, built) {
                return Some(newer);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > built)
        {
            return Some(path);
        }
    }
    None
}

fn free_port() -> String {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port().to_string())
        .expect("a free port")
}

fn spawn(binary: &str, vars: &[(String, String)], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("the log file");
    let err = out.try_clone().expect("the log file");
    Command::new(workspace_binary(binary))
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("the binary starts")
}
