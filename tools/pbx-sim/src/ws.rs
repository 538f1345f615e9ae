//! The event WebSocket, `GET /ari/events?app=NAME[,NAME2]`.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::params::parse_query;
use crate::server::message;
use crate::state::{Outbound, Registration, Shared};

/// Upgrades to an event WebSocket for the requested applications.
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if shared.refusing_connections() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            message("Service temporarily unavailable"),
        )
            .into_response();
    }
    let apps = requested_apps(query.as_deref().unwrap_or(""));
    if apps.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            message("Invalid application provided in param [app]."),
        )
            .into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return (rejection.status(), message(&rejection.body_text())).into_response();
        }
    };
    // Registered before the handshake completes, so that once a client is connected
    // the application exists; the registration goes away with the session, or with the
    // callback if the upgrade never happens.
    let (registration, outbound) = shared.register(&apps);
    tracing::debug!(?apps, "event websocket connected");
    upgrade.on_upgrade(move |socket| session(socket, outbound, registration, shared))
}

/// `app=a,b&app=c` → `[a, b, c]`, without blanks or repeats.
fn requested_apps(query: &str) -> Vec<String> {
    let mut apps: Vec<String> = Vec::new();
    for (key, value) in parse_query(query) {
        if key != "app" {
            continue;
        }
        for app in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            if !apps.iter().any(|known| known == app) {
                apps.push(app.to_owned());
            }
        }
    }
    apps
}

async fn session(
    socket: WebSocket,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    registration: Registration,
    shared: Arc<Shared>,
) {
    let shutdown = shared.shutdown_signal();
    tokio::pin!(shutdown);
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = outbound.recv() => match next {
                Some(Outbound::Event(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Replaced(text)) => {
                    let _ = sink.send(Message::Text(text.into())).await;
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
                // Dropping the socket below closes it without a handshake, like a crash.
                Some(Outbound::Drop) | None => break,
            },
            // Reading also lets axum answer pings; anything the client sends is ignored.
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(registration);
    tracing::debug!("event websocket closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_are_split_trimmed_and_deduplicated() {
        assert_eq!(
            requested_apps("app=dialer,%20other&subscribeAll=true&app=dialer&app=third&app="),
            ["dialer", "other", "third"]
        );
        assert!(requested_apps("subscribeAll=true").is_empty());
    }
}
