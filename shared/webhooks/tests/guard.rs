//! The guard a callback passes when a call is requested.

use std::time::Duration;

use dialer_core::domain::ValidationError;
use dialer_core::domain::webhook::CallbackUrl;
use dialer_core::webhooks::CallbackGuard;
use dialer_webhooks::{Guard, Settings};

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
async fn a_public_literal_is_accepted_without_connecting() {
    // Nothing on this machine can reach that address: were the guard to connect, the
    // check would fail or take the whole connect timeout.
    let started = std::time::Instant::now();

    check(&strict(), "https://93.184.216.34/hook")
        .await
        .expect("a public address");

    assert!(started.elapsed() < Duration::from_millis(100));
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
