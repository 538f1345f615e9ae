//! Real receivers on loopback for the delivery tests, and the events they are sent.

#![allow(dead_code)]

pub mod fake_dns;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dialer_core::domain::webhook::{CallEvent, CallbackUrl, Delivery, EventType};
use dialer_core::domain::{CallPolicy, CallRequest, CallStatus, now};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::{HeaderMap, Method, Request, Response};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A throwaway self-signed certificate for `localhost` only (no IP address in it),
/// valid until 2126, made with `openssl req -x509` for these tests; its key guards
/// nothing.
const CERT: &[u8] = include_bytes!("../fixtures/localhost.crt");
const KEY: &[u8] = include_bytes!("../fixtures/localhost.key");

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// Path and query, as sent on the request line.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The TLS server name the client asked for, on an `https` receiver.
    pub sni: Option<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .expect("a text header")
    }
}

#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Answers every request with `status`.
    pub async fn answering(status: u16) -> Self {
        Self::answering_with(status, Vec::new()).await
    }

    pub async fn answering_with(status: u16, headers: Vec<(&'static str, String)>) -> Self {
        Self::start(Some(Answer { status, headers }), None).await
    }

    /// Serves `https` with the `localhost` certificate.
    pub async fn tls(status: u16) -> Self {
        let certs = CertificateDer::pem_slice_iter(CERT)
            .collect::<Result<Vec<_>, _>>()
            .expect("the test certificate");
        let key = PrivateKeyDer::from_pem_slice(KEY).expect("the test key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start(
            Some(Answer {
                status,
                headers: Vec::new(),
            }),
            Some(acceptor),
        )
        .await
    }

    /// Accepts connections and never reads from them or answers.
    pub async fn silent() -> Self {
        Self::start(None, None).await
    }

    async fn start(answer: Option<Answer>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let connections = connections.clone();
            let seen = seen.clone();
            async move {
                let mut held = Vec::new();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let Some(answer) = answer.clone() else {
                        held.push(tcp);
                        continue;
                    };
                    let seen = seen.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => serve(tcp, None, answer, seen).await,
                            Some(acceptor) => {
                                let Ok(stream) = acceptor.accept(tcp).await else {
                                    return;
                                };
                                let sni = stream.get_ref().1.server_name().map(str::to_owned);
                                serve(stream, sni, answer, seen).await;
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            connections,
            seen,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> CallbackUrl {
        url(&format!("http://{}{path}", self.addr))
    }

    /// `https://localhost:PORT{path}`, the name the certificate is for.
    pub fn https_url(&self, path: &str) -> CallbackUrl {
        url(&format!("https://localhost:{}{path}", self.addr.port()))
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("the receiver's record").clone()
    }

    /// TCP connections accepted, whether or not a request came on them.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve<T>(io: T, sni: Option<String>, answer: Answer, seen: Arc<Mutex<Vec<Seen>>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let answer = answer.clone();
        let seen = seen.clone();
        let sni = sni.clone();
        async move {
            let (head, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            seen.lock().expect("the receiver's record").push(Seen {
                method: head.method,
                target: head
                    .uri
                    .path_and_query()
                    .map_or_else(String::new, ToString::to_string),
                headers: head.headers,
                body,
                sni,
            });
            let mut response = Response::builder().status(answer.status);
            for (name, value) in &answer.headers {
                response = response.header(*name, value);
            }
            Ok::<_, hyper::Error>(
                response
                    .body(Full::new(Bytes::from_static(b"thanks")))
                    .expect("a response"),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// The roots that trust the test certificate.
pub fn test_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(CERT) {
        roots
            .add(cert.expect("the test certificate"))
            .expect("a root");
    }
    roots
}

pub fn url(raw: &str) -> CallbackUrl {
    CallbackUrl::parse(raw, true).expect(raw)
}

/// A port nothing listens on: bound, then let go.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

/// An answered call's `answered` event, its snapshot carrying a few facts.
pub fn status_event() -> CallEvent {
    let at = now();
    let mut call = CallRequest {
        phone_number: "+15550010001".into(),
        ..CallRequest::default()
    }
    .validate(&CallPolicy::default(), "alice", Uuid::new_v4(), at)
    .expect("a valid request");
    call.status = CallStatus::Answered;
    call.dialed_at = Some(at);
    call.ringing_at = Some(at);
    call.answered_at = Some(at);
    call.attempt_number = 2;
    CallEvent {
        event_id: Uuid::new_v4(),
        sequence: 3,
        kind: EventType::Status,
        status: CallStatus::Answered,
        previous_status: Some(CallStatus::Ringing),
        at,
        attempt_number: 2,
        digit: None,
        call: Box::new(call),
        delivery: Delivery::default(),
    }
}

/// The first event a call has: no status before it.
pub fn first_event() -> CallEvent {
    let mut event = status_event();
    event.sequence = 1;
    event.status = CallStatus::Dialing;
    event.previous_status = None;
    event.call.status = CallStatus::Dialing;
    event
}

pub fn dtmf_event(digit: char) -> CallEvent {
    let mut event = status_event();
    event.kind = EventType::Dtmf;
    event.digit = Some(digit);
    event.previous_status = None;
    event.call.dtmf = digit.to_string();
    event
}
