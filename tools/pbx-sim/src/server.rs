//! The HTTP routes: ARI under `/ari`, test controls under `/_sim`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::auth::require_auth;
use crate::call::{self, CallSpec, Command, ContinueTarget, NotInStasis, PlayRequest, Route};
use crate::callee::Callee;
use crate::channel::{Channel, Endpoint, Party, parse_caller_id};
use crate::params::{Params, parse_query};
use crate::state::{CallEntry, Shared, lock};
use crate::ws;

/// All routes of the simulator.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let ari = Router::new()
        .route("/applications", get(list_applications))
        .route("/applications/{app}", get(get_application))
        .route("/channels", get(list_channels).post(originate))
        .route("/channels/{id}", get(get_channel).delete(hangup))
        .route("/channels/{id}/continue", post(continue_in_dialplan))
        .route("/channels/{id}/play", post(play))
        .route("/playbacks/{id}", get(get_playback))
        .route("/events", get(ws::events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(Arc::clone(&shared), require_auth));
    Router::new()
        .nest("/ari", ari)
        .route("/_sim/drop", post(sim_drop))
        .route("/_sim/stats", get(sim_stats))
        .route("/_sim/inject", post(sim_inject))
        .route("/_sim/hold", post(sim_hold_requests))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

/// ARI's error body: `{"message": "..."}`.
pub(crate) fn message(text: &str) -> Json<Value> {
    Json(json!({ "message": text }))
}

fn error(status: StatusCode, text: &str) -> Response {
    ApiError::new(status, text).into_response()
}

/// An ARI error answer, small enough to pass around in `Result`s.
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, text: &str) -> Self {
        Self {
            status,
            body: json!({ "message": text }),
        }
    }

    fn bad_request(text: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, text)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn channel_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Channel not found")
}

/// `GET /playbacks/{id}`: a playback that has started and not finished; 404 otherwise.
async fn get_playback(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return error(StatusCode::NOT_FOUND, "Playback not found");
    };
    match shared.playback(&id) {
        Some(playback) => Json(playback).into_response(),
        None => error(StatusCode::NOT_FOUND, "Playback not found"),
    }
}

fn not_in_stasis() -> Response {
    error(StatusCode::CONFLICT, "Channel not in Stasis application")
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "Invalid method")
}

async fn list_applications(State(shared): State<Arc<Shared>>) -> Response {
    let apps: Vec<Value> = shared
        .connected_apps()
        .iter()
        .map(|app| application_json(&shared, app))
        .collect();
    Json(apps).into_response()
}

async fn get_application(
    State(shared): State<Arc<Shared>>,
    app: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(app)) = app else {
        return error(StatusCode::NOT_FOUND, "Application not found");
    };
    if shared.is_connected(&app) {
        Json(application_json(&shared, &app)).into_response()
    } else {
        error(StatusCode::NOT_FOUND, "Application not found")
    }
}

fn application_json(shared: &Shared, app: &str) -> Value {
    json!({
        "name": app,
        "channel_ids": shared.channel_ids_of(app),
        "bridge_ids": [],
        "endpoint_ids": [],
        "device_names": [],
        "events_allowed": [],
        "events_disallowed": [],
    })
}

async fn list_channels(State(shared): State<Arc<Shared>>) -> Response {
    let mut channels: Vec<Channel> = lock(&shared.channels)
        .values()
        .map(|entry| lock(&entry.snapshot).clone())
        .collect();
    channels.sort_by(|a, b| a.creationtime.cmp(&b.creationtime).then(a.id.cmp(&b.id)));
    Json(channels).into_response()
}

async fn get_channel(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return channel_not_found();
    };
    let snapshot = lock(&shared.channels)
        .get(&id)
        .map(|entry| lock(&entry.snapshot).clone());
    match snapshot {
        Some(channel) => Json(channel).into_response(),
        None => channel_not_found(),
    }
}

