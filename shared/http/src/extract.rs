//! Request extraction that answers in our JSON error shape: the authenticated caller,
//! path parameters, query strings, and JSON bodies that may be empty.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
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

/// The request's [`ClientAddress`], when the serving layer knows it: set as such (the
/// Lambdas), or axum's `ConnectInfo` of the connection (the local server).
pub struct Client(pub Option<ClientAddress>);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::ConnectInfo;
        let given = parts.extensions.get::<ClientAddress>().copied();
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|ConnectInfo(peer)| ClientAddress(peer.ip()))
        };
        Ok(Client(given.or_else(peer)))
    }
}

/// Path parameters; axum's own rejection (a percent-escape that decodes to invalid
/// UTF-8, say) would answer `text/plain`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A query string; a malformed one is 422.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A JSON body; an empty body is `T::default()`, whatever it is declared as (the
/// original API allows an empty originate body, sent by clients without a content
/// type). A body of one byte or more must be declared JSON, or it is 415: text meant
/// for something else is never read as call options.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_json = request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(is_json_media_type);
        let body = Bytes::from_request(request, state).await?;
        if body.is_empty() {
            return Ok(JsonBody(T::default()));
        }
        if !declared_json {
            return Err(ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json (UTF-8)",
            ));
        }
        json_or_default(&body).map(JsonBody)
    }
}

/// `application/json` or `application/*+json`, in any case, with any parameters but a
/// charset other than UTF-8 (JSON is UTF-8; RFC 8259).
fn is_json_media_type(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    let json = kind.eq_ignore_ascii_case("application")
        && (subtype == "json" || (subtype.len() > "+json".len() && subtype.ends_with("+json")));
    json && parts.all(|parameter| match parameter.split_once('=') {
        Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => charset
            .trim()
            .trim_matches('"')
            .eq_ignore_ascii_case("utf-8"),
        _ => true,
    })
}

/// Parses a JSON body; whitespace only is `T::default()`. Syntax errors are 400, a
/// well-formed body of the wrong shape is 422.
fn json_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &'static str) -> bool {
        is_json_media_type(&HeaderValue::from_static(value))
    }

    #[test]
    fn json_media_types_are_recognised_in_any_case_with_utf8_or_no_charset() {
        for value in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            " application/json ; boundary=x",
            "application/merge-patch+json",
            "application/vnd.api+JSON; charset=utf-8",
        ] {
            assert!(json(value), "{value}");
        }
    }

    #[test]
    fn other_media_types_and_charsets_are_not_json() {
        for value in [
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "application/jsonp",
            "application/+json",
            "application/json; charset=iso-8859-1",
            "application",
            "",
        ] {
            assert!(!json(value), "{value}");
        }
    }
}
