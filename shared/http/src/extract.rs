//! Request extraction that answers in our JSON error shape: the authenticated caller,
//! and JSON bodies that may be empty.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use dialer_core::service::{AuthError, Authenticator, ServiceError};

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
            Err(AuthError::Invalid) => {
                Err(ApiError::Unauthorized("could not validate credentials"))
            }
            Err(AuthError::KeyUnavailable(e)) => {
                Err(ApiError::Service(ServiceError::SecretsUnavailable(e)))
            }
            Err(AuthError::StoreUnavailable(e)) => {
                Err(ApiError::Service(ServiceError::StoreUnavailable(e)))
            }
        }
    }
}

/// The address of the client that sent the request, for the login throttle: the
/// connection's peer on the local server, API Gateway's `sourceIp` in a Lambda. Set by
/// the serving layer as a request extension; headers such as `X-Forwarded-For` are
/// never read, because any client can write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

impl ClientAddress {
    /// What the throttle counts: an IPv4 address, or an IPv6 address's /64, since one
    /// subscriber is given a whole /64 and could otherwise rotate through it.
    pub fn throttle_key(&self) -> String {
        use std::net::IpAddr;
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
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
