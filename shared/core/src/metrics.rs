//! Counters, gauges and summaries, rendered as Prometheus text (the local server, the
//! bridge) and, where the process runs in Lambda, also written as CloudWatch Embedded
//! Metric Format log lines. Labels are low-cardinality by construction: callers pass
//! fixed names (route templates, status names, event types), never ids or numbers from a
//! request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};

/// The CloudWatch namespace of the product's metrics.
pub const EMF_NAMESPACE: &str = "Dialer";

type Series = BTreeMap<(&'static str, String), f64>;
type Summaries = BTreeMap<(&'static str, String), (f64, u64)>;

#[derive(Default)]
pub struct Metrics {
    series: Mutex<Series>,
    summaries: Mutex<Summaries>,
    emf: Option<Emf>,
}

/// Where EMF lines go and what they are tagged with.
struct Emf {
    namespace: &'static str,
    function: String,
    sink: Mutex<Box<dyn Write + Send>>,
}

/// Every metric this product exports: name, type, help.
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
        "dialer_originate_seconds",
        "summary",
        "Time to place a call (validate, store, ARI originate).",
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
        "dialer_token_failures_total",
        "counter",
        "Token requests refused (wrong credentials).",
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
        "dialer_bridge_unwanted_channels_total",
        "counter",
        "Live channels hung up because their call had ended or was canceled.",
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

/// The metrics CloudWatch gets as EMF, under these names and units.
const EMF_NAMES: &[(&str, &str, &str)] = &[
    ("dialer_calls_originated_total", "CallsOriginated", "Count"),
    (
        "dialer_originate_seconds",
        "OriginateLatency",
        "Milliseconds",
    ),
    ("dialer_token_failures_total", "TokenFailures", "Count"),
    ("dialer_calls_finished_total", "CallsFinished", "Count"),
    ("dialer_bridge_connected", "BridgeConnected", "None"),
    ("dialer_bridge_queue_depth", "BridgeQueueDepth", "Count"),
];

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also writes the metrics CloudWatch should see as EMF lines on stdout, tagged
    /// with `function` (a function or service name: low cardinality).
    pub fn with_emf(self, namespace: &'static str, function: String) -> Self {
        self.with_emf_to(namespace, function, Box::new(std::io::stdout()))
    }

    /// The same, writing the lines to `sink` (tests read them back).
    pub fn with_emf_to(
        mut self,
        namespace: &'static str,
        function: String,
        sink: Box<dyn Write + Send>,
    ) -> Self {
        self.emf = Some(Emf {
            namespace,
            function,
            sink: Mutex::new(sink),
        });
        self
    }

    pub fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1.0);
    }

    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        *lock(&self.series)
            .entry((name, render_labels(labels)))
            .or_insert(0.0) += value;
        self.emit(name, labels, value);
    }

    pub fn set(&self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        lock(&self.series).insert((name, render_labels(labels)), value);
    }

    /// Records one observation of a duration, in seconds.
    pub fn observe(&self, name: &'static str, labels: &[(&str, &str)], seconds: f64) {
        let mut summaries = lock(&self.summaries);
        let entry = summaries
            .entry((name, render_labels(labels)))
            .or_insert((0.0, 0));
        entry.0 += seconds;
        entry.1 += 1;
        drop(summaries);
        self.emit(name, labels, seconds * 1000.0);
    }

    /// Writes the current value of a gauge as an EMF line (gauges are sampled, not
    /// emitted on every change).
    pub fn publish(&self, name: &'static str, labels: &[(&str, &str)]) {
        let value = self.value(name, labels);
        self.emit(name, labels, value);
    }

    /// The current value of one series (0 when never touched); for health pages and tests.
    pub fn value(&self, name: &'static str, labels: &[(&str, &str)]) -> f64 {
        lock(&self.series)
            .get(&(name, render_labels(labels)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let series = lock(&self.series);
        let summaries = lock(&self.summaries);
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((_, labels), value) in of_name(&series, name) {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
            for ((_, labels), (sum, count)) in of_name(&summaries, name) {
                let _ = writeln!(
                    out,
                    "{name}_sum{labels} {sum}\n{name}_count{labels} {count}"
                );
            }
        }
        out
    }

    /// One EMF line: the metric under its CloudWatch name, its labels as dimensions.
    fn emit(&self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        let Some(emf) = &self.emf else { return };
        let Some((_, metric, unit)) = EMF_NAMES.iter().find(|(n, _, _)| *n == name) else {
            return;
        };
        let line = emf_line(emf, metric, unit, labels, value);
        // A log line that cannot be written is not worth failing a request over.
        let _ = writeln!(lock(&emf.sink), "{line}");
    }
}

/// An EMF document (one log line).
fn emf_line(emf: &Emf, metric: &str, unit: &str, labels: &[(&str, &str)], value: f64) -> String {
    let mut dimensions = vec!["Function".to_owned()];
    let mut line = serde_json::Map::new();
    line.insert("Function".into(), emf.function.clone().into());
    for (key, label) in labels {
        let key = dimension_name(key);
        line.insert(key.clone(), (*label).into());
        dimensions.push(key);
    }
    line.insert(metric.to_owned(), value.into());
    line.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": emf.namespace,
                "Dimensions": [dimensions],
                "Metrics": [{ "Name": metric, "Unit": unit }],
            }],
        }),
    );
    serde_json::Value::Object(line).to_string()
}

