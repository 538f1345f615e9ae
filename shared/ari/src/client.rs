//! ARI over HTTP: the [`Pbx`] port for Asterisk (or the simulated PBX). HTTP/1.1 with
//! kept-alive connections on hyper, the stack the AWS SDK brings anyway (the
//! `transport` module); TLS (with the system's roots) only when `ARI_HTTP_URL` is
//! `https://`, so a plain-HTTP PBX costs no certificate loading at start.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use dialer_core::domain::validation::{Context, Extension, Media};
use dialer_core::pbx::{ChannelView, OriginateSpec, Pbx, PbxError};
use dialer_core::secrets::Secret;
use dialer_core::secrets::{Fixed, SecretSource};

use crate::transport::{Transport, TransportError};

/// Where ARI is and how to log in.
#[derive(Clone, Debug)]
pub struct AriSettings {
    /// e.g. `http://127.0.0.1:8088` (a trailing `/ari` is accepted and ignored).
    pub url: String,
    pub username: String,
    /// The password when it is fixed; see [`AriClient::with_password_source`].
    pub password: Secret,
    /// The Stasis application our calls are originated into.
    pub app: String,
    /// How long a request may take before its answer is given up on (`ARI_TIMEOUT_MS`,
    /// default 10 s). An originate that runs out is *unconfirmed*, not failed.
    pub timeout: Duration,
}

impl AriSettings {
    /// The server root, without `/ari` and without a trailing slash.
    pub fn root(&self) -> &str {
        let url = self.url.trim_end_matches('/');
        url.strip_suffix("/ari").unwrap_or(url)
    }
}

#[derive(Clone)]
pub struct AriClient {
    http: Transport,
    settings: AriSettings,
    password: Arc<dyn SecretSource>,
}

impl AriClient {
    pub fn new(settings: AriSettings) -> Result<Self, PbxError> {
        let password = Arc::new(Fixed(settings.password.clone()));
        Self::with_password_source(settings, password)
    }

    /// A client whose password is read from `password` for every request, so that a
    /// rotated password is used as soon as the source sees it.
    pub fn with_password_source(
        settings: AriSettings,
        password: Arc<dyn SecretSource>,
    ) -> Result<Self, PbxError> {
        let http = Transport::for_root(settings.root())?;
        Ok(Self {
            http,
            settings,
            password,
        })
    }

    pub fn settings(&self) -> &AriSettings {
        &self.settings
    }

    /// The password in force now.
    pub async fn password(&self) -> Result<Secret, PbxError> {
        self.password
            .current()
            .await
            .map_err(|e| PbxError::unreachable("ARI password unavailable", e))
    }

    /// One request: `path` under `/ari`, `query` pairs (encoded here), an optional JSON
    /// body. The whole exchange, answer body included, within the settings' timeout.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), PbxError> {
        let password = self.password().await?;
        let mut uri = self.http.target(&format!("/ari{path}"));
        for (i, (key, value)) in query.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(&encode(key));
            uri.push('=');
            uri.push_str(&encode(value));
        }
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.settings.username,
            password.expose()
        ));
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Basic {credentials}"));
        let body = match body {
            Some(body) => {
                request =
                    request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Full::new(Bytes::from(body.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .map_err(|e| PbxError::unreachable("bad ARI request", e))?;
        let (status, body) =
            tokio::time::timeout(self.settings.timeout, self.http.exchange(request))
                .await
                .map_err(|elapsed| PbxError::unconfirmed("timed out", elapsed))?
                .map_err(transport_error)?;
        if status.is_success() {
            return Ok((status, body));
        }
        if status == StatusCode::NOT_FOUND {
            return Err(PbxError::NotFound);
        }
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let message = answer
            .get("message")
            .or_else(|| answer.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"))
            .chars()
            .take(120)
            .collect();
        Err(PbxError::Rejected {
            status: status.as_u16(),
            message,
        })
    }
}

#[async_trait]
impl Pbx for AriClient {
    async fn app_connected(&self) -> Result<bool, PbxError> {
        let path = format!("/applications/{}", self.settings.app);
        match self.send(Method::GET, &path, &[], None).await {
            Ok(_) => Ok(true),
            Err(PbxError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn originate(&self, spec: &OriginateSpec<'_>) -> Result<(), PbxError> {
        let mut body = json!({
            "endpoint": spec.endpoint,
            "app": self.settings.app,
            "appArgs": spec.app_args,
            "channelId": spec.call_id.to_string(),
            "timeout": spec.timeout_seconds,
        });
        if let Some(caller_id) = spec.caller_id {
            body["callerId"] = json!(caller_id.as_str());
        }
        if !spec.variables.is_empty() {
            body["variables"] = json!(spec.variables.as_map());
        }
        self.send(Method::POST, "/channels", &[], Some(&body))
            .await
            .map(drop)
    }

    async fn continue_in_dialplan(
        &self,
        call_id: Uuid,
        context: &Context,
        extension: &Extension,
        priority: u32,
    ) -> Result<(), PbxError> {
        let priority = priority.to_string();
        let query = [
            ("context", context.as_str()),
            ("extension", extension.as_str()),
            ("priority", priority.as_str()),
        ];
        let path = format!("/channels/{call_id}/continue");
        self.send(Method::POST, &path, &query, None).await.map(drop)
    }

    async fn play(
        &self,
        call_id: Uuid,
        playback_id: &str,
        media: &[Media],
    ) -> Result<(), PbxError> {
        let media = media_list(media);
        let query = [("media", media.as_str()), ("playbackId", playback_id)];
        let path = format!("/channels/{call_id}/play");
        self.send(Method::POST, &path, &query, None).await.map(drop)
    }

    async fn hangup(&self, call_id: Uuid) -> Result<(), PbxError> {
        let path = format!("/channels/{call_id}");
        self.send(Method::DELETE, &path, &[], None).await.map(drop)
    }

    async fn channel(&self, call_id: Uuid) -> Result<Option<ChannelView>, PbxError> {
        let path = format!("/channels/{call_id}");
        match self.send(Method::GET, &path, &[], None).await {
            Ok((_, body)) => {
                let body: Value = serde_json::from_slice(&body)
                    .map_err(|e| PbxError::unconfirmed("unreadable answer", e))?;
                let dialplan = |field: &str| body["dialplan"][field].as_str().unwrap_or_default();
                // In Stasis, `app_data` begins with the app's name (then its arguments).
                let in_app = dialplan("app_name") == "Stasis"
                    && dialplan("app_data").split(',').next() == Some(self.settings.app.as_str());
                Ok(Some(ChannelView {
                    state: body["state"].as_str().unwrap_or_default().to_owned(),
                    in_app,
                }))
            }
            Err(PbxError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn playing(&self, playback_id: &str) -> Result<bool, PbxError> {
        let path = format!("/playbacks/{}", encode(playback_id));
        match self.send(Method::GET, &path, &[], None).await {
            Ok(_) => Ok(true),
            Err(PbxError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A request that got no answer. One that was never sent (no connection) did not reach
/// the PBX; any other (a connection that broke off) may have: the PBX may have acted on
/// it.
fn transport_error(error: TransportError) -> PbxError {
    match error {
        TransportError::NotSent(e) => PbxError::unreachable("connection failed", e),
        TransportError::Broken(e) => PbxError::unconfirmed("request failed", e),
        TransportError::BodyBroken(e) => PbxError::unconfirmed("answer broke off", e),
    }
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// ARI's media list: the items joined by commas (no validated item holds one).
fn media_list(media: &[Media]) -> String {
    media
        .iter()
        .map(Media::as_str)
        .collect::<Vec<_>>()
        .join(",")
}
