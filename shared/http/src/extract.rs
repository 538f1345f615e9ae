//! Request extraction that answers in our JSON error shape: the authenticated caller,
//! path parameters, query strings, and JSON bodies that may be empty.
//!
//! A body, query or form that does not even have its type's shape (a string where a
//! number goes, an unknown field, a missing one) is refused by the same 422 as a value
//! that breaks a rule: naming the `field`, saying what it must be, never in serde's words.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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

/// The fields of a request type, for the 422 that answers a request not of its shape.
pub trait Fields {
    /// What the whole is, in a message: "a call request".
    const NAME: &'static str;
    /// What the whole must be, in words that read after "must be".
    const SHAPE: &'static str;
    /// Each field by the name a 422 gives it (`retry.max_attempts` for one inside
    /// another), with what it must be, in words that read after "must be".
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// A refused request: an [`ApiError`], or a shape error about a field whose name the
/// client made up (an unknown field), which only the request knows.
#[derive(Debug)]
pub enum Rejection {
    Api(ApiError),
    UnknownField { field: String, detail: String },
}

impl From<ApiError> for Rejection {
    fn from(e: ApiError) -> Self {
        Rejection::Api(e)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::Api(e) => e.into_response(),
            // As `ApiError::Field` answers.
            Rejection::UnknownField { field, detail } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(serde_json::json!({ "detail": detail, "field": field })),
            )
                .into_response(),
        }
    }
}

/// A query string, read as axum's `Query` reads it; one not of `T`'s shape is a 422
/// naming the parameter.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Fields,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|e| misshapen::<T>(e.path(), &e.inner().to_string()))
    }
}

/// The 422 for a form that axum could not read as a `T` (a missing `username`, say),
/// from the error under its rejection.
pub fn form_field_error<T: Fields>(rejection: &FormRejection) -> ApiError {
    type FormError = serde_path_to_error::Error<serde_urlencoded::de::Error>;
    let mut source = std::error::Error::source(rejection);
    while let Some(error) = source {
        if let Some(e) = error.downcast_ref::<FormError>() {
            if let Rejection::Api(api) = misshapen::<T>(e.path(), &e.inner().to_string()) {
                return api;
            }
            // An unknown field: a form's are ignored, so none is ever refused.
            break;
        }
        source = error.source();
    }
    ApiError::Field {
        field: "body",
        detail: format!("must be {}", T::SHAPE),
    }
}

/// A JSON body; an empty body is `T::default()`, whatever it is declared as (the
/// original API allows an empty originate body, sent by clients without a content
/// type). A body of one byte or more must be declared JSON, or it is 415: text meant
/// for something else is never read as call options.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default + Fields,
{
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_json = request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(is_json_media_type);
        let body = Bytes::from_request(request, state)
            .await
            .map_err(ApiError::from)?;
        if body.is_empty() {
            return Ok(JsonBody(T::default()));
        }
        if !declared_json {
            return Err(ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json (UTF-8)",
            )
            .into());
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
/// well-formed body of the wrong shape is 422 naming the field.
fn json_or_default<T: DeserializeOwned + Default + Fields>(body: &[u8]) -> Result<T, Rejection> {
    use serde_json::error::Category;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let not_json = |e: &serde_json::Error| {
        let detail = match e.classify() {
            Category::Eof => format!(
                "the body is not valid JSON: it ends before the JSON does (line {}, column {})",
                e.line(),
                e.column()
            ),
            _ => format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        };
        Rejection::Api(ApiError::status(StatusCode::BAD_REQUEST, detail))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        match e.inner().classify() {
            Category::Data => misshapen::<T>(e.path(), &e.inner().to_string()),
            _ => not_json(e.inner()),
        }
    })?;
    // Trailing characters after the value.
    deserializer.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

/// The 422 for a request not of `T`'s shape, from where serde stopped (`path`) and what
/// it said (`serde_says`, read only for the field it names). serde's own words, such as
/// "invalid type: integer `5`, expected a string", are not passed on.
fn misshapen<T: Fields>(path: &serde_path_to_error::Path, serde_says: &str) -> Rejection {
    use serde_path_to_error::Segment;
    // The longest run of keys from the top that names a known field: `retry.on` for
    // `retry.on[2]`, `variables` for `variables.X`.
    let mut known: Option<(&'static str, &'static str)> = None;
    let mut key = String::new();
    for segment in path.iter() {
        let Segment::Map { key: name } = segment else {
            break;
        };
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(name);
        match T::FIELDS.iter().find(|(field, _)| *field == key) {
            Some(&found) => known = Some(found),
            None => break,
        }
    }
    let named = |prefix: &str| {
        serde_says
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(|name| match known {
                Some((parent, _)) => format!("{parent}.{name}"),
                None => name.to_owned(),
            })
    };
    let field_error =
        |field: &'static str, detail: String| Rejection::Api(ApiError::Field { field, detail });
    let static_name = |name: &str| T::FIELDS.iter().find(|(f, _)| *f == name).map(|(f, _)| *f);
    if let Some(field) = named("unknown field `") {
        let (whole, prefix) = match known {
            Some((parent, _)) => (parent.to_owned(), format!("{parent}.")),
            None => (T::NAME.to_owned(), String::new()),
        };
        let siblings: Vec<&str> = T::FIELDS
            .iter()
            .filter_map(|(f, _)| f.strip_prefix(prefix.as_str()))
            .filter(|f| !f.contains('.'))
            .collect();
        let detail = format!(
            "{field}: is not a field of {whole}; its fields are {}",
            siblings.join(", ")
        );
        return Rejection::UnknownField { field, detail };
    }
    for (prefix, says) in [
        ("missing field `", "is required"),
        ("duplicate field `", "may be given only once"),
    ] {
        if let Some(field) = named(prefix).and_then(|name| static_name(&name)) {
            return field_error(field, says.to_owned());
        }
    }
    match known {
        Some((field, must_be)) => field_error(field, format!("must be {must_be}")),
        None => field_error("body", format!("must be {}", T::SHAPE)),
    }
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
