//! A real webhook receiver on loopback: it records every request it gets and answers
//! with the status codes it is told to, in turn (then 200), or hangs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Default)]
struct Script {
    received: Vec<Received>,
    /// Answers to give, first to last; 200 after them.
    answers: Vec<u16>,
    hang: bool,
}

pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers `answers` in turn, then 200.
    pub async fn start(answers: &[u16]) -> Self {
        Self::serve(Script {
            answers: answers.to_vec(),
            ..Script::default()
        })
        .await
    }

    /// Accepts every request and never answers.
    pub async fn hanging() -> Self {
        Self::serve(Script {
            hang: true,
            ..Script::default()
        })
        .await
    }

    async fn serve(script: Script) -> Self {
        let script = Arc::new(Mutex::new(script));
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            script,
            server,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().expect("lock").received.clone()
    }

    /// Waits until `count` requests have arrived; panics after `limit`.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {count} webhook requests within {limit:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (hang, answer) = {
        let mut script = script.lock().expect("lock");
        script.received.push(Received { headers, body });
        let answer = if script.answers.is_empty() {
            200
        } else {
            script.answers.remove(0)
        };
        (script.hang, answer)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(answer).unwrap_or(StatusCode::OK)
}

/// Checks a `Dialer-Signature` header against `body` with the documented recipe: the
/// hex HMAC-SHA256 of `"{t}.{body}"` under `secret`, any of the `v1` values.
pub fn signature_verifies(header: &str, body: &[u8], secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => signatures.push(value.to_owned()),
            _ => return false,
        }
    }
    let Some(t) = t else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    signatures.contains(&expected)
}
