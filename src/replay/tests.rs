//! The replay inputs as untrusted files: caps that end in an error naming
//! them, regular files only, walks that do not follow linked directories
//! and stop at a depth.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::input::Caps;
use super::*;

fn key_record(id: &str) -> String {
    format!(
        r#"{{"eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","eventTime":"2026-11-01T10:00:00Z","eventID":"{id}","recipientAccountId":"111122223333","requestParameters":{{"userName":"alice"}}}}"#
    )
}

fn other_record(pad: usize) -> String {
    format!(
        r#"{{"eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"x","requestParameters":{{"key":"{}"}}}}"#,
        "k".repeat(pad)
    )
}

fn cloudtrail(records: &[String]) -> String {
    format!(r#"{{"Records":[{}]}}"#, records.join(","))
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

fn small(input_bytes: u64, record_bytes: u64) -> Caps {
    Caps { input_bytes, record_bytes, ..Caps::default() }
}

fn read_small(paths: &[PathBuf], caps: Caps) -> ReadReport {
    read_within(paths, caps).1
}

#[test]
fn a_file_is_read_record_by_record_within_its_caps() {
    let dir = tempfile::tempdir().unwrap();
    // 200 records of about 1 KiB each: far more than one record's cap
    // (16 KiB) in all.
    let mut records: Vec<String> = (0..200).map(|_| other_record(1000)).collect();
    records.push(key_record("evt-1"));
    let path = dir.path().join("trail.json");
    std::fs::write(&path, cloudtrail(&records)).unwrap();
    let report = read_small(&[path], small(1 << 20, 16 * 1024));
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    assert_eq!((report.records, report.key_events), (201, 1));
}

#[test]
fn an_input_over_its_cap_is_refused_by_name_plain_or_inflated() {
    let dir = tempfile::tempdir().unwrap();
    let text = cloudtrail(&(0..100).map(|_| other_record(100)).collect::<Vec<_>>());
    let plain = dir.path().join("big.json");
    std::fs::write(&plain, &text).unwrap();
    let bomb = dir.path().join("bomb.json.gz");
    let packed = gzip(&text);
    assert!(packed.len() < 4096, "small on disk: {}", packed.len());
    std::fs::write(&bomb, packed).unwrap();
    let report = read_small(&[plain.clone(), bomb.clone()], small(4096, 4096));
    assert_eq!(report.unreadable.len(), 2, "{:?}", report.unreadable);
    for (file, why) in &report.unreadable {
        assert!(why.contains("more than 4096 bytes (inflated)") && why.contains("split it"), "{}: {why}", file.display());
    }
    assert_eq!(report.records, 0, "nothing of a refused file counts");
}

#[test]
fn one_record_over_its_cap_is_refused() {
    let text = cloudtrail(&[other_record(10), other_record(40_000), key_record("evt-1")]);
    let mut found = input::Found { caps: small(1 << 20, 16 * 1024), ..Default::default() };
    let e = input::read_input(text.as_bytes(), false, &mut found).unwrap_err();
    assert!(e.contains("a record or event of more than 16384 bytes"), "{e}");
}

#[test]
fn key_events_are_capped_across_the_inputs() {
    let text = cloudtrail(&(0..3).map(|i| key_record(&format!("evt-{i}"))).collect::<Vec<_>>());
    let mut found = input::Found { caps: Caps { key_events: 2, ..Caps::default() }, ..Default::default() };
    let e = input::read_input(text.as_bytes(), false, &mut found).unwrap_err();
    assert!(e.contains("more than 2 key events"), "{e}");
}

#[test]
fn json_lines_and_a_cut_short_file() {
    let envelope = format!(r#"{{"version":"0","source":"aws.iam","detail":{}}}"#, key_record("evt-e"));
    let (records, messages) = parse(format!("{envelope}\n\n{envelope}\n").as_bytes(), false).unwrap();
    assert_eq!((records, messages.len()), (2, 2));
    let e = parse(b"{\"Records\": [", false).unwrap_err();
    assert!(e.contains("cut short"), "{e}");
    let e = parse(b"{\"no\": 1}\n", false).unwrap_err();
    assert!(e.contains("no `detail`"), "{e}");
    let e = parse(b"not json", true).unwrap_err();
    assert!(e.contains("not gzip-compressed"), "{e}");
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.json");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let dir_path = dir.path().to_path_buf();
    // In a thread: a blocking open would never return.
    std::thread::spawn(move || tx.send(read(&[dir_path]).1).unwrap());
    let report = rx.recv_timeout(Duration::from_secs(5)).expect("the FIFO is not waited on");
    assert_eq!(report.unreadable.len(), 1);
    assert!(report.unreadable[0].1.contains("not a regular file"), "{:?}", report.unreadable);
}

#[test]
fn a_walk_does_not_follow_a_linked_directory_and_stops_at_its_depth() {
    let dir = tempfile::tempdir().unwrap();
    let trail = cloudtrail(&[key_record("evt-1")]);
    std::fs::write(dir.path().join("a.json"), &trail).unwrap();
    // A loop: sub/back -> the top.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/back")).unwrap();
    let started = Instant::now();
    let report = read(&[dir.path().to_path_buf()]).1;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((report.files, report.key_events), (1, 1), "{report:?}");
    assert_eq!(report.unreadable.len(), 1);
    assert!(report.unreadable[0].1.contains("symbolic link to a directory: not followed"), "{:?}", report.unreadable);

    // Deeper than MAX_DEPTH below the path given.
    let deep = dir.path().join("deep");
    let mut at: PathBuf = deep.clone();
    for i in 0..=MAX_DEPTH {
        at = at.join(format!("d{i}"));
    }
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(at.join("b.json"), &trail).unwrap();
    let report = read(&[deep]).1;
    assert_eq!(report.files, 0);
    assert!(report.unreadable.iter().any(|(p, why)| p == &at && why.contains("directories below the path given")), "{report:?}");
}
