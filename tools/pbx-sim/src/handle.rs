//! Starting a simulator and controlling it from tests.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::server;
use crate::state::{Shared, lock};

/// A running simulator. Dropping it stops the simulator too; [`SimHandle::shutdown`]
/// also waits for the server to stop.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

/// Binds `config.bind` and serves ARI there in the background.
pub async fn start(config: SimConfig) -> io::Result<SimHandle> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(config));
    let app = server::router(Arc::clone(&shared));
    let stopped = shared.shutdown_signal();
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("pbx-sim server failed: {e}");
        }
    });
    tracing::debug!(%addr, "pbx-sim started");
    Ok(SimHandle {
        addr,
        shared,
        server: Some(server),
    })
}

impl SimHandle {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`; ARI lives under `/ari`. A wildcard bind is reached on loopback.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// `POST /ari/channels` requests that created a channel.
    pub fn originate_count(&self) -> usize {
        self.shared.originate_count()
    }

    /// Channels not yet destroyed.
    pub fn live_channels(&self) -> usize {
        self.shared.live_channels()
    }

    /// The most channels that were alive at once.
    pub fn max_live_channels(&self) -> usize {
        self.shared.max_live_channels()
    }

    /// Every originate that created a channel, in order: its channel id and when it
    /// reached the simulator.
    pub fn originates(&self) -> Vec<(String, std::time::Instant)> {
        self.shared.originate_log()
    }

    /// Applications with an event WebSocket connected now, sorted.
    pub fn connected_apps(&self) -> Vec<String> {
        self.shared.connected_apps()
    }

    /// Closes every event WebSocket now (clients see the socket drop, without a close
    /// handshake) and refuses new WebSocket upgrades with HTTP 503 for `refuse_for`.
    /// Calls keep running; their events during the outage are lost (Asterisk keeps no
    /// backlog).
    pub fn drop_connections(&self, refuse_for: Duration) {
        self.shared.drop_connections(refuse_for);
    }

    /// Holds every later `POST /ari/channels` (originate) and `DELETE /ari/channels/{id}`
    /// (hang-up) for `delay` before acting on it, as a slow or overloaded Asterisk does;
    /// a client that gives up first never learns that the PBX went ahead.
    /// `Duration::ZERO` ends it.
    pub fn hold_requests(&self, delay: Duration) {
        self.shared.hold_requests(delay);
    }

    /// Sends a raw text frame to `app`'s event WebSocket; false when nobody listens.
    pub fn inject(&self, app: &str, frame: &str) -> bool {
        self.shared.inject(app, frame.to_owned())
    }

    /// The media URIs the channel started playing, in order (also after it is gone).
    pub fn played(&self, channel_id: &str) -> Vec<String> {
        self.shared.played(channel_id)
    }

    /// Stops serving, closes every WebSocket and ends every call task.
    pub async fn shutdown(mut self) {
        self.shared.begin_shutdown();
        self.shared.drop_connections(Duration::ZERO);
        if let Some(mut server) = self.server.take() {
            // Graceful shutdown waits for open HTTP connections; don't wait forever.
            if tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
        lock(&self.shared.channels).clear();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
    }
}
