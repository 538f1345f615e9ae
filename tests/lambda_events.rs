//! Every API Gateway event in `events/` through the real handler of the function it
//! belongs to (`events/<function>/…`), in process: the event is decoded and answered by
//! `lambda_http` exactly as in a Lambda container, with DynamoDB on moto and the
//! simulated PBX behind ARI. `events/expected.json` holds each event's status code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use dialer_ari::socket;
use dialer_boot::Platform;
use dialer_boot::settings::{OriginateFunction, StatusFunction, TokenFunction, Vars};
use dialer_core::auth::PasswordHasher;
use dialer_core::domain::{CallPolicy, CallRequest, User, now};
use dialer_core::store::{CallStore, UserStore};
use dialer_passwords::Bcrypt;
use lambda_http::Adapter;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use pbx_sim::SimConfig;
use serde_json::Value;
use tower::Service;
use uuid::Uuid;

/// The key the sample events' tokens are signed with (documented in the README for
/// `cargo lambda invoke`); never a production key.
const EVENTS_KEY: &str = "local-events-secret-key-0123456789";
const EVENTS_CALL: &str = "7d0c1f3e-0000-4000-8000-000000000001";

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn expectations() -> BTreeMap<String, u16> {
    let text = std::fs::read_to_string(events_dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is a map of file to status")
}

/// Functions whose events are not API Gateway's (`notify`: DynamoDB Streams and SQS;
/// `notify_events.rs` feeds them to it).
const NOT_API_GATEWAY: &[&str] = &["notify"];

fn event_files() -> Vec<String> {
    let mut files = Vec::new();
    for function in std::fs::read_dir(events_dir())
        .expect("events dir")
        .flatten()
    {
        let name = function.file_name().to_string_lossy().into_owned();
        if !function.path().is_dir() || NOT_API_GATEWAY.contains(&name.as_str()) {
            continue;
        }
        for file in std::fs::read_dir(function.path())
            .expect("function dir")
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                files.push(format!("{}/{name}", function.file_name().to_string_lossy()));
            }
        }
    }
    files.sort();
    files
}

/// The function's router, as its `main` builds it: settings from the environment, then
/// the composition root's builder for that function.
async fn router_of(function: &str, env: &Vars<'_>, platform: &Platform) -> axum::Router {
    let built = match function {
        "token" => {
            dialer_boot::token_api(&TokenFunction::from_env(env).expect("settings"), platform).await
        }
        "originate" => {
            let settings = OriginateFunction::from_env(env).expect("settings");
            dialer_boot::originate_api(&settings, platform).await
        }
        "status" => {
            dialer_boot::status_api(&StatusFunction::from_env(env).expect("settings"), platform)
                .await
        }
        other => panic!("events/{other}: not a function of this workspace"),
    };
    dialer_boot::lambda::behind_api_gateway(built.expect("app"))
}

