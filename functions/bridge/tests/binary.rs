//! The real `bridge` binary, started from environment variables alone against a
//! simulated PBX: it connects, serves its health port, and on SIGTERM or SIGINT says
//! which, flushes and exits 0.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pbx_sim::SimConfig;
use serde_json::Value;

#[tokio::test]
async fn sigterm_stops_the_bridge_cleanly_and_says_so() {
    stops_on("TERM", "SIGTERM").await;
}

#[tokio::test]
async fn sigint_stops_the_bridge_cleanly_and_says_so() {
    stops_on("INT", "SIGINT").await;
}

async fn stops_on(signal: &str, name: &str) {
    let sim = pbx_sim::start(SimConfig::default()).await.expect("sim");
    let port = free_port();
    let mut bridge = Bridge(
        Command::new(env!("CARGO_BIN_EXE_bridge"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DISABLE_DB", "true")
            .env("ARI_HTTP_URL", sim.base_url())
            .env("BRIDGE_PORT", port.to_string())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the bridge binary starts"),
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(exit)) = bridge.0.try_wait() {
            panic!("the bridge exited at start: {exit}");
        }
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            && let Ok(body) = response.json::<Value>().await
            && body["connected"] == true
        {
            break;
        }
        assert!(Instant::now() < deadline, "the bridge never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sim.connected_apps(), vec!["dialer".to_owned()]);
    let pid = bridge.0.id().to_string();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(25);
    let exit = loop {
        if let Some(exit) = bridge.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "still running after {name}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit}");
    let mut log = String::new();
    if let Some(mut stdout) = bridge.0.stdout.take() {
        let _ = stdout.read_to_string(&mut log);
    }
    assert!(log.contains(&format!("{name}: stopping")), "{log}");
    assert!(log.contains("bridge stopped"), "{log}");
    sim.shutdown().await;
}

/// Kills the bridge when the test ends, passed or failed.
struct Bridge(Child);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
