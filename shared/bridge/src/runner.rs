//! Holds the ARI event WebSocket: connects, reconnects with backoff and jitter, detects
//! a dead connection with pings, stands by when another bridge takes the app over,
//! reconciles after every connect, sweeps calls that outlived any possible end, and
//! hands every event of one of our calls to the write queue in arrival order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use super::core::CallEvents;
use super::queue::{Retry, WriteQueue};
use super::signal::signal_of;
use dialer_ari::events::AriEvent;
use dialer_ari::{AriClient, socket};
use dialer_core::health::BridgeHealth;
use dialer_core::metrics::Metrics;

/// Timing and sizes of the event loop; the defaults suit production, tests shorten them.
#[derive(Clone, Debug)]
pub struct EventSourceTiming {
    pub ping_every: Duration,
    /// No frame at all (not even a pong) for this long means the connection is dead.
    pub silence_limit: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Another bridge took our app over: wait this long before trying again, so two
    /// bridges don't take the app from each other in a loop.
    pub replaced_wait: Duration,
    /// Reconciliation leaves pending calls this young alone (their originate may still
    /// be under way).
    pub pending_grace: Duration,
    /// How long reconciliation lets live events land before it decides from the record.
    pub settle: Duration,
    pub sweep_every: Duration,
    /// Talk-time ceiling for calls without their own `max_duration`, for the sweeper.
    pub talk_limit: Duration,
    /// How long an unconfirmed originate may show no sign of its channel before the
    /// sweeper asks the PBX whether it exists.
    pub unconfirmed_grace: Duration,
    /// On shutdown, how long queued writes may take to flush.
    pub flush_deadline: Duration,
    pub lanes: usize,
    pub lane_capacity: usize,
    pub store_retry: Retry,
}

