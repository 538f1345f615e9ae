//! The event WebSocket: authentication, replacement, and connection drops.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Sim, events_until, next_event};
use tokio_tungstenite::tungstenite::Error as WsError;

async fn ws_status(sim: &Sim, query: &str) -> u16 {
    match tokio_tungstenite::connect_async(sim.ws_url(query)).await {
        Ok(_) => 101,
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected websocket error: {e}"),
    }
}

#[tokio::test]
async fn websocket_needs_credentials_and_accepts_api_key() {
    let sim = Sim::start(0.02).await;
    assert_eq!(ws_status(&sim, "app=dialer").await, 401);
    assert_eq!(
        ws_status(&sim, "app=dialer&api_key=asterisk:nope").await,
        401
    );
    assert_eq!(
        ws_status(
            &sim,
            "app=dialer&subscribeAll=true&api_key=asterisk:asterisk"
        )
        .await,
        101
    );
}

#[tokio::test]
async fn events_carry_asterisk_id_application_and_timestamp() {
    let sim = Sim::start(0.02).await;
    let mut socket = sim.connect("dialer").await;
    sim.originate("e", "+15550020001", 30.0).await;
    let events = common::events_until_destroyed(&mut socket, "e").await;
    for event in events {
        assert_eq!(event["asterisk_id"], "02:fc:00:00:00:01");
        assert_eq!(event["application"], "dialer");
        assert!(event["timestamp"].as_str().unwrap().ends_with("+0000"));
    }
}

#[tokio::test]
async fn a_second_websocket_for_an_app_replaces_the_first() {
    let sim = Sim::start(0.02).await;
    let mut first = sim.connect("dialer").await;
    let mut second = sim.connect("dialer").await;
    let replaced = next_event(&mut first, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(replaced["type"], "ApplicationReplaced");
    assert_eq!(replaced["application"], "dialer");
    assert_eq!(replaced["asterisk_id"], "02:fc:00:00:00:01");
    assert!(replaced["timestamp"].is_string());
    assert!(
        next_event(&mut first, Duration::from_secs(2))
            .await
            .is_none()
    );

    // Events now go to the second socket only.
    sim.originate("r", "+15550020001", 30.0).await;
    events_until(&mut second, "r", "ChannelDestroyed").await;
    assert_eq!(sim.handle.connected_apps(), ["dialer"]);
}

#[tokio::test]
async fn drop_connections_closes_sockets_refuses_reconnects_then_accepts_and_loses_events() {
    let sim = Sim::start(0.02).await;
    let mut socket = sim.connect("dialer").await;
    // 008 answers at once and stays up 60 s (1.2 s here).
    sim.originate("kept", "+15550080001", 30.0).await;
    events_until(&mut socket, "kept", "StasisStart").await;

    sim.handle.drop_connections(Duration::from_millis(300));
    assert!(
        next_event(&mut socket, Duration::from_secs(2))
            .await
            .is_none()
    );
    assert!(sim.handle.connected_apps().is_empty());
    assert_eq!(
        ws_status(&sim, "app=dialer&api_key=asterisk:asterisk").await,
        503
    );
    assert_eq!(sim.get("/ari/applications/dialer").await.status(), 404);

    // The call goes on without a listener: its hang-up events are lost.
    assert_eq!(sim.delete("/ari/channels/kept").await.status(), 204);
    assert_eq!(sim.handle.live_channels(), 0);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let mut socket = sim.connect("dialer").await;
    sim.originate("after", "+15550020001", 30.0).await;
    let events = common::events_until_destroyed(&mut socket, "after").await;
    assert_eq!(events[0]["type"], "Dial");
    // Nothing about the call that ended during the outage was kept for us.
    while let Some(event) = next_event(&mut socket, Duration::from_millis(50)).await {
        assert!(!common::is_about(&event, "kept"), "{event}");
    }
}

#[tokio::test]
async fn sim_drop_route_drops_connections_without_auth() {
    let sim = Sim::start(0.02).await;
    let mut socket = sim.connect("dialer").await;
    let response = sim
        .http
        .post(sim.url("/_sim/drop?refuse_ms=200"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert!(
        next_event(&mut socket, Duration::from_secs(2))
            .await
            .is_none()
    );
    assert_eq!(
        ws_status(&sim, "app=dialer&api_key=asterisk:asterisk").await,
        503
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        ws_status(&sim, "app=dialer&api_key=asterisk:asterisk").await,
        101
    );
}

#[tokio::test]
async fn closing_the_websocket_removes_the_app() {
    let sim = Sim::start(0.02).await;
    let socket = sim.connect("dialer").await;
    sim.wait_for_app("dialer", true).await;
    drop(socket);
    sim.wait_for_app("dialer", false).await;
    assert_eq!(sim.get("/ari/applications/dialer").await.status(), 404);
}

#[tokio::test]
async fn client_pings_are_answered_with_pongs() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let sim = Sim::start(0.02).await;
    let mut socket = sim.connect("dialer").await;
    socket
        .send(Message::Ping(b"hello"[..].into()))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer, Message::Pong(b"hello"[..].into()));
}
