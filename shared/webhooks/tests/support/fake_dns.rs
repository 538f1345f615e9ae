//! A DNS for tests: a slow or failing resolver cannot be had on demand, so the cache is
//! driven through its lookup port instead.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dialer_webhooks::Lookup;
use tokio::sync::Semaphore;

/// Answers from its table (a name not in it does not resolve), counts lookups, and
/// holds a lookup of a name marked slow until [`FakeDns::release`] lets it go.
pub struct FakeDns {
    answers: Mutex<HashMap<String, Vec<IpAddr>>>,
    slow: Mutex<HashSet<String>>,
    gate: Semaphore,
    lookups: AtomicUsize,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl FakeDns {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::default(),
            slow: Mutex::default(),
            gate: Semaphore::new(0),
            lookups: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        })
    }

    /// From now on `name` resolves to `addresses`.
    pub fn answer(&self, name: &str, addresses: &[&str]) {
        let addresses = addresses
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect();
        self.answers
            .lock()
            .expect("answers")
            .insert(name.to_owned(), addresses);
    }

    /// Lookups of `name` wait for [`FakeDns::release`].
    pub fn hold(&self, name: &str) {
        self.slow.lock().expect("slow").insert(name.to_owned());
    }

    /// Lets `count` held lookups finish.
    pub fn release(&self, count: usize) {
        self.gate.add_permits(count);
    }

    /// Lookups started so far.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    /// The most lookups that ran at once.
    pub fn most_running(&self) -> usize {
        self.most_running.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Lookup for FakeDns {
    async fn lookup(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        let held = self.slow.lock().expect("slow").contains(name);
        if held {
            self.gate
                .acquire()
                .await
                .expect("the gate stays open")
                .forget();
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.answers
            .lock()
            .expect("answers")
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such name"))
    }
}

/// Waits until `done` holds, failing after a deadline generous enough for a loaded CI.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
