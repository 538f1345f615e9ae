//! The guard a callback passes when a call is requested.

mod support;

use std::sync::Arc;
use std::time::Duration;

use dialer_core::domain::ValidationError;
use dialer_core::domain::webhook::CallbackUrl;
use dialer_core::webhooks::CallbackGuard;
use dialer_webhooks::{CacheSettings, Guard, Resolver, Settings};
use support::fake_dns::{FakeDns, eventually};

fn strict() -> Guard {
    Guard::new(Settings {
        resolve_timeout: Duration::from_secs(2),
        ..Settings::default()
    })
}

async fn check(guard: &Guard, raw: &str) -> Result<(), ValidationError> {
    let url = CallbackUrl::parse(raw, false).expect(raw);
    guard.check(&url).await
}

async fn refusal(raw: &str) -> ValidationError {
    check(&strict(), raw)
        .await
        .expect_err(&format!("{raw} should be refused"))
}

#[tokio::test]
async fn loopback_private_and_metadata_literals_are_refused_naming_why() {
    for (raw, why) in [
        ("https://127.0.0.1/", "is 127.0.0.1, a loopback address"),
        ("https://10.0.0.1/", "is 10.0.0.1, a private address"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "is 169.254.169.254, the cloud metadata address",
        ),
        ("https://[::1]/", "is ::1, a loopback address"),
        (
            "https://[::ffff:127.0.0.1]/",
            "is ::ffff:127.0.0.1, a loopback address",
        ),
        (
            "https://[fd00:ec2::254]/",
            "is fd00:ec2::254, the cloud metadata address",
        ),
    ] {
        let refused = refusal(raw).await;
        assert_eq!(refused.field, "status_callback", "{raw}");
        assert_eq!(refused.message, why, "{raw}");
    }
}

#[tokio::test]
async fn decimal_and_octal_spellings_of_loopback_are_refused() {
    for raw in ["https://2130706433/", "https://0177.0.0.1/"] {
        assert_eq!(
            refusal(raw).await.message,
            "is 127.0.0.1, a loopback address",
            "{raw}"
        );
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused() {
    let refused = refusal("https://localhost/hook").await;

    assert_eq!(refused.field, "status_callback");
    assert!(
        refused.message.starts_with("resolves to "),
        "{}",
        refused.message
    );
    assert!(
        refused.message.ends_with(", a loopback address"),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn a_literal_is_judged_without_connecting() {
    let receiver = support::Receiver::answering(200).await;
    let relaxed = Guard::new(Settings {
        allow_private: true,
        ..Settings::default()
    });

    check(&strict(), "https://93.184.216.34/hook")
        .await
        .expect("a public address");
    relaxed
        .check(&receiver.url("/hook"))
        .await
        .expect("loopback, allowed here");

    assert_eq!(receiver.connections(), 0);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_refused() {
    let refused = refusal("https://no-such-host.invalid/").await;

    assert_eq!(refused.field, "status_callback");
    assert!(
        refused
            .message
            .starts_with("names no-such-host.invalid, which "),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn allowing_private_addresses_lets_loopback_through_but_names_must_still_resolve() {
    let relaxed = Guard::new(Settings {
        allow_private: true,
        ..Settings::default()
    });

    for raw in [
        "https://127.0.0.1:8080/",
        "https://localhost/",
        "https://[::1]/",
    ] {
        check(&relaxed, raw).await.expect(raw);
    }
    assert!(
        check(&relaxed, "https://no-such-host.invalid/")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn ipv6_transition_forms_carrying_a_forbidden_ipv4_address_are_refused() {
    for (raw, why) in [
        (
            "https://[2002:7f00:1::]/",
            "is 2002:7f00:1::, a loopback address",
        ),
        (
            "https://[64:ff9b::a9fe:a9fe]/",
            "is 64:ff9b::a9fe:a9fe, the cloud metadata address",
        ),
        (
            "https://[::ffff:0:a00:1]/",
            "is ::ffff:0:a00:1, a private address",
        ),
        (
            "https://[2001:0:53aa:64c::1]/",
            "is 2001:0:53aa:64c::1, a Teredo tunnel address",
        ),
        (
            "https://[64:ff9b:1::808:808]/",
            "is 64:ff9b:1::808:808, a local-use NAT64 address",
        ),
        ("https://[100::1]/", "is 100::1, a discard-only address"),
        (
            "https://192.88.99.1/",
            "is 192.88.99.1, a 6to4 relay anycast address",
        ),
    ] {
        assert_eq!(refusal(raw).await.message, why, "{raw}");
    }
}

fn guard_over(dns: &Arc<FakeDns>, settings: Settings) -> Guard {
    let resolver = Resolver::new(dns.clone(), settings.dns_cache.clone());
    Guard::with_resolver(settings, resolver)
}

#[tokio::test]
async fn a_cached_private_answer_is_judged_again_on_every_check() {
    let dns = FakeDns::new();
    dns.answer("inside.example", &["93.184.216.34", "10.0.0.7"]);
    let guard = guard_over(&dns, Settings::default());

    for _ in 0..3 {
        let refused = check(&guard, "https://inside.example/hook")
            .await
            .expect_err("a private address among the answers");
        assert_eq!(refused.message, "resolves to 10.0.0.7, a private address");
    }
    assert_eq!(
        dns.lookups(),
        1,
        "the later checks were answered from the cache"
    );
}

#[tokio::test]
async fn a_name_rebound_to_loopback_is_refused_once_its_cached_answer_expires() {
    let dns = FakeDns::new();
    dns.answer("rebind.example", &["93.184.216.34"]);
    let guard = guard_over(
        &dns,
        Settings {
            dns_cache: CacheSettings {
                positive_ttl: Duration::from_millis(1),
                ..CacheSettings::default()
            },
            ..Settings::default()
        },
    );
    check(&guard, "https://rebind.example/")
        .await
        .expect("public at first");

    dns.answer("rebind.example", &["127.0.0.1"]);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let refused = check(&guard, "https://rebind.example/")
        .await
        .expect_err("loopback now");
    assert_eq!(refused.message, "resolves to 127.0.0.1, a loopback address");
}

#[tokio::test]
async fn a_callback_whose_name_hangs_is_refused_at_its_budget_and_other_callbacks_pass() {
    let dns = FakeDns::new();
    dns.hold("hung.example");
    dns.answer("fine.example", &["93.184.216.34"]);
    let guard = guard_over(
        &dns,
        Settings {
            resolve_timeout: Duration::from_millis(50),
            dns_cache: CacheSettings {
                lookup_timeout: Duration::from_secs(60),
                ..CacheSettings::default()
            },
            ..Settings::default()
        },
    );

    let refused = check(&guard, "https://hung.example/")
        .await
        .expect_err("no answer in time");
    assert_eq!(
        refused.message,
        "names hung.example, which did not resolve within 50 ms"
    );
    eventually("the hung lookup is under way", || dns.lookups() == 1).await;
    check(&guard, "https://fine.example/")
        .await
        .expect("another name resolves meanwhile");
    check(&guard, "https://93.184.216.34/")
        .await
        .expect("a literal needs no lookup");
    dns.release(1);
}
