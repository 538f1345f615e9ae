//! Access tokens: HS256 JWTs with `sub`, `iat`, `exp`, `ver` (the user's token version)
//! and optional `iss`/`aud`, checked with no leeway. Only HS256 is accepted, so
//! `alg: none` and algorithm swaps fail, and the header may carry nothing but `alg` and
//! `typ: JWT`: a `crit` extension, a `kid` or a `jwk` we would not understand is refused
//! rather than ignored. A token must not be used before `iat` or `nbf`, and may not claim
//! a lifetime (`exp - iat`) longer than the one this deployment issues. The signing key
//! comes from a [`SecretSource`], so a rotated key is used as soon as the source sees it;
//! tokens signed with the key before it stay valid until they expire.

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
    /// The user's token version when the token was issued: a password reset or a
    /// revocation raises it, and every token with an older one stops working.
    pub ver: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
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

/// What a valid token says: who, and which of the user's token versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSubject {
    pub username: String,
    pub version: u64,
}

/// How far ahead of this clock another container's clock may be when it issues a token.
const CLOCK_SKEW_SECONDS: i64 = 5;

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
        validation.validate_nbf = true;
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

    pub async fn issue(&self, username: &str, version: u64) -> Result<String, TokenError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: username.to_owned(),
            iat: now,
            exp: now + self.settings.ttl_seconds,
            ver: version,
            nbf: None,
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

    /// The token's subject, when the token is valid in every respect. Whether the user
    /// still exists and the version is current is for the caller to check.
    pub async fn verify(&self, token: &str) -> Result<TokenSubject, TokenError> {
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

    fn verify_with(&self, token: &str, key: &str) -> Option<TokenSubject> {
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(key.as_bytes()),
            &self.validation,
        )
        .ok()?;
        if !plain_header(&data.header) {
            return None;
        }
        let Claims {
            sub, iat, exp, ver, ..
        } = data.claims;
        let now = Utc::now().timestamp();
        // `exp` is checked by the library with zero leeway; a token used in the very
        // second it expires is expired too.
        let timely = exp > now
            && iat <= now + CLOCK_SKEW_SECONDS
            && iat < exp
            && exp - iat <= self.settings.ttl_seconds;
        (timely && !sub.is_empty()).then_some(TokenSubject {
            username: sub,
            version: ver,
        })
    }
}

/// Only what our own tokens carry: `alg` (checked by the library) and `typ: JWT`.
fn plain_header(header: &Header) -> bool {
    let Header {
        typ,
        alg: _,
        cty,
        jku,
        jwk,
        kid,
        x5u,
        x5c,
        x5t,
        x5t_s256,
        crit,
        enc,
        zip,
        url,
        nonce,
        extras,
    } = header;
    typ.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("JWT"))
        && cty.is_none()
        && jku.is_none()
        && jwk.is_none()
        && kid.is_none()
        && x5u.is_none()
        && x5c.is_none()
        && x5t.is_none()
        && x5t_s256.is_none()
        && crit.is_none()
        && enc.is_none()
        && zip.is_none()
        && url.is_none()
        && nonce.is_none()
        && extras.inner().is_empty()
}
