//! Tokens follow the user's current state, and the token route throttles guessing:
//! per username and per client address, with counts in the store, so that every
//! container sees the same budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use dialer_core::metrics::Metrics;
use dialer_core::store::{MemoryStore, Store};
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
