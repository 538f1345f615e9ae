//! Names resolved off the request path: a bounded cache of answers, one lookup per name
//! at a time however many requests ask, a cap on lookups running at once, and a budget
//! per request.
//!
//! The system resolver (`getaddrinfo`) blocks a thread of tokio's blocking pool for as
//! long as it takes, which for a name that does not resolve can be seconds. Without
//! this, every request naming such a host paid those seconds and held one of those
//! threads, which other routes (password hashing) need too.
//!
//! The cache keeps addresses, never a verdict: whoever asks judges the addresses each
//! time, and the sender connects to the very addresses it judged, so a cached answer
//! cannot carry a name past the address rules (nor a rebinding past the sender).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// How a name is looked up: the system resolver in service, a fake in tests (a slow DNS
/// cannot be had on demand).
#[async_trait]
pub trait Lookup: Send + Sync {
    /// The addresses `name` resolves to, in the resolver's order.
    async fn lookup(&self, name: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver, through tokio (one blocking thread per lookup).
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        let found = tokio::net::lookup_host((name, 0)).await?;
        Ok(found.map(|address| address.ip()).collect())
    }
}

/// The cache's bounds.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Names kept at most; past it the oldest answer goes.
    pub capacity: usize,
    /// How long addresses found are used (the system resolver does not tell a record's
    /// own TTL).
    pub positive_ttl: Duration,
    /// How long "does not resolve" (or "did not resolve in time") is used.
    pub negative_ttl: Duration,
    /// Lookups running at once, all names together; more wait for a turn.
    pub max_lookups: usize,
    /// How long a lookup may take, its wait for a turn included, before its name is
    /// taken as not resolving. The lookup itself goes on (a system lookup cannot be
    /// stopped) and holds its turn until it ends; its answer, when it comes, is cached.
    pub lookup_timeout: Duration,
}

impl Default for CacheSettings {
    /// 10,000 names; found kept 60 s, not found 10 s; 8 lookups at once, 3 s each.
    fn default() -> Self {
        Self {
            capacity: 10_000,
            positive_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            max_lookups: 8,
            lookup_timeout: Duration::from_secs(3),
        }
    }
}

/// Why a name gave no address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotResolved {
    /// The resolver said so (its message).
    Fails(String),
    /// It answered with no address.
    NoAddress,
    /// No answer within this long: the lookup's own timeout, or the request's budget.
    TimedOut(Duration),
    /// Every lookup turn stayed taken for the whole timeout; says nothing of the name,
    /// so it is not cached.
    Busy,
    /// The lookup ended without an answer (its task was stopped).
    Lost,
}

impl std::fmt::Display for NotResolved {
    /// Worded to follow "names NAME, which ".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotResolved::Fails(why) => write!(f, "does not resolve ({why})"),
            NotResolved::NoAddress => f.write_str("resolves to no address"),
            NotResolved::TimedOut(after) => {
                write!(f, "did not resolve within {} ms", after.as_millis())
            }
            NotResolved::Busy => f.write_str("could not be looked up now (too many lookups)"),
            NotResolved::Lost => f.write_str("could not be looked up (the lookup stopped)"),
        }
    }
}

/// What a lookup came to: the addresses, deduplicated, in the resolver's order.
pub type Answer = Result<Arc<[IpAddr]>, NotResolved>;

/// The cache and its lookups; clones share them.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

impl Resolver {
    /// Through the system resolver.
    pub fn system(settings: CacheSettings) -> Self {
        Self::new(Arc::new(SystemLookup), settings)
    }