async fn originate(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // As Asterisk does, the PBX goes on with a request whose client has given up.
    let delay = shared.request_delay();
    let work = tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match request_params(query.as_deref(), body).and_then(|p| plan_originate(&shared, &p)) {
            Ok(plan) => start_call(&shared, plan),
            Err(e) => e.into_response(),
        }
    });
    work.await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A validated originate, before the channel exists.
struct OriginatePlan {
    channel_id: Option<String>,
    endpoint: Endpoint,
    caller: Party,
    route: Route,
    ring_timeout: Option<Duration>,
}

fn plan_originate(shared: &Shared, params: &Params) -> Result<OriginatePlan, ApiError> {
    let bad_request = ApiError::bad_request;
    let endpoint = params
        .text("endpoint")
        .ok_or_else(|| bad_request("Endpoint must be specified"))?;
    if !endpoint.contains('/') {
        return Err(bad_request(&format!(
            "Endpoint parameter '{endpoint}' does not contain tech/resource"
        )));
    }
    let timeout = params.number("timeout").map_err(|e| bad_request(&e))?;
    let priority = params.integer("priority").map_err(|e| bad_request(&e))?;
    if params.value("variables").is_some_and(|v| !v.is_object()) {
        return Err(bad_request("variables must be a JSON object"));
    }
    let route = if let Some(app) = params.text("app") {
        let raw_args = app_args(params);
        let app_data = match &raw_args {
            Some(args) => format!("{app},{args}"),
            None => app.clone(),
        };
        let args = raw_args
            .map(|args| args.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        Route::Stasis {
            app,
            app_data,
            args,
        }
    } else if let Some(extension) = params.text("extension") {
        Route::Dialplan {
            context: params
                .text("context")
                .unwrap_or_else(|| "default".to_owned()),
            extension,
            priority: priority.unwrap_or(1),
        }
    } else {
        return Err(bad_request("Application or extension must be specified"));
    };
    let endpoint = Endpoint::parse(&endpoint).map_err(|_| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: json!({ "error": "Allocation failed" }),
    })?;
    // ARI: a negative timeout means none, zero means the default.
    let timeout = match timeout {
        None => Some(30.0),
        Some(0.0) => Some(30.0),
        Some(t) if t < 0.0 => None,
        Some(t) => Some(t),
    };
    Ok(OriginatePlan {
        channel_id: params.text("channelId"),
        endpoint,
        caller: params
            .text("callerId")
            .map(|c| parse_caller_id(&c))
            .unwrap_or_default(),
        route,
        ring_timeout: timeout.map(|t| shared.config.scaled(t)),
    })
}

/// `appArgs` as one comma-separated string; a JSON array is accepted too.
fn app_args(params: &Params) -> Option<String> {
    match params.value("appArgs") {
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => params.text("appArgs"),
    }
}

fn start_call(shared: &Arc<Shared>, plan: OriginatePlan) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    let channel = {
        let mut channels = lock(&shared.channels);
        let id = match plan.channel_id {
            Some(id) if channels.contains_key(&id) => {
                return error(
                    StatusCode::CONFLICT,
                    "Channel with given unique ID already exists",
                );
            }
            Some(id) => id,
            None => loop {
                let id = format!(
                    "sim-{}.{}",
                    chrono::Utc::now().timestamp(),
                    shared.next_sequence()
                );
                if !channels.contains_key(&id) {
                    break id;
                }
            },
        };
        let name = plan.endpoint.channel_name(shared.next_sequence());
        let channel = Channel::originated(id.clone(), name, &plan.endpoint, plan.caller);
        let app = match &plan.route {
            Route::Stasis { app, .. } => Some(app.clone()),
            Route::Dialplan { .. } => None,
        };
        let snapshot = Arc::new(std::sync::Mutex::new(channel.clone()));
        channels.insert(
            id.clone(),
            CallEntry {
                commands: tx,
                snapshot: Arc::clone(&snapshot),
                app,
            },
        );
        shared.count_originate(&id, channels.len());
        call::spawn(
            Arc::clone(shared),
            CallSpec {
                channel: channel.clone(),
                dialstring: plan.endpoint.dialstring(),
                callee: Callee::for_number(&plan.endpoint.number),
                route: plan.route,
                ring_timeout: plan.ring_timeout,
            },
            snapshot,
            rx,
        );
        channel
    };
    tracing::debug!(id = %channel.id, name = %channel.name, "originated");
    Json(channel).into_response()
}

