//! The OpenAPI document, generated from the route and body definitions.
//!
//! The document is fixed when the code is, so it is generated once, by a test, into
//! `shared/http/openapi.json`, and served from there: the binaries do not carry
//! utoipa's run-time builder. The test fails when the committed file and the
//! definitions differ; `UPDATE_OPENAPI=1 cargo test -p dialer-http openapi` rewrites it.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{calls, dto, ops, token};
use dialer_core::domain::validation::Media;

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
        calls::events,
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
        dto::CallEvents,
        dto::EventView,
        dto::DeliveryView,
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
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    per_route_bodies(&mut doc);
    let mut json =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// One body type parses both originate routes, but each route takes a different body:
/// `POST /api/v2/calls` requires `phone_number`, `/interaction/{number}` refuses it (the
/// number is in the path, which follows the same rule). Both schemas are cut from the
/// one derived from [`dto::CallBody`], so they cannot drift from it or from each other.
fn per_route_bodies(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let Some(body) = schemas.get("CallBody").cloned() else {
        return;
    };
    let mut number = body["properties"]["phone_number"].clone();
    number["type"] = json!("string");
    // The parser refuses unknown fields (`deny_unknown_fields`); so does the document.
    schemas["CallBody"]["additionalProperties"] = json!(false);
    // Playback mode plays `media`, so it needs an item: a rule across two fields, which
    // a derived schema cannot state.
    schemas["CallBody"]["if"] = json!({
        "properties": { "mode": { "const": "playback" } },
        "required": ["mode"]
    });
    schemas["CallBody"]["then"] = json!({
        "properties": { "media": { "type": "array", "minItems": 1 } },
        "required": ["media"]
    });
    // A media PATH's length, by scheme: the item's pattern states the shape only.
    let path_of = |scheme: &str| {
        json!({
            "pattern": format!("^{scheme}:"),
            "maxLength": scheme.len() + 1 + Media::MAX_PATH_LEN
        })
    };
    schemas["CallBody"]["properties"]["media"]["items"]["anyOf"] = json!([
        path_of("sound"),
        path_of("recording"),
        { "pattern": "^(digits|number):" }
    ]);
    let mut options = schemas["CallBody"].clone();
    if let Some(properties) = options["properties"].as_object_mut() {
        properties.remove("phone_number");
    }
    options["description"] = json!(
        "The options of a call to the number in the path; the body may be empty, and \
         every option falls back to the operator's defaults."
    );
    schemas["CallOptions"] = options;
    schemas["CallBody"]["properties"]["phone_number"] = number.clone();
    schemas["CallBody"]["required"] = json!(["phone_number"]);

    let interaction = &mut doc["paths"]["/api/v2/interaction/{number}"]["post"];
    interaction["requestBody"]["content"]["application/json"]["schema"] =
        json!({ "$ref": "#/components/schemas/CallOptions" });
    interaction["requestBody"]["required"] = json!(false);
    if let Some(parameters) = interaction["parameters"].as_array_mut() {
        for parameter in parameters.iter_mut().filter(|p| p["name"] == "number") {
            let description = parameter["description"].clone();
            parameter["schema"] = number.clone();
            parameter["description"] = description;
        }
    }

    // `before`: a cursor this API made, or a time.
    if let Some(parameters) = doc["paths"]["/api/v2/calls"]["get"]["parameters"].as_array_mut() {
        for parameter in parameters.iter_mut().filter(|p| p["name"] == "before") {
            parameter["schema"] = json!({
                "oneOf": [
                    { "type": "string", "pattern": "^c1\\.[0-9]{1,15}\\.[0-9a-f]{32}$" },
                    { "type": "string", "format": "date-time" }
                ]
            });
        }
    }
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

    fn doc() -> Value {
        serde_json::from_str(document()).expect("JSON")
    }

    #[test]
    fn each_originate_route_documents_the_body_it_takes() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["CallBody"]["required"], json!(["phone_number"]));
        assert_eq!(
            schemas["CallBody"]["properties"]["phone_number"]["type"],
            "string"
        );
        assert!(schemas["CallOptions"]["properties"]["phone_number"].is_null());
        assert!(schemas["CallOptions"]["properties"]["context"].is_object());
        assert_eq!(schemas["CallOptions"]["additionalProperties"], false);
        let interaction = &doc["paths"]["/api/v2/interaction/{number}"]["post"];
        assert_eq!(interaction["requestBody"]["required"], false);
        assert_eq!(
            interaction["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/CallOptions"
        );
        let number = interaction["parameters"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "number"))
            .expect("number parameter");
        assert_eq!(
            number["schema"]["pattern"],
            schemas["CallBody"]["properties"]["phone_number"]["pattern"]
        );
    }

    #[test]
    fn list_parameters_are_optional_query_parameters() {
        let doc = doc();
        let parameters = doc["paths"]["/api/v2/calls"]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(parameters.len(), 2);
        for parameter in &parameters {
            assert_eq!(parameter["in"], "query", "{parameter}");
            assert_eq!(parameter["required"], false, "{parameter}");
        }
    }

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
