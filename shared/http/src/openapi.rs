//! The OpenAPI document, generated from the route and body definitions.
//!
//! The document is fixed when the code is, so it is generated once, by a test, into
//! `shared/http/openapi.json`, and served from there: the binaries do not carry
//! utoipa's run-time builder. The test fails when the committed file and the
//! definitions differ; `UPDATE_OPENAPI=1 cargo test -p dialer-http openapi` rewrites it.

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

/// The document as JSON: [`ApiDoc`]'s, as generated into the committed file.
pub fn document() -> &'static str {
    include_str!("../openapi.json")
}

/// The document as the definitions generate it now (pretty JSON, newline-terminated).
pub fn generate() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let generated = generate();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
            std::fs::write(path, &generated).expect("write openapi.json");
            return;
        }
        assert!(
            document() == generated,
            "shared/http/openapi.json is not what the route and body definitions generate; \
             rewrite it with `UPDATE_OPENAPI=1 cargo test -p dialer-http openapi` and commit it"
        );
    }

    #[test]
    fn the_document_is_valid_json_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(document()).expect("JSON");
        for path in ["/api/v2/token", "/api/v2/calls", "/health"] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
