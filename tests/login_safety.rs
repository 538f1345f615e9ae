//! Tokens follow the user's current state, and the token route throttles guessing:
//! per username from one client address, per address, and per username from all
//! addresses, with counts in the store, so that every container sees the same budget;
//! a guesser slows himself, not the account's owner.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use dialer_core::domain::{ThrottleKey, ThrottlePolicy};
use dialer_core::metrics::Metrics;
use dialer_core::store::{MemoryStore, Store, ThrottleStore, UserStore};
use dialer_http::Routes;
use dialer_http::extract::ClientAddress;
use http::Request;
use integration::api::Api;
use integration::recording::RecordingPbx;
use integration::{ADMIN, Options, start_local};
use reqwest::StatusCode;
use serde_json::Value;
use tower::ServiceExt;

/// Budgets small enough to reach in a test: 3 free failures, waits up to 2 s.
const TIGHT: &[(&str, &str)] = &[
    ("LOGIN_MAX_FAILURES_PER_USER", "3"),
    ("LOGIN_MAX_BACKOFF_SECONDS", "2"),
];

async fn status_code(api: &Api, token: &str) -> StatusCode {
    api.get(token, "/api/v2/calls").await.status()
}

async fn disable(store: &Arc<dyn Store>, name: &str) {
    let mut user = store.get_user(name).await.expect("get").expect("exists");
    user.disabled = true;
    assert!(store.update_user(&user).await.expect("update"));
}

