//! Access tokens: HS256 JWTs with `sub`, `iat`, `exp` and optional `iss`/`aud`, checked
//! with no leeway. Only HS256 is accepted, so `alg: none` and algorithm swaps fail.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub secret: Secret,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub ttl_seconds: i64,
}

pub struct Tokens {
    settings: TokenSettings,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid token")]
pub struct InvalidToken;

impl Tokens {
    pub fn new(settings: TokenSettings) -> Self {
        let key = settings.secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["sub", "exp", "iat"]);
        match &settings.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            settings,
        }
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.settings.ttl_seconds
    }

    pub fn issue(&self, username: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: username.to_owned(),
            iat: now,
            exp: now + self.settings.ttl_seconds,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The token's subject, when the token is valid in every respect.
    pub fn verify(&self, token: &str) -> Result<String, InvalidToken> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| InvalidToken)?;
        // `exp` is checked by the library with zero leeway; a token used in the very
        // second it expires is expired too.
        if data.claims.exp <= Utc::now().timestamp() || data.claims.sub.is_empty() {
            return Err(InvalidToken);
        }
        Ok(data.claims.sub)
    }
}
