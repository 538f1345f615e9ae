//! The recorded ARI traces (copied from a real Asterisk into `tests/ari-traces`).

use std::path::PathBuf;

use serde_json::Value;

pub struct Trace {
    pub name: String,
    /// The `POST /ari/channels` request body.
    pub originate: Value,
    pub channel_id: String,
    /// Events and mid-call requests, in recorded order.
    pub steps: Vec<Step>,
}

pub enum Step {
    Event(Value),
    Request {
        method: String,
        path: String,
        params: Value,
        at: f64,
    },
}

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ari-traces")
}

/// Every call trace (not `http_answers`), sorted by name.
pub fn all() -> Vec<Trace> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("trace dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jsonl") && n != "http_answers.jsonl")
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| load(n.trim_end_matches(".jsonl")))
        .collect()
}

pub fn load(name: &str) -> Trace {
    let text = std::fs::read_to_string(dir().join(format!("{name}.jsonl"))).expect("trace file");
    let mut lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("trace line"));
    let first = lines.next().expect("originate line");
    let originate = first["request"]["json"].clone();
    let channel_id = originate["channelId"]
        .as_str()
        .expect("channelId")
        .to_owned();
    let steps = lines
        .map(|line| match line.get("event") {
            Some(event) => Step::Event(event.clone()),
            None => Step::Request {
                method: line["request"]["method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                path: line["request"]["path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                params: line["request"]["params"].clone(),
                at: line["_t"].as_f64().unwrap_or_default(),
            },
        })
        .collect();
    Trace {
        name: name.to_owned(),
        originate,
        channel_id,
        steps,
    }
}

impl Trace {
    /// The events on the call's own channel (channel or Dial peer is the call), as
    /// (type, channel state, dialstatus, cause) — what the simulator must reproduce.
    pub fn own_channel_sequence(&self) -> Vec<(String, String, String, Option<i64>)> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Event(e) => own_channel_signature(e, &self.channel_id),
                Step::Request { .. } => None,
            })
            .collect()
    }
}

/// (type, state, dialstatus, cause) when the event is on `channel_id` itself.
pub fn own_channel_signature(
    event: &Value,
    channel_id: &str,
) -> Option<(String, String, String, Option<i64>)> {
    let channel = event.get("channel").or_else(|| event.get("peer"))?;
    if channel["id"].as_str()? != channel_id {
        return None;
    }
    Some((
        event["type"].as_str()?.to_owned(),
        channel["state"].as_str().unwrap_or_default().to_owned(),
        event["dialstatus"].as_str().unwrap_or_default().to_owned(),
        event["cause"].as_i64(),
    ))
}
