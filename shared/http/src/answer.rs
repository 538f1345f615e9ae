//! JSON answers written into one buffer sized for them. axum's `Json` serializes through
//! a 128-byte `BytesMut` writer, one small write per token, which cost a status GET
//! more than building the document did.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// A body serialized as JSON, `content-type: application/json`.
pub struct JsonAnswer<T>(pub T);

/// Room for a status document with a few attempts (814 bytes for one): most answers
/// are written without the buffer growing.
const INITIAL_CAPACITY: usize = 1_536;

impl<T: Serialize> IntoResponse for JsonAnswer<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(INITIAL_CAPACITY);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "an answer could not be written as JSON");
                ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn an_answer_is_the_json_of_its_body_with_its_content_type() {
        let value = serde_json::json!({ "status": "busy", "media": ["a", "b\"c"], "n": 1.5 });
        let response = JsonAnswer(&value).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(bytes, serde_json::to_vec(&value).expect("json"));
    }
}
