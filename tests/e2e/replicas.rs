//! Dying replicas: two workers share one queue; one is killed with SIGKILL
//! in the middle of a burst. Every event's finding is still delivered (the
//! messages the dead worker held come back after their visibility timeout
//! and the survivor takes them; duplicates are allowed and counted), the
//! survivor drains the rest, and nothing ends in the dead-letter queue.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

trials! {
    multi a_replica_killed_mid_burst_loses_no_finding,
}

const T: Duration = Duration::from_secs(90);
const EVENTS: usize = 24;

async fn a_replica_killed_mid_burst_loses_no_finding() {
    let moto = Moto::start();
    // Short visibility: what the dead worker held comes back within seconds.
    // The DLQ takes a message on its third receive, so a message may be
    // received by the dead worker and still reach the survivor twice.
    let p = Pipeline::create_with_redrive(&moto.sdk_config().await, 3, 3).await;
    let mut ids = Vec::new();
    for i in 0..EVENTS {
        let user = format!("burst-{i}");
        let keys = p.user_with_keys(&user, 2).await;
        ids.push(format!("evt-burst-{i}"));
        p.put_cloudtrail(&create_key_event(&ids[i], "admin", &user, &keys[1])).await;
    }
    // Two replicas, one message at a time, so that both hold some.
    let settings = [("KEYWATCH_MAX_MESSAGES", "1"), ("KEYWATCH_RELIST_BUDGET_MS", "0")];
    let doomed = Worker::start(&moto, &p, &settings);
    let survivor = Worker::start(&moto, &p, &settings);
    // Kill the first once it has finished something (mid-burst).
    assert!(doomed.wait_metric(r#"keywatch_messages_total{result="deleted"}"#, 1.0, T).await, "{}", doomed.logs());
    doomed.signal("KILL");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = std::time::Instant::now() + T;
    while seen.len() < EVENTS && std::time::Instant::now() < deadline {
        for f in p.findings(EVENTS, Duration::from_secs(2)).await {
            *seen.entry(f["detail"]["trigger"]["event_id"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "findings lost: {missing:?}\nsurvivor:\n{}", survivor.logs());
    assert!(p.wait_drained(&p.queue_url, T).await, "the survivor drained the queue");
    assert_eq!(p.depth(&p.dlq_url).await.0, 0, "nothing legitimate in the DLQ");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("replicas: {EVENTS} events, {} findings, {duplicates} duplicates", seen.values().sum::<usize>());
}
