//! Reading one replay input, as untrusted bytes: a regular file opened
//! without blocking (a FIFO or a device is refused, not waited on), read
//! as a stream, never whole. A CloudTrail file's `Records` array is taken
//! one record at a time; JSON lines are taken one value at a time. What one
//! file may hold is capped, each cap an error that names it before the
//! memory grows: [`MAX_INPUT_BYTES`] in all (after inflation, so a small
//! `.gz` cannot inflate without limit, and never silently cut short),
//! [`MAX_RECORD_BYTES`] for one record or envelope, and
//! [`MAX_KEY_EVENTS`] key events kept across the inputs.

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{from_envelope, from_record, is_key_event, Replayed};

/// The most one input may hold, inflated (CloudTrail's files are a few MB).
pub const MAX_INPUT_BYTES: u64 = 1 << 30;
/// The most one record (or envelope) may hold (CloudTrail's are kilobytes).
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// The most key events one replay keeps (each waits in memory for its turn
/// in `eventTime` order).
pub const MAX_KEY_EVENTS: usize = 100_000;

/// The caps, as a set (tests use small ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Caps {
    pub(super) input_bytes: u64,
    pub(super) record_bytes: u64,
    pub(super) key_events: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps { input_bytes: MAX_INPUT_BYTES, record_bytes: MAX_RECORD_BYTES, key_events: MAX_KEY_EVENTS }
    }
}

const NEITHER: &str = "neither a CloudTrail log file ({\"Records\": [...]}) nor JSON lines of EventBridge events";

/// What the inputs read so far gave.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) caps: Caps,
    /// CloudTrail records or envelopes read.
    pub(super) records: usize,
    pub(super) events: Vec<Replayed>,
}

/// Opens `path` if it is a regular file; anything else (a FIFO, a socket,
/// a device) is refused without waiting for a writer.
pub(super) fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file (a FIFO, socket or device is not read)"));
    }
    Ok(file)
}

/// Counts what is read: all of it against the input cap, since `record`
/// was last set to 0 against the record cap. It is read a buffer (8 KiB)
/// at a time, so a record is refused a buffer's worth late at most.
struct Bounded<R> {
    inner: R,
    caps: Caps,
    total: u64,
    record: Rc<Cell<u64>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        self.record.set(self.record.get() + n as u64);
        if self.total > self.caps.input_bytes {
            let why =
                format!("holds more than {} (inflated): replay reads at most that much of one file; split it", size(self.caps.input_bytes));
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        if self.record.get() > self.caps.record_bytes {
            let why = format!("a record or event of more than {}: not a CloudTrail record", size(self.caps.record_bytes));
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        Ok(n)
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads one input (gzip-compressed when `gzip`), adding its records and
/// key events to `found`. On an error what the input gave so far may have
/// been added; the caller drops it with the input.
pub(super) fn read_input(raw: impl Read, gzip: bool, found: &mut Found) -> Result<(), String> {
    let mut raw = BufReader::new(raw);
    let record = Rc::new(Cell::new(0));
    let inner: Box<dyn Read> = if gzip {
        if !raw.fill_buf().map_err(|e| e.to_string())?.starts_with(&[0x1f, 0x8b]) {
            return Err("not gzip-compressed (no gzip header)".into());
        }
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let reader = BufReader::new(Bounded { inner, caps: found.caps, total: 0, record: record.clone() });
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut values = 0;
    // One CloudTrail file, or envelopes one after another (one a line).
    loop {
        match de.end() {
            Ok(()) => return Ok(()),
            Err(e) if e.is_io() => return Err(e.to_string()),
            // Something follows: the next value.
            Err(_) => {}
        }
        values += 1;
        record.set(0);
        let top = TopSeed { found: &mut *found, record: &record }.deserialize(&mut de).map_err(|e| describe(&e, values))?;
        match top {
            Top::CloudTrail if values == 1 => {}
            Top::CloudTrail => return Err(format!("value {values}: a CloudTrail log file holds one object; {NEITHER}")),
            Top::Envelope(envelope) if envelope.get("detail").is_some() => {
                found.records += 1;
                if let Some(event) = from_envelope(&envelope, &envelope.to_string()) {
                    keep(found, event).map_err(|e| format!("value {values}: {e}"))?;
                }
            }
            Top::Envelope(_) => return Err(format!("value {values}: no `detail`: {NEITHER}")),
        }
    }
}

fn describe(e: &serde_json::Error, values: usize) -> String {
    if e.is_io() {
        return e.to_string();
    }
    if e.is_eof() {
        return format!("cut short: {e}");
    }
    format!("value {values}: {NEITHER}: {e}")
}

fn keep(found: &mut Found, event: Replayed) -> Result<(), String> {
    if found.events.len() >= found.caps.key_events {
        return Err(format!("more than {} key events in the inputs: replay them in parts", found.caps.key_events));
    }
    found.events.push(event);
    Ok(())
}

/// One top-level value: a CloudTrail file (its records already taken) or
/// an envelope.
enum Top {
    CloudTrail,
    Envelope(Value),
}

struct TopSeed<'a> {
    found: &'a mut Found,
    record: &'a Rc<Cell<u64>>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Top;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut fields = serde_json::Map::new();
        let mut cloudtrail = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "Records" && !cloudtrail {
                map.next_value_seed(RecordsSeed { found: &mut *self.found, record: self.record })?;
                cloudtrail = true;
            } else {
                fields.insert(key, map.next_value()?);
            }
        }
        Ok(if cloudtrail { Top::CloudTrail } else { Top::Envelope(Value::Object(fields)) })
    }
}

/// The `Records` array, one record at a time.
struct RecordsSeed<'a> {
    found: &'a mut Found,
    record: &'a Rc<Cell<u64>>,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`Records`, a list of CloudTrail records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.record.set(0);
        while let Some(record) = seq.next_element::<Value>()? {
            self.found.records += 1;
            self.record.set(0);
            if is_key_event(&record) {
                keep(self.found, from_record(&record)).map_err(A::Error::custom)?;
            }
        }
        Ok(())
    }
}
