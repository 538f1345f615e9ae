//! Serving a router on a bound listener until a shutdown signal (the local server's API
//! and the bridge's health port; the Lambdas are served by the Lambda runtime instead),
//! with the limits a server facing the internet needs: a client that sends its headers
//! slowly, sends its body slowly, keeps a connection idle, or opens connections by the
//! thousand cannot hold the server's resources for long.
//!
//! On shutdown the server drains: the listener closes at once (a client connecting from
//! then on is refused before it sends anything), `/health` answers 503, and every open
//! connection, idle between requests or not, may still deliver a request for
//! [`Limits::drain`]. Such a request is served in full and answered with
//! `connection: close`; a connection that delivers nothing in that time is closed. A
//! client that sent a request on a kept-alive connection just as the stop began gets its
//! answer rather than a closed socket, and cannot be left wondering whether a call was
//! placed. `serve` returns once every connection is done.
//!
//! Every error answer has a JSON body with a `detail`, including the ones hyper writes
//! by itself (see `json_answers`) and the bodiless ones of a router that has no JSON
//! fallback of its own (the bridge port's unknown routes).

pub mod access_log;
mod json_answers;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::Response;
use dialer_core::health::Draining;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

use json_answers::{Asked, JsonAnswers};

/// A request head (request line and headers) over this many bytes is answered 431.
/// hyper's own limit is its read buffer, about 400 KiB: far more than a client of this
/// API sends, and held in memory per connection.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long a draining server's connections may still deliver a request, unless told:
/// longer than a client takes to send the request it is writing when the stop begins,
/// far shorter than the 30 s ECS gives a task to stop.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(1);

/// The server's limits; [`Limits::default`] is what the local server uses.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A request's headers must have arrived this long after the server began waiting
    /// for them: after the connection opened, or after the previous answer on a
    /// keep-alive connection (so it is also how long an idle connection is kept).
    pub header_read: Duration,
    /// The longest pause between two parts of a request body.
    pub body_read: Duration,
    /// Connections open at once; further ones wait in the listen queue.
    pub max_connections: usize,
    /// Once the server drains, how long an open connection may still deliver a request
    /// (`SHUTDOWN_DRAIN_MS`).
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            max_connections: 1024,
            drain: DEFAULT_DRAIN,
        }
    }
}

/// Serves with the default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, Limits::default(), shutdown).await
}

pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = Draining::default();
    let router = router
        .layer(RequestBodyTimeoutLayer::new(limits.body_read))
        .layer(axum::middleware::map_response(json_for_bodiless_errors))
        .layer(axum::middleware::map_response_with_state(
            draining.clone(),
            close_when_draining,
        ))
        .layer(axum::Extension(draining.clone()));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (drain, drain_ends) = watch::channel(None);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            stream,
            router.clone(),
            limits,
            drain_ends.clone(),
            slot,
        ));
    }
    // Connections the kernel accepted before the shutdown are served too: a client
    // whose connection was open must not see it reset.
    while let Some(Ok((stream, _))) = futures_util::FutureExt::now_or_never(listener.accept()) {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        connections.spawn(connection(
            stream,
            router.clone(),
            limits,
            drain_ends.clone(),
            slot,
        ));
    }
    drop(listener);
    // Only now, with the listener closed: an answer saying `connection: close` sends its
    // client to connect again, which must meet a refusal, not a backlog about to be
    // reset.
    draining.begin();
    let _ = drain.send(Some(tokio::time::Instant::now() + limits.drain));
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection, until the client closes it, a limit ends it, or the drain: then it
/// may deliver requests until the drain's end (the first is answered with `connection:
/// close`, which ends it), and is closed after the request in flight, if any, is
/// answered.
async fn connection(
    stream: tokio::net::TcpStream,
    router: axum::Router,
    limits: Limits,
    drain_ends: watch::Receiver<Option<tokio::time::Instant>>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let _slot = slot;
    let asked = Asked::default();
    // The peer, as axum's `ConnectInfo`: what the login throttle counts per address.
    let peer = stream.peer_addr().ok().map(axum::extract::ConnectInfo);
    let service = TowerToHyperService::new(router.map_request({
        let asked = asked.clone();
        move |mut r: Request<hyper::body::Incoming>| {
            asked.push(r.method());
            if let Some(peer) = peer {
                r.extensions_mut().insert(peer);
            }
            r.map(Body::new)
        }
    }));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_header_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(JsonAnswers::new(stream, asked)), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = drain_end(drain_ends) => {}
    }
    // Idle: closed now. A request in flight: answered with `connection: close`, then
    // closed.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Resolves at the end of the drain (at once if the server is gone).
async fn drain_end(mut drain_ends: watch::Receiver<Option<tokio::time::Instant>>) {
    let end = match drain_ends.wait_for(Option::is_some).await {
        Ok(end) => *end,
        Err(_) => None,
    };
    if let Some(end) = end {
        tokio::time::sleep_until(end).await;
    }
}

/// Once the server drains, every answer closes its connection: the client connects
/// again for its next request, and is refused before sending it.
async fn close_when_draining(State(draining): State<Draining>, mut response: Response) -> Response {
    if draining.started() && !response.status().is_informational() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// An error answer with neither a body nor a content type (axum's default 404 and 405)
/// gets a JSON body naming its status, like every error the API answers itself.
async fn json_for_bodiless_errors(response: Response) -> Response {
    let status = response.status();
    let bodiless = response.body().size_hint().exact() == Some(0)
        && !response.headers().contains_key(CONTENT_TYPE);
    if !bodiless || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let detail = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json_detail(&detail)))
}

/// `{"detail": ...}`, without a JSON library in this crate.
fn json_detail(detail: &str) -> String {
    let mut body = String::from("{\"detail\":\"");
    for c in detail.chars() {
        match c {
            '"' | '\\' => {
                body.push('\\');
                body.push(c);
            }
            c if c.is_control() => body.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => body.push(c),
        }
    }
    body.push_str("\"}");
    body
}

/// SIGTERM (ECS or systemd stopping the process) or SIGINT (Ctrl-C); says which. The
/// handlers are installed when this is called, not when it is first awaited: call it
/// before starting work, so that a signal arriving at start is a clean stop rather
/// than the default death.
pub fn terminated() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            let (Ok(mut term), Ok(mut int)) = handlers else {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            };
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
