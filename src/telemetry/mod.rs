//! Telemetry: every metric name, its help text and its buckets, in one place.
//!
//! Each thing that happens in the worker is recorded through one function here,
//! so that names, label sets and units cannot drift between call sites. Labels
//! only ever take values from small fixed sets (`&'static str` below); account
//! ids and user names belong in log lines, never in labels, because every label
//! value becomes its own time series in Prometheus.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

#[cfg(feature = "lambda")]
mod emf;
#[cfg(feature = "lambda")]
pub use emf::{flush_emf, install_emf, EMF_NAMESPACE};
#[cfg(feature = "aws")]
mod recorder;
#[cfg(feature = "aws")]
pub use recorder::install_recorder;

/// CloudTrail `eventTime` to the finding accepted by every sink (label `status`).
const DETECTION_LATENCY: &str = "keywatch_detection_latency_seconds";
/// CloudTrail `eventTime` to the message received: the upstream delay.
const DELIVERY_DELAY: &str = "keywatch_delivery_delay_seconds";
/// Message received to acknowledged (or given up on): our own part.
const PROCESSING: &str = "keywatch_processing_seconds";
/// Duration of each AWS API call (labels `service`, `operation`, `outcome`).
const AWS_REQUEST_DURATION: &str = "keywatch_aws_request_duration_seconds";
/// Count of AWS API calls (labels `service`, `operation`, `outcome`).
const AWS_REQUESTS: &str = "keywatch_aws_requests_total";
/// Events by name and outcome.
const EVENTS: &str = "keywatch_events_total";
/// CloudTrail records of failed key calls, by event name and error code.
const FAILED_CALLS: &str = "keywatch_failed_calls_total";
/// Re-checks that made no `ListAccessKeys` of their own, by how: joined a
/// listing of the same user in flight, or reused a recent one that started
/// after the event.
const COALESCED_CHECKS: &str = "keywatch_coalesced_checks_total";
/// Last-use look-ups left out because the account's IAM budget was needed
/// for listings.
const ENRICHMENT_SKIPPED: &str = "keywatch_enrichment_skipped_total";
/// Findings accepted by every sink, by status.
const FINDINGS: &str = "keywatch_findings_total";
/// Findings not accepted by a sink: entries it rejected, or every entry of
/// a PutEvents, BatchImportFindings or BatchUpdateFindings call that
/// failed whole.
const EMIT_FAILED_ENTRIES: &str = "keywatch_emit_failed_entries_total";
/// SQS messages by what became of them.
const MESSAGES: &str = "keywatch_messages_total";
/// Messages received and not yet acknowledged or released.
const INFLIGHT: &str = "keywatch_inflight_messages";
/// Queue depth from GetQueueAttributes (labels `queue`, `state`).
const QUEUE_MESSAGES: &str = "keywatch_queue_messages";
/// Unix time of the last message received from the input queue.
const LAST_MESSAGE: &str = "keywatch_last_message_timestamp_seconds";
/// Duration of one account's scan (label `result`: `complete`, `errors`).
const SCAN_DURATION: &str = "keywatch_scan_duration_seconds";
/// Users a scan checked.
const SCAN_USERS: &str = "keywatch_scan_users_checked_total";
/// Users a scan found failing.
const SCAN_FAILING: &str = "keywatch_scan_failing_users_total";
/// Unix time of the last account scan that finished without errors.
const SCAN_LAST_SUCCESS: &str = "keywatch_scan_last_success_timestamp_seconds";
/// Approved exceptions in the set in force (expired entries included).
const LOADED_EXCEPTIONS: &str = "keywatch_loaded_exceptions";
/// Approved exceptions in force that lapse within the warning days
/// (`KEYWATCH_EXCEPTIONS_WARN_DAYS`).
const EXPIRING_EXCEPTIONS: &str = "keywatch_expiring_exceptions";
/// Looks at the exceptions source that kept the previous set (label
/// `reason`: `unreadable` or `invalid`).
const EXCEPTIONS_RELOAD_FAILURES: &str = "keywatch_exceptions_reload_failures_total";
/// Findings published marked `suppressed` by an approved exception.
const SUPPRESSED_FINDINGS: &str = "keywatch_suppressed_findings_total";
const QUARANTINES: &str = "keywatch_quarantines_total";
/// Always 1; the label carries the running version.
const BUILD_INFO: &str = "keywatch_build_info";
/// Time from a violation's opening to its closing, observed at the close.
const VIOLATION_OPEN_DURATION: &str = "keywatch_violation_open_duration_seconds";
/// Open violations in the ledger, by `suppressed`.
const OPEN_VIOLATIONS: &str = "keywatch_open_violations";
/// Age of the oldest open, unsuppressed violation in the ledger.
const OLDEST_OPEN_VIOLATION: &str = "keywatch_oldest_open_violation_age_seconds";
/// The configured time a violation may stay open (`--violation-sla`).
const VIOLATION_SLA: &str = "keywatch_violation_sla_seconds";
/// Findings the ledger dropped, by reason (superseded, identical).
const FINDINGS_DROPPED: &str = "keywatch_findings_dropped_total";
/// Buckets of the open-to-close histogram: a minute to a quarter.
const BUCKETS_OPEN_DURATION: &[f64] =
    &[60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0, 12.0 * 3600.0, 86400.0, 3.0 * 86400.0, 7.0 * 86400.0, 30.0 * 86400.0, 90.0 * 86400.0];

