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
//!
//! What the inputs hold is untrusted (`input.rs`): only regular files are
//! read, as streams, within caps that end in an error naming them. A walk
//! does not follow a symbolic link to a directory (reported, not read) and
//! goes at most [`MAX_DEPTH`] directories down, over at most [`MAX_FILES`]
//! files.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::event::{CLOUDTRAIL_DETAIL_TYPE, IAM_EVENT_SOURCE, REPLAY_SOURCE};
use crate::message::Message;

mod input;
#[cfg(feature = "aws")]
mod source;
#[cfg(test)]
mod tests;
#[cfg(feature = "aws")]
pub(crate) use source::Counted;
#[cfg(feature = "aws")]
pub use source::ReplaySource;

pub use input::{MAX_INPUT_BYTES, MAX_KEY_EVENTS, MAX_RECORD_BYTES};

const KEY_EVENTS: [&str; 3] = ["CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"];
/// How many directories below a path given a walk goes.
pub const MAX_DEPTH: usize = 16;
/// The most files one replay reads.
pub const MAX_FILES: usize = 100_000;

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
    read_within(paths, input::Caps::default())
}

fn read_within(paths: &[PathBuf], caps: input::Caps) -> (Vec<Message>, ReadReport) {
    let mut report = ReadReport::default();
    let mut files = Vec::new();
    for path in paths {
        // A path given is followed wherever it points.
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, 0, &mut files, &mut report),
            _ => add(path.clone(), &mut files, &mut report),
        }
    }
    let mut found = input::Found { caps, ..Default::default() };
    for file in files {
        report.files += 1;
        let (records, events) = (found.records, found.events.len());
        match read_file(&file, &mut found) {
            Ok(()) => {}
            Err(e) => {
                // Nothing of a file that cannot be read is replayed.
                found.records = records;
                found.events.truncate(events);
                report.unreadable.push((file, e));
            }
        }
    }
    report.records = found.records;
    report.key_events = found.events.len();
    let mut events = found.events;
    // In the order the calls happened; undated ones (refused later) last.
    events.sort_by_key(|e| (e.time.is_none(), e.time));
    let messages = events.into_iter().map(|e| Message::new(e.id, e.body)).collect();
    (messages, report)
}

fn add(path: PathBuf, files: &mut Vec<PathBuf>, report: &mut ReadReport) {
    if files.len() < MAX_FILES {
        files.push(path);
    } else {
        report.unreadable.push((path, format!("more than {MAX_FILES} files: replay them in parts")));
    }
}

/// The files under `dir`, `depth` directories below a path given, in name
/// order; symbolic links to directories are not followed.
fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>, report: &mut ReadReport) {
    if depth > MAX_DEPTH {
        let why = format!("more than {MAX_DEPTH} directories below the path given: not walked (name it, or a directory nearer it)");
        report.unreadable.push((dir.to_path_buf(), why));
        return;
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            report.unreadable.push((dir.to_path_buf(), e.to_string()));
            return;
        }
    };
    entries.sort();
    for entry in entries {
        let is_link = std::fs::symlink_metadata(&entry).is_ok_and(|m| m.file_type().is_symlink());
        match std::fs::metadata(&entry) {
            Ok(m) if m.is_dir() && is_link => report
                .unreadable
                .push((entry, "a symbolic link to a directory: not followed (name the directory itself to replay it)".into())),
            Ok(m) if m.is_dir() => walk(&entry, depth + 1, files, report),
            _ => add(entry, files, report),
        }
    }
}

/// Reads one file into `found`.
fn read_file(path: &Path, found: &mut input::Found) -> Result<(), String> {
    let file = input::open_regular(path).map_err(|e| e.to_string())?;
    input::read_input(file, path.extension().is_some_and(|e| e == "gz"), found)
}

/// Reads one input's bytes (gzip-compressed when `gzip`): the number of
/// records and the key events among them, as messages. What a file holds is
/// untrusted: any bytes give an answer or an error, never a panic.
pub fn parse(raw: &[u8], gzip: bool) -> Result<(usize, Vec<Message>), String> {
    let mut found = input::Found::default();
    input::read_input(raw, gzip, &mut found)?;
    Ok((found.records, found.events.into_iter().map(|e| Message::new(e.id, e.body)).collect()))
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

/// An exported envelope, as it is, when it holds a key event.
fn from_envelope(envelope: &Value, line: &str) -> Option<Replayed> {
    let detail = envelope.get("detail")?;
    if !detail.get("eventName").and_then(Value::as_str).is_some_and(|n| KEY_EVENTS.contains(&n)) {
        return None;
    }
    let id = detail.get("eventID").and_then(Value::as_str).unwrap_or("unknown");
    Some(Replayed { time: time_of(detail), id: format!("replay:{id}"), body: line.to_string() })
}
