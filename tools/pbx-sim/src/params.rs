//! Request parameters the way ARI takes them: from the query string and/or a JSON body,
//! the body winning. Parsing here never fails on odd input except malformed JSON.

use serde_json::{Map, Value};

/// The merged parameters of one request.
#[derive(Debug, Default)]
pub(crate) struct Params {
    values: Map<String, Value>,
}

impl Params {
    /// Merges `query` and `body`; the error is the message of a 400 answer.
    pub(crate) fn from_request(query: Option<&str>, body: &[u8]) -> Result<Self, String> {
        let mut values = Map::new();
        for (key, value) in parse_query(query.unwrap_or("")) {
            values.insert(key, Value::String(value));
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(object)) => values.extend(object),
                Ok(Value::Null) => {}
                Ok(_) => return Err("Request body must be a JSON object".to_owned()),
                Err(e) => return Err(format!("Failed to parse JSON body: {e}")),
            }
        }
        Ok(Self { values })
    }

    pub(crate) fn value(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    /// A scalar parameter as text; an empty string counts as absent, as in ARI.
    pub(crate) fn text(&self, key: &str) -> Option<String> {
        let text = match self.value(key)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        (!text.is_empty()).then_some(text)
    }

    /// A numeric parameter; the error is the message of a 400 answer.
    pub(crate) fn number(&self, key: &str) -> Result<Option<f64>, String> {
        let parsed = match self.value(key) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match parsed {
            Some(n) if n.is_finite() => Ok(Some(n)),
            _ => Err(format!("Invalid value for parameter {key}")),
        }
    }

    /// An integer parameter (fractions are cut off, as a C client would).
    pub(crate) fn integer(&self, key: &str) -> Result<Option<i64>, String> {
        // `as` saturates, which is what we want for absurd priorities.
        Ok(self.number(key)?.map(|n| n as i64))
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs; a malformed escape is kept literally.
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_percent_decoded() {
        assert_eq!(
            parse_query("a=1&callerId=My%20Co+%3C%2B1%3E&flag&bad=%zz%"),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("callerId".to_owned(), "My Co <+1>".to_owned()),
                ("flag".to_owned(), String::new()),
                ("bad".to_owned(), "%zz%".to_owned()),
            ]
        );
    }

    #[test]
    fn body_wins_over_query() {
        let params = Params::from_request(Some("app=q&timeout=5"), br#"{"app":"b","priority":1}"#)
            .expect("valid");
        assert_eq!(params.text("app").as_deref(), Some("b"));
        assert_eq!(params.number("timeout"), Ok(Some(5.0)));
        assert_eq!(params.integer("priority"), Ok(Some(1)));
    }

    #[test]
    fn malformed_or_non_object_bodies_are_errors() {
        assert!(Params::from_request(None, b"{").is_err());
        assert!(Params::from_request(None, b"[1]").is_err());
        assert!(Params::from_request(None, b"  ").is_ok());
        assert!(Params::from_request(None, b"null").is_ok());
    }

    #[test]
    fn bad_numbers_are_errors_and_empty_values_absent() {
        let params = Params::from_request(Some("timeout=soon&app="), b"").expect("valid");
        assert!(params.number("timeout").is_err());
        assert_eq!(params.text("app"), None);
    }
}
