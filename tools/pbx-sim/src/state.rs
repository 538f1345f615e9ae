//! What the whole simulator shares: live channels, connected applications, counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::call::Command;
use crate::channel::Channel;
use crate::config::SimConfig;
use crate::events;

/// State shared by the HTTP handlers, the WebSocket sessions and the call tasks.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub channels: Mutex<HashMap<String, CallEntry>>,
    apps: Mutex<AppRegistry>,
    refuse_until: Mutex<Option<Instant>>,
    /// How long each originate and hang-up is held before it is acted on (a slow PBX).
    request_delay: Mutex<Duration>,
    originates: AtomicUsize,
    /// Each originate that created a channel: its id and when, in order; for tests of
    /// pacing (how many in any second, how many at once).
    originate_log: Mutex<Vec<(String, std::time::Instant)>>,
    /// The most channels alive at once since start.
    max_live: AtomicUsize,
    sequence: AtomicU64,
    /// Media URIs each channel has started playing, in order; kept after the channel
    /// is gone, for tests.
    played: Mutex<HashMap<String, Vec<String>>>,
    /// Playbacks started and not yet finished, by id, as `GET /playbacks/{id}` shows them.
    playing: Mutex<HashMap<String, serde_json::Value>>,
    shutdown: watch::Sender<bool>,
}

/// A live channel as seen from outside its call task.
pub(crate) struct CallEntry {
    pub commands: mpsc::UnboundedSender<Command>,
    /// The channel as its latest event showed it, for `GET /channels`.
    pub snapshot: Arc<Mutex<Channel>>,
    /// The Stasis application the channel was originated into, if any.
    pub app: Option<String>,
}

/// What a WebSocket session is told to do.
pub(crate) enum Outbound {
    Event(String),
    /// Send this `ApplicationReplaced` event, then close.
    Replaced(String),
    /// Drop the connection without a close handshake.
    Drop,
}

/// Removes a WebSocket's applications when it goes away, however it goes away.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    conn_id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = lock(&self.shared.apps);
        if let Some(conn) = registry.conns.remove(&self.conn_id) {
            for app in conn.apps {
                if registry.apps.get(&app) == Some(&self.conn_id) {
                    registry.apps.remove(&app);
                }
            }
        }
    }
}

impl Shared {
    pub(crate) fn request_delay(&self) -> Duration {
        *lock(&self.request_delay)
    }

    pub(crate) fn hold_requests(&self, delay: Duration) {
        *lock(&self.request_delay) = delay;
    }

    pub(crate) fn new(config: SimConfig) -> Self {
        Self {
            config,
            channels: Mutex::new(HashMap::new()),
            apps: Mutex::new(AppRegistry::default()),
            refuse_until: Mutex::new(None),
            request_delay: Mutex::new(Duration::ZERO),
            originates: AtomicUsize::new(0),
            originate_log: Mutex::new(Vec::new()),
            max_live: AtomicUsize::new(0),
            sequence: AtomicU64::new(0),
            played: Mutex::new(HashMap::new()),
            playing: Mutex::new(HashMap::new()),
            shutdown: watch::Sender::new(false),
        }
    }

    /// A fresh number for channel names, generated ids and playback ids.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Notes a new channel `id`, with `live` channels alive now (it included).
    pub(crate) fn count_originate(&self, id: &str, live: usize) {
        self.originates.fetch_add(1, Ordering::Relaxed);
        self.max_live.fetch_max(live, Ordering::Relaxed);
        lock(&self.originate_log).push((id.to_owned(), std::time::Instant::now()));
    }

    /// Every channel originated so far, in order, with when.
    pub(crate) fn originate_log(&self) -> Vec<(String, std::time::Instant)> {
        lock(&self.originate_log).clone()
    }

    pub(crate) fn max_live_channels(&self) -> usize {
        self.max_live.load(Ordering::Relaxed)
    }

    pub(crate) fn originate_count(&self) -> usize {
        self.originates.load(Ordering::Relaxed)
    }

    pub(crate) fn live_channels(&self) -> usize {
        lock(&self.channels).len()
    }