/// `result` → `Result`: CloudWatch's dimension style.
fn dimension_name(label: &str) -> String {
    let mut chars = label.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn of_name<'a, V>(
    map: &'a BTreeMap<(&'static str, String), V>,
    name: &'static str,
) -> impl Iterator<Item = (&'a (&'static str, String), &'a V)> {
    map.range((name, String::new())..)
        .take_while(move |((n, _), _)| *n == name)
}

/// `{k="v",…}`, values escaped as Prometheus wants: one allocation, since every
/// request of every route counts itself.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let size: usize = labels.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = String::with_capacity(size + 1);
    out.push('{');
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '\\' | '"') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_labelled_series() {
        let metrics = Metrics::new();
        metrics.inc("dialer_calls_originated_total", &[("result", "accepted")]);
        metrics.inc("dialer_calls_originated_total", &[("result", "accepted")]);
        metrics.observe("dialer_originate_seconds", &[], 0.25);
        let text = metrics.render();
        assert!(text.contains("# TYPE dialer_calls_originated_total counter"));
        assert!(text.contains("dialer_calls_originated_total{result=\"accepted\"} 2"));
        assert!(
            text.contains("dialer_originate_seconds_sum 0.25\ndialer_originate_seconds_count 1")
        );
    }

    #[test]
    fn label_values_are_escaped_and_series_kept_apart() {
        assert_eq!(render_labels(&[]), "");
        assert_eq!(
            render_labels(&[("route", "/a\\b\"c"), ("status", "200")]),
            r#"{route="/a\\b\"c",status="200"}"#
        );
        let metrics = Metrics::new();
        metrics.inc("dialer_http_requests_total", &[("status", "200")]);
        metrics.inc("dialer_http_requests_total", &[("status", "404")]);
        metrics.inc("dialer_http_requests_total", &[("status", "200")]);
        assert_eq!(
            metrics.value("dialer_http_requests_total", &[("status", "200")]),
            2.0
        );
    }

    #[test]
    fn emf_lines_name_the_metric_its_unit_and_dimensions() {
        let emf = Emf {
            namespace: "Dialer",
            function: "originate".into(),
            sink: Mutex::new(Box::new(std::io::sink())),
        };
        let line = emf_line(
            &emf,
            "CallsOriginated",
            "Count",
            &[("result", "accepted")],
            1.0,
        );
        let doc: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(doc["CallsOriginated"], 1.0);
        assert_eq!(doc["Result"], "accepted");
        assert_eq!(doc["Function"], "originate");
        let spec = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "Dialer");
        assert_eq!(
            spec["Dimensions"][0],
            serde_json::json!(["Function", "Result"])
        );
        assert_eq!(spec["Metrics"][0]["Unit"], "Count");
    }
}
