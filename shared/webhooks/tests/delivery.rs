//! The sender against real receivers on loopback.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dialer_core::domain::webhook::{CallEvent, SendOutcome};
use dialer_core::webhooks::WebhookSender;
use dialer_http::dto::CallView;
use dialer_webhooks::{CacheSettings, Resolver, Sender, Settings, USER_AGENT, event_body};
use hmac::{Hmac, Mac};
use rustls::RootCertStore;
use serde_json::{Value, json};
use support::fake_dns::FakeDns;
use support::{Receiver, closed_port, dtmf_event, first_event, status_event, test_roots, url};

fn local() -> Settings {
    Settings {
        allow_private: true,
        ..Settings::default()
    }
}

fn sender(settings: Settings) -> Sender {
    Sender::with_roots(settings, test_roots()).expect("a sender")
}

async fn send_to(receiver: &Receiver, event: &CallEvent) -> SendOutcome {
    let call_id = event.call.id;
    sender(local())
        .send(&receiver.url("/hook"), call_id, event, &["secret"])
        .await
}

/// What a receiver does, as the README tells it: split the header, recompute the hex
/// HMAC-SHA256 of `"{t}.{raw body}"`, compare.
fn verify(header: &str, secret: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => signatures.push(value),
            _ => return false,
        }
    }
    let Some(t) = t else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    signatures.contains(&expected.as_str())
}

fn signed_at(header: &str) -> i64 {
    header
        .split(',')
        .find_map(|part| part.strip_prefix("t="))
        .expect("a t=")
        .parse()
        .expect("unix seconds")
}

#[tokio::test]
async fn the_signature_verifies_with_the_documented_recipe() {
    let receiver = Receiver::answering(200).await;
    let event = status_event();
    let before = chrono::Utc::now().timestamp();

    let outcome = send_to(&receiver, &event).await;

    assert_eq!(outcome, SendOutcome::Delivered { status: 200 });
    let seen = receiver.seen();
    let header = seen[0].header("dialer-signature");
    assert!(verify(header, "secret", &seen[0].body), "{header}");
    assert!(!verify(header, "another secret", &seen[0].body));
    let t = signed_at(header);
    assert!(t >= before && t <= chrono::Utc::now().timestamp(), "t={t}");
}

#[tokio::test]
async fn with_two_secrets_both_signatures_are_sent_and_each_verifies() {
    let receiver = Receiver::answering(204).await;
    let event = status_event();

    let outcome = sender(local())
        .send(
            &receiver.url("/"),
            event.call.id,
            &event,
            &["current", "previous"],
        )
        .await;

    assert_eq!(outcome, SendOutcome::Delivered { status: 204 });
    let seen = receiver.seen();
    let header = seen[0].header("dialer-signature");
    assert_eq!(header.matches("v1=").count(), 2, "{header}");
    assert!(verify(header, "current", &seen[0].body));
    assert!(verify(header, "previous", &seen[0].body));
}

#[tokio::test]
async fn the_body_carries_the_event_and_the_calls_status_document() {
    let receiver = Receiver::answering(200).await;
    let event = status_event();

    send_to(&receiver, &event).await;

    let body: Value = serde_json::from_slice(&receiver.seen()[0].body).expect("JSON");
    assert_eq!(
        body,
        json!({
            "event_id": event.event_id,
            "call_id": event.call.id,
            "sequence": 3,
            "type": "status",
            "status": "answered",
            "previous_status": "ringing",
            "at": dialer_http::dto::rfc3339(event.at),
            "attempt_number": 2,
            "call": serde_json::to_value(CallView::from(&*event.call)).expect("the view"),
        })
    );
    let at = body["at"].as_str().expect("a time");
    assert!(
        at.ends_with('Z') && at.len() == "2026-01-01T00:00:00.000Z".len(),
        "{at}"
    );
    assert_eq!(body["call"]["status"], "answered");
}

#[test]
fn the_first_event_has_a_null_previous_status() {
    let event = first_event();
    let body: Value = serde_json::from_slice(&event_body(event.call.id, &event)).expect("JSON");
    assert_eq!(body["previous_status"], Value::Null);
    assert!(
        body.as_object()
            .expect("an object")
            .contains_key("previous_status")
    );
    assert!(!body.as_object().expect("an object").contains_key("digit"));
}

