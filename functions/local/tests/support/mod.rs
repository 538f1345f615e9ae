//! The real `local` binary, started as a user starts it: from environment variables
//! alone, on a free port. For the binary's tests and the load bench.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The demo user's password in every run started here.
pub const PASSWORD: &str = "binary-test-password";

/// A running server; killed when dropped, passed or failed.
pub struct Server {
    pub child: Child,
    pub base_url: String,
}

impl Server {
    /// Starts `binary` with `vars` (and `PATH`, a free `PORT`, the demo user, cheap
    /// bcrypt and the simulator's dial endpoint), and waits until its bridge is
    /// connected.
    pub async fn start(binary: &str, vars: &[(&str, &str)], stdout: Stdio) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("ADMIN_PASSWORD", PASSWORD)
            .env("BCRYPT_COST", "4")
            .env("DIAL_ENDPOINT", "Local/{number}@test-pstn")
            .env("NO_COLOR", "1")
            .envs(vars.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .expect("the local binary starts");
        let mut server = Server {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        server.wait_for_bridge().await;
        server
    }

    /// A token of the demo user.
    pub async fn token(&self, http: &reqwest::Client) -> String {
        let body: Value = http
            .post(format!("{}/api/v2/token", self.base_url))
            .form(&[("username", "admin"), ("password", PASSWORD)])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    async fn wait_for_bridge(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("the local binary exited at start: {exit}");
            }
            if let Ok(response) = http.get(format!("{}/health", self.base_url)).send().await
                && let Ok(body) = response.json::<Value>().await
                && body["bridge"]["connected"] == true
            {
                return;
            }
            assert!(Instant::now() < deadline, "the local binary never came up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
