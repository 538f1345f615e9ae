//! Validation of everything a client sends that could reach a dial string or the
//! dialplan. Each accepted value is wrapped in a type that can only be built here, so
//! unchecked client text cannot be handed to the PBX by mistake.
//!
//! Checks are by explicit ASCII whitelists: `char::is_numeric` and friends accept
//! Unicode digits, which a dial string must never see.
//!
//! Each rule is written down once, in [`rules`]; the 422 messages, the OpenAPI schema
//! and the README take its words from there, and tests hold the parsers to them.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

/// A rejected field, with a message a client can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// One field's rule, written for clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldRule {
    /// The request field, as a 422 names it.
    pub field: &'static str,
    /// Which part of the field the rule is about, for a field with more than one rule.
    pub part: Option<&'static str>,
    /// The whole rule, in words that read after "must be".
    pub rule: &'static str,
    /// The rule as an anchored regular expression (the same in ECMA-262, as OpenAPI
    /// reads it, and in Rust's `regex`): every accepted value matches it, and every
    /// value that matches it is accepted, save for what only `rule` says (a length
    /// limit, the context allowlist).
    pub pattern: Option<&'static str>,
    /// A value accepted.
    pub example: &'static str,
    /// Values refused, for the README.
    pub refused: &'static [&'static str],
}

impl FieldRule {
    /// The 422 for a value that breaks the rule.
    pub fn refusal(&self) -> ValidationError {
        ValidationError::new(self.field, format!("must be {}", self.rule))
    }

    /// How the README and the OpenAPI document name it, e.g. `variables (values)`.
    pub fn label(&self) -> String {
        match self.part {
            Some(part) => format!("{} ({part})", self.field),
            None => self.field.to_owned(),
        }
    }
}

/// The written rules, one per field (two for `variables`), in the order of the request
/// body.
pub mod rules {
    use super::FieldRule;

    pub const PHONE_NUMBER: FieldRule = FieldRule {
        field: "phone_number",
        part: None,
        rule: "E.164: `+` then 7 to 15 ASCII digits, the first of them 1 to 9 (no country code begins with 0)",
        pattern: Some(r"^\+[1-9][0-9]{6,14}$"),
        example: "+15550010001",
        refused: &[
            "+00015550010001",
            "+0123456789",
            "15550010001",
            "+123456",
            "+1234567890123456",
            "+1555 0010001",
            "+1555,0010001",
            "+1555001@evil",
            "+１５５５００１０００１",
            "+1555٠٠١٠٠٠١",
        ],
    };

    pub const CONTEXT: FieldRule = FieldRule {
        field: "context",
        part: None,
        rule: "on the operator's allowlist, and 1 to 80 of: ASCII letters, digits, `_ - .`",
        pattern: Some(r"^[A-Za-z0-9_.-]{1,80}$"),
        example: "outbound-ivr",
        refused: &["default", "outbound-ivr,s,1", "outbound ivr"],
    };

    pub const EXTENSION: FieldRule = FieldRule {
        field: "extension",
        part: None,
        rule: "1 to 40 of: ASCII letters, digits, `* # + _ -`, the first not `_` (that would make it a dialplan pattern)",
        pattern: Some(r"^[A-Za-z0-9*#+-][A-Za-z0-9*#+_-]{0,39}$"),
        example: "s",
        refused: &["s,1", "s,1(evil)", "${EXTEN}", "_X.", "s@ctx", "a/b"],
    };

    pub const PRIORITY: FieldRule = FieldRule {
        field: "priority",
        part: None,
        rule: "an integer from 1 to 999",
        pattern: None,
        example: "1",
        refused: &["0", "1000"],
    };

    pub const TIMEOUT: FieldRule = FieldRule {
        field: "timeout",
        part: None,
        rule: "an integer from 1000 to 600000 (milliseconds)",
        pattern: None,
        example: "30000",
        refused: &["999", "600001"],
    };

    pub const CALLER_ID: FieldRule = FieldRule {
        field: "caller_id",
        part: None,
        rule: "`NAME`, `<NUMBER>` or `NAME <NUMBER>` (one space between). NAME: 1 to 40 of ASCII letters, digits, spaces and `. ' _ -`, not beginning or ending with a space. NUMBER: E.164 as for `phone_number`, or 1 to 20 ASCII digits",
        pattern: Some(
            r"^([A-Za-z0-9.'_-]([A-Za-z0-9 .'_-]{0,38}[A-Za-z0-9.'_-])?( <(\+[1-9][0-9]{6,14}|[0-9]{1,20})>)?|<(\+[1-9][0-9]{6,14}|[0-9]{1,20})>)$",
        ),
        example: "MyCompany <+15550000000>",
        refused: &[
            "ＭｙＣｏｍｐａｎｙ",
            "Shop ٣",
            "Café",
            "\"Evil\" <1>",
            "Name <+0123456>",
            "Name <abc>",
            "Name<123>",
            " Name",
            "a\nb",
        ],
    };

    pub const VARIABLE_NAMES: FieldRule = FieldRule {
        field: "variables",
        part: Some("names"),
        rule: "1 to 64 of ASCII letters, digits and `_`, beginning with a letter (so no dialplan function such as `CALLERID(num)`, no `_` or `__` inheritance prefix); at most 32 variables",
        pattern: Some(r"^[A-Za-z][A-Za-z0-9_]{0,63}$"),
        example: "CUSTOMER_ID",
        refused: &["CALLERID(num)", "_INHERIT", "__INHERIT", "1X", "a b", ""],
    };

