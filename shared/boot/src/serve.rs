//! Serving a router on a bound listener until a shutdown signal (the local server's API
//! and the bridge's health port; the Lambdas are served by the Lambda runtime instead),
//! with the limits a server facing the internet needs: a client that sends its headers
//! slowly, sends its body slowly, keeps a connection idle, or opens connections by the
//! thousand cannot hold the server's resources for long. On shutdown the listener
//! closes at once and every request in flight is answered before `serve` returns.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

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
    let router = router.layer(RequestBodyTimeoutLayer::new(limits.body_read));
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
    let service = TowerToHyperService::new(
        router.map_request(|r: Request<hyper::body::Incoming>| r.map(Body::new)),
    );
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let drained = tokio::select! {
        _ = connection.as_mut() => false,
        _ = draining.wait_for(|d| *d) => true,
    };
    if drained {
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

/// SIGTERM (ECS or systemd stopping the process) or SIGINT (Ctrl-C); says which.
pub async fn terminated() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