#[tokio::test]
async fn a_disabled_users_token_is_refused_at_once() {
    let server = start_local(Options {
        extra_env: vec![("AUTH_USER_CACHE_MS", "0")],
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    let token = api.token(ADMIN.0, ADMIN.1).await;
    assert_eq!(status_code(&api, &token).await, StatusCode::OK);
    disable(&server.store, ADMIN.0).await;
    assert_eq!(status_code(&api, &token).await, StatusCode::UNAUTHORIZED);
    let login = api.token_response(ADMIN.0, ADMIN.1).await;
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn a_password_reset_ends_every_earlier_token() {
    let server = start_local(Options {
        extra_env: vec![("AUTH_USER_CACHE_MS", "0")],
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    let before = api.token(ADMIN.0, ADMIN.1).await;
    let hasher = dialer_boot::password_hasher(4);
    let mut input = std::io::Cursor::new(b"a-brand-new-password\n".to_vec());
    let mut out = Vec::new();
    users::run(
        &["reset-password".into(), ADMIN.0.into()],
        &*server.store,
        &*hasher,
        &mut input,
        &mut out,
    )
    .await
    .expect("reset");
    assert_eq!(status_code(&api, &before).await, StatusCode::UNAUTHORIZED);
    let after = api.token(ADMIN.0, "a-brand-new-password").await;
    assert_eq!(status_code(&api, &after).await, StatusCode::OK);

    let mut input = std::io::Cursor::new(Vec::new());
    users::run(
        &["revoke-tokens".into(), ADMIN.0.into()],
        &*server.store,
        &*hasher,
        &mut input,
        &mut out,
    )
    .await
    .expect("revoke");
    assert_eq!(status_code(&api, &after).await, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn the_per_container_user_cache_ends_a_disabled_users_access_within_its_ttl() {
    let server = start_local(Options {
        extra_env: vec![("AUTH_USER_CACHE_MS", "300")],
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    let token = api.token(ADMIN.0, ADMIN.1).await;
    assert_eq!(status_code(&api, &token).await, StatusCode::OK);
    disable(&server.store, ADMIN.0).await;
    let disabled_at = Instant::now();
    while status_code(&api, &token).await == StatusCode::OK {
        assert!(
            disabled_at.elapsed() < Duration::from_secs(2),
            "the token still works well past the 300 ms cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_code(&api, &token).await, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn repeated_wrong_passwords_are_throttled_with_retry_after_and_doubling_waits() {
    let server = start_local(Options {
        extra_env: TIGHT.to_vec(),
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    for _ in 0..3 {
        let wrong = api.token_response(ADMIN.0, "not-the-password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // Over the budget, even the right password waits: nothing is checked meanwhile.
    let throttled = api.token_response(ADMIN.0, ADMIN.1).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(throttled.headers()["content-type"], "application/json");
    let body: Value = throttled.json().await.expect("JSON");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("try again"))
    );
    assert_eq!(body["retry_after"], 1);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let wrong = api.token_response(ADMIN.0, "not-the-password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let doubled = api.token_response(ADMIN.0, ADMIN.1).await;
    assert_eq!(doubled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(doubled.headers()["retry-after"], "2", "the wait doubled");

    // The real user gets in once the wait is over, and that clears the count.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    api.token(ADMIN.0, ADMIN.1).await;
    let wrong = api.token_response(ADMIN.0, "not-the-password").await;
    assert_eq!(
        wrong.status(),
        StatusCode::UNAUTHORIZED,
        "the count restarted"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_throttled_username_does_not_slow_other_users() {
    let server = start_local(Options {
        extra_env: TIGHT.to_vec(),
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    for _ in 0..4 {
        api.token_response("someone-else", "guess").await;
    }
    let guessed = api.token_response("someone-else", "guess").await;
    assert_eq!(guessed.status(), StatusCode::TOO_MANY_REQUESTS);
    api.token(ADMIN.0, ADMIN.1).await;
    server.stop().await;
}

/// Two routers over one store stand for two Lambda containers.
fn container(store: &Arc<MemoryStore>) -> axum::Router {
    integration::router(
        store.clone(),
        Arc::new(RecordingPbx::default()),
        Arc::new(Metrics::new()),
        &[Routes::Token],
    )
}

fn login(username: &str, password: &str, address: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/api/v2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "username={username}&password={password}"
        )))
        .expect("request");
    if let Some(address) = address {
        request
            .extensions_mut()
            .insert(ClientAddress(address.parse().expect("address")));
    }
    request
}

async fn code(router: &axum::Router, request: Request<Body>) -> u16 {
    router
        .clone()
        .oneshot(request)
        .await
        .expect("answered")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_budget_holds_across_containers_that_share_the_store() {
    let store = Arc::new(MemoryStore::new());
    let (one, two) = (container(&store), container(&store));
    // The default budget: 5 free failures per username.
    for attempt in 0..5 {
        let router = if attempt % 2 == 0 { &one } else { &two };
        assert_eq!(code(router, login("alice", "guess", None)).await, 401);
    }
    assert_eq!(code(&one, login("alice", "guess", None)).await, 429);
    assert_eq!(code(&two, login("alice", "guess", None)).await, 429);
}

#[tokio::test]
async fn one_address_guessing_many_usernames_is_throttled_and_others_are_not() {
    let store = Arc::new(MemoryStore::new());
    let router = container(&store);
    // The default budget: 20 free failures per address, any usernames.
    for n in 0..20 {
        let name = format!("user{n}");
        assert_eq!(
            code(&router, login(&name, "guess", Some("198.51.100.7"))).await,
            401
        );
    }
    assert_eq!(
        code(&router, login("fresh-name", "guess", Some("198.51.100.7"))).await,
        429
    );
    assert_eq!(
        code(&router, login("fresh-name", "guess", Some("198.51.100.8"))).await,
        401,
        "another address has its own budget"
    );
    // An IPv6 client's whole /64 is one address to the throttle.
    for n in 0..20 {
        let name = format!("v6user{n}");
        let address = format!("2001:db8:1:2::{n:x}");
        assert_eq!(
            code(&router, login(&name, "guess", Some(&address))).await,
            401
        );
    }
    assert_eq!(
        code(
            &router,
            login("v6-fresh", "guess", Some("2001:db8:1:2:ffff::1"))
        )
        .await,
        429
    );
}

#[tokio::test]
async fn the_throttle_holds_on_postgres() {
    let schema = integration::pg::fresh_schema().await;
    let server = start_local(Options {
        extra_env: TIGHT.to_vec(),
        database_url: Some(schema.url.clone()),
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    for _ in 0..3 {
        api.token_response(ADMIN.0, "not-the-password").await;
    }
    let throttled = api.token_response(ADMIN.0, ADMIN.1).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let token = {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        api.token(ADMIN.0, ADMIN.1).await
    };
    assert_eq!(status_code(&api, &token).await, StatusCode::OK);
    disable(&server.store, ADMIN.0).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(status_code(&api, &token).await, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn the_local_server_counts_failures_by_the_connections_peer_address() {
    let server = start_local(Options {
        extra_env: vec![("LOGIN_MAX_FAILURES_PER_ADDRESS", "2")],
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    for name in ["guess-one", "guess-two"] {
        let wrong = api.token_response(name, "wrong").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // A forwarded-for header is any client's to write: it changes nothing.
    let third = api
        .http
        .post(format!("{}/api/v2/token", api.base))
        .header("x-forwarded-for", "203.0.113.99")
        .form(&[("username", "guess-three"), ("password", "wrong")])
        .send()
        .await
        .expect("request");
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_sent_all_at_once_cost_only_the_budget_in_password_checks() {
    let store = Arc::new(MemoryStore::new());
    let router = container(&store);
    let guesses: Vec<_> = (0..60)
        .map(|n| {
            let router = router.clone();
            tokio::spawn(
                async move { code(&router, login("alice", &format!("guess{n}"), None)).await },
            )
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        match guess.await.expect("joined") {
            401 => checked += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    // The budget (5), plus at most one per bcrypt slot already past the second look.
    let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        (5..=5 + slots).contains(&checked),
        "{checked} of 60 guesses were checked"
    );
}

/// A client whose connections come from `address` (any of 127.0.0.0/8 reaches the
/// local server on 127.0.0.1), so that one test can speak from two addresses.
fn api_from(server: &local::Running, address: &str) -> Api {
    Api {
        base: server.api_url(),
        http: reqwest::Client::builder()
            .local_address(address.parse::<std::net::IpAddr>().expect("address"))
            .build()
            .expect("client"),
    }
}

#[tokio::test]
async fn owner_logs_in_from_their_address_during_a_password_flood_from_another_address() {
    let server = start_local(Options::default()).await;
    let owner = api_from(&server, "127.0.0.1");
    let attacker = api_from(&server, "127.0.0.2");
    let flood = tokio::spawn(async move {
        let mut answers = Vec::new();
        // Guesses until well past every budget the attacker's address has.
        for n in 0..60 {
            let guess = attacker
                .token_response(ADMIN.0, &format!("guess-{n}"))
                .await;
            let retry_after = guess
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_owned());
            answers.push((guess.status(), retry_after));
        }
        // The right password from the attacker's address waits like a guess.
        let right = attacker.token_response(ADMIN.0, ADMIN.1).await;
        (answers, right.status())
    });
    // The owner logs in again and again while the flood runs, and once after it.
    let mut logins = 0;
    while !flood.is_finished() {
        owner.token(ADMIN.0, ADMIN.1).await;
        logins += 1;
    }
    let (answers, right_from_there) = flood.await.expect("flood");
    owner.token(ADMIN.0, ADMIN.1).await;
    assert!(logins > 0);

    // The attacker got his budget of 5 checked guesses, then waits of his own: each
    // wait doubles (1 s, 2 s, 4 s ...), so only a few more of his guesses can have
    // been checked however slowly this machine ran.
    assert!(
        answers[..5]
            .iter()
            .all(|(status, _)| *status == StatusCode::UNAUTHORIZED),
        "{answers:?}"
    );
    let checked = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    assert!(checked < 15, "{checked} guesses checked: {answers:?}");
    for (status, retry_after) in &answers[5..] {
        if *status == StatusCode::TOO_MANY_REQUESTS {
            let seconds = retry_after.as_deref().and_then(|s| s.parse::<u64>().ok());
            assert!(seconds.is_some_and(|s| s >= 1), "{answers:?}");
        } else {
            assert_eq!(*status, StatusCode::UNAUTHORIZED, "{answers:?}");
        }
    }
    assert_eq!(right_from_there, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;
}

/// `alice`, with password `alice-password`, in `store`.
async fn add_alice(store: &MemoryStore) {
    use dialer_core::auth::PasswordHasher;
    let hash = dialer_passwords::Bcrypt::new(4)
        .hash("alice-password")
        .expect("hash");
    store
        .insert_user(&dialer_core::domain::User::new("alice", hash))
        .await
        .expect("insert alice");
}

async fn count(store: &MemoryStore, key: ThrottleKey<'_>) -> u32 {
    let window = ThrottlePolicy::default().window;
    store
        .failures(&key.text(), chrono::Utc::now(), window)
        .await
        .expect("read")
        .map_or(0, |c| c.failures)
}

#[tokio::test]
async fn each_address_has_its_own_small_budget_for_a_username_and_the_counts_are_in_the_store() {
    let store = Arc::new(MemoryStore::new());
    add_alice(&store).await;
    let (one, two) = (container(&store), container(&store));
    let (a, b) = ("198.51.100.1", "198.51.100.2");
    // The default budget: 5 free failures for a username from one address, counted
    // by whichever container saw them.
    for attempt in 0..5 {
        let router = if attempt % 2 == 0 { &one } else { &two };
        assert_eq!(code(router, login("alice", "guess", Some(a))).await, 401);
    }
    let throttled = one
        .clone()
        .oneshot(login("alice", "alice-password", Some(a)))
        .await
        .expect("answered");
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(code(&two, login("alice", "guess", Some(a))).await, 429);

    // Another address still has all of its own budget, and the right password.
    assert_eq!(code(&two, login("alice", "guess", Some(b))).await, 401);
    assert_eq!(
        code(&one, login("alice", "alice-password", Some(b))).await,
        200
    );
    // The first address is not slowed for other usernames: 5 of its 20 are spent.
    assert_eq!(code(&one, login("bob", "guess", Some(a))).await, 401);

    assert_eq!(
        count(&store, ThrottleKey::UserAtAddress("alice", a)).await,
        5
    );
    assert_eq!(
        count(&store, ThrottleKey::UserAtAddress("alice", b)).await,
        0,
        "the owner's login cleared their address's count"
    );
    assert_eq!(count(&store, ThrottleKey::Address(a)).await, 6);
    assert_eq!(
        count(&store, ThrottleKey::User("alice")).await,
        6,
        "a login does not clear the count over all addresses"
    );
}

#[tokio::test]
async fn past_the_usernames_ceiling_only_addresses_without_failures_for_it_are_checked() {
    let store = Arc::new(MemoryStore::new());
    add_alice(&store).await;
    let router = container(&store);
    // Guesses spread over 20 addresses, 5 each: the default ceiling of 100 failures
    // for one username from all addresses.
    for n in 0..20 {
        let address = format!("203.0.113.{n}");
        for _ in 0..5 {
            assert_eq!(
                code(&router, login("alice", "guess", Some(&address))).await,
                401
            );
        }
    }
    // Ten more addresses, one guess each, take the username well past the ceiling:
    // the wait past it doubles to 2^10 s.
    for n in 0..10 {
        let address = format!("192.0.2.{n}");
        assert_eq!(
            code(&router, login("alice", "guess", Some(&address))).await,
            401
        );
    }
    assert_eq!(count(&store, ThrottleKey::User("alice")).await, 110);
    // A new address gets one guess checked; after it, it waits.
    assert_eq!(
        code(&router, login("alice", "guess", Some("192.0.2.50"))).await,
        401
    );
    assert_eq!(
        code(&router, login("alice", "guess", Some("192.0.2.50"))).await,
        429
    );
    assert_eq!(
        code(
            &router,
            login("alice", "alice-password", Some("192.0.2.50"))
        )
        .await,
        429
    );
    // The owner, with no failure from where they are, gets in.
    assert_eq!(
        code(
            &router,
            login("alice", "alice-password", Some("192.0.2.60"))
        )
        .await,
        200
    );
    // Other usernames are not slowed from anywhere.
    assert_eq!(
        code(&router, login("bob", "guess", Some("192.0.2.50"))).await,
        401
    );
}

#[tokio::test]
async fn a_token_issued_before_a_disable_stays_ended_after_the_enable() {
    let server = start_local(Options {
        extra_env: vec![("AUTH_USER_CACHE_MS", "0")],
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    let before = api.token(ADMIN.0, ADMIN.1).await;
    assert_eq!(status_code(&api, &before).await, StatusCode::OK);
    let hasher = dialer_boot::password_hasher(4);
    for command in ["disable", "enable"] {
        let mut out = Vec::new();
        users::run(
            &[command.into(), ADMIN.0.into()],
            &*server.store,
            &*hasher,
            &mut std::io::Cursor::new(Vec::new()),
            &mut out,
        )
        .await
        .expect(command);
    }
    assert_eq!(status_code(&api, &before).await, StatusCode::UNAUTHORIZED);
    let after = api.token(ADMIN.0, ADMIN.1).await;
    assert_eq!(status_code(&api, &after).await, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn failed_and_throttled_logins_are_logged_with_username_and_address_never_a_secret() {
    use integration::binaries::Process;
    let server =
        Process::start(&[("LOG_FORMAT", "json"), ("LOGIN_MAX_FAILURES_PER_USER", "1")]).await;
    let api = Api::new(server.base_url.clone());
    let token = api.token(ADMIN.0, ADMIN.1).await;
    let guess = "a-secret-guess-0451";
    // The budget is 1; guesses until the throttle answers (each wait doubles, so it
    // does within a few, however slowly this machine runs).
    let mut wrong = 0;
    loop {
        let status = api.token_response(ADMIN.0, guess).await.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        wrong += 1;
        assert!(wrong < 10, "never throttled");
    }
    assert_eq!(
        api.token_response("nobody-here", guess).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Each line is written as it happens; allow the process time to get there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&server.log).expect("the log");
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let logins = lines
            .iter()
            .filter(|l| {
                matches!(
                    l["fields"]["message"].as_str(),
                    Some("failed login" | "login throttled")
                )
            })
            .count();
        if logins >= wrong + 2 {
            for secret in [guess, ADMIN.1, token.as_str()] {
                assert!(!text.contains(secret), "the log holds a secret:\n{text}");
            }
            break lines;
        }
        assert!(Instant::now() < deadline, "login lines missing:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fields: Vec<&Value> = lines.iter().map(|l| &l["fields"]).collect();
    let failed: Vec<_> = fields
        .iter()
        .filter(|f| f["message"] == "failed login")
        .collect();
    assert_eq!(failed.len(), wrong + 1, "{fields:?}");
    for line in &failed[..wrong] {
        assert_eq!(line["username"], ADMIN.0);
        assert_eq!(line["client"], "127.0.0.1");
        assert_eq!(line["reason"], "wrong password");
    }
    assert_eq!(failed[wrong]["username"], "nobody-here");
    assert_eq!(failed[wrong]["reason"], "unknown username");
    let throttled: Vec<_> = fields
        .iter()
        .filter(|f| f["message"] == "login throttled")
        .collect();
    assert_eq!(throttled.len(), 1, "{fields:?}");
    assert_eq!(throttled[0]["username"], ADMIN.0);
    assert_eq!(throttled[0]["client"], "127.0.0.1");
    assert!(
        throttled[0]["retry_after_seconds"]
            .as_u64()
            .is_some_and(|s| s >= 1)
    );
}
