//! The metrics of the Lambda function, where Lambda users read them:
//! CloudWatch Embedded Metric Format (EMF), JSON lines on standard output
//! that CloudWatch Logs turns into metrics, under the same names and labels
//! as the worker's Prometheus metrics (labels become dimensions).
//!
//! The recorder keeps what one invocation recorded and [`flush_emf`] writes
//! it at the invocation's end: a line per label set (every metric of that
//! set in it), counters as their increase, histograms as the values
//! observed. Only the metrics in [`EMF_METRICS`] are kept: each EMF metric
//! and dimension value is a custom CloudWatch metric, billed per month, so
//! the AWS-call metrics (per service and operation) are left to the logs.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use metrics::{Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::{json, Map, Value};

use super::*;

/// The CloudWatch namespace of keywatch's metrics.
pub const EMF_NAMESPACE: &str = "keywatch";

/// The metrics written as EMF: detection latency, what became of events,
/// messages and findings, scans.
const EMF_METRICS: &[&str] = &[
    DETECTION_LATENCY,
    DELIVERY_DELAY,
    PROCESSING,
    EVENTS,
    MESSAGES,
    FINDINGS,
    EMIT_FAILED_ENTRIES,
    FINDINGS_DROPPED,
    SUPPRESSED_FINDINGS,
    FAILED_CALLS,
    SCAN_DURATION,
    SCAN_USERS,
    SCAN_FAILING,
];

/// Values an EMF metric may carry in one document (the specification's
/// limit); a histogram with more is written over several lines.
const VALUES_PER_LINE: usize = 100;

/// Values one histogram keeps between two flushes; the rest of an
/// invocation's observations are left out (a batch holds at most 10,000
/// messages, so only a scan's users could reach it).
const MAX_VALUES: usize = 10_000;

/// Labels, in order.
type Labels = Vec<(String, String)>;

/// A metric's name and its labels.
type Series = (String, Labels);

#[derive(Debug)]
enum Recorded {
    Count(u64),
    Values(Vec<f64>),
}

#[derive(Default)]
struct Store {
    /// Bounded: names from [`EMF_METRICS`], labels from small fixed sets.
    series: Mutex<BTreeMap<Series, Recorded>>,
}

struct Handle {
    store: Arc<Store>,
    series: Series,
}

impl Handle {
    fn with(&self, f: impl FnOnce(&mut Recorded)) {
        let mut series = self.store.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(recorded) = series.get_mut(&self.series) {
            f(recorded)
        }
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.with(|r| {
            if let Recorded::Count(n) = r {
                *n += value
            }
        })
    }
    fn absolute(&self, value: u64) {
        self.with(|r| {
            if let Recorded::Count(n) = r {
                *n = (*n).max(value)
            }
        })
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.with(|r| {
            if let Recorded::Values(v) = r {
                if v.len() < MAX_VALUES && value.is_finite() {
                    v.push(value)
                }
            }
        })
    }
}

/// The recorder of the Lambda function.
#[derive(Clone, Default)]
struct EmfRecorder {
    store: Arc<Store>,
}

impl EmfRecorder {
    fn handle(&self, key: &Key, empty: fn() -> Recorded) -> Option<Arc<Handle>> {
        let name = EMF_METRICS.iter().find(|n| **n == key.name())?;
        let labels = key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect();
        let series = (name.to_string(), labels);
        self.store.series.lock().unwrap_or_else(|e| e.into_inner()).entry(series.clone()).or_insert_with(empty);
        Some(Arc::new(Handle { store: self.store.clone(), series }))
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.handle(key, || Recorded::Count(0)).map_or_else(Counter::noop, Counter::from_arc)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.handle(key, || Recorded::Values(Vec::new())).map_or_else(Histogram::noop, Histogram::from_arc)
    }
}

static RECORDER: std::sync::OnceLock<EmfRecorder> = std::sync::OnceLock::new();

/// Installs the EMF recorder as the global metrics recorder (once: a
/// second call changes nothing).
pub fn install_emf() {
    let recorder = RECORDER.get_or_init(EmfRecorder::default);
    let _ = metrics::set_global_recorder(recorder.clone());
}

/// Writes what was recorded since the last flush as EMF lines to `out`,
/// stamped `timestamp_ms` (milliseconds since the epoch), and starts over.
pub fn flush_emf(out: &mut dyn Write, timestamp_ms: u64) -> std::io::Result<()> {
    let Some(recorder) = RECORDER.get() else { return Ok(()) };
    let taken = std::mem::take(&mut *recorder.store.series.lock().unwrap_or_else(|e| e.into_inner()));
    for line in documents(taken, timestamp_ms) {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

fn unit(name: &str) -> &'static str {
    if name.ends_with("_seconds") {
        "Seconds"
    } else {
        "Count"
    }
}

/// One document per label set and chunk of values; series with nothing
/// recorded are left out.
fn documents(taken: BTreeMap<Series, Recorded>, timestamp_ms: u64) -> Vec<Value> {
    let mut by_labels: BTreeMap<Labels, Vec<(String, Recorded)>> = BTreeMap::new();
    for ((name, labels), recorded) in taken {
        let empty = matches!(&recorded, Recorded::Count(0)) || matches!(&recorded, Recorded::Values(v) if v.is_empty());
        if !empty {
            by_labels.entry(labels).or_default().push((name, recorded));
        }
    }
    let mut lines = Vec::new();
    for (labels, metrics) in by_labels {
        for chunk in 0.. {
            let mut doc = Map::new();
            let mut definitions = Vec::new();
            for (name, recorded) in &metrics {
                let value = match recorded {
                    Recorded::Count(n) if chunk == 0 => json!(n),
                    Recorded::Values(v) if chunk * VALUES_PER_LINE < v.len() => {
                        json!(v[chunk * VALUES_PER_LINE..v.len().min((chunk + 1) * VALUES_PER_LINE)])
                    }
                    _ => continue,
                };
                definitions.push(json!({"Name": name, "Unit": unit(name)}));
                doc.insert(name.clone(), value);
            }
            if definitions.is_empty() {
                break;
            }
            let dimensions: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            for (k, v) in &labels {
                doc.insert(k.clone(), json!(v));
            }
            doc.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{"Namespace": EMF_NAMESPACE, "Dimensions": [dimensions], "Metrics": definitions}],
                }),
            );
            lines.push(Value::Object(doc));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_set_is_one_document_and_more_than_100_values_take_more() {
        let status = || vec![("status".to_string(), "FAILED".to_string())];
        let taken = BTreeMap::from([
            ((DETECTION_LATENCY.to_string(), status()), Recorded::Values((0..250).map(f64::from).collect())),
            ((FINDINGS.to_string(), status()), Recorded::Count(250)),
            ((EMIT_FAILED_ENTRIES.to_string(), vec![]), Recorded::Count(0)),
        ]);
        let docs = documents(taken, 1_700_000_000_000);
        assert_eq!(docs.len(), 3, "{docs:?}");
        let lengths: Vec<usize> = docs.iter().map(|d| d[DETECTION_LATENCY].as_array().unwrap().len()).collect();
        assert_eq!(lengths, [100, 100, 50]);
        assert_eq!(docs[0][FINDINGS], 250, "a counter once");
        assert!(docs[1].get(FINDINGS).is_none() && docs[2].get(FINDINGS).is_none());
        for d in &docs {
            assert_eq!(d["status"], "FAILED");
            assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["status"]]));
            assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000u64);
        }
        assert!(docs.iter().all(|d| d.get(EMIT_FAILED_ENTRIES).is_none()), "nothing recorded, nothing written");
    }
}
