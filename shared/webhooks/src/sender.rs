//! One delivery: resolve (through the cache), check, connect to the checked address,
//! TLS, one HTTP/1.1 POST, the status.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dialer_core::domain::webhook::{
    CallEvent, CallbackHost, CallbackUrl, SendOutcome, signature_header,
};
use dialer_core::webhooks::WebhookSender;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT as USER_AGENT_HEADER};
use hyper_rustls::ConfigBuilderExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::Settings;
use crate::body::event_body;
use crate::dns_cache::Resolver;
use crate::resolve::{Unusable, check, resolve};

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("dialer-webhooks/", env!("CARGO_PKG_VERSION"));

/// A receiver's answer is read this far and no further: only its status counts, and a
/// receiver that streams a large or endless body must not hold the sender.
const DRAIN_BYTES: usize = 16 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Posts events to callbacks, each on a connection of its own to an address checked
/// just before. Sends do not wait on one another: a receiver that never answers costs
/// only its own delivery's time.
pub struct Sender {
    settings: Settings,
    tls: tokio_rustls::TlsConnector,
    resolver: Resolver,
}

impl Sender {
    /// Verifies `https` receivers against the platform's trusted roots. Fails when the
    /// platform has none, rather than failing every `https` delivery later.
    pub fn new(settings: Settings) -> io::Result<Self> {
        let config = tls_builder()?.with_native_roots()?.with_no_client_auth();
        Ok(Self::with_config(settings, config))
    }

    /// Verifies `https` receivers against `roots` alone (a private CA, or a test's
    /// self-signed certificate).
    pub fn with_roots(settings: Settings, roots: RootCertStore) -> io::Result<Self> {
        let config = tls_builder()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::with_config(settings, config))
    }

    fn with_config(settings: Settings, mut config: ClientConfig) -> Self {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            resolver: Resolver::system(settings.dns_cache.clone()),
            settings,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// Resolves through `resolver` instead of a system resolver and cache of its own
    /// (shared with the guard, or a test's fake). Its answers are judged all the same.
    pub fn resolving_with(self, resolver: Resolver) -> Self {
        Self { resolver, ..self }
    }

    async fn deliver(
        &self,
        url: &CallbackUrl,
        request: Request<Full<Bytes>>,
    ) -> Result<Answered, String> {
        let not_sent = |Unusable(why)| format!("not sent: the callback {why}");
        let addresses = resolve(url, &self.resolver, self.settings.resolve_timeout)
            .await
            .map_err(not_sent)?;
        if !self.settings.allow_private {
            check(url, &addresses).map_err(not_sent)?;
        }
        let tcp = self.connect(&addresses).await?;
        if !url.is_https() {
            return exchange(tcp, request).await;
        }
        let name = match url.host() {
            CallbackHost::Name(name) => ServerName::try_from(name.clone())
                .map_err(|e| format!("{name} cannot be a TLS server name ({e})"))?,
            CallbackHost::Address(ip) => ServerName::IpAddress((*ip).into()),
        };
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with the receiver failed ({e})"))?;
        exchange(tls, request).await
    }

    /// The first of `addresses` that accepts, in the resolver's order.
    async fn connect(&self, addresses: &[SocketAddr]) -> Result<TcpStream, String> {
        let mut failures = Vec::new();
        for address in addresses {
            match tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(address))
                .await
            {
                Ok(Ok(tcp)) => {
                    // One small request, then a wait for the answer: nothing to batch.
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Ok(Err(e)) => failures.push(format!("{address}: {e}")),
                Err(_) => failures.push(format!(
                    "{address}: no connection within {} ms",
                    self.settings.connect_timeout.as_millis()
                )),
            }
        }
        Err(format!("could not connect ({})", failures.join("; ")))
    }
}

fn tls_builder() -> io::Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>> {
    // Named rather than taken from the process default: a second provider enabled by
    // some other crate would leave rustls unable to pick one, or pick ring.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)
}

/// Sends `request` on `io` and reads the answer's head.
async fn exchange<T>(io: T, request: Request<Full<Bytes>>) -> Result<Answered, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP with the receiver failed ({e})"))?;
    // The connection is driven on its own task; ending it with this delivery (done or
    // timed out) closes the socket instead of leaving it open to the receiver.
    let connection = AbortOnDrop(tokio::spawn(connection));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP with the receiver failed ({e})"))?;
    Ok(Answered {
        status: response.status().as_u16(),
        body: response.into_body(),
        _connection: connection,
    })
}

/// A receiver's answer, its status read, its body not yet.
struct Answered {
    status: u16,
    body: Incoming,
    _connection: AbortOnDrop<Result<(), hyper::Error>>,
}

impl Answered {
    /// Reads a little of the body so the receiver can finish writing before the socket
    /// closes; the outcome is already decided by the status, whatever happens here.
    async fn drain(mut self) {
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            let mut read = 0;
            while read < DRAIN_BYTES {
                match self.body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
        })
        .await;
    }
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The request for `body`, without connecting: its target and `Host` come from the
/// URL as stored.
fn build_request(
    url: &CallbackUrl,
    event_id: Uuid,
    body: Vec<u8>,
    signature: String,
) -> Result<Request<Full<Bytes>>, String> {
    let target = url.request_target();
    let host = url.authority();
    Request::post(target)
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT_HEADER, USER_AGENT)
        .header("Dialer-Event-Id", event_id.to_string())
        .header("Dialer-Signature", signature)
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("the request could not be built ({e})"))
}

#[async_trait]
impl WebhookSender for Sender {
    async fn send(
        &self,
        url: &CallbackUrl,
        call_id: Uuid,
        event: &CallEvent,
        secrets: &[&str],
    ) -> SendOutcome {
        let body = event_body(call_id, event);
        let signature = signature_header(secrets, chrono::Utc::now().timestamp(), &body);
        let attempt = async {
            let request = build_request(url, event.event_id, body, signature)?;
            self.deliver(url, request).await
        };
        let outcome = match tokio::time::timeout(self.settings.request_timeout, attempt).await {
            Ok(Ok(answered)) => {
                let status = answered.status;
                answered.drain().await;
                SendOutcome::from_status(status)
            }
            Ok(Err(error)) => SendOutcome::Retry {
                status: None,
                error,
            },
            Err(_) => SendOutcome::Retry {
                status: None,
                error: format!(
                    "no answer within {} ms",
                    self.settings.request_timeout.as_millis()
                ),
            },
        };
        // The host alone: a URL's query may hold the receiver's own token, and the
        // signature is never written anywhere.
        let host = match url.host() {
            CallbackHost::Name(name) => name.clone(),
            CallbackHost::Address(ip) => ip.to_string(),
        };
        tracing::debug!(%host, event_id = %event.event_id, ?outcome, "webhook attempt");
        outcome
    }
}