async fn hangup(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return channel_not_found();
    };
    let delay = shared.request_delay();
    let work = tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match ask(&shared, &id, |done| Command::Hangup { done }).await {
            Some(()) => StatusCode::NO_CONTENT.into_response(),
            None => channel_not_found(),
        }
    });
    work.await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn continue_in_dialplan(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return channel_not_found();
    };
    let params = match request_params(query.as_deref(), body) {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let priority = match params.integer("priority") {
        Ok(priority) => priority,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let target = ContinueTarget {
        context: params.text("context"),
        extension: params.text("extension"),
        priority,
    };
    match ask(&shared, &id, |done| Command::Continue { target, done }).await {
        Some(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Some(Err(NotInStasis)) => not_in_stasis(),
        None => channel_not_found(),
    }
}

async fn play(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return channel_not_found();
    };
    let params = match request_params(query.as_deref(), body) {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let media: Vec<String> = match params.value("media") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => params
            .text("media")
            .map(|m| m.split(',').map(str::trim).map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    let media: Vec<String> = media.into_iter().filter(|m| !m.is_empty()).collect();
    if media.is_empty() {
        return error(StatusCode::BAD_REQUEST, "media must be specified");
    }
    let request = PlayRequest {
        id: params
            .text("playbackId")
            .unwrap_or_else(|| format!("sim-playback-{}", shared.next_sequence())),
        media,
        language: params.text("lang").unwrap_or_else(|| "en".to_owned()),
    };
    match ask(&shared, &id, |done| Command::Play { request, done }).await {
        Some(Ok(playback)) => (StatusCode::CREATED, Json(playback)).into_response(),
        Some(Err(NotInStasis)) => not_in_stasis(),
        None => channel_not_found(),
    }
}

/// Hands a command to the channel's call task and waits for its outcome; `None` when
/// the channel does not exist or ends before handling it.
async fn ask<T>(
    shared: &Shared,
    id: &str,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Option<T> {
    let (done, outcome) = oneshot::channel();
    let sender = lock(&shared.channels).get(id)?.commands.clone();
    sender.send(command(done)).ok()?;
    outcome.await.ok()
}

fn request_params(
    query: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Params, ApiError> {
    let body = body.map_err(|e| ApiError::bad_request(&e.body_text()))?;
    Params::from_request(query, &body).map_err(|e| ApiError::bad_request(&e))
}

async fn sim_drop(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let refuse_ms = parse_query(query.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(key, _)| key == "refuse_ms")
        .and_then(|(_, value)| value.trim().parse::<u64>().ok())
        .unwrap_or(0);
    shared.drop_connections(Duration::from_millis(refuse_ms));
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/hold?ms=N`: hold each later originate and hang-up N ms (0 ends it).
async fn sim_hold_requests(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let ms = parse_query(query.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(key, _)| key == "ms")
        .and_then(|(_, value)| value.trim().parse::<u64>().ok());
    match ms {
        Some(ms) => {
            shared.hold_requests(Duration::from_millis(ms));
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::BAD_REQUEST, "ms: a number of milliseconds"),
    }
}

/// `POST /_sim/inject?app=NAME`: the body goes to the app's socket as one text frame.
async fn sim_inject(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    body: String,
) -> Response {
    let app = parse_query(query.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(key, _)| key == "app")
        .map(|(_, value)| value);
    match app {
        Some(app) if shared.inject(&app, body) => StatusCode::NO_CONTENT.into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({ "message": "Application not found" })),
        )
            .into_response(),
    }
}

async fn sim_stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({
        "originates": shared.originate_count(),
        "live_channels": shared.live_channels(),
        "max_live_channels": shared.max_live_channels(),
        "apps": shared.connected_apps(),
    }))
    .into_response()
}
