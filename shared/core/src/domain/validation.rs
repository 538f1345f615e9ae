//! Validation of everything a client sends that could reach a dial string or the
//! dialplan. Each accepted value is wrapped in a type that can only be built here, so
//! unchecked client text cannot be handed to the PBX by mistake.
//!
//! Checks are by explicit ASCII whitelists: `char::is_numeric` and friends accept
//! Unicode digits, which a dial string must never see.

use std::collections::BTreeMap;
use std::fmt;

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

/// An E.164 number: `+` then 7 to 15 ASCII digits, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::new(
                "phone_number",
                "must be E.164: '+' followed by 7 to 15 digits, e.g. +15550010001",
            )
        };
        let digits = raw.strip_prefix('+').ok_or_else(invalid)?;
        if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        Ok(Self(raw.to_owned()))
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

/// A dialplan context that the operator has allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context(String);

impl Context {
    pub fn parse(raw: &str, allowed: &[String]) -> Result<Self, ValidationError> {
        if allowed.iter().any(|a| a == raw) {
            Self::from_record(raw)
        } else {
            Err(ValidationError::new(
                "context",
                format!("{raw:?} is not an allowed context"),
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
            Err(ValidationError::new(
                "context",
                "must be 1 to 80 of: letters, digits, _ - .",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A dialplan extension: letters, digits and `* # + _ -`, at most 40 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension(String);

impl Extension {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok = !raw.is_empty()
            && raw.len() <= 40
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"*#+_-".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "extension",
                "must be 1 to 40 of: letters, digits, * # + _ -",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A dialplan priority, 1 to 999.
pub fn priority(raw: i64) -> Result<u32, ValidationError> {
    u32::try_from(raw)
        .ok()
        .filter(|p| (1..=999).contains(p))
        .ok_or_else(|| ValidationError::new("priority", "must be an integer from 1 to 999"))
}

/// The ring timeout: the API takes milliseconds (as the original spec did), ARI takes
/// whole seconds.
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
            Err(ValidationError::new(
                "timeout",
                format!("must be {} to {} milliseconds", Self::MIN_MS, Self::MAX_MS),
            ))
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

/// A caller id: `Name`, `<+15550000000>` or `Name <+15550000000>`. The name is letters,
/// digits, spaces and `. ' _ -` (at most 40); the number is an E.164 number or plain
/// digits (at most 20).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerId(String);

impl CallerId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::new(
                "caller_id",
                "must look like 'Name', '<+15550000000>' or 'Name <+15550000000>'",
            )
        };
        let (name, number) = match raw.split_once('<') {
            Some((name, rest)) => {
                let number = rest.strip_suffix('>').ok_or_else(invalid)?;
                (name.trim_end(), Some(number))
            }
            None => (raw, None),
        };
        let name_ok = name.chars().count() <= 40
            && name
                .chars()
                .all(|c| c.is_alphanumeric() && !c.is_ascii_control() || " .'_-".contains(c))
            && !name.starts_with(' ');
        let number_ok = number.is_none_or(|n| {
            let digits = n.strip_prefix('+').unwrap_or(n);
            !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
        });
        if raw.is_empty() || !name_ok || !number_ok || (name.is_empty() && number.is_none()) {
            return Err(invalid());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Channel variables a client may set. Names are identifiers (no dialplan functions such
/// as `CALLERID(num)`, nothing starting with `_` that would leak into other channels);
/// values are printable text without control characters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variables(BTreeMap<String, String>);

impl Variables {
    pub const MAX_COUNT: usize = 32;
    pub const MAX_VALUE_LEN: usize = 256;

    pub fn parse(raw: &BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if raw.len() > Self::MAX_COUNT {
            return Err(ValidationError::new(
                "variables",
                format!("at most {} variables", Self::MAX_COUNT),
            ));
        }
        for (name, value) in raw {
            let name_ok = name.len() <= 64
                && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !name_ok {
                return Err(ValidationError::new(
                    "variables",
                    format!(
                        "{name:?} is not a valid variable name (letters, digits, _; starts with a letter)"
                    ),
                ));
            }
            if value.chars().count() > Self::MAX_VALUE_LEN || value.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    "variables",
                    format!(
                        "value of {name:?} must be at most {} printable characters",
                        Self::MAX_VALUE_LEN
                    ),
                ));
            }
        }
        Ok(Self(raw.clone()))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One media item for playback: `sound:`, `recording:`, `digits:` or `number:` with a
/// safe name. Commas are the separator of ARI's media list, so they never pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media(String);

impl Media {
    pub const MAX_ITEMS: usize = 20;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::new(
                "media",
                format!(
                    "{raw:?} is not a media URI: use sound:NAME, recording:NAME, digits:123 or number:42"
                ),
            )
        };
        let (scheme, name) = raw.split_once(':').ok_or_else(invalid)?;
        let ok = match scheme {
            "sound" | "recording" => {
                !name.is_empty()
                    && name.len() <= 128
                    && !name.starts_with('/')
                    && !name.contains("..")
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-/.".contains(&b))
            }
            "digits" | "number" => {
                !name.is_empty() && name.len() <= 20 && name.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        };
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid())
        }
    }

    pub fn parse_list(raw: &[String]) -> Result<Vec<Self>, ValidationError> {
        if raw.len() > Self::MAX_ITEMS {
            return Err(ValidationError::new(
                "media",
                format!("at most {} items", Self::MAX_ITEMS),
            ));
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

/// A talk-time limit (`max_duration`, `MAX_CALL_DURATION`): 1 s to 24 h, in milliseconds.
pub fn max_duration(raw: i64) -> Result<u64, ValidationError> {
    const RANGE: std::ops::RangeInclusive<i64> = 1_000..=86_400_000;
    if RANGE.contains(&raw) {
        Ok(raw.unsigned_abs())
    } else {
        Err(ValidationError::new(
            "max_duration",
            format!("must be {} to {} milliseconds", RANGE.start(), RANGE.end()),
        ))
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
}
