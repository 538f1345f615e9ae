//! The bridge's write queue: events wait here for the store, in order per call, so that
//! a store outage delays status writes but loses none, and a dropped WebSocket does not
//! touch what is queued. Calls are spread over a few ordered lanes by call id: one
//! slow write does not hold up every other call, and one call's events never overtake
//! each other.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use uuid::Uuid;

use super::core::CallEvents;
use dialer_ari::AriEvent;
use dialer_core::metrics::Metrics;
use dialer_core::store::StoreError;

/// How the queue retries a failed write.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
}

pub struct WriteQueue {
    lanes: Vec<mpsc::Sender<AriEvent>>,
    workers: Vec<JoinHandle<()>>,
    depth: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl WriteQueue {
    /// `capacity` events per lane; a full lane makes the reader wait (it never drops).
    pub fn start(
        events: CallEvents,
        lanes: usize,
        capacity: usize,
        retry: Retry,
        metrics: Arc<Metrics>,
    ) -> Self {
        let depth = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = Vec::with_capacity(lanes);
        for _ in 0..lanes.max(1) {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            senders.push(tx);
            workers.push(tokio::spawn(drain(
                rx,
                events.clone(),
                retry,
                depth.clone(),
                metrics.clone(),
            )));
        }
        Self {
            lanes: senders,
            workers,
            depth,
            metrics,
        }
    }

    /// Events waiting for the store, or being written.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// A handle to read the depth from elsewhere (health pages).
    pub fn depth_gauge(&self) -> Arc<AtomicUsize> {
        self.depth.clone()
    }

    /// Queues one call's event behind that call's earlier ones.
    pub async fn push(&self, call: Uuid, event: AriEvent) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        call.hash(&mut hasher);
        let lane = (hasher.finish() % self.lanes.len() as u64) as usize;
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics
            .set("dialer_bridge_queue_depth", &[], depth as f64);
        if self.lanes[lane].send(event).await.is_err() {
            // Only after `close`, which takes `self`: cannot happen.
            self.depth.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Stops taking events and writes what is queued, for at most `deadline`. Returns
    /// how many events were left unwritten.
    pub async fn close(self, deadline: Duration) -> usize {
        drop(self.lanes);
        let all = futures_util::future::join_all(self.workers);
        if tokio::time::timeout(deadline, all).await.is_err() {
            warn!(
                left = self.depth.load(Ordering::Relaxed),
                "queue not flushed before the deadline"
            );
        } else {
            info!("queue flushed");
        }
        self.depth.load(Ordering::Relaxed)
    }
}

async fn drain(
    mut events_in: mpsc::Receiver<AriEvent>,
    events: CallEvents,
    retry: Retry,
    depth: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
) {
    while let Some(event) = events_in.recv().await {
        let mut wait = retry.first;
        loop {
            match events.handle(&event).await {
                Ok(()) | Err(StoreError::Conflict) => break,
                Err(e) => {
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "store write failed; retrying");
                    tokio::time::sleep(wait + wait.mul_f64(fastrand::f64() / 4.0)).await;
                    wait = (wait * 2).min(retry.max);
                }
            }
        }
        let left = depth.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        metrics.set("dialer_bridge_queue_depth", &[], left as f64);
    }
}