/// Buckets for every histogram, in seconds. They span the emulator's
/// milliseconds and AWS's minutes of CloudTrail delivery delay, so one set of
/// buckets serves local runs and production without re-configuration.
const BUCKETS_SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Which AWS service a call went to (label `service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Sqs,
    Iam,
    EventBridge,
    Sts,
    Organizations,
    SecurityHub,
    Ssm,
    S3,
    DynamoDb,
}

impl Service {
    fn as_str(self) -> &'static str {
        match self {
            Service::Sqs => "sqs",
            Service::Iam => "iam",
            Service::EventBridge => "eventbridge",
            Service::Sts => "sts",
            Service::Organizations => "organizations",
            Service::SecurityHub => "securityhub",
            Service::Ssm => "ssm",
            Service::S3 => "s3",
            Service::DynamoDb => "dynamodb",
        }
    }
}

/// How an AWS call ended (label `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    Ok,
    Throttled,
    Error,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Throttled => "throttled",
            CallOutcome::Error => "error",
        }
    }
}

/// Records one AWS API call.
pub(crate) fn aws_request(service: Service, operation: &'static str, outcome: CallOutcome, elapsed: Duration) {
    let labels = [("service", service.as_str()), ("operation", operation), ("outcome", outcome.as_str())];
    histogram!(AWS_REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
    counter!(AWS_REQUESTS, &labels).increment(1);
}

/// What became of one event (label `outcome` of `keywatch_events_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// A finding was published for it.
    Finding,
    /// Re-checked, nothing to report.
    Compliant,
    /// Not an access-key event, or nothing keywatch can check.
    Ignored,
    /// The CloudTrail record is of a call that failed: nothing changed.
    FailedCall,
    /// The message body could not be understood, or was refused.
    Invalid,
    /// For an account keywatch may not act in.
    ForeignAccount,
    /// Its finding rested on an older IAM answer than one already published.
    Superseded,
    /// Its finding said what the last one published said, on the same IAM
    /// answer.
    Identical,
    /// A rotation under way within the grace, not published
    /// (`--rotation-grace-quiet`); re-checked when the grace ends.
    RotationInProgress,
}

impl EventOutcome {
    fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Finding => "finding",
            EventOutcome::Compliant => "compliant",
            EventOutcome::Ignored => "ignored",
            EventOutcome::FailedCall => "failed_call",
            EventOutcome::Invalid => "invalid",
            EventOutcome::ForeignAccount => "foreign_account",
            EventOutcome::Superseded => "superseded",
            EventOutcome::Identical => "identical",
            EventOutcome::RotationInProgress => "rotation_in_progress",
        }
    }
}

/// Records one event's outcome. `event_name` must come from a fixed set
/// ([`crate::event::EventName::as_str`], `other`, `unknown`, `recheck`).
pub(crate) fn event(event_name: &'static str, outcome: EventOutcome) {
    counter!(EVENTS, "event_name" => event_name, "outcome" => outcome.as_str()).increment(1);
}

/// What became of one SQS message (label `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageResult {
    Deleted,
    Retried,
    Invalid,
    /// Handed back unfinished at shutdown, for another replica.
    Released,
}

impl MessageResult {
    fn as_str(self) -> &'static str {
        match self {
            MessageResult::Deleted => "deleted",
            MessageResult::Retried => "retried",
            MessageResult::Invalid => "invalid",
            MessageResult::Released => "released",
        }
    }
}

pub(crate) fn message(result: MessageResult) {
    counter!(MESSAGES, "result" => result.as_str()).increment(1);
}

/// A finding accepted by every sink, with its end-to-end latency.
/// Error codes of failed key calls that get a label of their own; any other
/// code is counted as `other`, so the label set stays bounded.
const FAILED_CALL_CODES: &[&str] =
    &["AccessDenied", "LimitExceeded", "NoSuchEntity", "InvalidInput", "ServiceFailure", "Throttling", "Unauthorized"];

/// The bounded label for a CloudTrail `errorCode`
/// (`LimitExceededException` → `LimitExceeded`).
pub fn failed_call_label(code: &str) -> &'static str {
    let base = code.strip_suffix("Exception").unwrap_or(code);
    FAILED_CALL_CODES.iter().find(|c| **c == base).copied().unwrap_or("other")
}

/// A CloudTrail record of a key call that failed.
pub(crate) fn failed_call(event_name: &'static str, error_code: &str) {
    counter!(FAILED_CALLS, "event_name" => event_name, "error_code" => failed_call_label(error_code)).increment(1);
}

pub(crate) fn finding_accepted(status: &'static str, detection_latency_seconds: f64) {
    finding_counted(status);
    histogram!(DETECTION_LATENCY, "status" => status).record(detection_latency_seconds.max(0.0));
}