    pub const VARIABLE_VALUES: FieldRule = FieldRule {
        field: "variables",
        part: Some("values"),
        rule: "0 to 256 characters, each an ASCII letter, digit, space or one of `! # % * + - . / : = ? @ _ ~`; so none of `` $ ( ) [ ] { } , | ; ^ & \\ \" ' ` < > ``, no control characters and nothing outside ASCII (no line or paragraph separators, no bidirectional overrides or isolates)",
        pattern: Some(r"^[A-Za-z0-9 !#%*+./:=?@_~-]{0,256}$"),
        example: "A-42/7 order#9",
        refused: &[
            "${SHELL(id)}",
            "$[1+1]",
            "a,b)",
            "a\u{2028}b",
            "a\u{2029}b",
            "a\u{202E}b",
            "a\u{2066}b",
            "a|b",
            "a;b",
            "a^b",
            "a&b",
            "a\\b",
            "say \"hi\"",
            "O'Neil",
            "`id`",
            "<b>",
            "[x]",
            "{x}",
            "a\nb",
            "a\u{7f}b",
            "Café",
        ],
    };

    pub const MODE: FieldRule = FieldRule {
        field: "mode",
        part: None,
        rule: "`ivr` or `playback`",
        pattern: Some(r"^(ivr|playback)$"),
        example: "ivr",
        refused: &["conference", "IVR"],
    };

    pub const MEDIA: FieldRule = FieldRule {
        field: "media",
        part: None,
        rule: "at most 20 items (at least one in playback mode), each `sound:PATH`, `recording:PATH`, `digits:N` or `number:N`. PATH: 1 to 128 characters, segments of ASCII letters, digits and `_ - .` joined by single `/`, no segment beginning with `.` (so no `.`, `..` or hidden names), no leading or trailing `/`. N: 1 to 20 ASCII digits",
        pattern: Some(
            r"^((sound|recording):[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*|(digits|number):[0-9]{1,20})$",
        ),
        example: "sound:hello-world",
        refused: &[
            "sound:.hidden",
            "sound:a/",
            "sound:a/./b",
            "sound:a/../b",
            "sound:../etc/passwd",
            "sound:a//b",
            "sound:/abs",
            "sound:",
            "sound:a,b",
            "tone:ring",
            "digits:12a",
        ],
    };

    pub const MAX_DURATION: FieldRule = FieldRule {
        field: "max_duration",
        part: None,
        rule: "an integer from 1000 to 86400000 (milliseconds)",
        pattern: None,
        example: "60000",
        refused: &["999", "86400001"],
    };

    /// Every rule, in the order of the request body.
    pub const ALL: &[FieldRule] = &[
        PHONE_NUMBER,
        CONTEXT,
        EXTENSION,
        PRIORITY,
        TIMEOUT,
        CALLER_ID,
        VARIABLE_NAMES,
        VARIABLE_VALUES,
        MODE,
        MEDIA,
        MAX_DURATION,
    ];
}

