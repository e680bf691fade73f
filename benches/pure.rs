//! The pure path per event, no I/O: parse a CloudTrail `CreateAccessKey`
//! envelope, evaluate it against a listing of two active keys, build the
//! finding and serialise it to the JSON that goes into `PutEvents`.
//!
//! The GetAccessKeyLastUsed answers for both keys are given (the finding
//! names the key to keep from them), as the worker passes them.
//!
//! Run: `cargo bench --bench pure` (release profile; ~20 s after the build).
//! Each stage is also measured on its own so that a regression can be placed.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use time::OffsetDateTime;

use std::collections::HashMap;

use keywatch::evaluate;
use keywatch::event::{self, KeyEvent, KeyStatus, Parsed};
use keywatch::finding;
use keywatch::keys::{AccessKey, KeyUsage};

const BODY: &str = include_str!("../tests/fixtures/create_access_key_admin.json");

/// The listing IAM would return right after the event: the user's old key and
/// the one the event created (so the listing reflects the event: no re-list).
fn listing() -> Vec<AccessKey> {
    vec![
        AccessKey {
            access_key_id: "AKIAEXAMPLEALICE0001".into(),
            status: KeyStatus::Active,
            created_at: Some(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()),
        },
        AccessKey {
            access_key_id: "AKIAEXAMPLEALICE0002".into(),
            status: KeyStatus::Active,
            created_at: Some(OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()),
        },
    ]
}

/// What GetAccessKeyLastUsed says of the two keys (enrichment of a FAILED
/// finding: the recommended key to keep is chosen from it).
fn usage() -> HashMap<String, KeyUsage> {
    let used = |secs, service: &str| KeyUsage {
        last_used_at: Some(OffsetDateTime::from_unix_timestamp(secs).unwrap()),
        service: Some(service.to_string()),
        region: Some("us-east-1".to_string()),
    };
    HashMap::from([
        ("AKIAEXAMPLEALICE0001".to_string(), used(1_795_100_000, "s3")),
        ("AKIAEXAMPLEALICE0002".to_string(), used(1_795_000_100, "iam")),
    ])
}

fn parse(body: &str) -> Box<KeyEvent> {
    match event::parse(body).expect("fixture parses") {
        Parsed::Key(ev) => ev,
        other => panic!("fixture is not a key event: {other:?}"),
    }
}

fn user_of(ev: &KeyEvent) -> &str {
    match &ev.target {
        event::Target::User { name, .. } => name,
        other => panic!("fixture names no user: {other:?}"),
    }
}

/// What the worker does per event between the SQS receive and `PutEvents`
/// (the listing is the only input that comes from AWS).
fn whole_path(body: &str, keys: Vec<AccessKey>, usage: &HashMap<String, KeyUsage>, now: OffsetDateTime) -> String {
    let ev = parse(body);
    let user = user_of(&ev).to_string();
    let assessment = evaluate::evaluate(&ev, keys, true);
    let f = finding::build(&ev, &user, &assessment, usage, now).expect("two active keys: a finding");
    serde_json::to_string(&f).expect("finding serialises")
}

fn bench(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let usage = usage();
    // Sanity: the path really produces a FAILED finding.
    let json = whole_path(BODY, listing(), &usage, now);
    assert!(json.contains("\"status\":\"FAILED\""), "{json}");

    let mut g = c.benchmark_group("pure");
    g.throughput(Throughput::Elements(1));

    g.bench_function("parse+evaluate+build+serialise", |b| {
        b.iter_batched(listing, |keys| whole_path(black_box(BODY), keys, &usage, now), criterion::BatchSize::SmallInput)
    });

    g.bench_function("parse", |b| b.iter(|| event::parse(black_box(BODY)).unwrap()));

    let ev = parse(BODY);
    g.bench_function("evaluate", |b| {
        b.iter_batched(listing, |keys| evaluate::evaluate(black_box(&ev), keys, true), criterion::BatchSize::SmallInput)
    });

    let assessment = evaluate::evaluate(&ev, listing(), true);
    let user = user_of(&ev).to_string();
    g.bench_function("build", |b| b.iter(|| finding::build(black_box(&ev), &user, &assessment, &usage, now).unwrap()));

    let f = finding::build(&ev, &user, &assessment, &usage, now).unwrap();
    g.bench_function("serialise", |b| b.iter(|| serde_json::to_string(black_box(&f)).unwrap()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
