//! The ARI event WebSocket: `ws://HOST:PORT/ari/events?app=APP`, authenticated with
//! HTTP Basic (so the password never appears in a URL that could be logged).

use base64_basic::basic_auth_header;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::client::AriSettings;
use dialer_core::secrets::Secret;

pub type EventStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("bad ARI URL")]
    BadUrl,
    #[error("ARI refused the event socket (HTTP {0})")]
    Refused(u16),
    #[error("event socket unreachable: {0}")]
    Unreachable(String),
}

/// How the event socket is read: through an 8 KiB buffer. tungstenite zero-fills its
/// whole read buffer before every read, and its default (128 KiB) made that the largest
/// single cost of a call: ~475,000 instructions per originate of ~1.2 million in all,
/// the PBX's included (callgrind, `scripts/profile-requests`). ARI events are a few KiB;
/// a larger message is still read whole, over several reads.
pub fn event_socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(EVENT_READ_BUFFER)
}

const EVENT_READ_BUFFER: usize = 8 * 1024;

/// Opens the event socket for our app.
pub async fn connect(
    settings: &AriSettings,
    password: &Secret,
) -> Result<EventStream, SocketError> {
    let root = settings.root();
    let ws_root = if let Some(rest) = root.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = root.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        return Err(SocketError::BadUrl);
    };
    let url = format!("{ws_root}/ari/events?app={}", settings.app);
    let mut request = url.into_client_request().map_err(|_| SocketError::BadUrl)?;
    let auth = basic_auth_header(&settings.username, password.expose());
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&auth).map_err(|_| SocketError::BadUrl)?,
    );
    match tokio_tungstenite::connect_async_with_config(request, Some(event_socket_config()), true)
        .await
    {
        Ok((stream, _)) => Ok(stream),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(SocketError::Refused(response.status().as_u16()))
        }
        Err(e) => Err(SocketError::Unreachable(e.to_string())),
    }
}

mod base64_basic {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    pub fn basic_auth_header(username: &str, password: &str) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{username}:{password}"))
        )
    }
}
