//! The local server's limits against clients that misbehave: slow headers, idle
//! keep-alive connections, a body declared far over the limit, connections by the
//! hundred. Each is held for a bounded time, never for as long as the client likes.

use std::time::Duration;

use integration::{Options, start_local};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Header timeout 300 ms, at most 2 connections at once.
fn strict() -> Options {
    Options {
        extra_env: vec![
            ("HTTP_HEADER_TIMEOUT_MS", "300"),
            ("HTTP_MAX_CONNECTIONS", "2"),
        ],
        bridge: false,
        ..Options::default()
    }
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(started + limit, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
        }
    }
}

#[tokio::test]
async fn headers_sent_too_slowly_close_the_connection() {
    let server = start_local(strict()).await;
    let mut stream = TcpStream::connect(server.api_addr).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half the headers");
    closed_within(&mut stream, Duration::from_secs(3)).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = start_local(strict()).await;
    let mut stream = TcpStream::connect(server.api_addr).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    closed_within(&mut stream, Duration::from_secs(3)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_before_it_is_sent() {
    let server = start_local(strict()).await;
    let mut stream = TcpStream::connect(server.api_addr).await.expect("connect");
    stream
        .write_all(
            b"POST /api/v2/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 104857600\r\n\r\n",
        )
        .await
        .expect("headers only");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .expect("answered at once, without the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"detail\""), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_and_are_served_when_a_slot_frees() {
    let server = start_local(strict()).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(server.api_addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(server.api_addr).await.expect("queued");
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 4096];
    assert!(
        tokio::time::timeout(Duration::from_millis(150), third.read(&mut buf))
            .await
            .is_err(),
        "served beyond the cap"
    );
    // The held connections send nothing: the header timeout frees their slots.
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot freed")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(held);
    server.stop().await;
}
