//! Every error the API answers: JSON with a human `detail` and the right status code.

use axum::Json;
use axum::extract::rejection::{BytesRejection, FormRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::error;

use dialer_core::service::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    /// 401 with `WWW-Authenticate: Bearer`.
    Unauthorized(&'static str),
    Status(StatusCode, String),
    /// A rejected field (422), named in the body.
    Field {
        field: &'static str,
        detail: String,
    },
    Service(ServiceError),
}

impl ApiError {
    pub fn status(code: StatusCode, detail: impl Into<String>) -> Self {
        ApiError::Status(code, detail.into())
    }

    pub fn not_found() -> Self {
        ApiError::Service(ServiceError::NotFound)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::status(status, "request body too large")
        } else {
            ApiError::status(StatusCode::BAD_REQUEST, "could not read the request body")
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the form as application/x-www-form-urlencoded",
            ),
            FormRejection::BytesRejection(inner) => inner.into(),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            other => super::extract::form_field_error::<super::dto::TokenForm>(&other),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        let status = rejection.status();
        if status.is_server_error() {
            // A route and its handler disagree about the path's parameters: our bug, so
            // the log gets the details and the client does not.
            error!(rejection = %rejection.body_text(), "path parameters do not fit the route");
            return ApiError::status(status, "internal error");
        }
        ApiError::status(status, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::status(StatusCode::UNPROCESSABLE_ENTITY, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Service(ServiceError::BadCredentials) => {
                return ApiError::Unauthorized("incorrect username or password").into_response();
            }
            ApiError::Unauthorized(detail) => {
                let mut response =
                    (StatusCode::UNAUTHORIZED, Json(json!({ "detail": detail }))).into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
            ApiError::Service(
                e @ (ServiceError::Throttled { .. } | ServiceError::QueueFull { .. }),
            ) => {
                let (retry_after_seconds, code) = match e {
                    ServiceError::QueueFull {
                        retry_after_seconds,
                        whole_service,
                    } => (
                        retry_after_seconds,
                        if whole_service {
                            "service_queue_full"
                        } else {
                            "queue_full"
                        },
                    ),
                    ServiceError::Throttled {
                        retry_after_seconds,
                    } => (retry_after_seconds, "login_throttled"),
                    _ => unreachable!("matched above"),
                };
                let detail = e.to_string();
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({
                        "detail": detail,
                        "retry_after": retry_after_seconds,
                        "code": code,
                    })),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
                return response;
            }
            ApiError::Status(status, detail) => (status, json!({ "detail": detail })),
            ApiError::Field { field, detail } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "detail": format!("{field}: {detail}"), "field": field }),
            ),
            ApiError::Service(e) => service_error(e),
        };
        (status, Json(body)).into_response()
    }
}

fn service_error(e: ServiceError) -> (StatusCode, Value) {
    let detail = e.to_string();
    match e {
        ServiceError::Invalid(v) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "detail": detail, "field": v.field }),
        ),
        ServiceError::NotFound => (StatusCode::NOT_FOUND, json!({ "detail": "call not found" })),
        ServiceError::Conflict(_) => (StatusCode::CONFLICT, json!({ "detail": detail })),
        ServiceError::IdempotencyKeyReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "detail": detail,
                "field": "Idempotency-Key",
                "code": "idempotency_key_reused",
            }),
        ),
        ServiceError::BadCredentials => (StatusCode::UNAUTHORIZED, json!({ "detail": detail })),
        ServiceError::Throttled { .. } | ServiceError::QueueFull { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, json!({ "detail": detail }))
        }
        ServiceError::BridgeDown => (StatusCode::SERVICE_UNAVAILABLE, json!({ "detail": detail })),
        ServiceError::PbxUnavailable { call_id, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "detail": detail, "call_id": call_id }),
        ),
        ServiceError::PbxRejected { call_id, .. } => (
            StatusCode::BAD_GATEWAY,
            json!({ "detail": detail, "call_id": call_id }),
        ),
        ServiceError::StoreUnavailable(cause) => {
            error!(cause = %chain(&cause), "store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, json!({ "detail": detail }))
        }
        ServiceError::SecretsUnavailable(cause) => {
            error!(cause = %chain(&cause), "secrets unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, json!({ "detail": detail }))
        }
        ServiceError::Internal(cause) => {
            error!(cause = %chain(&*cause), "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "detail": detail }),
            )
        }
    }
}

/// An error and every cause under it, for the log: `a: b: c`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
