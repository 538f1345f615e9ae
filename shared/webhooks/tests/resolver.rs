//! The resolver's cache: one lookup per name however many ask, a budget per request, a
//! cap on lookups at once, a bounded size, and answers that expire.

mod support;

use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dialer_webhooks::{CacheSettings, Lookup, NotResolved, Resolver};
use support::fake_dns::{FakeDns, eventually};

/// Long enough that nothing times out unless a test means it to.
const PATIENT: Duration = Duration::from_secs(60);

fn settings() -> CacheSettings {
    CacheSettings {
        lookup_timeout: PATIENT,
        ..CacheSettings::default()
    }
}

fn resolver(dns: &Arc<FakeDns>, settings: CacheSettings) -> Resolver {
    Resolver::new(dns.clone(), settings)
}

fn ips(addresses: &[&str]) -> Vec<IpAddr> {
    addresses
        .iter()
        .map(|a| a.parse().expect("an address"))
        .collect()
}

#[tokio::test]
async fn a_name_that_does_not_resolve_asked_for_many_times_at_once_costs_one_lookup() {
    let dns = FakeDns::new();
    dns.hold("gone.example");
    let resolver = resolver(&dns, settings());

    let asking: Vec<_> = (0..200)
        .map(|_| {
            let resolver = resolver.clone();
            tokio::spawn(async move { resolver.resolve("gone.example", PATIENT).await })
        })
        .collect();
    eventually("the lookup starts", || dns.lookups() == 1).await;
    dns.release(1);
    for answer in asking {
        let answer = answer.await.expect("a task");
        assert!(matches!(answer, Err(NotResolved::Fails(_))), "{answer:?}");
    }
    let again = resolver.resolve("gone.example", PATIENT).await;

    assert!(matches!(again, Err(NotResolved::Fails(_))), "{again:?}");
    assert_eq!(dns.lookups(), 1);
}

#[tokio::test]
async fn a_slow_lookup_of_one_name_does_not_delay_another_name() {
    let dns = FakeDns::new();
    dns.hold("slow.example");
    dns.answer("slow.example", &["203.0.113.1"]);
    dns.answer("fast.example", &["93.184.216.34"]);
    let resolver = resolver(&dns, settings());
    let slow = tokio::spawn({
        let resolver = resolver.clone();
        async move { resolver.resolve("slow.example", PATIENT).await }
    });
    eventually("the slow lookup starts", || dns.lookups() == 1).await;

    let fast = resolver.resolve("fast.example", PATIENT).await;

    assert_eq!(fast.as_deref(), Ok(&ips(&["93.184.216.34"])[..]));
    assert!(!slow.is_finished(), "the slow lookup is still held");
    dns.release(1);
    let slow = slow.await.expect("a task");
    assert_eq!(slow.as_deref(), Ok(&ips(&["203.0.113.1"])[..]));
}

#[tokio::test]
async fn a_request_waits_its_budget_only_and_the_lookup_goes_on_to_fill_the_cache() {
    let dns = FakeDns::new();
    dns.hold("late.example");
    dns.answer("late.example", &["93.184.216.34"]);
    let resolver = resolver(&dns, settings());

    let impatient = resolver
        .resolve("late.example", Duration::from_millis(50))
        .await;

    assert_eq!(
        impatient,
        Err(NotResolved::TimedOut(Duration::from_millis(50)))
    );
    dns.release(1);
    eventually("the answer is cached", || resolver.len() == 1).await;
    let later = resolver.resolve("late.example", PATIENT).await;
    assert_eq!(later.as_deref(), Ok(&ips(&["93.184.216.34"])[..]));
    assert_eq!(dns.lookups(), 1);
}

#[tokio::test]
async fn no_more_lookups_run_at_once_than_the_cap() {
    let dns = FakeDns::new();
    let names: Vec<String> = (0..6).map(|i| format!("n{i}.example")).collect();
    for name in &names {
        dns.hold(name);
        dns.answer(name, &["93.184.216.34"]);
    }
    let resolver = resolver(
        &dns,
        CacheSettings {
            max_lookups: 2,
            ..settings()
        },
    );

    let asking: Vec<_> = names
        .iter()
        .map(|name| {
            let (resolver, name) = (resolver.clone(), name.clone());
            tokio::spawn(async move { resolver.resolve(&name, PATIENT).await })
        })
        .collect();
    for released in 0..names.len() {
        let expected = (released + 2).min(names.len());
        eventually("the next lookup gets its turn", || {
            dns.lookups() == expected
        })
        .await;
        dns.release(1);
    }
    for answer in asking {
        assert!(answer.await.expect("a task").is_ok());
    }

    assert_eq!(dns.most_running(), 2);
}