impl Default for EventSourceTiming {
    fn default() -> Self {
        Self {
            ping_every: Duration::from_secs(15),
            silence_limit: Duration::from_secs(45),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            replaced_wait: Duration::from_secs(60),
            pending_grace: Duration::from_secs(60),
            settle: Duration::from_secs(2),
            sweep_every: Duration::from_secs(60),
            talk_limit: Duration::from_secs(4 * 60 * 60),
            unconfirmed_grace: Duration::from_secs(30),
            flush_deadline: Duration::from_secs(20),
            lanes: 8,
            lane_capacity: 10_000,
            store_retry: Retry {
                first: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
        }
    }
}

/// The event loop for one Stasis app.
pub struct EventSource {
    /// Where ARI is and the current password (read again at every connect).
    pub ari: AriClient,
    pub events: CallEvents,
    pub health: Arc<BridgeHealth>,
    pub metrics: Arc<Metrics>,
    pub timing: EventSourceTiming,
}

enum Ended {
    Dropped,
    Replaced,
    Shutdown,
}

impl EventSource {
    /// Runs until `shutdown` turns true, then stops reading, flushes the write queue
    /// (within `flush_deadline`) and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let t = &self.timing;
        let queue = WriteQueue::start(
            self.events.clone(),
            t.lanes,
            t.lane_capacity,
            t.store_retry,
            self.metrics.clone(),
        );
        self.health.watch_queue(queue.depth_gauge());
        let sweeper = tokio::spawn(sweep_forever(
            self.events.clone(),
            t.sweep_every,
            t.talk_limit,
            t.unconfirmed_grace,
        ));
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.connect().await {
                Ok(stream) => {
                    failures = 0;
                    self.set_connected(true);
                    self.metrics.inc("dialer_bridge_reconnects_total", &[]);
                    info!(app = %self.ari.settings().app, "event socket connected");
                    let ended = self.serve(stream, &queue, &mut shutdown).await;
                    self.set_connected(false);
                    match ended {
                        Ended::Shutdown => break,
                        Ended::Replaced => {
                            warn!("another bridge took over the app; standing by");
                            self.timing.replaced_wait
                        }
                        Ended::Dropped => {
                            warn!("event socket dropped; reconnecting");
                            backoff(&self.timing, 1)
                        }
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(&self.timing, failures);
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "event socket connect failed");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        sweeper.abort();
        info!(queued = queue.depth(), "stopping: flushing queued writes");
        queue.close(self.timing.flush_deadline).await;
    }

    async fn connect(&self) -> Result<socket::EventStream, String> {
        let password = self.ari.password().await.map_err(|e| e.to_string())?;
        socket::connect(self.ari.settings(), &password)
            .await
            .map_err(|e| e.to_string())
    }

    async fn serve(
        &self,
        stream: socket::EventStream,
        queue: &WriteQueue,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (mut sink, mut frames) = stream.split();
        // Reconcile beside the reading loop, not before it: events that arrive meanwhile
        // are handled as usual, and both sides only ever write conditionally.
        let reconcile = {
            let events = self.events.clone();
            let (grace, settle) = (self.timing.pending_grace, self.timing.settle);
            let connected_at = dialer_core::domain::now();
            tokio::spawn(async move {
                if let Err(e) = events.reconcile(connected_at, grace, settle).await {
                    warn!(error = %e, "reconciliation failed; it runs again at the next connect");
                }
            })
        };
        let mut ping = tokio::time::interval(self.timing.ping_every);
        let mut last_frame = Instant::now();
        let ended = loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    let _ = sink.send(Message::Close(None)).await;
                    break Ended::Shutdown;
                }
                _ = ping.tick() => {
                    if last_frame.elapsed() > self.timing.silence_limit {
                        warn!("event socket silent past its limit; treating it as dead");
                        break Ended::Dropped;
                    }
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break Ended::Dropped;
                    }
                }
                frame = frames.next() => {
                    last_frame = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if self.on_frame(&text, queue).await {
                                break Ended::Replaced;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Ended::Dropped,
                        Some(Ok(_)) => {}
                    }
                }
            }
        };
        reconcile.abort();
        ended
    }

    /// Handles one text frame; true when the app was taken over by another connection.
    async fn on_frame(&self, text: &str, queue: &WriteQueue) -> bool {
        self.health.saw_event();
        let event = match AriEvent::parse(text) {
            Ok(event) => event,
            Err(e) => {
                warn!(error = %e, "unreadable event frame skipped");
                self.metrics
                    .inc("dialer_bridge_events_total", &[("type", "malformed")]);
                return false;
            }
        };
        self.metrics
            .inc("dialer_bridge_events_total", &[("type", event.kind())]);
        if matches!(event, AriEvent::ApplicationReplaced { .. }) {
            return true;
        }
        // Only events of our calls are queued; the rest (other channels, the far half
        // of Local channels) stop here.
        if let Some((call, _)) = signal_of(&event) {
            queue.push(call, event).await;
        }
        false
    }

    fn set_connected(&self, connected: bool) {
        self.health.set_connected(connected);
        self.metrics.set(
            "dialer_bridge_connected",
            &[],
            if connected { 1.0 } else { 0.0 },
        );
    }
}

async fn sweep_forever(
    events: CallEvents,
    every: Duration,
    talk_limit: Duration,
    unconfirmed_grace: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = events.sweep(talk_limit, unconfirmed_grace).await {
            warn!(error = %e, "sweep failed; it runs again");
        }
    }
}

/// Exponential backoff with jitter in its upper half: `min * 2^(n-1)`, capped.
fn backoff(timing: &EventSourceTiming, attempt: u32) -> Duration {
    let exp = timing
        .backoff_min
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(timing.backoff_max);
    capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_its_cap() {
        let timing = EventSourceTiming::default();
        let first = backoff(&timing, 1);
        assert!(first <= timing.backoff_min && first >= timing.backoff_min / 2);
        for attempt in 1..40 {
            assert!(backoff(&timing, attempt) <= timing.backoff_max);
        }
        assert!(backoff(&timing, 10) >= timing.backoff_max / 2);
    }
}
