//! The call routes: originate (two forms), status (two forms), list and cancel.

use super::answer::JsonAnswer;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use dialer_core::store::PageCursor;

use super::dto::{
    CallBody, CallEvents, CallList, CallView, ErrorBody, ListQuery, OriginateResponse,
};
use super::error::ApiError;
use super::extract::{Caller, JsonBody, Path, Query};
use crate::{OriginateState, StatusState};

/// Originate a call to the number in the path.
#[utoipa::path(
    post,
    path = "/api/v2/interaction/{number}",
    tag = "calls",
    params(
        ("number" = String, Path, description = "E.164 number, e.g. +15550010001"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Repeat-safe: the same key within a day returns the first call; 1 to 128 visible ASCII characters"),
    ),
    request_body(content = CallBody, description = "Options; the body may be empty, and then needs no Content-Type"),
    responses(
        (status = 200, body = OriginateResponse),
        (status = 202, body = OriginateResponse, description = "The PBX did not confirm the originate in time: the call may be placed; follow it by call_id"),
        (status = 400, body = ErrorBody, description = "Malformed JSON, or a number that is not valid UTF-8 once decoded"),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "The body is over 16 KiB"),
        (status = 415, body = ErrorBody, description = "A body that is not declared application/json"),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "seconds")),
            description = "The user has max_queued_calls calls waiting in the queue already"),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn interaction(
    State(state): State<OriginateState>,
    Caller(owner): Caller,
    Path(number): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CallBody>,
) -> Result<impl IntoResponse, ApiError> {
    if body.phone_number.is_some() {
        return Err(ApiError::Field {
            field: "phone_number",
            detail: "the number goes in the path on this route".into(),
        });
    }
    let call = state
        .calls
        .place_call(
            &owner,
            body.into_request(number),
            idempotency_key(&headers)?,
        )
        .await?;
    let status = if OriginateResponse::unsettled(&call) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, JsonAnswer(OriginateResponse::from(&call))))
}

/// Create a call (RESTful form).
#[utoipa::path(
    post,
    path = "/api/v2/calls",
    tag = "calls",
    request_body = CallBody,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Repeat-safe: the same key within a day returns the first call; 1 to 128 visible ASCII characters")),
    responses(
        (status = 201, body = OriginateResponse, headers(("Location" = String))),
        (status = 202, body = OriginateResponse, headers(("Location" = String)), description = "The PBX did not confirm the originate in time: the call may be placed; follow it by call_id"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "The body is over 16 KiB"),
        (status = 415, body = ErrorBody, description = "A body that is not declared application/json"),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "seconds")),
            description = "The user has max_queued_calls calls waiting in the queue already"),
        (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<OriginateState>,
    Caller(owner): Caller,
    request_headers: HeaderMap,
    JsonBody(mut body): JsonBody<CallBody>,
) -> Result<impl IntoResponse, ApiError> {
    let number = body.phone_number.take().ok_or(ApiError::Field {
        field: "phone_number",
        detail: "is required".into(),
    })?;
    let call = state
        .calls
        .place_call(
            &owner,
            body.into_request(number),
            idempotency_key(&request_headers)?,
        )
        .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v2/calls/{}", call.id)) {
        headers.insert(header::LOCATION, location);
    }
    let status = if OriginateResponse::unsettled(&call) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((status, headers, JsonAnswer(OriginateResponse::from(&call))))
}

/// The status of one of your calls.
#[utoipa::path(
    get,
    path = "/api/v2/status/{call_id}",
    tag = "calls",
    params(("call_id" = String, Path)),
    responses(
        (status = 200, body = CallView),
        (status = 400, body = ErrorBody, description = "An id that is not valid UTF-8 once decoded"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn status(
    State(state): State<StatusState>,
    Caller(owner): Caller,
    Path(call_id): Path<String>,
) -> Result<JsonAnswer<CallView>, ApiError> {
    let call = state.calls.call_of(&owner, &call_id).await?;
    Ok(JsonAnswer(CallView::from(&call)))
}

/// The status of one of your calls (RESTful form).
#[utoipa::path(
    get,
    path = "/api/v2/calls/{call_id}",
    tag = "calls",
    params(("call_id" = String, Path)),
    responses(
        (status = 200, body = CallView),
        (status = 400, body = ErrorBody, description = "An id that is not valid UTF-8 once decoded"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    state: State<StatusState>,
    caller: Caller,
    call_id: Path<String>,
) -> Result<JsonAnswer<CallView>, ApiError> {
    status(state, caller, call_id).await
}

/// A call's timeline: every event its webhook asked for, in order, with how its
/// delivery went (attempts, last response code, `delivered_at` or `dead_at`).
#[utoipa::path(
    get,
    path = "/api/v2/calls/{call_id}/events",
    tag = "calls",
    params(("call_id" = String, Path)),
    responses(
        (status = 200, body = CallEvents),
        (status = 400, body = ErrorBody, description = "The path could not be decoded"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<StatusState>,
    Caller(owner): Caller,
    Path(call_id): Path<String>,
) -> Result<JsonAnswer<CallEvents>, ApiError> {
    let call = state.calls.call_of(&owner, &call_id).await?;
    Ok(JsonAnswer(CallEvents::from(&call)))
}

/// Your calls, newest first.
#[utoipa::path(
    get,
    path = "/api/v2/calls",
    tag = "calls",
    params(ListQuery),
    responses(
        (status = 200, body = CallList), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<StatusState>,
    Caller(owner): Caller,
    Query(query): Query<ListQuery>,
) -> Result<JsonAnswer<CallList>, ApiError> {
    let before = match query.before.as_deref() {
        Some(raw) => Some(match PageCursor::decode(raw) {
            Some(cursor) => cursor,
            None => PageCursor::before_time(
                DateTime::parse_from_rfc3339(raw)
                    .map_err(|_| ApiError::Field {
                        field: "before",
                        detail: "must be a next_before value or an RFC 3339 time".into(),
                    })?
                    .with_timezone(&Utc),
            ),
        }),
        None => None,
    };
    let limit = match query.limit {
        None => 20,
        Some(limit @ 1..=100) => limit,
        Some(_) => {
            return Err(ApiError::Field {
                field: "limit",
                detail: "must be from 1 to 100".into(),
            });
        }
    };
    let page = state.calls.calls_of(&owner, before, limit).await?;
    Ok(JsonAnswer(CallList {
        calls: page.calls.iter().map(CallView::from).collect(),
        next_before: page.next.map(|cursor| cursor.encode()),
    }))
}

/// Hang up one of your calls. Before an answer it ends `canceled`, after `completed`.
#[utoipa::path(
    delete,
    path = "/api/v2/calls/{call_id}",
    tag = "calls",
    params(("call_id" = String, Path)),
    responses(
        (status = 202, body = CallView),
        (status = 400, body = ErrorBody, description = "An id that is not valid UTF-8 once decoded"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<OriginateState>,
    Caller(owner): Caller,
    Path(call_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let call = state.calls.cancel(&owner, &call_id).await?;
    Ok((StatusCode::ACCEPTED, JsonAnswer(CallView::from(&call))))
}

/// The optional `Idempotency-Key` header.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| ApiError::Field {
            field: "Idempotency-Key",
            detail: "must be visible ASCII".into(),
        }),
    }
}
