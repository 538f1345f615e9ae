//! `POST /api/v2/token`: the OAuth2 password grant.

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::{Form, Json};

use super::dto::{ErrorBody, TokenForm, TokenResponse};
use super::error::ApiError;
use super::extract::Client;
use crate::TokenState;

/// Exchange a username and password for a bearer token.
#[utoipa::path(
    post,
    path = "/api/v2/token",
    tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody, description = "The body could not be read"),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "The body is over 16 KiB"),
        (status = 415, body = ErrorBody, description = "A body that is not declared application/x-www-form-urlencoded"),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "seconds")),
            description = "Too many failed logins for this username or from this address"),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn token(
    State(state): State<TokenState>,
    Client(client): Client,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    let Form(form) = form?;
    if form.grant_type.as_deref().is_some_and(|g| g != "password") {
        return Err(ApiError::Field {
            field: "grant_type",
            detail: "only the password grant is supported".into(),
        });
    }
    let issued = state
        .login
        .login(
            &form.username,
            &form.password,
            client.map(|address| address.0),
        )
        .await?;
    Ok(Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "bearer",
        expires_in: issued.expires_in,
    }))
}
