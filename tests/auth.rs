//! Authentication: every bad token is a 401 with `WWW-Authenticate: Bearer`, users see
//! only their own calls, and a wrong password looks exactly like an unknown user.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use dialer_core::auth::PasswordHasher;
use dialer_core::domain::User;
use dialer_passwords::Bcrypt;
use integration::api::Api;
use integration::{ADMIN, Options, SECRET_KEY, start_local};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

const AUDIENCE: &str = "dialer-api";
const ISSUER: &str = "dialer-tests";

fn forged(key: &str, algorithm: Algorithm, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("encode")
}

fn claims(exp_offset: i64, aud: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({ "sub": ADMIN.0, "iat": now, "exp": now + exp_offset, "ver": 0, "iss": ISSUER, "aud": aud })
}

/// Valid claims with some changed.
fn claims_with(changes: Value) -> Value {
    let mut claims = claims(600, AUDIENCE);
    for (name, value) in changes.as_object().expect("object") {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn with_header(header: Header, claims: &Value) -> String {
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(SECRET_KEY.as_bytes()),
    )
    .expect("encode")
}

fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

async fn assert_unauthorized(response: reqwest::Response, case: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(response.headers()["www-authenticate"], "Bearer", "{case}");
    let body: Value = response.json().await.expect("JSON body");
    assert!(body["detail"].is_string(), "{case}: {body}");
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_401() {
    let server = start_local(Options {
        extra_env: vec![
            ("JWT_AUDIENCE", AUDIENCE),
            ("JWT_ISSUER", ISSUER),
            // Ten minutes: the lifetime a token may claim.
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "10"),
        ],
        ..Options::default()
    })
    .await;
    let api = Api::new(server.api_url());
    let good = api.token(ADMIN.0, ADMIN.1).await;
    let id = api.call(&good, "+15550020001", json!({})).await;
    let path = format!("/api/v2/status/{id}");
    assert_eq!(api.get(&good, &path).await.status(), StatusCode::OK);

    let no_token = api
        .http
        .get(format!("{}{path}", api.base))
        .send()
        .await
        .expect("request");
    assert_unauthorized(no_token, "no token").await;
    let basic = api
        .http
        .get(format!("{}{path}", api.base))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .expect("request");
    assert_unauthorized(basic, "basic auth instead of a bearer token").await;

    let long_secret = "a-different-secret-key-of-decent-length";
    let cases = [
        ("garbage", "not-a-jwt".to_owned()),
        (
            "expired",
            forged(SECRET_KEY, Algorithm::HS256, claims(-1, AUDIENCE)),
        ),
        (
            "wrong key",
            forged(long_secret, Algorithm::HS256, claims(600, AUDIENCE)),
        ),
        ("alg none", unsigned(&claims(600, AUDIENCE))),
        (
            "wrong algorithm",
            forged(SECRET_KEY, Algorithm::HS512, claims(600, AUDIENCE)),
        ),
        (
            "wrong audience",
            forged(SECRET_KEY, Algorithm::HS256, claims(600, "someone-else")),
        ),
        ("tampered", format!("{}x", &good[..good.len() - 1])),
    ];
    let now = Utc::now().timestamp();
    let year = 365 * 24 * 3600;
    let sign = |claims: Value| forged(SECRET_KEY, Algorithm::HS256, claims);
    let mut crit = Header::new(Algorithm::HS256);
    crit.crit = Some(vec!["exp-unknown".into()]);
    crit.extras.insert("exp-unknown", 1);
    let mut kid = Header::new(Algorithm::HS256);
    kid.kid = Some("some-other-key".into());
    let loose = [
        (
            "nbf in the future",
            sign(claims_with(json!({ "nbf": now + 300 }))),
        ),
        (
            "iat a year ahead",
            sign(claims_with(
                json!({ "iat": now + year, "exp": now + year + 600 }),
            )),
        ),
        (
            "iat after exp",
            sign(claims_with(json!({ "iat": now + 60, "exp": now + 30 }))),
        ),
        (
            "exp 1,000 years out",
            sign(claims_with(json!({ "exp": now + 1000 * year }))),
        ),
        (
            "lifetime over the configured one",
            sign(claims_with(json!({ "iat": now - 60, "exp": now + 3600 }))),
        ),
        ("no iat", sign(claims_with(json!({ "iat": null })))),
        (
            "no token version",
            sign(claims_with(json!({ "ver": null }))),
        ),
        (
            "an older token version",
            sign(claims_with(json!({ "ver": 1 }))),
        ),
        (
            "a user that does not exist",
            sign(claims_with(json!({ "sub": "ghost" }))),
        ),
        (
            "an unknown crit header",
            with_header(crit, &claims(600, AUDIENCE)),
        ),
        (
            "a kid we do not use",
            with_header(kid, &claims(600, AUDIENCE)),
        ),
    ];
    let cases = cases.into_iter().chain(loose);
    for (case, token) in cases {
        assert_unauthorized(api.get(&token, &path).await, case).await;
    }
    let valid_forgery = forged(SECRET_KEY, Algorithm::HS256, claims(600, AUDIENCE));
    assert_eq!(
        api.get(&valid_forgery, &path).await.status(),
        StatusCode::OK,
        "control: a correct token passes"
    );
    server.stop().await;
}

#[tokio::test]
async fn another_users_call_is_not_found() {
    let server = start_local(Options::default()).await;
    let hasher = Bcrypt::new(4);
    server
        .store
        .insert_user(&User::new(
            "bob",
            hasher.hash("bobs-password").expect("hash"),
        ))
        .await
        .expect("insert bob");
    let api = Api::new(server.api_url());
    let admin = api.token(ADMIN.0, ADMIN.1).await;
    let bob = api.token("bob", "bobs-password").await;
    let id = api.call(&admin, "+15550020001", json!({})).await;
    for path in [
        format!("/api/v2/status/{id}"),
        format!("/api/v2/calls/{id}"),
    ] {
        let response = api.get(&bob, &path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["detail"], "call not found");
    }
    let unknown = api
        .get(&bob, "/api/v2/status/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let cancel = api.delete(&bob, &format!("/api/v2/calls/{id}")).await;
    assert_eq!(cancel.status(), StatusCode::NOT_FOUND);
    let list: Value = api
        .get(&bob, "/api/v2/calls")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["calls"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_the_same() {
    let server = start_local(Options::default()).await;
    let api = Api::new(server.api_url());
    let wrong = api.token_response(ADMIN.0, "not-the-password").await;
    let unknown = api.token_response("nobody", "not-the-password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.headers()["www-authenticate"],
        unknown.headers()["www-authenticate"]
    );
    let (wrong, unknown): (Value, Value) = (
        wrong.json().await.expect("json"),
        unknown.json().await.expect("json"),
    );
    assert_eq!(wrong, unknown);
    server.stop().await;
}

#[tokio::test]
async fn token_response_is_the_original_shape() {
    let server = start_local(Options::default()).await;
    let api = Api::new(server.api_url());
    let response = api.token_response(ADMIN.0, ADMIN.1).await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "bearer");
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0));
    let json_body = api
        .http
        .post(format!("{}/api/v2/token", api.base))
        .json(&json!({ "username": ADMIN.0, "password": ADMIN.1 }))
        .send()
        .await
        .expect("request");
    assert_eq!(json_body.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let missing = api
        .http
        .post(format!("{}/api/v2/token", api.base))
        .form(&[("username", ADMIN.0)])
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    server.stop().await;
}
