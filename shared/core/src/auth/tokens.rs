//! Access tokens: HS256 JWTs with `sub`, `iat`, `exp`, `ver` (the user's token version)
//! and optional `iss`/`aud`, checked with no leeway. Only HS256 is accepted, so
//! `alg: none` and algorithm swaps fail, and the header may carry nothing but `alg` and
//! `typ: JWT`: a `crit` extension, a `kid` or a `jwk` we would not understand is refused
//! rather than ignored. A token must not be used before `iat` or `nbf`, and may not claim
//! a lifetime (`exp - iat`) longer than the one this deployment issues. The signing key
//! comes from a [`SecretSource`], so a rotated key is used as soon as the source sees it;
//! tokens signed with the key before it stay valid until they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secrets::{Secret, SecretError, SecretSource};

#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// Tokens this process verified lately, by their text, so that a client's token is
    /// parsed and its signature checked once rather than on every request (it was a
    /// fifth of a status GET). Only correctly signed tokens enter. Each use checks the
    /// claims again (a token expires here as anywhere) and that the key which signed it
    /// is still current or previous (a key rotated out takes its tokens with it).
    verified: Mutex<HashMap<String, Verified>>,
}

/// A correctly signed token's claims and the key that signed it.
struct Verified {
    claims: Claims,
    key: Secret,
}

/// Verified tokens kept at most; past it the map starts again empty. Only tokens that
/// this deployment signed can enter, so this bounds memory against many users' tokens,
/// not against forgers.
const VERIFIED_CAPACITY: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token")]
    Invalid,
    #[error(transparent)]
    KeyUnavailable(#[from] SecretError),
}

