//! Counters and gauges rendered as Prometheus text. Labels are low-cardinality by
//! construction: callers pass fixed names (route templates, status names, event types),
//! never ids or numbers from a request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(&'static str, String), f64>>,
}

/// The help line of every metric this product exports.
const HELP: &[(&str, &str, &str)] = &[
    (
        "dialer_http_requests_total",
        "counter",
        "HTTP requests by route template and status code.",
    ),
    (
        "dialer_calls_originated_total",
        "counter",
        "Originate attempts by result.",
    ),
    (
        "dialer_calls_finished_total",
        "counter",
        "Calls that reached a final status, by status.",
    ),
    (
        "dialer_token_requests_total",
        "counter",
        "Token requests by result.",
    ),
    (
        "dialer_bridge_events_total",
        "counter",
        "ARI events received by the bridge, by type.",
    ),
    (
        "dialer_bridge_status_writes_total",
        "counter",
        "Status writes by the bridge, by result.",
    ),
    (
        "dialer_bridge_reconnects_total",
        "counter",
        "Event socket (re)connections.",
    ),
    (
        "dialer_bridge_connected",
        "gauge",
        "1 while the event socket is connected.",
    ),
    (
        "dialer_bridge_queue_depth",
        "gauge",
        "Events waiting to be written to the store.",
    ),
];

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1.0);
    }

    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        let mut series = self.lock();
        *series.entry((name, render_labels(labels))).or_insert(0.0) += value;
    }

    pub fn set(&self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        self.lock().insert((name, render_labels(labels)), value);
    }

    /// The current value of one series (0 when never touched); for health pages and tests.
    pub fn value(&self, name: &'static str, labels: &[(&str, &str)]) -> f64 {
        self.lock()
            .get(&(name, render_labels(labels)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let series = self.lock();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let of_this = series
                .range((*name, String::new())..)
                .take_while(|((n, _), _)| n == name);
            for ((_, labels), value) in of_this {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(&'static str, String), f64>> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", body.join(","))
}