#[test]
fn a_dtmf_event_carries_its_digit() {
    let event = dtmf_event('7');
    let body: Value = serde_json::from_slice(&event_body(event.call.id, &event)).expect("JSON");
    assert_eq!(body["type"], "dtmf");
    assert_eq!(body["digit"], "7");
    assert_eq!(body["call"]["dtmf"], "7");
}

#[tokio::test]
async fn the_request_is_a_json_post_to_the_url_naming_its_event_agent_and_host() {
    let receiver = Receiver::answering(200).await;
    let event = status_event();
    let hook = receiver.url("/hooks/dialer?token=abc");

    sender(local())
        .send(&hook, event.call.id, &event, &["secret"])
        .await;

    let seen = &receiver.seen()[0];
    assert_eq!(seen.method, hyper::Method::POST);
    assert_eq!(seen.target, "/hooks/dialer?token=abc");
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header("user-agent"), USER_AGENT);
    assert!(USER_AGENT.starts_with("dialer-webhooks/"));
    assert_eq!(seen.header("dialer-event-id"), event.event_id.to_string());
    assert_eq!(seen.header("host"), receiver.addr.to_string());
    assert_eq!(
        seen.header("content-length"),
        seen.body.len().to_string().as_str()
    );
}

#[tokio::test]
async fn two_hundreds_are_delivered() {
    for status in [200, 204] {
        let receiver = Receiver::answering(status).await;
        assert_eq!(
            send_to(&receiver, &status_event()).await,
            SendOutcome::Delivered { status },
        );
    }
}