impl Tokens {
    pub fn new(settings: TokenSettings, key: Arc<dyn SecretSource>) -> Self {
        Self {
            settings,
            key,
            verified: Mutex::default(),
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
        let payload = serde_json::to_vec(&claims).map_err(|_| TokenError::Invalid)?;
        let mut token = base64url(HEADER.as_bytes());
        token.push('.');
        token.push_str(&base64url(&payload));
        let signature = mac(key.expose(), &token).finalize().into_bytes();
        token.push('.');
        token.push_str(&base64url(&signature));
        Ok(token)
    }

    /// The token's subject, when the token is valid in every respect. Whether the user
    /// still exists and the version is current is for the caller to check.
    pub async fn verify(&self, token: &str) -> Result<TokenSubject, TokenError> {
        let current = self.key.current().await?;
        let now = Utc::now().timestamp();
        if let Some(signer) = self.signer_on_record(token) {
            let in_force =
                signer == current || self.key.previous().await.is_some_and(|p| p == signer);
            if in_force {
                return self.subject_at(token, now).ok_or(TokenError::Invalid);
            }
            self.forget(token);
        }
        if let Some(claims) = signed_claims(token, current.expose()) {
            return self.admit(token, claims, current, now);
        }
        match self.key.previous().await {
            Some(previous) => match signed_claims(token, previous.expose()) {
                Some(claims) => self.admit(token, claims, previous, now),
                None => Err(TokenError::Invalid),
            },
            None => Err(TokenError::Invalid),
        }
    }

    /// The key that signed `token`, when this process verified it before.
    fn signer_on_record(&self, token: &str) -> Option<Secret> {
        self.verified_tokens()
            .get(token)
            .map(|entry| entry.key.clone())
    }

    /// The subject of a token on record, if its claims hold at `now`.
    fn subject_at(&self, token: &str, now: i64) -> Option<TokenSubject> {
        let verified = self.verified_tokens();
        let claims = &verified.get(token)?.claims;
        self.claims_hold(claims, now).then(|| TokenSubject {
            username: claims.sub.clone(),
            version: claims.ver,
        })
    }

    fn forget(&self, token: &str) {
        self.verified_tokens().remove(token);
    }

    /// A correctly signed token: its subject when its claims hold now; kept on record
    /// either way (claims not yet valid, `nbf` in the future, may hold later).
    fn admit(
        &self,
        token: &str,
        claims: Claims,
        key: Secret,
        now: i64,
    ) -> Result<TokenSubject, TokenError> {
        let subject = self.claims_hold(&claims, now).then(|| TokenSubject {
            username: claims.sub.clone(),
            version: claims.ver,
        });
        let mut verified = self.verified_tokens();
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(token.to_owned(), Verified { claims, key });
        subject.ok_or(TokenError::Invalid)
    }

    fn verified_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        // Entries are inserted and removed whole: a panic elsewhere cannot leave one
        // half-written.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checks on what a correctly signed token claims, with no leeway: as
    /// jsonwebtoken's validation made them (`exp` required and a non-negative number,
    /// `nbf` when present a non-negative number not in the future, `iss` and `aud` when
    /// present and configured equal to the configured one), then ours on the lifetime.
    fn claims_hold(&self, claims: &Claims, now: i64) -> bool {
        let Claims {
            sub,
            iat,
            exp,
            nbf,
            iss,
            aud,
            ver: _,
        } = claims;
        let (iat, exp) = (*iat, *exp);
        let nbf_ok = nbf.is_none_or(|nbf| (0..=now).contains(&nbf));
        let iss_ok = match (&self.settings.issuer, iss) {
            (Some(wanted), Some(iss)) => wanted == iss,
            _ => true,
        };
        let aud_ok = match (&self.settings.audience, aud) {
            (Some(wanted), Some(aud)) => wanted == aud,
            _ => true,
        };
        // A token used in the very second it expires is expired too.
        let timely = exp > now
            && iat <= now + CLOCK_SKEW_SECONDS
            && iat < exp
            && exp - iat <= self.settings.ttl_seconds;
        timely && nbf_ok && iss_ok && aud_ok && !sub.is_empty()
    }
}

/// The claims of `token` when it is an HS256 JWT with a plain header, signed with
/// `key`; whether they hold now is for the caller.
fn signed_claims(token: &str, key: &str) -> Option<Claims> {
    // header.payload.signature, no more parts and no fewer.
    let (message, signature) = token.rsplit_once('.')?;
    let (header, payload) = message.rsplit_once('.')?;
    let header: Header = serde_json::from_slice(&base64url_decode(header)?).ok()?;
    if header.alg != "HS256" || !header.is_plain() {
        return None;
    }
    // Constant time.
    mac(key, message)
        .verify_slice(&base64url_decode(signature)?)
        .ok()?;
    serde_json::from_slice(&base64url_decode(payload)?).ok()
}

/// The header of every token we issue, as jsonwebtoken wrote it.
const HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

/// A token's header: only what our own tokens carry, `alg` and `typ: JWT`. Each
/// registered header that we do not use may appear only as `null`; any other member
/// (a `crit` extension, say) refuses the token rather than being ignored, and so does
/// a member given twice.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    cty: Option<IgnoredAny>,
    #[serde(default)]
    jku: Option<IgnoredAny>,
    #[serde(default)]
    jwk: Option<IgnoredAny>,
    #[serde(default)]
    kid: Option<IgnoredAny>,
    #[serde(default)]
    x5u: Option<IgnoredAny>,
    #[serde(default)]
    x5c: Option<IgnoredAny>,
    #[serde(default)]
    x5t: Option<IgnoredAny>,
    #[serde(default, rename = "x5t#S256")]
    x5t_s256: Option<IgnoredAny>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    enc: Option<IgnoredAny>,
    #[serde(default)]
    zip: Option<IgnoredAny>,
    #[serde(default)]
    url: Option<IgnoredAny>,
    #[serde(default)]
    nonce: Option<IgnoredAny>,
}

impl Header {
    fn is_plain(&self) -> bool {
        let Header {
            alg: _,
            typ,
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
        } = self;
        typ.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("JWT"))
            && [
                cty, jku, jwk, kid, x5u, x5c, x5t, x5t_s256, crit, enc, zip, url, nonce,
            ]
            .iter()
            .all(|member| member.is_none())
    }
}

