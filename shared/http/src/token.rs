//! `POST /api/v2/token`: the OAuth2 password grant.

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::{Extension, Form, Json};

use super::dto::{ErrorBody, TokenForm, TokenResponse};
use super::error::ApiError;
use super::extract::ClientAddress;
use crate::TokenState;

/// Exchange a username and password for a bearer token.
#[utoipa::path(
    post,
    path = "/api/v2/token",
    tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "seconds")),
            description = "Too many failed logins for this username or from this address"),
    )
)]
pub async fn token(
    State(state): State<TokenState>,
    client: Option<Extension<ClientAddress>>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    let Form(form) = form?;
    if form.grant_type.as_deref().is_some_and(|g| g != "password") {
        return Err(ApiError::Field {
            field: "grant_type",
            detail: "only the password grant is supported".into(),
        });
    }
    let client = client.map(|Extension(address)| address.throttle_key());
    let issued = state
        .login
        .login(&form.username, &form.password, client.as_deref())
        .await?;
    Ok(Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "bearer",
        expires_in: issued.expires_in,
    }))
}
