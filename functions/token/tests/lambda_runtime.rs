//! The real `token` binary, started as the Lambda service starts it: from environment
//! variables alone (the ones the Lambda runtime sets, and the deployed ones), asking a
//! stand-in Lambda Runtime API on loopback for its events. Its AWS configuration is
//! read from that environment without the SDK's default chain (`dialer_boot::aws_env`),
//! so these tests are what shows that region, role keys and endpoint reach DynamoDB and
//! Secrets Manager (moto) for real.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use dialer_boot::Platform;
use dialer_boot::settings::{TokenFunction, Vars};
use dialer_core::auth::{PasswordHasher, Tokens};
use dialer_core::domain::User;
use dialer_core::secrets::{Fixed, Secret};
use dialer_core::store::UserStore;
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::{Mutex, mpsc};

const KEY: &str = "lambda-runtime-test-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_binary_reads_its_aws_setup_from_the_lambda_environment_on_dynamodb_and_secrets_manager()
 {
    let endpoint = moto_endpoint();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (calls, users, secret_id) = (
        format!("calls-{suffix}"),
        format!("users-{suffix}"),
        format!("dialer/jwt-{suffix}"),
    );
    let aws_vars = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "session"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let platform = Platform::from_lambda_env(&Vars(&aws_vars));
    let store = dialer_boot::dynamo_store(&platform, &calls, &users, 30).expect("store");
    store.create_tables().await.expect("tables on moto");
    let hash = dialer_passwords::Bcrypt::new(4)
        .hash("runtime-pass-1")
        .expect("hash");
    store
        .insert_user(&User::new("runtime", hash))
        .await
        .expect("user");
    let aws = platform.aws("SECRET_KEY_SECRET_ID").expect("AWS config");
    dialer_secrets_aws::Client::new(aws)
        .create_secret()
        .name(&secret_id)
        .secret_string(KEY)
        .send()
        .await
        .expect("secret on moto");

    let runtime = RuntimeApi::start(login_event("runtime", "runtime-pass-1")).await;
    // Each service's own endpoint variable, and no AWS_ENDPOINT_URL: were either
    // ignored, the function would ask AWS itself and fail here.
    let mut env = aws_vars[..4].to_vec();
    env.extend([
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.as_str()),
        ("USERS_TABLE", users.as_str()),
        ("CALLS_TABLE", calls.as_str()),
        ("SECRET_KEY_SECRET_ID", secret_id.as_str()),
        ("BCRYPT_COST", "4"),
    ]);
    let mut function = start_function(&runtime, &env);

    let answer = runtime.answer().await;
    let _ = function.kill().await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value =
        serde_json::from_str(answer["body"].as_str().expect("a body")).expect("JSON body");
    let token = body["access_token"].as_str().expect("a token");
    // Signed with the key the function read from Secrets Manager.
    let settings = TokenFunction::from_env(&Vars(&[("SECRET_KEY", KEY)]))
        .expect("settings")
        .auth
        .tokens;
    let subject = Tokens::new(settings, Arc::new(Fixed(Secret::new(KEY))))
        .verify(token)
        .await
        .expect("a token signed with the Secrets Manager key");
    assert_eq!(subject.username, "runtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_without_its_region_stops_at_start_naming_the_variable() {
    let runtime = RuntimeApi::start(login_event("anyone", "anything")).await;
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "secret-never-shown"),
        ("USERS_TABLE", "users"),
        ("SECRET_KEY_SECRET_ID", "dialer/jwt"),
    ];
    let function = start_function(&runtime, &env);
    let output = tokio::time::timeout(Duration::from_secs(30), function.wait_with_output())
        .await
        .expect("the function exits")
        .expect("output");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AWS_REGION"), "{stderr}");
    assert!(!stderr.contains("secret-never-shown"), "{stderr}");
}

fn moto_endpoint() -> String {
    match std::env::var("DIALER_TEST_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!("this test needs moto: run ./scripts/test (it starts one)"),
    }
}

/// The binary with only the variables given and the ones the Lambda service sets;
/// nothing inherited, so no AWS variable or profile of the machine's reaches it.
fn start_function(runtime: &RuntimeApi, vars: &[(&str, &str)]) -> tokio::process::Child {
    Command::new(env!("CARGO_BIN_EXE_token"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        .env("AWS_LAMBDA_FUNCTION_NAME", "token")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/token")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("token binary")
}

fn login_event(username: &str, password: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/token/login.json");
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("event")).expect("JSON");
    event["body"] = Value::from(format!("username={username}&password={password}"));
    event
}

/// A stand-in for the Lambda Runtime API: hands out one event, then keeps the next
/// poll waiting; what the function answers (or reports as an error) is passed on.
struct RuntimeApi {
    address: String,
    answers: Mutex<mpsc::Receiver<Value>>,
}

#[derive(Clone)]
struct Runtime {
    event: Arc<Mutex<Option<Value>>>,
    answers: mpsc::Sender<Value>,
}

impl RuntimeApi {
    async fn start(event: Value) -> Self {
        let (sender, receiver) = mpsc::channel(4);
        let state = Runtime {
            event: Arc::new(Mutex::new(Some(event))),
            answers: sender,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            address,
            answers: Mutex::new(receiver),
        }
    }

    async fn answer(&self) -> Value {
        tokio::time::timeout(Duration::from_secs(60), self.answers.lock().await.recv())
            .await
            .expect("the function answers its event")
            .expect("an answer")
    }
}

async fn next(State(runtime): State<Runtime>) -> (HeaderMap, String) {
    let Some(event) = runtime.event.lock().await.take() else {
        // One event per test: later polls wait until the process is stopped.
        return std::future::pending().await;
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", "request-1".to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:token".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(name, value.parse().expect("header"));
    }
    (headers, event.to_string())
}

async fn response(State(runtime): State<Runtime>, Path(_id): Path<String>, body: String) {
    let answer = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = runtime.answers.send(answer).await;
}

async fn error(State(runtime): State<Runtime>, Path(_id): Path<String>, body: String) {
    let _ = runtime
        .answers
        .send(serde_json::json!({ "invocation_error": body }))
        .await;
}

async fn init_error(State(runtime): State<Runtime>, body: String) {
    let _ = runtime
        .answers
        .send(serde_json::json!({ "init_error": body }))
        .await;
}