#[tokio::test]
async fn the_cache_keeps_at_most_its_capacity_the_oldest_going_first() {
    let dns = FakeDns::new();
    let resolver = resolver(
        &dns,
        CacheSettings {
            capacity: 3,
            ..settings()
        },
    );

    for i in 0..10 {
        let name = format!("n{i}.example");
        dns.answer(&name, &["93.184.216.34"]);
        resolver.resolve(&name, PATIENT).await.expect("resolves");
    }

    assert_eq!(resolver.len(), 3);
    resolver
        .resolve("n9.example", PATIENT)
        .await
        .expect("cached");
    assert_eq!(dns.lookups(), 10, "the newest is still cached");
    resolver
        .resolve("n0.example", PATIENT)
        .await
        .expect("again");
    assert_eq!(dns.lookups(), 11, "the oldest was dropped");
    assert_eq!(resolver.len(), 3);
}

#[tokio::test]
async fn not_found_expires_after_its_own_ttl_while_found_addresses_stay() {
    let dns = FakeDns::new();
    dns.answer("found.example", &["93.184.216.34"]);
    let resolver = resolver(
        &dns,
        CacheSettings {
            positive_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_millis(1),
            ..settings()
        },
    );
    resolver
        .resolve("found.example", PATIENT)
        .await
        .expect("found");
    let _ = resolver.resolve("missing.example", PATIENT).await;
    assert_eq!(dns.lookups(), 2);

    tokio::time::sleep(Duration::from_millis(20)).await;
    resolver
        .resolve("found.example", PATIENT)
        .await
        .expect("found");
    let _ = resolver.resolve("missing.example", PATIENT).await;

    assert_eq!(
        dns.lookups(),
        3,
        "not found looked up again, found still cached"
    );
}

#[tokio::test]
async fn found_addresses_are_looked_up_again_after_their_ttl() {
    let dns = FakeDns::new();
    dns.answer("found.example", &["93.184.216.34"]);
    let resolver = resolver(
        &dns,
        CacheSettings {
            positive_ttl: Duration::from_millis(1),
            ..settings()
        },
    );
    resolver
        .resolve("found.example", PATIENT)
        .await
        .expect("found");

    tokio::time::sleep(Duration::from_millis(20)).await;
    resolver
        .resolve("found.example", PATIENT)
        .await
        .expect("found");

    assert_eq!(dns.lookups(), 2);
}

/// A lookup that holds a thread of tokio's blocking pool, as `getaddrinfo` does, until
/// the gate opens.
#[derive(Default)]
struct BlockingDns {
    gate: Arc<(Mutex<bool>, Condvar)>,
    started: std::sync::atomic::AtomicUsize,
}

impl BlockingDns {
    fn open(&self) {
        let (open, opened) = &*self.gate;
        *open.lock().expect("gate") = true;
        opened.notify_all();
    }
}

#[async_trait]
impl Lookup for BlockingDns {
    async fn lookup(&self, _: &str) -> std::io::Result<Vec<IpAddr>> {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let gate = self.gate.clone();
        tokio::task::spawn_blocking(move || {
            let (open, opened) = &*gate;
            let _open = opened
                .wait_while(open.lock().expect("gate"), |open| !*open)
                .expect("gate");
        })
        .await
        .map_err(std::io::Error::other)?;
        Ok(vec!["93.184.216.34".parse().expect("an address")])
    }
}

#[test]
fn stuck_lookups_of_many_names_leave_blocking_threads_for_other_routes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let dns = Arc::new(BlockingDns::default());
    let resolver = Resolver::new(
        dns.clone(),
        CacheSettings {
            max_lookups: 2,
            lookup_timeout: Duration::from_millis(100),
            ..CacheSettings::default()
        },
    );

    let hashed = runtime.block_on(async {
        for i in 0..50 {
            let answer = resolver
                .resolve(&format!("stuck{i}.example"), Duration::from_millis(10))
                .await;
            assert!(answer.is_err(), "{answer:?}");
        }
        eventually("two lookups are stuck", || {
            dns.started.load(std::sync::atomic::Ordering::SeqCst) == 2
        })
        .await;
        // What password hashing does: a turn on the blocking pool.
        tokio::time::timeout(PATIENT, tokio::task::spawn_blocking(|| "hashed")).await
    });

    dns.open();
    runtime.shutdown_timeout(PATIENT);
    assert_eq!(
        hashed.expect("a blocking thread was free").expect("ran"),
        "hashed"
    );
}
