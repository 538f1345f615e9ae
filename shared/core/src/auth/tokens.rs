//! Access tokens: HS256 JWTs with `sub`, `iat`, `exp` and optional `iss`/`aud`, checked
//! with no leeway. Only HS256 is accepted, so `alg: none` and algorithm swaps fail. The
//! signing key comes from a [`SecretSource`], so a rotated key is used as soon as the
//! source sees it; tokens signed with the key before it stay valid until they expire.

use std::sync::Arc;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::secrets::{SecretError, SecretSource};

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
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub ttl_seconds: i64,
}

pub struct Tokens {
    settings: TokenSettings,
    key: Arc<dyn SecretSource>,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token")]
    Invalid,
    #[error(transparent)]
    KeyUnavailable(#[from] SecretError),
}

impl Tokens {
    pub fn new(settings: TokenSettings, key: Arc<dyn SecretSource>) -> Self {
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
            settings,
            key,
            validation,
        }
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.settings.ttl_seconds
    }

    pub async fn issue(&self, username: &str) -> Result<String, TokenError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: username.to_owned(),
            iat: now,
            exp: now + self.settings.ttl_seconds,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
        };
        let key = self.key.current().await?;
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key.expose().as_bytes()),
        )
        .map_err(|_| TokenError::Invalid)
    }

    /// The token's subject, when the token is valid in every respect.
    pub async fn verify(&self, token: &str) -> Result<String, TokenError> {
        let current = self.key.current().await?;
        if let Some(sub) = self.verify_with(token, current.expose()) {
            return Ok(sub);
        }
        match self.key.previous().await {
            Some(previous) => self
                .verify_with(token, previous.expose())
                .ok_or(TokenError::Invalid),
            None => Err(TokenError::Invalid),
        }
    }

    fn verify_with(&self, token: &str, key: &str) -> Option<String> {
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(key.as_bytes()),
            &self.validation,
        )
        .ok()?;
        // `exp` is checked by the library with zero leeway; a token used in the very
        // second it expires is expired too.
        (data.claims.exp > Utc::now().timestamp() && !data.claims.sub.is_empty())
            .then_some(data.claims.sub)
    }
}
