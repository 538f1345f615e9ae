//! The ARI client's HTTP transport against a hand-written HTTP/1.1 server: kept-alive
//! connections, reconnecting, the request's form, and how each failure is reported.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialer_ari::{AriClient, AriSettings};
use dialer_core::domain::validation::{Context, Extension};
use dialer_core::pbx::{Pbx, PbxError};
use dialer_core::secrets::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// What the server does with each request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200 with a small JSON body, the connection kept open.
    Answer,
    /// 200, then the connection closed (as a server does with an idle one).
    AnswerThenClose,
    /// Reads the request and never answers.
    Silent,
    /// Promises a longer body than it sends, then closes.
    ShortBody,
    /// 500 with an ARI error message.
    Fail,
    /// Answers whatever comes first (a TLS hello) with plain HTTP, and closes.
    NotTls,
}

struct Server {
    url: String,
    connections: Arc<AtomicUsize>,
    /// Each request's head, as received.
    requests: Arc<Mutex<Vec<String>>>,
}

async fn server(behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (count, log) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, behaviour, log.clone()));
        }
    });
    Server {
        url,
        connections,
        requests,
    }
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour, log: Arc<Mutex<Vec<String>>>) {
    if let Behaviour::NotTls = behaviour {
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    let mut buffer = Vec::new();
    loop {
        let Some(head) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        log.lock().expect("log").push(head);
        let answer: &[u8] = match behaviour {
            Behaviour::Answer | Behaviour::AnswerThenClose => {
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"state\":\"Ring\"}"
            }
            Behaviour::Silent | Behaviour::NotTls => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Behaviour::ShortBody => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"st",
            Behaviour::Fail => {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 24\r\n\r\n{\"message\":\"it broke!\"}\n"
            }
        };
        if stream.write_all(answer).await.is_err() {
            return;
        }
        if matches!(behaviour, Behaviour::AnswerThenClose | Behaviour::ShortBody) {
            return;
        }
    }
}

/// One request's head (its body, by content-length, read and dropped); `None` at the
/// end of the connection.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buffer.len() < end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    buffer.drain(..end + length);
    Some(head)
}

fn client(url: &str, timeout: Duration) -> AriClient {
    AriClient::new(AriSettings {
        url: url.to_owned(),
        username: "asterisk".into(),
        password: Secret::new("secret"),
        app: "dialer".into(),
        timeout,
    })
    .expect("client")
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn requests_share_one_kept_alive_connection() {
    let server = server(Behaviour::Answer).await;
    let ari = client(&server.url, TIMEOUT);
    for _ in 0..5 {
        assert!(ari.app_connected().await.expect("answer"));
    }
    let id = Uuid::new_v4();
    assert_eq!(
        ari.channel(id)
            .await
            .expect("answer")
            .map(|c| c.state)
            .as_deref(),
        Some("Ring")
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);

    let requests = server.requests.lock().expect("log").clone();
    assert_eq!(requests.len(), 6);
    let first = &requests[0];
    assert!(
        first.starts_with("GET /ari/applications/dialer HTTP/1.1\r\n"),
        "{first}"
    );
    let host = server.url.trim_start_matches("http://");
    assert!(
        first
            .to_ascii_lowercase()
            .contains(&format!("\r\nhost: {host}\r\n")),
        "{first}"
    );
    // asterisk:secret
    assert!(first.contains("Basic YXN0ZXJpc2s6c2VjcmV0\r\n"), "{first}");
    assert!(requests[5].starts_with(&format!("GET /ari/channels/{id} HTTP/1.1\r\n")));
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_are_used_again() {
    let server = server(Behaviour::Answer).await;
    let ari = client(&server.url, TIMEOUT);
    let burst = || {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let ari = ari.clone();
                tokio::spawn(async move { ari.app_connected().await })
            })
            .collect();
        async move {
            for task in tasks {
                assert!(task.await.expect("task").expect("answer"));
            }
        }
    };
    burst().await;
    let opened = server.connections.load(Ordering::SeqCst);
    assert!((1..=8).contains(&opened), "{opened} connections");
    burst().await;
    burst().await;
    let after = server.connections.load(Ordering::SeqCst);
    assert!(after <= 8, "{after} connections for 24 requests");
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    let server = server(Behaviour::AnswerThenClose).await;
    let ari = client(&server.url, TIMEOUT);
    for _ in 0..3 {
        assert!(ari.app_connected().await.expect("answer"));
        // Time for the client to see the close.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_url_prefix_is_kept() {
    let server = server(Behaviour::Answer).await;
    let ari = client(&format!("{}/asterisk/ari/", server.url), TIMEOUT);
    ari.continue_in_dialplan(
        Uuid::nil(),
        &Context::from_record("ivr.main").expect("context"),
        &Extension::parse("+1#").expect("extension"),
        2,
    )
    .await
    .expect("answer");
    let requests = server.requests.lock().expect("log").clone();
    let expected = format!(
        "POST /asterisk/ari/channels/{}/continue?context=ivr.main&extension=%2B1%23&priority=2 HTTP/1.1\r\n",
        Uuid::nil()
    );
    assert!(requests[0].starts_with(&expected), "{}", requests[0]);
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let error = client(&url, TIMEOUT)
        .app_connected()
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&error, PbxError::Unreachable { reason, .. } if reason == "connection failed"),
        "{error:?}"
    );
}

