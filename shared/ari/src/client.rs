//! ARI over HTTP: the [`Pbx`] port for Asterisk (or the simulated PBX).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use std::sync::Arc;

use dialer_core::domain::validation::{Context, Extension, Media};
use dialer_core::pbx::{OriginateSpec, Pbx, PbxError};
use dialer_core::secrets::Secret;
use dialer_core::secrets::{Fixed, SecretSource};

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
    http: reqwest::Client,
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
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| PbxError::unreachable("HTTP client could not be built", e))?;
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

    async fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, PbxError> {
        let password = self.password().await?;
        Ok(self
            .http
            .request(method, format!("{}/ari{path}", self.settings.root()))
            .basic_auth(&self.settings.username, Some(password.expose())))
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, PbxError> {
        let response = request
            .send()
            .await
            .map_err(|e| PbxError::unreachable(short_transport_error(&e), e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(PbxError::NotFound);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body
            .get("message")
            .or_else(|| body.get("error"))
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
        match self.send(self.request(Method::GET, &path).await?).await {
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
        self.send(self.request(Method::POST, "/channels").await?.json(&body))
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
        let request = self
            .request(Method::POST, &format!("/channels/{call_id}/continue"))
            .await?
            .query(&[
                ("context", context.as_str()),
                ("extension", extension.as_str()),
                ("priority", &priority.to_string()),
            ]);
        self.send(request).await.map(drop)
    }

    async fn play(
        &self,
        call_id: Uuid,
        playback_id: &str,
        media: &[Media],
    ) -> Result<(), PbxError> {
        let request = self
            .request(Method::POST, &format!("/channels/{call_id}/play"))
            .await?
            .query(&[
                ("media", media_list(media).as_str()),
                ("playbackId", playback_id),
            ]);
        self.send(request).await.map(drop)
    }

    async fn hangup(&self, call_id: Uuid) -> Result<(), PbxError> {
        let request = self
            .request(Method::DELETE, &format!("/channels/{call_id}"))
            .await?;
        self.send(request).await.map(drop)
    }

    async fn channel_state(&self, call_id: Uuid) -> Result<Option<String>, PbxError> {
        let request = self
            .request(Method::GET, &format!("/channels/{call_id}"))
            .await?;
        match self.send(request).await {
            Ok(response) => {
                let body: Value = response
                    .json()
                    .await
                    .map_err(|e| PbxError::unreachable(short_transport_error(&e), e))?;
                Ok(Some(
                    body.get("state")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                ))
            }
            Err(PbxError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A transport error without the URL: reqwest puts the URL in its message, and ours
/// must not carry credentials into logs or client answers.
fn short_transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else if error.is_decode() {
        "unreadable answer".into()
    } else {
        "request failed".into()
    }
}

/// ARI's media list: the items joined by commas (no validated item holds one).
fn media_list(media: &[Media]) -> String {
    media
        .iter()
        .map(Media::as_str)
        .collect::<Vec<_>>()
        .join(",")
}
