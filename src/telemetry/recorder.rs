//! The Prometheus recorder the worker installs, with the buckets of every
//! histogram and the help text of every metric. Only the binary's wiring
//! installs it (the `aws` feature); the rest of telemetry records through
//! the `metrics` facade whether a recorder is installed or not.

use metrics::{describe_counter, describe_gauge, describe_histogram, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::*;

/// Installs the global metrics recorder and returns the handle that renders
/// `/metrics`. The admin server serves it; nothing listens on its own.
pub fn install_recorder() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let mut builder = PrometheusBuilder::new();
    for name in [DETECTION_LATENCY, DELIVERY_DELAY, PROCESSING, AWS_REQUEST_DURATION, SCAN_DURATION] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_string()), BUCKETS_SECONDS)?;
    }
    builder = builder.set_buckets_for_metric(Matcher::Full(VIOLATION_OPEN_DURATION.to_string()), BUCKETS_OPEN_DURATION)?;
    let handle = builder.install_recorder()?;
    describe();
    Ok(handle)
}

/// Help text for every metric, and the series that should exist from the
/// first scrape (at zero) so that dashboards and `rate()` work before the
/// first event.
fn describe() {
    describe_histogram!(DETECTION_LATENCY, Unit::Seconds, "CloudTrail eventTime to the finding accepted by every sink.");
    describe_histogram!(
        DELIVERY_DELAY,
        Unit::Seconds,
        "CloudTrail eventTime to the SQS message received (CloudTrail, EventBridge and SQS delay)."
    );
    describe_histogram!(PROCESSING, Unit::Seconds, "SQS message received to acknowledged or released: keywatch's own time.");
    describe_histogram!(AWS_REQUEST_DURATION, Unit::Seconds, "Duration of AWS API calls by service, operation and outcome.");
    describe_counter!(AWS_REQUESTS, "AWS API calls by service, operation and outcome (ok, throttled, error).");
    describe_counter!(EVENTS, "Access-key events by event name and outcome.");
    describe_counter!(FAILED_CALLS, "CloudTrail records of access-key calls that failed (nothing changed), by event name and error code.");
    describe_counter!(COALESCED_CHECKS, "Re-checks that made no ListAccessKeys of their own, by how: in_flight (joined a listing of the same user in flight) or recent (reused a listing that started after the event).");
    describe_counter!(ENRICHMENT_SKIPPED, "Last-use look-ups (GetAccessKeyLastUsed) left out of a finding because the account's IAM rate budget was below half: listings, which detection needs, go first.");
    describe_counter!(FINDINGS, "Findings accepted by every sink, by status.");
    describe_counter!(EMIT_FAILED_ENTRIES, "Findings not accepted by a sink (a rejected entry, or every entry of a failed PutEvents, BatchImportFindings or BatchUpdateFindings call); their messages are left for redelivery.");
    describe_counter!(
        MESSAGES,
        "SQS messages by result: deleted, retried (left for redelivery), invalid (left for the dead-letter queue) or released (handed back unfinished at shutdown)."
    );
    describe_gauge!(INFLIGHT, "SQS messages received and not yet acknowledged or released.");
    describe_gauge!(QUEUE_MESSAGES, "Messages in the input queue and its dead-letter queue, by state (visible, in_flight).");
    describe_gauge!(
        LAST_MESSAGE,
        Unit::Seconds,
        "Unix time of the last message received from the input queue (the worker's start time until the first)."
    );
    describe_histogram!(SCAN_DURATION, Unit::Seconds, "Duration of one account's scan, by result (complete, errors).");
    describe_counter!(SCAN_USERS, "IAM users checked by scans.");
    describe_counter!(SCAN_FAILING, "IAM users scans found with more than one active access key.");
    describe_gauge!(SCAN_LAST_SUCCESS, Unit::Seconds, "Unix time of the last account scan that finished without errors.");
    describe_gauge!(LOADED_EXCEPTIONS, "Approved exceptions in the set in force (expired entries included); 0 when none are configured.");
    describe_gauge!(EXPIRING_EXCEPTIONS, "Approved exceptions in force that lapse within KEYWATCH_EXCEPTIONS_WARN_DAYS days (each also logged once a day); renew them or let their findings alert again.");
    describe_counter!(EXCEPTIONS_RELOAD_FAILURES, "Reloads of the exceptions that kept the previous set, by reason: unreadable (the file, parameter or object could not be read) or invalid (a new version that is not a valid exceptions list; counted once per version).");
    describe_counter!(
        SUPPRESSED_FINDINGS,
        "FAILED findings published marked suppressed because an approved, unexpired exception covers the user."
    );
    describe_counter!(QUARANTINES, "Keys that looked planted, by action: deactivated (quarantined by the worker, --quarantine-accounts) or withheld (left active by a guard: the only active key, a used key, the breaker, the kill switch...).");
    describe_histogram!(VIOLATION_OPEN_DURATION, Unit::Seconds, "Time from a violation's opening (the first FAILED since the last PASSED) to the PASSED that closed it, observed when the closing finding is accepted.");
    describe_gauge!(OPEN_VIOLATIONS, "Open violations (FAILED findings not closed yet) in the ledger, by suppressed (covered by an approved exception); refreshed every --ledger-metrics-secs, absent without a ledger table.");
    describe_gauge!(OLDEST_OPEN_VIOLATION, Unit::Seconds, "Age of the oldest open, unsuppressed violation in the ledger (0 when none).");
    describe_gauge!(
        VIOLATION_SLA,
        Unit::Seconds,
        "How long a violation may stay open before the KeywatchViolationOpenTooLong alert fires (--violation-sla-hours)."
    );
    describe_counter!(FINDINGS_DROPPED, "Findings the ledger did not publish, by reason: superseded (an older IAM answer than the last word on its finding_id) or identical (the same verdict on the same IAM answer, published already).");
    describe_gauge!(BUILD_INFO, "Always 1; label version is the running keywatch version.");

    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(INFLIGHT).set(0.0);
    for result in [MessageResult::Deleted, MessageResult::Retried, MessageResult::Invalid, MessageResult::Released] {
        counter!(MESSAGES, "result" => result.as_str()).absolute(0);
    }
    for status in ["FAILED", "PASSED"] {
        counter!(FINDINGS, "status" => status).absolute(0);
    }
    counter!(EMIT_FAILED_ENTRIES).absolute(0);
    gauge!(LOADED_EXCEPTIONS).set(0.0);
    gauge!(EXPIRING_EXCEPTIONS).set(0.0);
    for reason in [ReloadFailure::Unreadable, ReloadFailure::Invalid] {
        counter!(EXCEPTIONS_RELOAD_FAILURES, "reason" => reason.as_str()).absolute(0);
    }
    counter!(SUPPRESSED_FINDINGS).absolute(0);
    for action in ["deactivated", "withheld"] {
        counter!(QUARANTINES, "action" => action).absolute(0);
    }
    for reason in ["superseded", "identical"] {
        counter!(FINDINGS_DROPPED, "reason" => reason).absolute(0);
    }
    let _ = histogram!(VIOLATION_OPEN_DURATION);
    counter!(ENRICHMENT_SKIPPED).absolute(0);
    // The first scan after a start must show in increase() too.
    counter!(SCAN_USERS).absolute(0);
    counter!(SCAN_FAILING).absolute(0);
    for result in ["complete", "errors"] {
        let _ = histogram!(SCAN_DURATION, "result" => result);
    }
    for how in [Coalesced::InFlight, Coalesced::Recent] {
        counter!(COALESCED_CHECKS, "how" => how.as_str()).absolute(0);
    }
    // Histograms too: a series that first appears with its first
    // observation shows no increase to rate(), so the first finding after a
    // start would be invisible on the latency panels.
    for status in ["FAILED", "PASSED"] {
        let _ = histogram!(DETECTION_LATENCY, "status" => status);
    }
    messages_received(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
    let _ = histogram!(DELIVERY_DELAY);
    let _ = histogram!(PROCESSING);
}
