//! The OpenAPI document, generated from the route and body definitions.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{calls, dto, ops, token};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Outbound IVR dialer API",
        description = "Place single outbound calls through Asterisk and read back what happened to them."
    ),
    paths(
        token::token,
        calls::interaction,
        calls::create,
        calls::status,
        calls::get,
        calls::list,
        calls::cancel,
        ops::health,
    ),
    components(schemas(
        dto::CallBody,
        dto::TokenForm,
        dto::TokenResponse,
        dto::OriginateResponse,
        dto::CallView,
        dto::CallList,
        dto::ErrorBody,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Tokens"),
        (name = "calls", description = "Placing and following calls"),
        (name = "ops", description = "Operations"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
