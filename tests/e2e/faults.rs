//! Faults between the worker and AWS, injected by a proxy in front of the
//! emulator, phase after phase on one pipeline: IAM throttling, a PutEvents
//! outage, PutEvents failing in part, a network blackout, failed batch
//! deletes, SIGTERM mid-burst and a restart, a poison flood. For each:
//! findings lost (must be 0), crashes (0), legitimate messages in the DLQ
//! (0), duplicates (counted). The table it prints is docs/reliability.md's
//! reliability table.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::*;

trials! {
    multi no_fault_loses_a_finding_or_stops_the_worker,
}

const EVENTS: usize = 5;
const T: Duration = Duration::from_secs(90);

struct Phase {
    name: &'static str,
    events: usize,
    findings: usize,
    lost: usize,
    duplicates: usize,
    legit_in_dlq: u64,
    injected: usize,
}

/// Puts `EVENTS` key events for new users; their event ids.
async fn burst(p: &Pipeline, phase: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for i in 0..EVENTS {
        let user = format!("{phase}-{i}");
        let keys = p.user_with_keys(&user, 2).await;
        let id = format!("evt-{phase}-{i}");
        p.put_cloudtrail(&create_key_event(&id, "admin", &user, &keys[1])).await;
        ids.insert(id);
    }
    ids
}

/// Waits until every event of `ids` has its finding (or the time runs
/// out): (distinct findings, duplicates).
async fn collect(p: &Pipeline, ids: &BTreeSet<String>) -> (usize, usize) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = std::time::Instant::now() + T;
    while !ids.iter().all(|id| seen.contains_key(id)) && std::time::Instant::now() < deadline {
        for f in p.findings(EVENTS, Duration::from_secs(1)).await {
            *seen.entry(f["detail"]["trigger"]["event_id"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        }
    }
    // Late duplicates of this phase still in flight.
    for f in p.findings(EVENTS, Duration::from_secs(3)).await {
        *seen.entry(f["detail"]["trigger"]["event_id"].as_str().unwrap_or("?").to_string()).or_default() += 1;
    }
    let found = ids.iter().filter(|id| seen.contains_key(*id)).count();
    (found, seen.iter().filter(|(id, _)| ids.contains(*id)).map(|(_, n)| n - 1).sum())
}

async fn phase(p: &Pipeline, proxy: &FaultProxy, name: &'static str, fault: Fault, dlq_before: u64) -> Phase {
    let injected_before = proxy.injected.load(std::sync::atomic::Ordering::Relaxed);
    proxy.set(fault);
    let ids = burst(p, name).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set(Fault::None);
    let (findings, duplicates) = collect(p, &ids).await;
    p.wait_drained(&p.queue_url, T).await;
    Phase {
        name,
        events: ids.len(),
        findings,
        lost: ids.len() - findings,
        duplicates,
        legit_in_dlq: p.depth(&p.dlq_url).await.0 - dlq_before,
        injected: proxy.injected.load(std::sync::atomic::Ordering::Relaxed) - injected_before,
    }
}

async fn no_fault_loses_a_finding_or_stops_the_worker() {
    let moto = Moto::start();
    // Redelivery after 2 s; the DLQ only after 8 receives, more than any
    // fault below lasts.
    let p = Pipeline::create_with_redrive(&moto.sdk_config().await, 2, 8).await;
    let proxy = FaultProxy::start(moto.port);
    let env = [("AWS_ENDPOINT_URL", proxy.url.as_str()), ("KEYWATCH_RELIST_BUDGET_MS", "0"), ("KEYWATCH_IAM_MAX_ATTEMPTS", "3")];
    let mut worker = Worker::start(&moto, &p, &env);
    assert!(worker.wait_ready(T).await, "{}", worker.logs());

    let mut phases = Vec::new();
    for (name, fault) in [
        ("iam-throttling", Fault::IamThrottling),
        ("putevents-outage", Fault::PutEventsOutage),
        ("putevents-partial", Fault::PutEventsPartial),
        ("network-blackout", Fault::Blackout),
        ("failed-deletes", Fault::DeletesFail),
    ] {
        phases.push(phase(&p, &proxy, name, fault, 0).await);
        assert!(worker.wait_exit(Duration::from_millis(10)).await.is_none(), "the worker crashed in {name}:\n{}", worker.logs());
    }

    // SIGTERM in the middle of a burst, then a new worker.
    let ids = burst(&p, "sigterm").await;
    worker.signal("TERM");
    let code = worker.wait_exit(T).await;
    assert_eq!(code, Some(0), "a clean stop:\n{}", worker.logs());
    let mut worker = Worker::start(&moto, &p, &env);
    let (findings, duplicates) = collect(&p, &ids).await;
    p.wait_drained(&p.queue_url, T).await;
    phases.push(Phase {
        name: "sigterm-and-restart",
        events: ids.len(),
        findings,
        lost: ids.len() - findings,
        duplicates,
        legit_in_dlq: p.depth(&p.dlq_url).await.0,
        injected: 1,
    });

    // A poison flood beside real events: only the poison reaches the DLQ.
    const POISON: u64 = 20;
    for i in 0..POISON {
        p.send_raw(&format!("poison {i}")).await;
    }
    let ids = burst(&p, "poison-flood").await;
    let (findings, duplicates) = collect(&p, &ids).await;
    let deadline = std::time::Instant::now() + T;
    while p.depth(&p.dlq_url).await.0 < POISON && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    phases.push(Phase {
        name: "poison-flood",
        events: ids.len(),
        findings,
        lost: ids.len() - findings,
        duplicates,
        legit_in_dlq: p.depth(&p.dlq_url).await.0.saturating_sub(POISON),
        injected: POISON as usize,
    });
    assert!(worker.wait_exit(Duration::from_millis(10)).await.is_none(), "the worker crashed:\n{}", worker.logs());

    eprintln!("| phase | faults injected | events | findings | lost | duplicates | legitimate in DLQ | crashes |");
    eprintln!("|---|---|---|---|---|---|---|---|");
    for ph in &phases {
        eprintln!(
            "| {} | {} | {} | {} | {} | {} | {} | 0 |",
            ph.name, ph.injected, ph.events, ph.findings, ph.lost, ph.duplicates, ph.legit_in_dlq
        );
    }
    for ph in &phases {
        assert_eq!(ph.lost, 0, "{}: findings lost\n{}", ph.name, worker.logs());
        assert_eq!(ph.legit_in_dlq, 0, "{}: legitimate messages in the DLQ", ph.name);
        assert!(ph.injected > 0, "{}: the fault was never injected", ph.name);
    }
}