#[test]
fn every_event_file_has_an_expectation_and_every_expectation_a_file() {
    let files = event_files();
    let expected: Vec<String> = expectations().into_keys().collect();
    assert_eq!(files, expected);
    for function in ["token", "originate", "status"] {
        assert!(
            files.iter().any(|f| f.starts_with(&format!("{function}/"))),
            "{function} has events"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_gets_its_expected_answer_from_its_function_on_dynamodb() {
    let (store, tables, aws) = integration::aws::dynamo_store().await;
    let tables = [
        ("CALLS_TABLE", tables.calls.as_str()),
        ("USERS_TABLE", tables.users.as_str()),
    ];
    events_through_handlers(&store, &aws, &tables).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_gets_its_expected_answer_from_its_function_on_postgres() {
    let schema = integration::pg::fresh_schema().await;
    let url = schema.url.clone();
    let store = dialer_store_postgres::PgStore::connect(&url, 2)
        .await
        .expect("pg");
    // On PostgreSQL the functions never call AWS for their store.
    let aws = integration::aws::sdk_config("http://127.0.0.1:9").await;
    events_through_handlers(&store, &aws, &[("DATABASE_URL", url.as_str())]).await;
}

async fn events_through_handlers(
    store: &(impl CallStore + UserStore),
    aws: &aws_config::SdkConfig,
    store_vars: &[(&str, &str)],
) {
    let sim = pbx_sim::start(SimConfig {
        time_scale: 0.02,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let ari_url = sim.base_url();
    let mut vars = vec![
        ("SECRET_KEY", EVENTS_KEY),
        ("ARI_HTTP_URL", ari_url.as_str()),
        ("DIAL_ENDPOINT", "Local/{number}@test-pstn"),
        ("BCRYPT_COST", "4"),
    ];
    vars.extend_from_slice(store_vars);
    let env = Vars(&vars);
    let platform = Platform::with_aws(aws.clone());
    // A listener for the app, so that originate sees a bridge.
    let ari = OriginateFunction::from_env(&env).expect("settings").pbx.ari;
    let _listener = socket::connect(&ari, &ari.password)
        .await
        .expect("event socket");
    seed(store).await;
    // Sample events hold a placeholder: a token may not claim a longer life than the
    // functions issue, so each run signs a fresh one (as scripts/sign-events.py does).
    let key = Arc::new(dialer_core::secrets::Fixed(
        dialer_core::secrets::Secret::new(EVENTS_KEY),
    ));
    let settings = TokenFunction::from_env(&env).expect("settings").auth.tokens;
    let fresh = dialer_core::auth::Tokens::new(settings, key)
        .issue("admin", 0)
        .await
        .expect("token");

    for file in event_files() {
        let function = file.split('/').next().expect("function dir");
        let expected = expectations()[&file];
        let router = router_of(function, &env, &platform).await;
        let response = invoke(&router, read_event(&file, &fresh)).await;
        assert_eq!(response["statusCode"], expected, "{file}: {response}");
        let body: Value =
            serde_json::from_str(response["body"].as_str().unwrap_or("null")).expect("JSON body");
        if expected >= 400 {
            assert!(body["detail"].is_string(), "{file}: {body}");
        }
        if file == "status/status.json" {
            assert_eq!(body["call_id"], EVENTS_CALL);
        }
        if file == "token/login.json" {
            assert_eq!(body["token_type"], "bearer");
        }
    }

    // The Lambdas count failed logins by API Gateway's sourceIp: guesses at different
    // usernames from one address run out of that address's budget (3: the wrong
    // password above, then two guesses).
    let mut throttled_vars = vars.clone();
    throttled_vars.push(("LOGIN_MAX_FAILURES_PER_ADDRESS", "3"));
    let token_router = router_of("token", &Vars(&throttled_vars), &platform).await;
    let mut codes = Vec::new();
    for n in 0..3 {
        let mut event = read_event("token/wrong-password.json", &fresh);
        event["body"] = Value::from(format!("username=guess{n}&password=wrong-password"));
        codes.push(invoke(&token_router, event).await["statusCode"].clone());
    }
    assert_eq!(codes, [401, 401, 429], "per-address throttle in the Lambda");

    // A disabled user's token stops working in every function.
    let mut admin = store.get_user("admin").await.expect("get").expect("seeded");
    admin.disabled = true;
    assert!(store.update_user(&admin).await.expect("update"));
    for (function, file) in [
        ("status", "status/list.json"),
        ("originate", "originate/interaction.json"),
    ] {
        let router = router_of(function, &env, &platform).await;
        let response = invoke(&router, read_event(file, &fresh)).await;
        assert_eq!(response["statusCode"], 401, "{file} for a disabled user");
    }
    sim.shutdown().await;
}

fn read_event(file: &str, token: &str) -> Value {
    let text = std::fs::read_to_string(events_dir().join(file))
        .expect("event file")
        .replace("{{ADMIN_TOKEN}}", token);
    serde_json::from_str(&text).expect("event JSON")
}

async fn invoke(router: &axum::Router, event: Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event).expect("an API Gateway event");
    let response = Adapter::from(router.clone())
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("handled");
    serde_json::to_value(&response).expect("response serializes")
}

async fn seed(store: &(impl CallStore + UserStore)) {
    store
        .insert_user(&User::new(
            "admin",
            Bcrypt::new(4).hash("admin123").expect("hash"),
        ))
        .await
        .expect("user");
    let call = CallRequest {
        phone_number: "+15550010001".into(),
        ..CallRequest::default()
    }
    .validate(
        &CallPolicy::default(),
        "admin",
        Uuid::parse_str(EVENTS_CALL).expect("uuid"),
        now(),
    )
    .expect("valid");
    store.insert_call(&call).await.expect("call");
}
