//! Serving a router on a bound listener until a shutdown signal (the local server's API
//! and the bridge's health port; the Lambdas are served by the Lambda runtime instead),
//! with the limits a server facing the internet needs: a client that sends its headers
//! slowly, sends its body slowly, keeps a connection idle, or opens connections by the
//! thousand cannot hold the server's resources for long. On shutdown the listener
//! closes at once and every request in flight is answered before `serve` returns.
//! Every error answer has a JSON body with a `detail`, including the ones hyper writes
//! by itself (see `json_answers`) and the bodiless ones of a router that has no JSON
//! fallback of its own (the bridge port's unknown routes).

mod json_answers;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::Response;
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            max_connections: 1024,
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
    let router = router
        .layer(RequestBodyTimeoutLayer::new(limits.body_read))
        .layer(axum::middleware::map_response(json_for_bodiless_errors));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (drain, draining) = watch::channel(false);
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
            draining.clone(),
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
            draining.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = drain.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection, until the client closes it, a limit ends it, or the drain: then the
/// request in flight is answered and the connection closed.
async fn connection(
    stream: tokio::net::TcpStream,
    router: axum::Router,
    limits: Limits,
    mut draining: watch::Receiver<bool>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let _slot = slot;
    let asked = Asked::default();
    let (seen, mut first_request) = watch::channel(false);
    let seen = Arc::new(seen);
    // The peer, as axum's `ConnectInfo`: what the login throttle counts per address.
    let peer = stream.peer_addr().ok().map(axum::extract::ConnectInfo);
    let service = TowerToHyperService::new(router.map_request({
        let asked = asked.clone();
        move |mut r: Request<hyper::body::Incoming>| {
            if !*seen.borrow() {
                seen.send_replace(true);
            }
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
    let drained = tokio::select! {
        _ = connection.as_mut() => false,
        _ = draining.wait_for(|d| *d) => true,
    };
    if drained {
        // A connection accepted just before the drain, or during it from the kernel's
        // backlog, may carry a request its client has sent and hyper has not read yet:
        // a graceful shutdown now would close it unanswered. It gets a moment to arrive.
        if !*first_request.borrow() {
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = first_request.wait_for(|s| *s) => {}
                () = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
            }
        }
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

/// How long a connection that has sent nothing yet may still deliver its first request
/// once the server drains.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

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
