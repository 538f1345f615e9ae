//! Request extraction that answers in our JSON error shape: the authenticated caller,
//! and JSON bodies that may be empty.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use dialer_core::auth::TokenError;
use dialer_core::service::{Authenticator, ServiceError};

/// The username of a valid bearer token.
pub struct Caller(pub String);

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized("not authenticated"))?;
        let (scheme, token) = header
            .split_once(' ')
            .ok_or(ApiError::Unauthorized("not authenticated"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized("not authenticated"));
        }
        match Authenticator::from_ref(state)
            .authenticate(token.trim())
            .await
        {
            Ok(username) => Ok(Caller(username)),
            Err(TokenError::Invalid) => {
                Err(ApiError::Unauthorized("could not validate credentials"))
            }
            Err(TokenError::KeyUnavailable(e)) => {
                Err(ApiError::Service(ServiceError::SecretsUnavailable(e)))
            }
        }
    }
}

/// Parses a JSON body; an empty body is `T::default()`. Syntax errors are 400, a
/// well-formed body of the wrong shape is 422.
pub fn json_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::status(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid body: {e}"),
            ),
            _ => ApiError::status(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
        }
    })
}