    /// Ids of live channels originated into `app`.
    pub(crate) fn channel_ids_of(&self, app: &str) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.channels)
            .iter()
            .filter(|(_, entry)| entry.app.as_deref() == Some(app))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Sends `event` to `app` if it has a WebSocket now; otherwise it is lost, as Asterisk
    /// keeps no backlog.
    pub(crate) fn deliver(&self, app: &str, event: Map<String, Value>) {
        let registry = lock(&self.apps);
        let Some(conn) = registry.apps.get(app).and_then(|id| registry.conns.get(id)) else {
            return;
        };
        let text = Value::Object(events::addressed(event, app)).to_string();
        // A closed session is simply an absent listener.
        let _ = conn.tx.send(Outbound::Event(text));
    }

    /// Sends a raw text frame to `app`'s WebSocket, as it is (tests use it to feed the
    /// client frames Asterisk would never send). False when nobody listens.
    pub(crate) fn inject(&self, app: &str, frame: String) -> bool {
        let registry = lock(&self.apps);
        match registry.apps.get(app).and_then(|id| registry.conns.get(id)) {
            Some(conn) => conn.tx.send(Outbound::Event(frame)).is_ok(),
            None => false,
        }
    }

    pub(crate) fn record_played(&self, channel: &str, media: &str) {
        lock(&self.played)
            .entry(channel.to_owned())
            .or_default()
            .push(media.to_owned());
    }

    /// Follows a playback from its queueing (`queued`) through its events: started,
    /// then finished.
    pub(crate) fn note_playback(&self, kind: &str, playback: &serde_json::Value) {
        let Some(id) = playback.get("id").and_then(serde_json::Value::as_str) else {
            return;
        };
        let mut playing = lock(&self.playing);
        match kind {
            "queued" | "PlaybackStarted" => {
                playing.insert(id.to_owned(), playback.clone());
            }
            "PlaybackFinished" | "dropped" => {
                playing.remove(id);
            }
            _ => {}
        }
    }

    /// A playback that has started and not finished.
    pub(crate) fn playback(&self, id: &str) -> Option<serde_json::Value> {
        lock(&self.playing).get(id).cloned()
    }

    pub(crate) fn played(&self, channel: &str) -> Vec<String> {
        lock(&self.played).get(channel).cloned().unwrap_or_default()
    }

    pub(crate) fn is_connected(&self, app: &str) -> bool {
        lock(&self.apps).apps.contains_key(app)
    }

    pub(crate) fn connected_apps(&self) -> Vec<String> {
        let mut apps: Vec<String> = lock(&self.apps).apps.keys().cloned().collect();
        apps.sort();
        apps
    }

    /// Makes a new WebSocket the listener of `apps`, telling any socket it replaces.
    pub(crate) fn register(
        self: &Arc<Self>,
        apps: &[String],
    ) -> (Registration, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut registry = lock(&self.apps);
        registry.next_id += 1;
        let conn_id = registry.next_id;
        for app in apps {
            if let Some(old_id) = registry.apps.insert(app.clone(), conn_id)
                && let Some(old) = registry.conns.get(&old_id)
            {
                let event = Value::Object(events::application_replaced(app)).to_string();
                let _ = old.tx.send(Outbound::Replaced(event));
            }
        }
        registry.conns.insert(
            conn_id,
            Conn {
                tx,
                apps: apps.to_vec(),
            },
        );
        let registration = Registration {
            shared: Arc::clone(self),
            conn_id,
        };
        (registration, rx)
    }

    /// Drops every WebSocket and refuses new ones for `refuse_for`.
    pub(crate) fn drop_connections(&self, refuse_for: Duration) {
        *lock(&self.refuse_until) = Instant::now().checked_add(refuse_for);
        let mut registry = lock(&self.apps);
        for conn in registry.conns.values() {
            let _ = conn.tx.send(Outbound::Drop);
        }
        registry.conns.clear();
        registry.apps.clear();
    }

    pub(crate) fn refusing_connections(&self) -> bool {
        lock(&self.refuse_until).is_some_and(|until| Instant::now() < until)
    }

    /// Resolves once the simulator is shutting down.
    pub(crate) fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            // A dropped sender means the simulator is gone: that is a shutdown too.
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// Locks a mutex, ignoring poisoning: every critical section leaves consistent state.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct AppRegistry {
    /// Application name → the connection listening for it.
    apps: HashMap<String, u64>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
}

struct Conn {
    tx: mpsc::UnboundedSender<Outbound>,
    apps: Vec<String>,
}
