//! The ARI client's HTTP/1.1 transport: one origin (the PBX), a small pool of kept-alive
//! connections behind a mutex, TLS only for an `https://` URL.
//!
//! hyper's connection API (`hyper::client::conn::http1`) over one boxed stream type, so
//! that plain and TLS connections share one instantiation of hyper's client code; the
//! general-purpose pooled client (hyper-util's) cost several hundred KiB of the
//! originate function's binary for features one fixed origin does not use.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use dialer_core::pbx::PbxError;

/// How long opening a connection may take: the name lookup and TCP, and then the TLS
/// handshake (each; a request that runs out was not sent).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// An idle connection older than this is closed rather than used (below the idle
/// timeouts of the proxies and load balancers a PBX may sit behind).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// At most this many idle connections are kept; more are closed when they come back.
const MAX_IDLE: usize = 32;

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// The request was not sent: no connection could be opened, or the one it was
    /// given closed before taking it. The PBX cannot have acted on it.
    NotSent(Box<dyn StdError + Send + Sync>),
    /// The request may have been sent, but no answer came (the connection broke off).
    Broken(Box<dyn StdError + Send + Sync>),
    /// The answer's head came, its body broke off.
    BodyBroken(Box<dyn StdError + Send + Sync>),
}

/// A request's answer: its status and whole body.
pub(crate) type Answer = (StatusCode, Bytes);

/// Where requests go and how connections are opened; cheap to clone (shared pool).
#[derive(Clone)]
pub(crate) struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    /// The host as connected to (an IPv6 literal without its brackets).
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority.
    authority: HeaderValue,
    /// The path the URL holds before `/ari` (usually empty), without a trailing `/`.
    base_path: String,
    tls: Option<Tls>,
    idle: Mutex<Vec<Idle>>,
}

struct Tls {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// What one connection carries, plain or TLS: one type for hyper to be compiled for.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

type Io = TokioIo<Box<dyn Stream>>;

#[derive(Debug)]
struct Message(&'static str);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Message {}

fn bad_url(why: &'static str) -> PbxError {
    PbxError::unreachable("bad ARI URL", Message(why))
}

impl Transport {
    /// A transport for the server root `root` (`http://host[:port][/prefix]`, or
    /// `https://…`, for which the system's root certificates are loaded now).
    pub(crate) fn for_root(root: &str) -> Result<Self, PbxError> {
        let uri: Uri = root
            .parse()
            .map_err(|e| PbxError::unreachable("bad ARI URL", e))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad_url("the scheme must be http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| bad_url("the URL has no host"))?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = HeaderValue::from_str(authority.as_str())
            .map_err(|e| PbxError::unreachable("bad ARI URL", e))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let tls = if https { Some(Tls::new(&host)?) } else { None };
        Ok(Self {
            inner: Arc::new(Inner {
                host,
                port,
                authority,
                base_path,
                tls,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The request target for `path_and_query` (`/ari/…?…`), with the URL's prefix.
    pub(crate) fn target(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.inner.base_path)
    }

    /// Sends `request` (its URI the origin-form target) on an idle connection, or on a
    /// new one, and reads the whole answer. A request that an idle connection closed
    /// before taking (the server ended it meanwhile) is sent again on another.
    pub(crate) async fn exchange(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Answer, TransportError> {
        request
            .headers_mut()
            .insert(HOST, self.inner.authority.clone());
        loop {
            let (mut sender, reused) = match self.check_out().await {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            let response = match sender.try_send_request(request).await {
                Ok(response) => response,
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        request = unsent;
                        continue;
                    }
                    Some(_) => return Err(TransportError::NotSent(e.into_error().into())),
                    None => return Err(TransportError::Broken(e.into_error().into())),
                },
            };
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| TransportError::BodyBroken(e.into()))?
                .to_bytes();
            self.check_in(sender);
            return Ok((status, body));
        }
    }

    /// An idle connection that is still open and ready, if there is one; the expired
    /// and closed ones met on the way are dropped (which closes them).
    async fn check_out(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let idle = self.idle().pop()?;
            if idle.since.elapsed() >= IDLE_TIMEOUT || idle.sender.is_closed() {
                continue;
            }
            let mut sender = idle.sender;
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn check_in(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        idle.retain(|i| i.since.elapsed() < IDLE_TIMEOUT && !i.sender.is_closed());
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a connection (TCP, then TLS for https) and starts driving it.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let inner = &*self.inner;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect_tcp(&inner.host, inner.port))
            .await
            .map_err(|_| TransportError::NotSent(Box::new(Message("connect timed out"))))?
            .map_err(|e| TransportError::NotSent(e.into()))?;
        let stream: Box<dyn Stream> = match &inner.tls {
            Some(tls) => {
                let handshake = tls.connector.connect(tls.server_name.clone(), tcp);
                Box::new(
                    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                        .await
                        .map_err(|_| {
                            TransportError::NotSent(Box::new(Message("TLS handshake timed out")))
                        })?
                        .map_err(|e| TransportError::NotSent(e.into()))?,
                )
            }
            None => Box::new(tcp),
        };
        let io: Io = TokioIo::new(stream);
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| TransportError::NotSent(e.into()))?;
        tokio::spawn(async move {
            // Ends when the connection closes or its sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

impl Tls {
    /// TLS with the system's root certificates (loaded now), for `host`.
    fn new(host: &str) -> Result<Self, PbxError> {
        use hyper_rustls::ConfigBuilderExt;
        let config = rustls::ClientConfig::builder()
            .with_native_roots()
            .map_err(|e| PbxError::unreachable("no TLS roots for an https ARI URL", e))?
            .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| PbxError::unreachable("bad ARI URL", e))?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// Each of the host's addresses in turn, as the system resolves them.
async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        match connect_one(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the ARI host has no address")
    }))
}

async fn connect_one(address: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(address).await?;
    // Requests are small and written whole; do not hold them back.
    stream.set_nodelay(true)?;
    Ok(stream)
}
