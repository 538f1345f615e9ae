//! The channel JSON model of ARI, and parsing of what an originate names: the endpoint
//! and the caller id.

use serde::Serialize;

/// The dialplan a Local channel shows while it is dialing out (and again once destroyed).
pub(crate) const DIAL_APP: &str = "AppDial2";
pub(crate) const DIAL_APP_DATA: &str = "(Outgoing Line)";

/// A channel as ARI shows it; field order follows the recorded traces.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Channel {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub protocol_id: String,
    pub caller: Party,
    pub connected: Party,
    pub accountcode: String,
    pub dialplan: Dialplan,
    pub creationtime: String,
    pub language: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Party {
    pub name: String,
    pub number: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Dialplan {
    pub context: String,
    pub exten: String,
    pub priority: i64,
    pub app_name: String,
    pub app_data: String,
}

/// What `endpoint=TECH/NUMBER[@CONTEXT]` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub tech: &'static str,
    pub number: String,
    pub context: Option<String>,
}

/// Why an endpoint cannot be dialed; ARI answers 500 "Allocation failed" for both.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnknownTechnology;

const TECHNOLOGIES: [&str; 5] = ["Local", "PJSIP", "SIP", "IAX2", "DAHDI"];

impl Endpoint {
    pub(crate) fn parse(endpoint: &str) -> Result<Self, UnknownTechnology> {
        let (tech, rest) = endpoint.split_once('/').ok_or(UnknownTechnology)?;
        let tech = TECHNOLOGIES
            .iter()
            .find(|known| known.eq_ignore_ascii_case(tech))
            .ok_or(UnknownTechnology)?;
        let (number, context) = match rest.split_once('@') {
            Some((number, context)) => (number, Some(context.to_owned())),
            None => (rest, None),
        };
        if number.is_empty() {
            return Err(UnknownTechnology);
        }
        Ok(Self {
            tech,
            number: number.to_owned(),
            context,
        })
    }

    /// The `dialstring` of `Dial` events: what follows `TECH/`.
    pub(crate) fn dialstring(&self) -> String {
        match &self.context {
            Some(context) => format!("{}@{}", self.number, context),
            None => self.number.clone(),
        }
    }

    /// Channel name with Asterisk's per-channel hex sequence number; a Local channel is
    /// the `;1` half of a pair.
    pub(crate) fn channel_name(&self, sequence: u64) -> String {
        if self.tech == "Local" {
            format!("Local/{}-{sequence:08x};1", self.dialstring())
        } else {
            format!("{}/{}-{sequence:08x}", self.tech, self.number)
        }
    }
}

impl Channel {
    /// A freshly originated channel, as the `POST /channels` answer shows it.
    pub(crate) fn originated(id: String, name: String, endpoint: &Endpoint, caller: Party) -> Self {
        Self {
            id,
            name,
            state: "Down",
            protocol_id: String::new(),
            connected: caller.clone(),
            caller,
            accountcode: String::new(),
            dialplan: Dialplan {
                context: endpoint
                    .context
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
                exten: endpoint.number.clone(),
                priority: 1,
                app_name: DIAL_APP.to_owned(),
                app_data: DIAL_APP_DATA.to_owned(),
            },
            creationtime: timestamp_now(),
            language: "en".to_owned(),
        }
    }

    pub(crate) fn set_app(&mut self, name: &str, data: &str) {
        name.clone_into(&mut self.dialplan.app_name);
        data.clone_into(&mut self.dialplan.app_data);
    }
}

/// `"MyCompany <+15550000000>"` → name and number; a bare `+15550000000` is a number.
pub(crate) fn parse_caller_id(caller_id: &str) -> Party {
    let caller_id = caller_id.trim();
    if let Some(open) = caller_id.rfind('<')
        && let Some(len) = caller_id[open + 1..].find('>')
    {
        let number = caller_id[open + 1..open + 1 + len].trim().to_owned();
        let name = caller_id[..open].trim().trim_matches('"').trim().to_owned();
        return Party { name, number };
    }
    Party {
        name: String::new(),
        number: caller_id.to_owned(),
    }
}

/// Asterisk's timestamp format: `2026-11-24T11:34:28.485+0000`.
pub(crate) fn timestamp_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoint_with_context_parses_and_names_like_asterisk() {
        let endpoint = Endpoint::parse("Local/+15550010001@test-pstn").expect("valid");
        assert_eq!(endpoint.tech, "Local");
        assert_eq!(endpoint.number, "+15550010001");
        assert_eq!(endpoint.context.as_deref(), Some("test-pstn"));
        assert_eq!(endpoint.dialstring(), "+15550010001@test-pstn");
        assert_eq!(
            endpoint.channel_name(0x1b),
            "Local/+15550010001@test-pstn-0000001b;1"
        );
    }

    #[test]
    fn endpoint_without_context_or_with_other_tech_parses() {
        let endpoint = Endpoint::parse("PJSIP/1000").expect("valid");
        assert_eq!(endpoint.tech, "PJSIP");
        assert_eq!(endpoint.context, None);
        assert_eq!(endpoint.channel_name(2), "PJSIP/1000-00000002");
    }

    #[test]
    fn unknown_or_malformed_endpoints_are_rejected() {
        for bad in ["Bogus/123", "Local", "", "Local/", "/123"] {
            assert_eq!(Endpoint::parse(bad), Err(UnknownTechnology), "{bad}");
        }
    }

    #[test]
    fn caller_id_with_name_and_number_splits() {
        let party = parse_caller_id("MyCompany <+15550000000>");
        assert_eq!(party.name, "MyCompany");
        assert_eq!(party.number, "+15550000000");
        let party = parse_caller_id("\"My Co\" <123>");
        assert_eq!(party.name, "My Co");
        assert_eq!(party.number, "123");
    }

    #[test]
    fn caller_id_without_brackets_is_a_number() {
        let party = parse_caller_id("+15550000000");
        assert_eq!(party.name, "");
        assert_eq!(party.number, "+15550000000");
        let party = parse_caller_id("broken <123");
        assert_eq!(party.number, "broken <123");
    }

    #[test]
    fn timestamps_look_like_asterisk() {
        let ts = timestamp_now();
        assert_eq!(ts.len(), "2026-11-24T11:34:28.485+0000".len(), "{ts}");
        assert!(ts.ends_with("+0000"), "{ts}");
    }
}