fn mac(key: &str, message: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    mac
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 7515 §2).
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(BASE64URL[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// The strict inverse of [`base64url`]: no padding, no other alphabet, no
/// whitespace, and the unused low bits of the last character zero (one encoding per
/// byte string), as jsonwebtoken's decoder required.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let value = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return None,
            };
            n |= u32::from(value) << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        if n & (0xff_ffff >> (8 * bytes)) != 0 {
            return None;
        }
        out.extend_from_slice(&n.to_be_bytes()[1..=bytes]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{Fixed, Secret};
    use serde_json::{Value, json};

    const KEY: &str = "test-secret-key";

    fn tokens(issuer: Option<&str>, audience: Option<&str>) -> Tokens {
        Tokens::new(
            TokenSettings {
                issuer: issuer.map(str::to_owned),
                audience: audience.map(str::to_owned),
                ttl_seconds: 600,
            },
            Arc::new(Fixed(Secret::new(KEY))),
        )
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    /// A token as jsonwebtoken signs it, with any header and claims.
    fn signed(header: &jsonwebtoken::Header, claims: &impl Serialize, key: &str) -> String {
        jsonwebtoken::encode(
            header,
            claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .expect("encode")
    }

    fn hs256() -> jsonwebtoken::Header {
        jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
    }

    fn good_claims() -> Value {
        let now = now();
        json!({ "sub": "alice", "iat": now, "exp": now + 600, "ver": 3, "iss": "us", "aud": "api" })
    }

    fn with(changes: Value) -> Value {
        let mut claims = good_claims();
        for (name, value) in changes.as_object().expect("object") {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    /// A token with a raw header and payload (JSON text), signed with KEY.
    fn raw(header: &str, payload: &str) -> String {
        let message = format!(
            "{}.{}",
            base64url(header.as_bytes()),
            base64url(payload.as_bytes())
        );
        let signature = mac(KEY, &message).finalize().into_bytes();
        format!("{message}.{}", base64url(&signature))
    }

    fn subject(version: u64) -> TokenSubject {
        TokenSubject {
            username: "alice".into(),
            version,
        }
    }

    #[test]
    fn base64url_matches_the_base64_crate_and_is_strict() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            let ours = base64url(&bytes);
            assert_eq!(ours, URL_SAFE_NO_PAD.encode(&bytes));
            assert_eq!(base64url_decode(&ours).as_deref(), Some(&bytes[..]));
        }
        for bad in [
            "A", "AB==", "AB=", "A+", "A/", "AB C", "AQ.", "AB", "AAB", "é",
        ] {
            assert_eq!(
                base64url_decode(bad).is_some(),
                URL_SAFE_NO_PAD.decode(bad).is_ok(),
                "{bad}"
            );
        }
        assert_eq!(base64url_decode("AB"), None, "non-zero trailing bits");
        assert_eq!(base64url_decode("AQ"), Some(vec![1]));
    }

    #[tokio::test]
    async fn issued_tokens_are_what_jsonwebtoken_issued_and_verify_both_ways() {
        let tokens = tokens(Some("us"), Some("api"));
        let token = tokens.issue("alice", 3).await.expect("issue");
        assert_eq!(tokens.verify(&token).await.expect("valid"), subject(3));

        // jsonwebtoken reads ours, with the same validation as before.
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&["us"]);
        validation.set_audience(&["api"]);
        let data = jsonwebtoken::decode::<Claims>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(KEY.as_bytes()),
            &validation,
        )
        .expect("jsonwebtoken accepts ours");
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));

        // Byte for byte what jsonwebtoken makes of the same claims.
        assert_eq!(signed(&hs256(), &data.claims, KEY), token);

        // And ours reads jsonwebtoken's.
        let theirs = signed(&hs256(), &good_claims(), KEY);
        assert_eq!(tokens.verify(&theirs).await.expect("valid"), subject(3));
    }

    #[tokio::test]
    async fn bad_tokens_are_refused() {
        let tokens = tokens(Some("us"), Some("api"));
        let now = now();
        let good = signed(&hs256(), &good_claims(), KEY);
        let mut crit = hs256();
        crit.crit = Some(vec!["exp-unknown".into()]);
        let mut kid = hs256();
        kid.kid = Some("k1".into());
        let mut extra = hs256();
        extra.extras.insert("x-extra", "1");
        let mut cty = hs256();
        cty.cty = Some("JWT".into());
        let mut typ = hs256();
        typ.typ = Some("at+jwt".into());
        let hs512 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
        let payload = good_claims().to_string();
        let cases = [
            ("garbage", "not-a-jwt".to_owned()),
            ("empty", String::new()),
            (
                "two parts",
                good.rsplit_once('.').expect("dot").0.to_owned(),
            ),
            ("four parts", format!("{good}.x")),
            ("tampered", format!("{}x", &good[..good.len() - 1])),
            ("padded signature", format!("{good}=")),
            ("wrong key", signed(&hs256(), &good_claims(), "another-key")),
            ("HS512", signed(&hs512, &good_claims(), KEY)),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    base64url(br#"{"alg":"none","typ":"JWT"}"#),
                    base64url(payload.as_bytes())
                ),
            ),
            ("alg lower case", raw(r#"{"alg":"hs256"}"#, &payload)),
            (
                "alg twice",
                raw(r#"{"alg":"none","alg":"HS256"}"#, &payload),
            ),
            ("no alg", raw(r#"{"typ":"JWT"}"#, &payload)),
            ("crit", signed(&crit, &good_claims(), KEY)),
            ("kid", signed(&kid, &good_claims(), KEY)),
            ("an unknown header", signed(&extra, &good_claims(), KEY)),
            (
                "an unknown null header",
                raw(r#"{"alg":"HS256","x":null}"#, &payload),
            ),
            ("cty", signed(&cty, &good_claims(), KEY)),
            ("another typ", signed(&typ, &good_claims(), KEY)),
            ("a header that is not JSON", raw("{", &payload)),
            ("claims that are not JSON", raw(HEADER, "{")),
            (
                "expired",
                signed(&hs256(), &with(json!({ "exp": now })), KEY),
            ),
            (
                "no exp",
                signed(&hs256(), &with(json!({ "exp": null })), KEY),
            ),
            (
                "exp a string",
                signed(
                    &hs256(),
                    &with(json!({ "exp": format!("{}", now + 60) })),
                    KEY,
                ),
            ),
            (
                "exp a float",
                signed(&hs256(), &with(json!({ "exp": now as f64 + 60.5 })), KEY),
            ),
            (
                "no iat",
                signed(&hs256(), &with(json!({ "iat": null })), KEY),
            ),
            (
                "no sub",
                signed(&hs256(), &with(json!({ "sub": null })), KEY),
            ),
            (
                "empty sub",
                signed(&hs256(), &with(json!({ "sub": "" })), KEY),
            ),
            (
                "sub a number",
                signed(&hs256(), &with(json!({ "sub": 5 })), KEY),
            ),
            (
                "no ver",
                signed(&hs256(), &with(json!({ "ver": null })), KEY),
            ),
            (
                "ver negative",
                signed(&hs256(), &with(json!({ "ver": -1 })), KEY),
            ),
            (
                "sub twice",
                raw(HEADER, &format!(r#"{{"sub":"bob",{}"#, &payload[1..])),
            ),
            (
                "nbf ahead",
                signed(&hs256(), &with(json!({ "nbf": now + 60 })), KEY),
            ),
            (
                "nbf negative",
                signed(&hs256(), &with(json!({ "nbf": -1 })), KEY),
            ),
            (
                "nbf a string",
                signed(&hs256(), &with(json!({ "nbf": "0" })), KEY),
            ),
            (
                "iat ahead",
                signed(
                    &hs256(),
                    &with(json!({ "iat": now + 60, "exp": now + 600 })),
                    KEY,
                ),
            ),
            (
                "iat after exp",
                signed(
                    &hs256(),
                    &with(json!({ "iat": now + 3, "exp": now + 2 })),
                    KEY,
                ),
            ),
            (
                "too long a life",
                signed(
                    &hs256(),
                    &with(json!({ "iat": now - 1, "exp": now + 600 })),
                    KEY,
                ),
            ),
            (
                "wrong issuer",
                signed(&hs256(), &with(json!({ "iss": "them" })), KEY),
            ),
            (
                "issuer a list",
                signed(&hs256(), &with(json!({ "iss": ["us"] })), KEY),
            ),
            (
                "wrong audience",
                signed(&hs256(), &with(json!({ "aud": "other" })), KEY),
            ),
            (
                "audience a list",
                signed(&hs256(), &with(json!({ "aud": ["api"] })), KEY),
            ),
        ];
        for (case, token) in cases {
            assert!(tokens.verify(&token).await.is_err(), "{case}");
        }
    }

    /// A signing key that the test rotates, keeping the one before as `previous`.
    struct Rotating(Mutex<(Secret, Option<Secret>)>);

    impl Rotating {
        fn rotate(&self, next: &str) {
            let mut keys = self.0.lock().expect("keys");
            let before = std::mem::replace(&mut keys.0, Secret::new(next));
            keys.1 = Some(before);
        }
    }

    #[async_trait::async_trait]
    impl SecretSource for Rotating {
        async fn current(&self) -> Result<Secret, SecretError> {
            Ok(self.0.lock().expect("keys").0.clone())
        }
        async fn previous(&self) -> Option<Secret> {
            self.0.lock().expect("keys").1.clone()
        }
    }

    #[tokio::test]
    async fn a_token_on_record_stops_working_once_its_key_is_rotated_out() {
        let keys = Arc::new(Rotating(Mutex::new((Secret::new("key-one"), None))));
        let tokens = Tokens::new(
            TokenSettings {
                issuer: None,
                audience: None,
                ttl_seconds: 600,
            },
            keys.clone(),
        );
        let token = tokens.issue("alice", 3).await.expect("issue");
        for _ in 0..2 {
            assert_eq!(tokens.verify(&token).await.expect("valid"), subject(3));
        }
        keys.rotate("key-two");
        assert_eq!(
            tokens.verify(&token).await.expect("the previous key's"),
            subject(3)
        );
        keys.rotate("key-three");
        assert!(tokens.verify(&token).await.is_err(), "its key is gone");
        assert!(tokens.verify(&token).await.is_err(), "and stays gone");
    }

    #[tokio::test]
    async fn a_token_on_record_expires_as_any_token_does() {
        let tokens = tokens(None, None);
        let soon = signed(&hs256(), &with(json!({ "exp": now() + 1 })), KEY);
        assert_eq!(tokens.verify(&soon).await.expect("valid"), subject(3));
        tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
        assert!(tokens.verify(&soon).await.is_err(), "expired");
    }

    #[tokio::test]
    async fn only_correctly_signed_tokens_are_kept_on_record() {
        let tokens = tokens(None, None);
        let forged = signed(&hs256(), &good_claims(), "not-the-key");
        let not_yet = signed(&hs256(), &with(json!({ "nbf": now() + 60 })), KEY);
        for _ in 0..3 {
            assert!(tokens.verify(&forged).await.is_err());
            assert!(tokens.verify(&not_yet).await.is_err(), "not before nbf");
        }
        let kept: Vec<String> = tokens.verified_tokens().keys().cloned().collect();
        assert_eq!(kept, vec![not_yet], "signed, so kept: it may hold later");
    }

    #[tokio::test]
    async fn what_jsonwebtoken_let_through_still_passes() {
        let tokens = tokens(Some("us"), Some("api"));
        let now = now();
        let payload = good_claims().to_string();
        let mut typ = hs256();
        typ.typ = Some("jwt".into());
        let mut nbf_null = good_claims();
        nbf_null["nbf"] = Value::Null;
        let cases = [
            ("no typ", raw(r#"{"alg":"HS256"}"#, &payload)),
            ("typ in lower case", signed(&typ, &good_claims(), KEY)),
            (
                "registered headers as null",
                raw(r#"{"alg":"HS256","kid":null,"crit":null}"#, &payload),
            ),
            (
                "nbf now",
                signed(&hs256(), &with(json!({ "nbf": now })), KEY),
            ),
            ("nbf null", signed(&hs256(), &nbf_null, KEY)),
            (
                "no iss",
                signed(&hs256(), &with(json!({ "iss": null })), KEY),
            ),
            (
                "no aud",
                signed(&hs256(), &with(json!({ "aud": null })), KEY),
            ),
            (
                "unknown claims",
                signed(&hs256(), &with(json!({ "scope": "x" })), KEY),
            ),
            (
                "iat a little ahead",
                signed(
                    &hs256(),
                    &with(json!({ "iat": now + 2, "exp": now + 600 })),
                    KEY,
                ),
            ),
        ];
        for (case, token) in cases {
            assert_eq!(tokens.verify(&token).await.ok(), Some(subject(3)), "{case}");
        }
        // Without an issuer or audience configured, any is accepted.
        let open = self::tokens(None, None);
        let other = signed(
            &hs256(),
            &with(json!({ "iss": "them", "aud": "other" })),
            KEY,
        );
        assert_eq!(open.verify(&other).await.ok(), Some(subject(3)));
    }
}
