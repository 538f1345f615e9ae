//! Every error the servers write is JSON with a `detail`, including the ones hyper
//! writes by itself for requests it cannot parse: checked over raw TCP, since that is
//! where those requests are made.

use std::sync::Arc;
use std::time::Duration;

use dialer_core::health::BridgeHealth;
use dialer_core::metrics::Metrics;
use integration::{Options, Session, session, start_local};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// One answer read off a raw connection.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Asserts a `status` answer with a JSON body whose `detail` is a string.
    pub fn assert_json_error(&self, status: u16, case: &str) {
        assert_eq!(self.status, status, "{case}: {}", self.head);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{case}: {}",
            self.head
        );
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{case}: body {:?} is not JSON: {e}",
                String::from_utf8_lossy(&self.body)
            )
        });
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{case}: {body}"
        );
    }
}

/// A raw HTTP/1.1 connection: bytes as written, answers as framed by `content-length`.
pub struct Raw {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
            read: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads more; false once the server has closed the connection.
    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
            .await
            .expect("the server answers in time")
            .unwrap_or(0);
        self.read.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// The next answer; `head_only` for an answer to HEAD, which has no body.
    pub async fn answer_to(&mut self, head_only: bool) -> Answer {
        let end = loop {
            if let Some(at) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                self.fill().await,
                "closed mid-head after {:?}",
                String::from_utf8_lossy(&self.read)
            );
        };
        let head = String::from_utf8_lossy(&self.read[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        let length: usize = match answer.header("content-length") {
            _ if head_only => 0,
            Some(length) => length.parse().expect("content-length"),
            None => panic!("unframed answer: {}", answer.head),
        };
        while self.read.len() < end + length {
            assert!(self.fill().await, "closed mid-body");
        }
        answer.body = self.read[end..end + length].to_vec();
        self.read.drain(..end + length);
        answer
    }

    pub async fn answer(&mut self) -> Answer {
        self.answer_to(false).await
    }

    /// Everything the server writes until it closes the connection.
    pub async fn rest(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.read)
    }
}

/// Sends `request` on a new connection; the answer, then nothing until the close.
async fn only_answer(addr: std::net::SocketAddr, request: &[u8]) -> Answer {
    let mut raw = Raw::connect(addr).await;
    raw.send(request).await;
    let answer = raw.answer().await;
    let rest = raw.rest().await;
    assert!(rest.is_empty(), "after the answer: {rest:?}");
    answer
}

fn no_bridge() -> Options {
    Options {
        bridge: false,
        ..Options::default()
    }
}

#[tokio::test]
async fn path_parameters_that_are_not_utf8_answer_json_400() {
    let Session { server, token, .. } = session(Options::default()).await;
    for (method, path) in [
        ("GET", "/api/v2/calls/%FF"),
        ("GET", "/api/v2/status/%C3%28"),
        ("DELETE", "/api/v2/calls/%FF"),
        ("POST", "/api/v2/interaction/%FF"),
    ] {
        let mut raw = Raw::connect(server.api_addr).await;
        raw.send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        raw.answer()
            .await
            .assert_json_error(400, &format!("{method} {path}"));
    }
    assert_eq!(server.pbx.as_ref().expect("sim").originate_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn headers_over_the_limit_answer_json_431() {
    let server = start_local(no_bridge()).await;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    only_answer(server.api_addr, request.as_bytes())
        .await
        .assert_json_error(431, "20 KiB header");
    server.stop().await;
}

#[tokio::test]
async fn a_garbage_request_line_answers_json_400() {
    let server = start_local(no_bridge()).await;
    for line in [
        "this is not http\r\n\r\n",
        "GET /health HTTP/9.9\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "\u{1}\u{2}\u{3}\r\n\r\n",
        "GET /he\u{7f}alth HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        only_answer(server.api_addr, line.as_bytes())
            .await
            .assert_json_error(400, &format!("{line:?}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_header_answers_json_400() {
    let server = start_local(no_bridge()).await;
    for header in [
        "no colon here",
        "Bad Name: x",
        "Content-Length: abc",
        "Content-Length: 1\r\nContent-Length: 2",
    ] {
        let request = format!("POST /api/v2/token HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n");
        only_answer(server.api_addr, request.as_bytes())
            .await
            .assert_json_error(400, header);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_request_after_good_ones_on_a_keep_alive_connection_answers_json() {
    let server = start_local(no_bridge()).await;
    let mut raw = Raw::connect(server.api_addr).await;
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw.answer().await.status, 200);
    raw.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = raw.answer_to(true).await;
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some_and(|l| l != "0"));
    raw.send(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").await;
    raw.answer().await.assert_json_error(404, "unknown route");
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n")
        .await;
    raw.answer()
        .await
        .assert_json_error(400, "malformed after good ones");
    assert!(raw.rest().await.is_empty(), "closed after the error");
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_request_pipelined_behind_good_ones_answers_json_after_them() {
    let server = start_local(no_bridge()).await;
    let mut raw = Raw::connect(server.api_addr).await;
    let requests = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n\
         HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    raw.send(requests.as_bytes()).await;
    assert_eq!(raw.answer().await.status, 200);
    assert_eq!(raw.answer_to(true).await.status, 200);
    let document = raw.answer().await;
    assert_eq!(document.status, 200);
    assert!(document.body.len() > 1000, "the whole document came first");
    raw.answer()
        .await
        .assert_json_error(431, "pipelined behind good ones");
    assert!(raw.rest().await.is_empty(), "closed after the error");
    server.stop().await;
}

#[tokio::test]
async fn a_head_that_times_out_gets_no_answer_only_a_close() {
    let server = start_local(Options {
        extra_env: vec![("HTTP_HEADER_TIMEOUT_MS", "300")],
        ..no_bridge()
    })
    .await;
    let mut idle = Raw::connect(server.api_addr).await;
    let mut partial = Raw::connect(server.api_addr).await;
    partial.send(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
    assert!(partial.rest().await.is_empty(), "a partial head");
    assert!(idle.rest().await.is_empty(), "an idle connection");
    server.stop().await;
}

#[tokio::test]
async fn the_bridge_port_answers_unknown_routes_and_malformed_requests_in_json() {
    let port =
        dialer_bridge::port::router(Arc::new(BridgeHealth::default()), Arc::new(Metrics::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(dialer_boot::serve::serve(listener, port, async move {
        let _ = stopped.await;
    }));
    let mut raw = Raw::connect(addr).await;
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw.answer().await.status, 200);
    raw.send(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").await;
    raw.answer().await.assert_json_error(404, "unknown route");
    raw.send(b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    raw.answer().await.assert_json_error(405, "wrong method");
    raw.send(b"GET /health HTTP/1.1\r\nno colon\r\n\r\n").await;
    raw.answer()
        .await
        .assert_json_error(400, "malformed header");
    let _ = stop.send(());
    served.await.expect("joined").expect("served");
}