#[tokio::test]
async fn server_errors_throttling_and_request_timeouts_are_retried() {
    for status in [500, 503, 429, 408] {
        let receiver = Receiver::answering(status).await;
        let outcome = send_to(&receiver, &status_event()).await;
        assert!(
            matches!(outcome, SendOutcome::Retry { status: Some(s), .. } if s == status),
            "{status}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn other_client_errors_are_rejected() {
    for status in [404, 400] {
        let receiver = Receiver::answering(status).await;
        assert_eq!(
            send_to(&receiver, &status_event()).await,
            SendOutcome::Rejected { status },
        );
    }
}

#[tokio::test]
async fn a_redirect_is_rejected_and_not_followed() {
    let elsewhere = Receiver::answering(200).await;
    let location = format!("http://{}/elsewhere", elsewhere.addr);
    let receiver = Receiver::answering_with(302, vec![("location", location)]).await;

    let outcome = send_to(&receiver, &status_event()).await;

    assert_eq!(outcome, SendOutcome::Rejected { status: 302 });
    assert_eq!(receiver.seen().len(), 1);
    assert_eq!(elsewhere.connections(), 0);
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_retried_in_time_without_holding_up_another_send() {
    let silent = Receiver::silent().await;
    let prompt = Receiver::answering(200).await;
    // Long enough that the prompt send, which takes milliseconds, ends well before it
    // even on a loaded machine: what is checked is the order, not a duration.
    let sender = Arc::new(sender(Settings {
        request_timeout: Duration::from_secs(5),
        ..local()
    }));
    let started = Instant::now();
    let send = |url, sender: Arc<Sender>| {
        let event = status_event();
        tokio::spawn(async move {
            let outcome = sender.send(&url, event.call.id, &event, &["secret"]).await;
            (outcome, started.elapsed())
        })
    };

    let stuck = send(silent.url("/"), sender.clone());
    let quick = send(prompt.url("/"), sender.clone());
    let quick = quick.await.expect("a task");
    assert_eq!(quick.0, SendOutcome::Delivered { status: 200 });
    assert!(
        !stuck.is_finished(),
        "the prompt send waited for the silent one ({:?})",
        quick.1
    );
    let stuck = stuck.await.expect("a task");

    let (
        SendOutcome::Retry {
            status: None,
            error,
        },
        stuck_took,
    ) = stuck
    else {
        panic!("not a retry: {stuck:?}");
    };
    assert!(error.contains("no answer within 5000 ms"), "{error}");
    // Never before its timeout; and it does end (a generous bound, not a measure).
    assert!(
        stuck_took >= Duration::from_secs(5) && stuck_took < Duration::from_secs(60),
        "{stuck_took:?}"
    );
    assert_eq!(silent.connections(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    let port = closed_port().await;
    let event = status_event();

    let outcome = sender(local())
        .send(
            &url(&format!("http://127.0.0.1:{port}/")),
            event.call.id,
            &event,
            &["s"],
        )
        .await;

    let SendOutcome::Retry {
        status: None,
        error,
    } = outcome
    else {
        panic!("not a retry: {outcome:?}");
    };
    assert!(error.starts_with("could not connect"), "{error}");
}

#[tokio::test]
async fn a_loopback_receiver_is_not_contacted_unless_private_addresses_are_allowed() {
    let receiver = Receiver::answering(200).await;
    let event = status_event();
    let strict = sender(Settings::default());
    let by_name = url(&format!("http://localhost:{}/", receiver.addr.port()));

    for hook in [receiver.url("/"), by_name] {
        let outcome = strict.send(&hook, event.call.id, &event, &["s"]).await;
        let SendOutcome::Retry {
            status: None,
            error,
        } = outcome
        else {
            panic!("{hook:?}: not a retry: {outcome:?}");
        };
        assert!(error.contains("a loopback address"), "{error}");
    }

    assert_eq!(receiver.connections(), 0);
}

#[tokio::test]
async fn a_name_resolved_through_the_cache_is_judged_and_connected_to_as_resolved() {
    let receiver = Receiver::answering(200).await;
    let event = status_event();
    let dns = FakeDns::new();
    dns.answer("hooks.example", &["127.0.0.1"]);
    let hook = url(&format!("http://hooks.example:{}/", receiver.addr.port()));
    let through_cache = |settings: Settings| {
        sender(settings).resolving_with(Resolver::new(dns.clone(), CacheSettings::default()))
    };

    let strict = through_cache(Settings::default())
        .send(&hook, event.call.id, &event, &["s"])
        .await;
    let relaxed = through_cache(local())
        .send(&hook, event.call.id, &event, &["s"])
        .await;

    let SendOutcome::Retry {
        status: None,
        error,
    } = strict
    else {
        panic!("not a retry: {strict:?}");
    };
    assert_eq!(
        error,
        "not sent: the callback resolves to 127.0.0.1, a loopback address"
    );
    assert_eq!(relaxed, SendOutcome::Delivered { status: 200 });
    assert_eq!(receiver.connections(), 1);
    assert_eq!(
        dns.lookups(),
        2,
        "one lookup per sender, each with its own cache"
    );
}

#[tokio::test]
async fn https_is_delivered_to_a_trusted_certificate_with_the_urls_host_as_the_server_name() {
    let receiver = Receiver::tls(200).await;
    let event = status_event();

    let outcome = sender(local())
        .send(
            &receiver.https_url("/hook"),
            event.call.id,
            &event,
            &["secret"],
        )
        .await;

    assert_eq!(outcome, SendOutcome::Delivered { status: 200 });
    let seen = &receiver.seen()[0];
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(
        seen.header("host"),
        format!("localhost:{}", receiver.addr.port())
    );
    assert!(verify(
        seen.header("dialer-signature"),
        "secret",
        &seen.body
    ));
}

#[tokio::test]
async fn an_untrusted_certificate_is_retried_and_nothing_is_sent() {
    let receiver = Receiver::tls(200).await;
    let event = status_event();
    let trusting_nothing = Sender::with_roots(local(), RootCertStore::empty()).expect("a sender");

    let outcome = trusting_nothing
        .send(&receiver.https_url("/"), event.call.id, &event, &["s"])
        .await;

    let SendOutcome::Retry {
        status: None,
        error,
    } = outcome
    else {
        panic!("not a retry: {outcome:?}");
    };
    assert!(error.starts_with("TLS with the receiver failed"), "{error}");
    assert!(receiver.seen().is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_retried_and_nothing_is_sent() {
    let receiver = Receiver::tls(200).await;
    let event = status_event();
    let by_address = url(&format!("https://{}/", receiver.addr));

    let outcome = sender(local())
        .send(&by_address, event.call.id, &event, &["s"])
        .await;

    let SendOutcome::Retry {
        status: None,
        error,
    } = outcome
    else {
        panic!("not a retry: {outcome:?}");
    };
    assert!(error.contains("not valid for name"), "{error}");
    assert!(receiver.seen().is_empty());
}

#[tokio::test]
async fn the_platform_roots_load() {
    assert!(Sender::new(Settings::default()).is_ok());
}
