//! What the event bridge reports about itself: connected or not, how often it has
//! connected, when it last saw an event, and how deep its write queue is. The bridge
//! writes it; `/health` (the bridge's own port, or the local server's API) reads it.
//! [`Draining`] is what a server tells `/health` once it has begun to stop.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What `/health` says about the bridge.
#[derive(Default)]
pub struct BridgeHealth {
    connected: AtomicBool,
    connections: AtomicU64,
    last_event: Mutex<Option<Instant>>,
    queue_depth: Mutex<Option<Arc<AtomicUsize>>>,
}

impl BridgeHealth {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// How many times the event socket has connected since start.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Whole milliseconds, so that the report reads `3.952`, not `3.9519297780000002`.
    pub fn seconds_since_last_event(&self) -> Option<f64> {
        let last = *self.last_event.lock().unwrap_or_else(|p| p.into_inner());
        last.map(|at| at.elapsed().as_millis() as f64 / 1000.0)
    }

    pub fn queue_depth(&self) -> usize {
        self.queue_depth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |d| d.load(Ordering::Relaxed))
    }

    /// The JSON body of a health answer.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "connected": self.connected(),
            "connections": self.connections(),
            "seconds_since_last_event": self.seconds_since_last_event(),
            "queue_depth": self.queue_depth(),
        })
    }

    /// The event loop's side: what it tells the health report.
    pub fn saw_event(&self) {
        *self.last_event.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if connected {
            self.connections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reports the depth of this write queue from now on.
    pub fn watch_queue(&self, depth: Arc<AtomicUsize>) {
        *self.queue_depth.lock().unwrap_or_else(|p| p.into_inner()) = Some(depth);
    }
}

/// Whether the server answering a request has begun to stop. The server puts it on every
/// request it serves (as a request extension); `/health` answers 503 once it is set, so
/// that a load balancer sends no new work to a process that is going away. A request
/// without it (a Lambda's) comes from a server that never drains.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// From now on, and for every clone.
    pub fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn started(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
