//! Helpers shared by the integration tests: a running simulator, an ARI client, and an
//! event WebSocket that can be asked for one channel's events.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use futures_util::StreamExt;
use pbx_sim::{SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP: &str = "dialer";
pub const USER: &str = "asterisk";
pub const PASSWORD: &str = "asterisk";

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A simulator and an authenticated client for it.
pub struct Sim {
    pub handle: SimHandle,
    pub http: reqwest::Client,
}

impl Sim {
    pub async fn start(time_scale: f64) -> Self {
        let handle = pbx_sim::start(SimConfig {
            time_scale,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        Self {
            handle,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!(
            "{}/ari/events?{query}",
            self.handle.base_url().replacen("http", "ws", 1)
        )
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .basic_auth(USER, Some(PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Originates `number` into the Stasis app like the recorded client did.
    pub async fn originate(&self, id: &str, number: &str, timeout: f64) -> reqwest::Response {
        self.post(
            "/ari/channels",
            json!({
                "app": APP,
                "appArgs": "ivr",
                "timeout": timeout,
                "endpoint": format!("Local/{number}@test-pstn"),
                "channelId": id,
                "callerId": "MyCompany <+15550000000>",
            }),
        )
        .await
    }

    /// Connects an event WebSocket with HTTP Basic auth.
    pub async fn connect(&self, app: &str) -> Socket {
        let mut request = self
            .ws_url(&format!("app={app}"))
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_static("Basic YXN0ZXJpc2s6YXN0ZXJpc2s="),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        socket
    }

    /// Waits until the simulator lists `app` as connected (or not).
    pub async fn wait_for_app(&self, app: &str, connected: bool) {
        for _ in 0..200 {
            if self.handle.connected_apps().iter().any(|a| a == app) == connected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("app {app} never became connected={connected}");
    }
}

/// The next JSON event on `socket`, or `None` when it closes or nothing comes in `wait`.
pub async fn next_event(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => return None,
        }
    }
}

/// Whether `event` concerns channel `id` (the call's own channel, not `;2`).
pub fn is_about(event: &Value, id: &str) -> bool {
    event["channel"]["id"] == id
        || event["peer"]["id"] == id
        || event["playback"]["target_uri"] == format!("channel:{id}")
}

/// Events about `id` until (and including) its `ChannelDestroyed`.
pub async fn events_until_destroyed(socket: &mut Socket, id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(event) = next_event(socket, Duration::from_secs(5)).await {
        if !is_about(&event, id) {
            continue;
        }
        let done = event["type"] == "ChannelDestroyed";
        events.push(event);
        if done {
            return events;
        }
    }
    panic!("no ChannelDestroyed for {id}; got {:#?}", summary(&events));
}

/// Events about `id` until one of type `kind` (included).
pub async fn events_until(socket: &mut Socket, id: &str, kind: &str) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(event) = next_event(socket, Duration::from_secs(5)).await {
        if !is_about(&event, id) {
            continue;
        }
        let done = event["type"] == kind;
        events.push(event);
        if done {
            return events;
        }
    }
    panic!("no {kind} for {id}; got {:#?}", summary(&events));
}

/// A compact line per event: type, what matters about it, and the channel state.
pub fn summary(events: &[Value]) -> Vec<String> {
    events.iter().map(describe).collect()
}

fn describe(event: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let state = |v: &Value| text(&v["state"]);
    match text(&event["type"]).as_str() {
        "Dial" => format!(
            "Dial:{}@{}",
            text(&event["dialstatus"]),
            state(&event["peer"])
        ),
        "ChannelStateChange" => format!("StateChange@{}", state(&event["channel"])),
        "ChannelVarset" => format!(
            "Varset:{}={}@{}",
            text(&event["variable"]),
            text(&event["value"]),
            state(&event["channel"])
        ),
        "ChannelHangupRequest" => format!(
            "HangupRequest:{}{}@{}",
            event["cause"],
            if event["soft"] == true { ":soft" } else { "" },
            state(&event["channel"])
        ),
        "ChannelDestroyed" => format!(
            "Destroyed:{}:{}@{}",
            event["cause"],
            text(&event["cause_txt"]),
            state(&event["channel"])
        ),
        "StasisStart" => format!("StasisStart:{}@{}", event["args"], state(&event["channel"])),
        "StasisEnd" => format!("StasisEnd@{}", state(&event["channel"])),
        "ChannelDialplan" => format!(
            "Dialplan:{}({})@{}",
            text(&event["dialplan_app"]),
            text(&event["dialplan_app_data"]),
            state(&event["channel"])
        ),
        "ChannelDtmfReceived" => format!(
            "Dtmf:{}:{}@{}",
            text(&event["digit"]),
            event["duration_ms"],
            state(&event["channel"])
        ),
        kind if kind.starts_with("Playback") => format!(
            "{kind}:{}:{}>{}",
            text(&event["playback"]["state"]),
            text(&event["playback"]["media_uri"]),
            text(&event["playback"]["next_media_uri"])
        ),
        other => other.to_owned(),
    }
}
