//! Replay: CloudTrail log files and exported EventBridge events as a
//! message source, for backfills after an outage and for testing rules.
//!
//! Two inputs: CloudTrail log files as CloudTrail delivers them to S3
//! (`{"Records": [...]}`, `.json` or `.json.gz`), and JSON lines of
//! EventBridge envelopes (an EventBridge archive or a SIEM export; `.gz`
//! too); directories are walked. The access-key events among them are taken
//! in `eventTime` order and handed to the processor like queue messages: a
//! CloudTrail record is wrapped in the envelope EventBridge would have
//! made, with the replay source. A file that cannot be read is reported by
//! name and the rest are still read.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::event::{truncate, CLOUDTRAIL_DETAIL_TYPE, IAM_EVENT_SOURCE, REPLAY_SOURCE};
use crate::message::Message;

#[cfg(feature = "aws")]
mod source;
#[cfg(feature = "aws")]
pub(crate) use source::Counted;
#[cfg(feature = "aws")]
pub use source::ReplaySource;

const KEY_EVENTS: [&str; 3] = ["CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"];
/// The most a compressed input may inflate to (CloudTrail's files are a
/// few MB).
const MAX_INFLATED: u64 = 1 << 30;

/// What reading the inputs found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadReport {
    pub files: usize,
    /// Files that could not be read, with why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// CloudTrail records or envelopes read.
    pub records: usize,
    /// Access-key events among them.
    pub key_events: usize,
}

/// One key event to replay.
#[derive(Debug, Clone)]
struct Replayed {
    time: Option<OffsetDateTime>,
    id: String,
    body: String,
}

/// Reads every path (files, or directories walked in name order).
pub(crate) fn read(paths: &[PathBuf]) -> (Vec<Message>, ReadReport) {
    let mut report = ReadReport::default();
    let mut events = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files, &mut report);
    }
    for file in files {
        report.files += 1;
        match read_file(&file) {
            Ok((records, found)) => {
                report.records += records;
                report.key_events += found.len();
                events.extend(found);
            }
            Err(e) => report.unreadable.push((file, e)),
        }
    }
    // In the order the calls happened; undated ones (refused later) last.
    events.sort_by_key(|e| (e.time.is_none(), e.time));
    let messages = events.into_iter().map(|e| Message::new(e.id, e.body)).collect();
    (messages, report)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>, report: &mut ReadReport) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                report.unreadable.push((path.to_path_buf(), e.to_string()));
                return;
            }
        };
        entries.sort();
        for entry in entries {
            collect_files(&entry, files, report);
        }
    } else {
        files.push(path.to_path_buf());
    }
}

/// Records read and the key events among them.
fn read_file(path: &Path) -> Result<(usize, Vec<Replayed>), String> {
    let raw = std::fs::read(path).map_err(|e| e.to_string())?;
    parse_bytes(&raw, path.extension().is_some_and(|e| e == "gz"))
}

/// Reads one input's bytes (gzip-compressed when `gzip`): the number of
/// records and the key events among them, as messages. What a file holds is
/// untrusted: any bytes give an answer or an error, never a panic.
pub fn parse(raw: &[u8], gzip: bool) -> Result<(usize, Vec<Message>), String> {
    parse_bytes(raw, gzip).map(|(n, found)| (n, found.into_iter().map(|e| Message::new(e.id, e.body)).collect()))
}

fn parse_bytes(raw: &[u8], gzip: bool) -> Result<(usize, Vec<Replayed>), String> {
    let text = if gzip {
        let mut out = String::new();
        // Bounded: a small file must not inflate without limit.
        flate2::read::MultiGzDecoder::new(raw)
            .take(MAX_INFLATED)
            .read_to_string(&mut out)
            .map_err(|e| format!("not gzip-compressed text: {e}"))?;
        out
    } else {
        String::from_utf8(raw.to_vec()).map_err(|_| "not UTF-8 text".to_string())?
    };
    if let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(&text) {
        if let Some(Value::Array(records)) = doc.get("Records") {
            let found = records.iter().filter(|r| is_key_event(r)).map(from_record).collect();
            return Ok((records.len(), found));
        }
        if doc.contains_key("detail") {
            return Ok((1, from_envelope_line(&text).into_iter().collect()));
        }
    }
    let mut records = 0;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        records += 1;
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.get("detail").is_some() => found.extend(from_envelope(&v, line)),
            _ => {
                return Err(format!(
                    "line {}: neither a CloudTrail log file ({{\"Records\": [...]}}) nor JSON lines of EventBridge events: {:?}",
                    n + 1,
                    truncate(line)
                ))
            }
        }
    }
    Ok((records, found))
}

fn is_key_event(record: &Value) -> bool {
    record.get("eventSource").and_then(Value::as_str) == Some(IAM_EVENT_SOURCE)
        && record.get("eventName").and_then(Value::as_str).is_some_and(|n| KEY_EVENTS.contains(&n))
}

fn time_of(record: &Value) -> Option<OffsetDateTime> {
    record.get("eventTime").and_then(Value::as_str).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

/// A CloudTrail record in the envelope EventBridge would have made.
fn from_record(record: &Value) -> Replayed {
    let id = record.get("eventID").and_then(Value::as_str).unwrap_or("unknown").to_string();
    let envelope = json!({
        "version": "0",
        "id": format!("replay-{id}"),
        "detail-type": CLOUDTRAIL_DETAIL_TYPE,
        "source": REPLAY_SOURCE,
        "account": record.get("recipientAccountId"),
        "time": record.get("eventTime"),
        "region": record.get("awsRegion"),
        "resources": [],
        "detail": record,
    });
    Replayed { time: time_of(record), id: format!("replay:{id}"), body: envelope.to_string() }
}

fn from_envelope_line(line: &str) -> Option<Replayed> {
    from_envelope(&serde_json::from_str(line).ok()?, line)
}

/// An exported envelope, as it is, when it holds a key event.
fn from_envelope(envelope: &Value, line: &str) -> Option<Replayed> {
    let detail = envelope.get("detail")?;
    if !detail.get("eventName").and_then(Value::as_str).is_some_and(|n| KEY_EVENTS.contains(&n)) {
        return None;
    }
    let id = detail.get("eventID").and_then(Value::as_str).unwrap_or("unknown");
    Some(Replayed { time: time_of(detail), id: format!("replay:{id}"), body: line.to_string() })
}