    pub fn new(lookup: Arc<dyn Lookup>, settings: CacheSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                lookup,
                turns: Semaphore::new(settings.max_lookups.max(1)),
                settings,
                cache: Mutex::new(Cache::default()),
            }),
        }
    }

    /// `name`'s addresses: from the cache, or from the lookup already under way for it,
    /// or from a new one. Waits `budget` at most; a lookup still running then goes on in
    /// the background and its answer is cached for the next request.
    pub async fn resolve(&self, name: &str, budget: Duration) -> Answer {
        let mut answer = {
            let mut cache = self.inner.cache();
            if let Some(entry) = cache.entries.get(name)
                && entry.expires > Instant::now()
            {
                return entry.answer.clone();
            }
            match cache.flights.get(name) {
                Some(flight) => flight.answer.clone(),
                None => self.inner.start(&mut cache, name),
            }
        };
        let waited = tokio::time::timeout(budget, answer.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(found)) => found.clone().unwrap_or(Err(NotResolved::Lost)),
            Ok(Err(_)) => Err(NotResolved::Lost),
            Err(_) => Err(NotResolved::TimedOut(budget)),
        }
    }

    /// Names cached, expired ones not yet replaced included.
    pub fn len(&self) -> usize {
        self.inner.cache().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Inner {
    lookup: Arc<dyn Lookup>,
    /// One permit per lookup running.
    turns: Semaphore,
    settings: CacheSettings,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    /// Names in the order they were cached, each with the stamp of that write; an
    /// entry cached again since has a newer stamp, and its old place here is stale.
    order: VecDeque<(String, u64)>,
    flights: HashMap<String, Flight>,
    /// Counts writes and flights, to tell one from the next.
    stamp: u64,
}

struct Entry {
    answer: Answer,
    expires: Instant,
    stamp: u64,
}

/// A lookup under way: everyone asking for its name waits on the same answer.
struct Flight {
    id: u64,
    answer: watch::Receiver<Option<Answer>>,
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        // Nothing in the cache is left half-written by a panic: every change is one
        // map operation.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start(self: &Arc<Self>, cache: &mut Cache, name: &str) -> watch::Receiver<Option<Answer>> {
        let (sender, answer) = watch::channel(None);
        cache.stamp += 1;
        let id = cache.stamp;
        cache.flights.insert(
            name.to_owned(),
            Flight {
                id,
                answer: answer.clone(),
            },
        );
        tokio::spawn(Arc::clone(self).fly(name.to_owned(), id, sender));
        answer
    }

    /// One lookup of `name`, for whoever waits on flight `id`.
    async fn fly(self: Arc<Self>, name: String, id: u64, sender: watch::Sender<Option<Answer>>) {
        let _landed = Landed {
            inner: &self,
            name: &name,
            id,
        };
        let timeout = self.settings.lookup_timeout;
        let deadline = Instant::now() + timeout;
        let Ok(Ok(_turn)) = tokio::time::timeout_at(deadline, self.turns.acquire()).await else {
            self.land(&name, id, &sender, Err(NotResolved::Busy));
            return;
        };
        let mut lookup = self.lookup.lookup(&name);
        match tokio::time::timeout_at(deadline, &mut lookup).await {
            Ok(found) => self.land(&name, id, &sender, answer_of(found)),
            Err(_) => {
                self.land(&name, id, &sender, Err(NotResolved::TimedOut(timeout)));
                // The turn is held until the resolver gives up: a stuck system lookup
                // still holds its blocking thread, and the cap is on those threads.
                let late = lookup.await;
                let mut cache = self.cache();
                self.store(&mut cache, &name, answer_of(late));
            }
        }
    }

    /// Caches `answer` (unless it says nothing of the name), ends the flight and hands
    /// the answer to those waiting.
    fn land(&self, name: &str, id: u64, sender: &watch::Sender<Option<Answer>>, answer: Answer) {
        {
            let mut cache = self.cache();
            if !matches!(answer, Err(NotResolved::Busy | NotResolved::Lost)) {
                self.store(&mut cache, name, answer.clone());
            }
            cache.end_flight(name, id);
        }
        sender.send_replace(Some(answer));
    }

    fn store(&self, cache: &mut Cache, name: &str, answer: Answer) {
        let ttl = match answer {
            Ok(_) => self.settings.positive_ttl,
            Err(_) => self.settings.negative_ttl,
        };
        cache.insert(name, answer, Instant::now() + ttl, self.settings.capacity);
    }
}

impl Cache {
    /// Caches `answer` for `name`, the oldest names going past `capacity`.
    fn insert(&mut self, name: &str, answer: Answer, expires: Instant, capacity: usize) {
        self.stamp += 1;
        let stamp = self.stamp;
        self.entries.insert(
            name.to_owned(),
            Entry {
                answer,
                expires,
                stamp,
            },
        );
        self.order.push_back((name.to_owned(), stamp));
        while self.entries.len() > capacity {
            let Some((oldest, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&oldest).is_some_and(|e| e.stamp == stamp) {
                self.entries.remove(&oldest);
            }
        }
        // Names cached again leave stale places behind; drop them before they pile up.
        if self.order.len() > 2 * capacity.max(1) {
            let entries = &self.entries;
            self.order
                .retain(|(name, stamp)| entries.get(name).is_some_and(|e| e.stamp == *stamp));
        }
    }

    fn end_flight(&mut self, name: &str, id: u64) {
        if self.flights.get(name).is_some_and(|flight| flight.id == id) {
            self.flights.remove(name);
        }
    }
}

/// Ends flight `id` however its task ends (a panicking lookup, a runtime shutting down),
/// so that the next request for the name starts a lookup instead of waiting on a
/// flight that will never land.
struct Landed<'a> {
    inner: &'a Inner,
    name: &'a str,
    id: u64,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        self.inner.cache().end_flight(self.name, self.id);
    }
}

fn answer_of(found: io::Result<Vec<IpAddr>>) -> Answer {
    let found = found.map_err(|e| NotResolved::Fails(e.to_string()))?;
    let mut addresses = Vec::with_capacity(found.len());
    for address in found {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    if addresses.is_empty() {
        return Err(NotResolved::NoAddress);
    }
    Ok(addresses.into())
}
