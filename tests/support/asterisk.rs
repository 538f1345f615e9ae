//! A real Asterisk for the `asterisk` test group: built once into a cache folder and
//! started by `scripts/asterisk` from the test PSTN in `tests/asterisk/` (one number
//! range per kind of callee, like the simulated PBX's), on a free loopback port. Killed
//! when dropped. Tests that use it are named for it, so that the test command leaves
//! them out, and says so, where Asterisk cannot be built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const USER: &str = "asterisk";

pub struct Asterisk {
    pub ari_url: String,
    /// Its ARI user's password, one of its own (`scripts/asterisk` makes it up).
    pub password: String,
    pid: u32,
    port: u16,
    run: PathBuf,
}

impl Asterisk {
    /// Starts one (building it first when it is not built yet); panics, saying why,
    /// when it cannot.
    pub fn start() -> Self {
        launch(&[], None)
    }

    /// SIGKILL: no goodbye to anyone, as when the host dies. Returns once it is gone.
    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(self.pid) {
            assert!(
                Instant::now() < deadline,
                "Asterisk {} outlived SIGKILL",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again on the same port, in the same run folder (after [`kill`]), off
    /// the test's runtime: the others tasks of the test (a webhook receiver) go on.
    pub async fn restart(&mut self) {
        let args = [
            "--port".to_owned(),
            self.port.to_string(),
            "--run".to_owned(),
            self.run.to_string_lossy().into_owned(),
        ];
        // The same password: its clients keep the one they were given.
        let password = self.password.clone();
        let again = tokio::task::spawn_blocking(move || {
            launch(
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
                Some(&password),
            )
        })
        .await
        .expect("scripts/asterisk ran");
        self.pid = again.pid;
        // The old handle's run folder is this one: keep it.
        std::mem::forget(again);
    }

    /// Every channel Asterisk holds now (`GET /ari/channels`).
    pub async fn channels(&self) -> Vec<Value> {
        ari_channels(&self.ari_url, &self.password).await
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

/// Every channel an ARI server holds now; its `creationtime` is the PBX's own clock.
pub async fn ari_channels(ari_url: &str, password: &str) -> Vec<Value> {
    let response = reqwest::Client::new()
        .get(format!("{ari_url}/ari/channels"))
        .basic_auth(USER, Some(password))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("GET /ari/channels");
    assert!(
        response.status().is_success(),
        "GET /ari/channels: {response:?}"
    );
    response.json().await.expect("channels JSON")
}

/// The repository's root (this crate is `tests/` in it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// `scripts/asterisk start ARGS`, with `password` or one it makes up.
fn launch(args: &[&str], password: Option<&str>) -> Asterisk {
    let mut command = Command::new("bash");
    command
        .arg(repo_root().join("scripts/asterisk"))
        .arg("start")
        .args(args)
        .env("ARI_USERNAME", USER)
        .env_remove("ARI_PASSWORD");
    if let Some(password) = password {
        command.env("ARI_PASSWORD", password);
    }
    let output = command.output().expect("bash runs scripts/asterisk");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "a real Asterisk could not be started (scripts/asterisk start): {said}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("scripts/asterisk printed no {name}: {stdout}"))
            .replace('\\', "")
    };
    let ari_url = value("ARI_HTTP_URL");
    let port = ari_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in ARI_HTTP_URL");
    Asterisk {
        password: value("ARI_PASSWORD"),
        pid: value("ASTERISK_PID").parse().expect("a pid"),
        run: PathBuf::from(value("ASTERISK_RUN")),
        port,
        ari_url,
    }
}

/// Whether `pid` still runs (a zombie waiting for its parent does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