/// No E.164 country code begins with 0, so a leading 0 is a national or mistyped number
/// that the trunk would misroute.
fn is_e164(raw: &str) -> bool {
    raw.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// An E.164 number: [`rules::PHONE_NUMBER`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if is_e164(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(rules::PHONE_NUMBER.refusal())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A dialplan context that the operator has allowed: [`rules::CONTEXT`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Context(String);

impl Context {
    pub fn parse(raw: &str, allowed: &[String]) -> Result<Self, ValidationError> {
        if allowed.iter().any(|a| a == raw) {
            Self::from_record(raw)
        } else {
            // The list is the operator's, shown to an authenticated client so that it
            // can correct its request; a long one is cut short.
            let shown: Vec<&str> = allowed.iter().take(10).map(String::as_str).collect();
            let more = if allowed.len() > shown.len() {
                ", …"
            } else {
                ""
            };
            Err(ValidationError::new(
                "context",
                format!(
                    "{raw:?} is not an allowed context; allowed: {}{more}",
                    shown.join(", ")
                ),
            ))
        }
    }

    /// A context read back from a call record: it was on the allowlist when the call was
    /// made (the list may have changed since), and it still has a context's shape.
    pub fn from_record(raw: &str) -> Result<Self, ValidationError> {
        let ok = (1..=80).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(rules::CONTEXT.refusal())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A dialplan extension: [`rules::EXTENSION`]. A leading `_` marks a pattern in the
/// dialplan; no literal extension a call can be sent to begins with one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Extension(String);

impl Extension {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok = (1..=40).contains(&raw.len())
            && !raw.starts_with('_')
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"*#+_-".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(rules::EXTENSION.refusal())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The dialplan priorities a call may be sent to: [`rules::PRIORITY`].
pub const PRIORITY_RANGE: RangeInclusive<i64> = 1..=999;

/// A dialplan priority: [`rules::PRIORITY`].
pub fn priority(raw: i64) -> Result<u32, ValidationError> {
    if PRIORITY_RANGE.contains(&raw) {
        u32::try_from(raw).map_err(|_| rules::PRIORITY.refusal())
    } else {
        Err(rules::PRIORITY.refusal())
    }
}

/// The ring timeout: the API takes milliseconds (as the original spec did), ARI takes
/// whole seconds. [`rules::TIMEOUT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingTimeout {
    millis: u64,
}

impl RingTimeout {
    pub const MIN_MS: i64 = 1_000;
    pub const MAX_MS: i64 = 600_000;

    pub fn from_millis(raw: i64) -> Result<Self, ValidationError> {
        if (Self::MIN_MS..=Self::MAX_MS).contains(&raw) {
            Ok(Self {
                millis: raw.unsigned_abs(),
            })
        } else {
            Err(rules::TIMEOUT.refusal())
        }
    }

    pub fn millis(self) -> u64 {
        self.millis
    }

    /// Rounded up: a 1.5 s timeout must not ring for only 1 s.
    pub fn seconds(self) -> u64 {
        self.millis.div_ceil(1000)
    }
}

/// A caller id: [`rules::CALLER_ID`]. Asterisk splits a caller id on `"` and `<>`, so a
/// name holds neither, and only ASCII: the rule says what the far end's display can be
/// trusted to show, and no look-alike letters or digits can pass for others.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallerId(String);

impl CallerId {
    pub const MAX_NAME_LEN: usize = 40;
    pub const MAX_DIGITS: usize = 20;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok = match raw.strip_suffix('>') {
            Some(rest) => rest.split_once('<').is_some_and(|(head, number)| {
                Self::number_ok(number)
                    && (head.is_empty() || head.strip_suffix(' ').is_some_and(Self::name_ok))
            }),
            None => Self::name_ok(raw),
        };
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(rules::CALLER_ID.refusal())
        }
    }

    fn name_ok(name: &str) -> bool {
        (1..=Self::MAX_NAME_LEN).contains(&name.len())
            && !name.starts_with(' ')
            && !name.ends_with(' ')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" .'_-".contains(&b))
    }

    fn number_ok(number: &str) -> bool {
        is_e164(number)
            || (1..=Self::MAX_DIGITS).contains(&number.len())
                && number.bytes().all(|b| b.is_ascii_digit())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Channel variables a client may set: [`rules::VARIABLE_NAMES`] and
/// [`rules::VARIABLE_VALUES`]. A name is an identifier: `CALLERID(num)` would call a
/// dialplan function, and a leading `_` would carry the variable into other channels.
///
/// A value ends up wherever the operator's dialplan puts `${NAME}`, usually inside an
/// application's arguments, which Asterisk splits and unquotes after substitution. So
/// every character that parser, the expression and substitution syntax, or a shell or
/// SQL query the dialplan hands the value to might act on is refused:
/// `$` (`${…}`, `$[…]`), the brackets and braces that nest there, `,` and `|` (argument
/// separators, `|` in older releases), `;` (a comment in `extensions.conf`), `^` (the
/// separator of `Dial`'s option arguments such as `U(sub^arg)`), `&` (the separator of
/// `Dial` targets and `Playback` files), `\` and `"` (the argument parser's escape and
/// quote), `'` and `` ` `` (shell and SQL quoting), `<` and `>` (caller id syntax, shell
/// redirection). What is left is a whitelist, so nothing added to Unicode later (line
/// separators, bidirectional controls) can slip through.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Variables(BTreeMap<String, String>);

impl Variables {
    pub const MAX_COUNT: usize = 32;
    pub const MAX_NAME_LEN: usize = 64;
    pub const MAX_VALUE_LEN: usize = 256;
    /// The punctuation a value may hold, besides ASCII letters and digits.
    pub const VALUE_PUNCTUATION: &str = " !#%*+-./:=?@_~";
    /// The rest of printable ASCII, which a value may not hold.
    pub const VALUE_REFUSED: &str = "$()[]{},|;^&\\\"'`<>";

    pub fn parse(raw: &BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if raw.len() > Self::MAX_COUNT {
            return Err(ValidationError::new(
                "variables",
                format!("at most {} variables", Self::MAX_COUNT),
            ));
        }
        for (name, value) in raw {
            if !Self::name_ok(name) {
                return Err(ValidationError::new(
                    "variables",
                    format!(
                        "{name:?} is not a valid variable name: names must be {}",
                        rules::VARIABLE_NAMES.rule
                    ),
                ));
            }
            if !Self::value_ok(value) {
                return Err(ValidationError::new(
                    "variables",
                    format!("value of {name:?} must be {}", rules::VARIABLE_VALUES.rule),
                ));
            }
        }
        Ok(Self(raw.clone()))
    }

    fn name_ok(name: &str) -> bool {
        name.len() <= Self::MAX_NAME_LEN
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }

    fn value_ok(value: &str) -> bool {
        value.len() <= Self::MAX_VALUE_LEN
            && value.bytes().all(|b| {
                b.is_ascii_alphanumeric() || Self::VALUE_PUNCTUATION.as_bytes().contains(&b)
            })
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One media item for playback: [`rules::MEDIA`]. Commas are the separator of ARI's
/// media list, so they never pass; a path segment beginning with `.` could climb out of
/// the sounds directory (`..`) or reach a hidden file, and an empty one or a leading `/`
/// could make the path absolute.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Media(String);

impl Media {
    pub const MAX_ITEMS: usize = 20;
    pub const MAX_PATH_LEN: usize = 128;
    pub const MAX_DIGITS: usize = 20;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok = raw
            .split_once(':')
            .is_some_and(|(scheme, name)| match scheme {
                "sound" | "recording" => {
                    (1..=Self::MAX_PATH_LEN).contains(&name.len())
                        && name.split('/').all(Self::segment_ok)
                }
                "digits" | "number" => {
                    (1..=Self::MAX_DIGITS).contains(&name.len())
                        && name.bytes().all(|b| b.is_ascii_digit())
                }
                _ => false,
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "media",
                format!("{raw:?} is refused: media must be {}", rules::MEDIA.rule),
            ))
        }
    }

    fn segment_ok(segment: &str) -> bool {
        segment.bytes().next().is_some_and(|b| b != b'.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    }

    pub fn parse_list(raw: &[String]) -> Result<Vec<Self>, ValidationError> {
        if raw.len() > Self::MAX_ITEMS {
            return Err(rules::MEDIA.refusal());
        }
        raw.iter().map(|m| Self::parse(m)).collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! displayed_as_text {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

displayed_as_text!(Context, Extension, CallerId, Media);

/// The talk-time limits a call may have, in milliseconds: [`rules::MAX_DURATION`].
pub const MAX_DURATION_RANGE_MS: RangeInclusive<i64> = 1_000..=86_400_000;

/// A talk-time limit (`max_duration`, `MAX_CALL_DURATION`): [`rules::MAX_DURATION`].
pub fn max_duration(raw: i64) -> Result<u64, ValidationError> {
    if MAX_DURATION_RANGE_MS.contains(&raw) {
        Ok(raw.unsigned_abs())
    } else {
        Err(rules::MAX_DURATION.refusal())
    }
}

/// An operator's endpoint template: `TECH/…{number}…`, e.g. `PJSIP/{number}@trunk`.
pub fn endpoint_template(raw: &str) -> Result<&str, ValidationError> {
    if raw.contains("{number}") && raw.contains('/') {
        Ok(raw)
    } else {
        Err(ValidationError::new(
            "dial_endpoint",
            "must look like TECH/...{number}..., e.g. PJSIP/{number}@trunk",
        ))
    }
}

/// A client's `Idempotency-Key`: 1 to 128 visible ASCII characters.
pub fn idempotency_key(raw: &str) -> Result<&str, ValidationError> {
    if (1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(raw)
    } else {
        Err(ValidationError::new(
            "Idempotency-Key",
            "must be 1 to 128 visible ASCII characters",
        ))
    }
}

/// Builds the PBX endpoint from the operator's template, e.g. `PJSIP/{number}@trunk`.
/// Only a validated [`PhoneNumber`] can be put in.
pub fn dial_endpoint(template: &str, number: &PhoneNumber) -> String {
    template.replace("{number}", number.as_str())
}

impl TryFrom<String> for PhoneNumber {
    type Error = ValidationError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl TryFrom<String> for Context {
    type Error = ValidationError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::from_record(&raw)
    }
}

impl From<Context> for String {
    fn from(value: Context) -> Self {
        value.0
    }
}

impl TryFrom<String> for Extension {
    type Error = ValidationError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Extension> for String {
    fn from(value: Extension) -> Self {
        value.0
    }
}

impl TryFrom<String> for CallerId {
    type Error = ValidationError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<CallerId> for String {
    fn from(value: CallerId) -> Self {
        value.0
    }
}

impl TryFrom<String> for Media {
    type Error = ValidationError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Media> for String {
    fn from(value: Media) -> Self {
        value.0
    }
}

impl TryFrom<BTreeMap<String, String>> for Variables {
    type Error = ValidationError;

    fn try_from(raw: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Variables> for BTreeMap<String, String> {
    fn from(value: Variables) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_are_accepted() {
        for ok in ["+1234567", "+15550010001", "+123456789012345"] {
            assert!(PhoneNumber::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn anything_that_could_change_a_dial_string_is_rejected() {
        for bad in [
            "",
            "+",
            "15550010001",
            "+123456",
            "+1234567890123456",
            "+1555abc0001",
            "+1555&Local/999@default",
            "+1555001@evil",
            "+1555/0010001",
            "+1555,0010001",
            "+1555 0010001",
            "+1555\n0010001",
            "++15550010001",
            "+１５５５００１０００１",
            "+1555٠٠١٠٠٠١",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn contexts_must_be_on_the_allowlist() {
        let allowed = vec!["outbound-ivr".to_owned()];
        assert!(Context::parse("outbound-ivr", &allowed).is_ok());
        assert!(Context::parse("default", &allowed).is_err());
        assert!(Context::parse("outbound-ivr,s,1", &allowed).is_err());
    }

    #[test]
    fn extensions_reject_dialplan_syntax() {
        for ok in ["s", "1000", "+1555", "*98#", "reminder_1"] {
            assert!(Extension::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "s,1",
            "s@ctx",
            "a/b",
            "${EXTEN}",
            "s&t",
            &"1".repeat(41),
        ] {
            assert!(Extension::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn caller_ids_of_the_usual_shapes_pass() {
        for ok in [
            "MyCompany",
            "MyCompany <+15550000000>",
            "<+15550000000>",
            "Dr. O'Neil-Smith",
        ] {
            assert!(CallerId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Evil\" <1>",
            "Name <abc>",
            "Name <1",
            "a\nb",
            "x<1>>",
            &"a".repeat(41),
        ] {
            assert!(CallerId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn variable_names_are_identifiers_and_values_printable() {
        let mut vars = BTreeMap::new();
        vars.insert("CUSTOMER_ID".to_owned(), "42".to_owned());
        assert!(Variables::parse(&vars).is_ok());
        for bad_name in ["CALLERID(num)", "_INHERIT", "a b", "", "1X"] {
            let mut vars = BTreeMap::new();
            vars.insert(bad_name.to_owned(), "v".to_owned());
            assert!(Variables::parse(&vars).is_err(), "{bad_name}");
        }
        let mut vars = BTreeMap::new();
        vars.insert("X".to_owned(), "a\nb".to_owned());
        assert!(Variables::parse(&vars).is_err());
    }

    #[test]
    fn media_uris_are_checked() {
        for ok in [
            "sound:hello-world",
            "recording:reminders/2024",
            "digits:123",
            "number:42",
        ] {
            assert!(Media::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "hello",
            "sound:",
            "sound:a,b",
            "sound:../etc/passwd",
            "sound:/abs",
            "tone:ring",
            "digits:12a",
        ] {
            assert!(Media::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeout_rounds_up_to_whole_seconds() {
        assert_eq!(
            RingTimeout::from_millis(30_000).map(|t| t.seconds()),
            Ok(30)
        );
        assert_eq!(RingTimeout::from_millis(1_500).map(|t| t.seconds()), Ok(2));
        assert!(RingTimeout::from_millis(999).is_err());
        assert!(RingTimeout::from_millis(-5).is_err());
    }

    #[test]
    fn endpoint_template_takes_the_number() {
        let number = PhoneNumber::parse("+15550010001").expect("valid");
        assert_eq!(
            dial_endpoint("PJSIP/{number}@trunk", &number),
            "PJSIP/+15550010001@trunk"
        );
    }

    const ALLOWED_CONTEXTS: [&str; 2] = ["outbound-ivr", "reminders"];

    fn allowed_contexts() -> Vec<String> {
        ALLOWED_CONTEXTS.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn a_context_not_allowed_is_refused_naming_the_allowed_ones() {
        let refused = Context::parse("sales", &allowed_contexts()).expect_err("not allowed");
        assert_eq!(refused.field, "context");
        assert!(
            refused
                .to_string()
                .contains("allowed: outbound-ivr, reminders"),
            "{refused}"
        );
        let many: Vec<String> = (0..12).map(|n| format!("ctx-{n}")).collect();
        let refused = Context::parse("sales", &many).expect_err("not allowed");
        assert!(refused.to_string().contains("ctx-9, …"), "{refused}");
        assert!(!refused.to_string().contains("ctx-10"), "{refused}");
    }

    fn one_variable(name: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(name.to_owned(), value.to_owned())])
    }

    /// The field's own parser, for a value as the README shows it (numbers as text).
    fn parse_by_rule(rule: &FieldRule, raw: &str) -> Result<(), ValidationError> {
        let number = |raw: &str| raw.parse::<i64>().map_err(|_| rule.refusal());
        match (rule.field, rule.part) {
            ("phone_number", None) => PhoneNumber::parse(raw).map(drop),
            ("context", None) => Context::parse(raw, &allowed_contexts()).map(drop),
            ("extension", None) => Extension::parse(raw).map(drop),
            ("priority", None) => priority(number(raw)?).map(drop),
            ("timeout", None) => RingTimeout::from_millis(number(raw)?).map(drop),
            ("caller_id", None) => CallerId::parse(raw).map(drop),
            ("variables", Some("names")) => Variables::parse(&one_variable(raw, "v")).map(drop),
            ("variables", Some("values")) => Variables::parse(&one_variable("X", raw)).map(drop),
            ("mode", None) => crate::domain::CallMode::parse(raw).map(drop),
            ("media", None) => Media::parse(raw).map(drop),
            ("max_duration", None) => max_duration(number(raw)?).map(drop),
            _ => panic!("no parser for {}", rule.label()),
        }
    }

    #[test]
    fn every_value_a_rule_shows_as_refused_is_refused_naming_its_field() {
        for rule in rules::ALL {
            for bad in rule.refused {
                let err =
                    parse_by_rule(rule, bad).expect_err(&format!("{}: {bad:?}", rule.label()));
                assert_eq!(err.field, rule.field, "{bad:?}");
            }
        }
    }

    #[test]
    fn every_rule_example_is_accepted_and_matches_the_written_pattern() {
        for rule in rules::ALL {
            assert!(
                parse_by_rule(rule, rule.example).is_ok(),
                "{}: {:?}",
                rule.label(),
                rule.example
            );
            if let Some(pattern) = rule.pattern {
                assert!(
                    pattern.starts_with('^') && pattern.ends_with('$'),
                    "{pattern}"
                );
            }
        }
    }

    #[test]
    fn refusals_quote_the_written_rule() {
        let err = PhoneNumber::parse("+0123456789").expect_err("leading zero");
        assert_eq!(err.message, format!("must be {}", rules::PHONE_NUMBER.rule));
        let err = Variables::parse(&one_variable("X", "a,b")).expect_err("comma");
        assert!(err.message.ends_with(rules::VARIABLE_VALUES.rule), "{err}");
        let err = Media::parse("sound:.hidden").expect_err("hidden");
        assert!(err.message.ends_with(rules::MEDIA.rule), "{err}");
    }

    #[test]
    fn numeric_rules_state_the_ranges_the_parsers_enforce() {
        let ranges = [
            (rules::PRIORITY, PRIORITY_RANGE),
            (rules::TIMEOUT, RingTimeout::MIN_MS..=RingTimeout::MAX_MS),
            (rules::MAX_DURATION, MAX_DURATION_RANGE_MS),
        ];
        for (rule, range) in ranges {
            let words = format!("from {} to {}", range.start(), range.end());
            assert!(rule.rule.contains(&words), "{}: {words}", rule.label());
            for inside in [*range.start(), *range.end()] {
                assert!(
                    parse_by_rule(&rule, &inside.to_string()).is_ok(),
                    "{inside}"
                );
            }
            for outside in [range.start() - 1, range.end() + 1] {
                assert!(
                    parse_by_rule(&rule, &outside.to_string()).is_err(),
                    "{outside}"
                );
            }
        }
        let counts = [
            (rules::VARIABLE_NAMES, Variables::MAX_COUNT),
            (rules::MEDIA, Media::MAX_ITEMS),
        ];
        for (rule, count) in counts {
            assert!(
                rule.rule.contains(&format!("at most {count}")),
                "{}",
                rule.label()
            );
        }
    }

    #[test]
    fn phone_numbers_whose_country_code_starts_with_zero_are_refused() {
        for bad in ["+00015550010001", "+0123456", "+015550010001"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn caller_id_names_outside_printable_ascii_are_refused() {
        for bad in [
            "ＭｙＣｏｍｐａｎｙ",
            "MyCompany\u{ff11}",
            "Shop ٣",
            "٠١٢٣",
            "Café",
            "My\u{a0}Company",
            "My\u{202e}Company",
            "MyCompany\u{2028}",
            "ＭｙＣｏｍｐａｎｙ <+15550000000>",
            "Name <+١٥٥٥٠٠٠٠٠٠٠>",
        ] {
            assert!(CallerId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn caller_ids_have_exactly_the_three_written_shapes() {
        for ok in [
            "MyCompany",
            "<+15550000000>",
            "<0123>",
            "MyCompany <+15550000000>",
            "Dr. O'Neil-Smith <5550000>",
            &"a".repeat(40),
            &"1".repeat(20),
        ] {
            assert!(CallerId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Name<123>",
            "Name  <123>",
            " Name",
            "Name ",
            " <123>",
            "<+0123456>",
            "<+123>",
            "<>",
            "Name <123> x",
            "Name <1<2>",
            &format!("<{}>", "1".repeat(21)),
        ] {
            assert!(CallerId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn variable_values_with_dialplan_syntax_separators_or_invisible_characters_are_refused() {
        let mut bad: Vec<String> = [
            "${SHELL(id)}",
            "$[1+1]",
            "a,b)",
            "a\u{2028}b",
            "a\u{2029}b",
            "a\u{202e}b",
            "a\u{200e}b",
            "a\u{061c}b",
            "a\u{feff}b",
            "a\u{85}b",
            "a\u{a0}b",
        ]
        .map(str::to_owned)
        .to_vec();
        bad.extend(Variables::VALUE_REFUSED.chars().map(|c| format!("a{c}b")));
        bad.extend(('\u{0}'..='\u{1f}').map(|c| format!("a{c}b")));
        bad.push("a\u{7f}b".to_owned());
        bad.extend(('\u{202a}'..='\u{202e}').map(|c| format!("a{c}b")));
        bad.extend(('\u{2066}'..='\u{2069}').map(|c| format!("a{c}b")));
        bad.push("a".repeat(Variables::MAX_VALUE_LEN + 1));
        for value in bad {
            assert!(
                Variables::parse(&one_variable("X", &value)).is_err(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn typical_variable_values_are_accepted() {
        for ok in [
            "",
            "42",
            "A-42/7 order#9",
            "2024-01-02 10:30",
            "jane.doe@example.com",
            "50% off!",
            "a=b?c*d+e~f_g",
            &"a".repeat(Variables::MAX_VALUE_LEN),
        ] {
            assert!(Variables::parse(&one_variable("X", ok)).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn the_variable_value_rule_splits_printable_ascii_between_allowed_and_refused() {
        for c in ' '..='~' {
            let allowed = c.is_ascii_alphanumeric() || Variables::VALUE_PUNCTUATION.contains(c);
            let refused = Variables::VALUE_REFUSED.contains(c);
            assert!(
                allowed != refused,
                "{c:?} must be allowed or refused, not both"
            );
            assert_eq!(
                Variables::parse(&one_variable("X", &c.to_string())).is_ok(),
                allowed,
                "{c:?}"
            );
        }
        let rule = rules::VARIABLE_VALUES.rule;
        let (allowed_part, refused_part) = rule
            .split_once("none of")
            .expect("the rule lists what is refused");
        for c in Variables::VALUE_PUNCTUATION.trim().chars() {
            assert!(allowed_part.contains(c), "the rule lists {c:?} as allowed");
        }
        for c in Variables::VALUE_REFUSED.chars() {
            assert!(refused_part.contains(c), "the rule lists {c:?} as refused");
        }
        assert!(allowed_part.contains("space"), "the rule allows spaces");
    }

    #[test]
    fn media_paths_with_hidden_empty_or_relative_segments_are_refused() {
        for bad in [
            "sound:.hidden",
            "sound:a/.hidden",
            "sound:a/",
            "sound:/a",
            "sound:a//b",
            "sound:a/./b",
            "sound:a/../b",
            "sound:..",
            "sound:.",
            "recording:../x",
            "sound:a\\b",
            "sound:a b",
            "sound:héllo",
            &format!("sound:{}", "a".repeat(Media::MAX_PATH_LEN + 1)),
        ] {
            assert!(Media::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn media_paths_may_hold_dots_inside_a_segment() {
        for ok in [
            "sound:custom/greeting.v2",
            "sound:en/hello-world",
            "sound:a..b",
            "recording:reminders/2024/jan_1",
            &format!("sound:{}", "a".repeat(Media::MAX_PATH_LEN)),
        ] {
            assert!(Media::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn extensions_beginning_with_an_underscore_are_refused() {
        for bad in ["_X.", "_1NXXNXXXXXX", "_"] {
            assert!(Extension::parse(bad).is_err(), "{bad}");
        }
        assert!(Extension::parse("reminder_1").is_ok());
    }

    /// Independent statements of the written rules, char by char, to hold the parsers
    /// to in the property tests below.
    mod written {
        use super::super::Variables;

        fn ascii_alnum(c: char) -> bool {
            c.is_ascii_uppercase() || c.is_ascii_lowercase() || c.is_ascii_digit()
        }

        pub fn phone_number(s: &str) -> bool {
            let chars: Vec<char> = s.chars().collect();
            (8..=16).contains(&chars.len())
                && chars[0] == '+'
                && ('1'..='9').contains(&chars[1])
                && chars[2..].iter().all(char::is_ascii_digit)
        }

        pub fn context(s: &str) -> bool {
            (1..=80).contains(&s.chars().count())
                && s.chars().all(|c| ascii_alnum(c) || "_-.".contains(c))
        }

        pub fn extension(s: &str) -> bool {
            (1..=40).contains(&s.chars().count())
                && !s.starts_with('_')
                && s.chars().all(|c| ascii_alnum(c) || "*#+_-".contains(c))
        }

        pub fn caller_id(s: &str) -> bool {
            let name = |n: &str| {
                (1..=40).contains(&n.chars().count())
                    && !n.starts_with(' ')
                    && !n.ends_with(' ')
                    && n.chars().all(|c| ascii_alnum(c) || " .'_-".contains(c))
            };
            let number = |n: &str| {
                phone_number(n)
                    || (1..=20).contains(&n.chars().count())
                        && n.chars().all(|c| c.is_ascii_digit())
            };
            match s.find('<') {
                None => name(s),
                Some(open) => {
                    s.ends_with('>')
                        && open < s.len() - 1
                        && number(&s[open + 1..s.len() - 1])
                        && (open == 0 || s[..open].ends_with(' ') && name(&s[..open - 1]))
                }
            }
        }

        pub fn variable_name(s: &str) -> bool {
            (1..=64).contains(&s.chars().count())
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars().all(|c| ascii_alnum(c) || c == '_')
        }

        /// Stated the other way round from the parser: printable ASCII less the refused.
        pub fn variable_value(s: &str) -> bool {
            s.chars().count() <= 256
                && s.chars()
                    .all(|c| (' '..='~').contains(&c) && !Variables::VALUE_REFUSED.contains(c))
        }

        pub fn media(s: &str) -> bool {
            let Some((scheme, rest)) = s.split_once(':') else {
                return false;
            };
            match scheme {
                "sound" | "recording" => {
                    (1..=128).contains(&rest.chars().count())
                        && !rest.starts_with('/')
                        && !rest.ends_with('/')
                        && !rest.contains("//")
                        && !rest.contains("/.")
                        && !rest.starts_with('.')
                        && rest.chars().all(|c| ascii_alnum(c) || "_-./".contains(c))
                }
                "digits" | "number" => {
                    (1..=20).contains(&rest.chars().count())
                        && rest.chars().all(|c| c.is_ascii_digit())
                }
                _ => false,
            }
        }
    }

    mod properties {
        use super::super::*;
        use super::{allowed_contexts, parse_by_rule, written};
        use crate::domain::{CallPolicy, CallRequest};
        use proptest::prelude::*;
        use proptest::sample::Index;

        /// Mostly printable ASCII, with the characters the rules are about mixed in.
        fn tricky_char() -> impl Strategy<Value = char> {
            prop_oneof![
                8 => proptest::char::range(' ', '~'),
                1 => proptest::char::range('\0', '\u{1f}'),
                2 => proptest::sample::select(vec![
                    '\u{7f}', '\u{85}', '\u{a0}', 'é', '\u{301}', '\u{2028}', '\u{2029}',
                    '\u{200e}', '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{61c}',
                    '\u{feff}', '١', '٣', '۳', '１', 'Ｍ', 'ｓ', '\u{ff0f}',
                ]),
                1 => any::<char>(),
            ]
        }

        fn random_text() -> impl Strategy<Value = String> {
            proptest::collection::vec(tricky_char(), 0..48).prop_map(String::from_iter)
        }

        /// A value the rule's pattern matches, maybe with one character put in anywhere:
        /// the strings right at the edge of the rule.
        fn near(rule: &FieldRule) -> BoxedStrategy<String> {
            let pattern = rule.pattern.expect("a rule with a pattern");
            let anchorless = &pattern[1..pattern.len() - 1];
            let valid =
                proptest::string::string_regex(anchorless).expect("a pattern proptest reads");
            (valid, proptest::option::of((any::<Index>(), tricky_char())))
                .prop_map(|(value, edit)| match edit {
                    None => value,
                    Some((at, c)) => {
                        let mut chars: Vec<char> = value.chars().collect();
                        chars.insert(at.index(chars.len() + 1), c);
                        chars.into_iter().collect()
                    }
                })
                .boxed()
        }

        fn candidates(rule: &FieldRule) -> BoxedStrategy<String> {
            prop_oneof![random_text(), near(rule)].boxed()
        }

        fn from_pattern(rule: &FieldRule) -> BoxedStrategy<String> {
            let pattern = rule.pattern.expect("a rule with a pattern");
            proptest::string::string_regex(&pattern[1..pattern.len() - 1])
                .expect("a pattern proptest reads")
                .boxed()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_phone_number_accepted_follows_the_rule_and_so_does_its_dial_string(
                raw in candidates(&rules::PHONE_NUMBER)
            ) {
                if let Ok(number) = PhoneNumber::parse(&raw) {
                    prop_assert!(written::phone_number(number.as_str()), "{raw:?}");
                    let endpoint = dial_endpoint("PJSIP/{number}@trunk", &number);
                    prop_assert_eq!(endpoint, format!("PJSIP/{raw}@trunk"));
                } else {
                    prop_assert!(!written::phone_number(&raw), "{raw:?}");
                }
            }

            #[test]
            fn any_context_or_extension_accepted_follows_the_rule(
                context in candidates(&rules::CONTEXT),
                extension in candidates(&rules::EXTENSION),
            ) {
                prop_assert_eq!(Context::from_record(&context).is_ok(), written::context(&context), "{:?}", context);
                prop_assert_eq!(Extension::parse(&extension).is_ok(), written::extension(&extension), "{:?}", extension);
            }

            #[test]
            fn any_caller_id_accepted_follows_the_rule(raw in candidates(&rules::CALLER_ID)) {
                prop_assert_eq!(CallerId::parse(&raw).is_ok(), written::caller_id(&raw), "{:?}", raw);
            }

            #[test]
            fn any_variable_accepted_follows_the_rule(
                name in candidates(&rules::VARIABLE_NAMES),
                value in candidates(&rules::VARIABLE_VALUES),
            ) {
                let accepted = Variables::parse(&BTreeMap::from([(name.clone(), value.clone())])).is_ok();
                prop_assert_eq!(accepted, written::variable_name(&name) && written::variable_value(&value), "{:?}={:?}", name, value);
            }

            #[test]
            fn any_media_item_accepted_follows_the_rule(raw in candidates(&rules::MEDIA)) {
                prop_assert_eq!(Media::parse(&raw).is_ok(), written::media(&raw), "{:?}", raw);
            }

            #[test]
            fn a_value_matching_a_written_pattern_is_accepted(
                values in (
                    from_pattern(&rules::PHONE_NUMBER),
                    from_pattern(&rules::CONTEXT),
                    from_pattern(&rules::EXTENSION),
                    from_pattern(&rules::CALLER_ID),
                    from_pattern(&rules::VARIABLE_NAMES),
                    from_pattern(&rules::VARIABLE_VALUES),
                    from_pattern(&rules::MODE),
                    from_pattern(&rules::MEDIA),
                )
            ) {
                let (phone, context, extension, caller_id, name, value, mode, media) = values;
                prop_assert!(PhoneNumber::parse(&phone).is_ok(), "{:?}", phone);
                // The allowlist is the operator's; the pattern is the shape.
                prop_assert!(Context::from_record(&context).is_ok(), "{:?}", context);
                prop_assert!(Extension::parse(&extension).is_ok(), "{:?}", extension);
                prop_assert!(CallerId::parse(&caller_id).is_ok(), "{:?}", caller_id);
                prop_assert!(parse_by_rule(&rules::VARIABLE_NAMES, &name).is_ok(), "{:?}", name);
                prop_assert!(parse_by_rule(&rules::VARIABLE_VALUES, &value).is_ok(), "{:?}", value);
                prop_assert!(parse_by_rule(&rules::MODE, &mode).is_ok(), "{:?}", mode);
                let path_len = media.split_once(':').map_or(0, |(_, path)| path.len());
                prop_assert!(Media::parse(&media).is_ok() || path_len > Media::MAX_PATH_LEN, "{:?}", media);
            }

            #[test]
            fn a_call_built_from_any_request_carries_only_what_the_rules_allow(
                phone in candidates(&rules::PHONE_NUMBER),
                context in prop_oneof![Just("reminders".to_owned()), candidates(&rules::CONTEXT)],
                extension in candidates(&rules::EXTENSION),
                caller_id in proptest::option::of(candidates(&rules::CALLER_ID)),
                variables in proptest::collection::btree_map(
                    candidates(&rules::VARIABLE_NAMES),
                    candidates(&rules::VARIABLE_VALUES),
                    0..3,
                ),
                media in proptest::collection::vec(candidates(&rules::MEDIA), 0..3),
            ) {
                let request = CallRequest {
                    phone_number: phone,
                    context: Some(context),
                    extension: Some(extension),
                    caller_id,
                    variables: Some(variables),
                    media: Some(media),
                    ..CallRequest::default()
                };
                let policy = CallPolicy {
                    allowed_contexts: allowed_contexts(),
                    ..CallPolicy::default()
                };
                if let Ok(call) = request.validate(&policy, "alice", uuid::Uuid::nil(), chrono::Utc::now()) {
                    let number = call.phone_number.as_str();
                    prop_assert!(written::phone_number(number), "{:?}", number);
                    prop_assert_eq!(&call.channel, &format!("PJSIP/{number}@trunk"));
                    prop_assert!(allowed_contexts().iter().any(|c| c == call.context.as_str()));
                    prop_assert!(written::extension(call.extension.as_str()));
                    prop_assert!(call.caller_id.as_ref().is_none_or(|c| written::caller_id(c.as_str())));
                    for (name, value) in call.variables.as_map() {
                        prop_assert!(written::variable_name(name) && written::variable_value(value), "{:?}={:?}", name, value);
                    }
                    for item in &call.media {
                        prop_assert!(written::media(item.as_str()), "{:?}", item);
                    }
                }
            }
        }
    }
}