/// A finding accepted whose delay is no detection latency (a re-check's).
pub(crate) fn finding_counted(status: &'static str) {
    counter!(FINDINGS, "status" => status).increment(1);
}

/// How a re-check did without a listing of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coalesced {
    InFlight,
    Recent,
}

impl Coalesced {
    fn as_str(self) -> &'static str {
        match self {
            Coalesced::InFlight => "in_flight",
            Coalesced::Recent => "recent",
        }
    }
}

pub(crate) fn coalesced_check(how: Coalesced) {
    counter!(COALESCED_CHECKS, "how" => how.as_str()).increment(1);
}

pub(crate) fn enrichment_skipped() {
    counter!(ENRICHMENT_SKIPPED).increment(1);
}

pub(crate) fn emit_failed_entries(count: u64) {
    counter!(EMIT_FAILED_ENTRIES).increment(count);
}

pub(crate) fn delivery_delay(seconds: f64) {
    histogram!(DELIVERY_DELAY).record(seconds.max(0.0));
}

pub(crate) fn processing(elapsed: Duration) {
    histogram!(PROCESSING).record(elapsed.as_secs_f64());
}

/// A batch of messages arrived now.
pub(crate) fn messages_received(now_unix_seconds: f64) {
    gauge!(LAST_MESSAGE).set(now_unix_seconds);
}

/// One account's scan finished.
pub(crate) fn scan_finished(complete: bool, duration_seconds: f64, users_checked: usize, users_failing: usize) {
    let result = if complete { "complete" } else { "errors" };
    histogram!(SCAN_DURATION, "result" => result).record(duration_seconds);
    counter!(SCAN_USERS).increment(users_checked as u64);
    counter!(SCAN_FAILING).increment(users_failing as u64);
    if complete {
        gauge!(SCAN_LAST_SUCCESS).set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
    }
}

pub(crate) fn inflight_add(n: usize) {
    gauge!(INFLIGHT).increment(n as f64);
}

pub(crate) fn inflight_sub(n: usize) {
    gauge!(INFLIGHT).decrement(n as f64);
}

/// Queue depth for `queue` (`input` or `dlq`).
pub(crate) fn queue_depth(queue: &'static str, visible: u64, in_flight: u64) {
    gauge!(QUEUE_MESSAGES, "queue" => queue, "state" => "visible").set(visible as f64);
    gauge!(QUEUE_MESSAGES, "queue" => queue, "state" => "in_flight").set(in_flight as f64);
}

/// Why a reload of the exceptions kept the previous set (label `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReloadFailure {
    /// The file, parameter or object could not be read.
    Unreadable,
    /// A new version is not a valid exceptions list.
    Invalid,
}

impl ReloadFailure {
    fn as_str(self) -> &'static str {
        match self {
            ReloadFailure::Unreadable => "unreadable",
            ReloadFailure::Invalid => "invalid",
        }
    }
}

/// A set of `n` exceptions is in force.
pub(crate) fn exceptions_loaded(n: usize) {
    gauge!(LOADED_EXCEPTIONS).set(n as f64);
}

/// `n` exceptions in force lapse within the warning days.
pub(crate) fn exceptions_expiring(n: usize) {
    gauge!(EXPIRING_EXCEPTIONS).set(n as f64);
}

pub(crate) fn exceptions_reload_failed(reason: ReloadFailure) {
    counter!(EXCEPTIONS_RELOAD_FAILURES, "reason" => reason.as_str()).increment(1);
}

/// A violation was closed after `open_for`.
pub(crate) fn violation_closed(open_for: Duration) {
    histogram!(VIOLATION_OPEN_DURATION).record(open_for.as_secs_f64());
}

/// What the ledger holds open now: `unsuppressed` and `suppressed`
/// violations, the oldest unsuppressed one `oldest_seconds` old.
pub(crate) fn open_violations(unsuppressed: usize, suppressed: usize, oldest_seconds: f64) {
    gauge!(OPEN_VIOLATIONS, "suppressed" => "false").set(unsuppressed as f64);
    gauge!(OPEN_VIOLATIONS, "suppressed" => "true").set(suppressed as f64);
    gauge!(OLDEST_OPEN_VIOLATION).set(oldest_seconds);
}

/// The time a violation may stay open, for the alert that compares with it.
pub(crate) fn violation_sla(seconds: f64) {
    gauge!(VIOLATION_SLA).set(seconds);
}

/// The ledger dropped a finding (`superseded` or `identical`).
pub(crate) fn finding_dropped(reason: &'static str) {
    counter!(FINDINGS_DROPPED, "reason" => reason).increment(1);
}

/// A planted key quarantined (`action` `deactivated`) or left active by
/// a guard (`withheld`).
pub(crate) fn quarantine(action: &'static str) {
    counter!(QUARANTINES, "action" => action).increment(1);
}

/// A FAILED finding was published marked suppressed.
pub(crate) fn suppressed_finding() {
    counter!(SUPPRESSED_FINDINGS).increment(1);
}
