//! ARI authentication: HTTP Basic or `api_key=user:password` in the query.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::params::parse_query;
use crate::server::message;
use crate::state::Shared;

use std::sync::Arc;

/// Middleware guarding every `/ari` route.
pub(crate) async fn require_auth(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let expected = format!("{}:{}", shared.config.username, shared.config.password);
    let authorized = basic_credentials(&request).is_some_and(|given| given == expected)
        || parse_query(request.uri().query().unwrap_or(""))
            .into_iter()
            .any(|(key, value)| key == "api_key" && value == expected);
    if authorized {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, message("Authentication required")).into_response()
    }
}

/// The `user:password` of an `Authorization: Basic` header.
fn basic_credentials(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    String::from_utf8(decoded).ok()
}