#[tokio::test]
async fn no_answer_in_time_is_unconfirmed() {
    let server = server(Behaviour::Silent).await;
    let error = client(&server.url, Duration::from_millis(200))
        .hangup(Uuid::nil())
        .await
        .expect_err("no answer");
    assert!(
        matches!(&error, PbxError::Unconfirmed { reason, .. } if reason == "timed out"),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_answer_that_breaks_off_is_unconfirmed() {
    let server = server(Behaviour::ShortBody).await;
    let error = client(&server.url, TIMEOUT)
        .hangup(Uuid::nil())
        .await
        .expect_err("broken answer");
    assert!(
        matches!(&error, PbxError::Unconfirmed { reason, .. } if reason == "answer broke off"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_refusal_carries_the_pbx_message_and_the_connection_stays() {
    let server = server(Behaviour::Fail).await;
    let ari = client(&server.url, TIMEOUT);
    for _ in 0..2 {
        let error = ari.hangup(Uuid::nil()).await.expect_err("refused");
        assert!(
            matches!(&error, PbxError::Rejected { status: 500, message } if message == "it broke!"),
            "{error:?}"
        );
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_url_without_a_host_is_refused_at_once() {
    assert!(
        AriClient::new(AriSettings {
            url: "http://".into(),
            username: "a".into(),
            password: Secret::new("b"),
            app: "dialer".into(),
            timeout: TIMEOUT,
        })
        .is_err()
    );
}

#[tokio::test]
async fn an_https_url_speaks_tls_and_a_failed_handshake_is_unreachable() {
    // A plain-HTTP server behind an https:// URL: the TLS handshake fails, so the request
    // was never sent.
    let server = server(Behaviour::NotTls).await;
    let url = server.url.replacen("http://", "https://", 1);
    let ari = match AriClient::new(AriSettings {
        url,
        username: "asterisk".into(),
        password: Secret::new("secret"),
        app: "dialer".into(),
        timeout: TIMEOUT,
    }) {
        Ok(ari) => ari,
        // A machine without a CA bundle cannot make an https client at all.
        Err(PbxError::Unreachable { reason, .. }) if reason.contains("TLS roots") => return,
        Err(e) => panic!("{e:?}"),
    };
    let error = ari.app_connected().await.expect_err("no TLS there");
    assert!(
        matches!(&error, PbxError::Unreachable { reason, .. } if reason == "connection failed"),
        "{error:?}"
    );
    assert!(
        server.requests.lock().expect("log").is_empty(),
        "no request got through"
    );
}
