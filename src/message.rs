//! A message as the core sees it, whatever its source (an SQS queue, a
//! replayed file), what its body holds (`Body`, read once: a CloudTrail
//! event, or keywatch's own scan request or re-check), and what the core
//! decided to do with it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::{self, is_account_id, truncate, Check, ParseError, Parsed};

/// One message. It carries no receipt handle: acknowledging is the
/// source's job, and some sources have none to give.
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) message_id: String,
    pub body: String,
    /// SQS `ApproximateReceiveCount`, for logs about poison messages.
    pub(crate) receive_count: Option<u32>,
    /// Wall-clock time of receipt, for the upstream delivery delay.
    pub(crate) received_at: OffsetDateTime,
    /// Monotonic time of receipt, for our own processing time.
    pub(crate) received: Instant,
}

impl Message {
    /// A message received now.
    pub fn new(message_id: impl Into<String>, body: impl Into<String>) -> Self {
        Message {
            message_id: message_id.into(),
            body: body.into(),
            receive_count: None,
            received_at: OffsetDateTime::now_utc(),
            received: Instant::now(),
        }
    }
}

/// What to do with a message once the core is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done: acknowledge (delete) it.
    Ack,
    /// Not done yet (AWS error, finding not accepted): leave it to be
    /// delivered again after its visibility timeout.
    Retry,
    /// The body cannot be understood: leave it, so that the redrive policy
    /// moves it to the dead-letter queue after `maxReceiveCount` receives.
    Invalid,
}

/// Puts new messages on the source a message came from (a scan request
/// fanned out per account onto the worker's own queue, a re-check).
pub(crate) trait Requeue: Send + Sync {
    fn send<'a>(&'a self, bodies: &'a [String]) -> futures_util::future::BoxFuture<'a, Result<(), crate::error::AwsError>>;

    /// The same, each message delivered no sooner than `delay` from now
    /// (SQS `DelaySeconds`: at most 15 minutes).
    fn send_delayed<'a>(
        &'a self,
        bodies: &'a [String],
        delay: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::error::AwsError>>;
}

/// What a message body holds, read once by [`Body::parse`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    /// keywatch's own scan request (see [`ScanRequest`]); `Err`: it names a
    /// malformed account.
    ScanRequest(Result<ScanRequest, String>),
    /// keywatch's own re-check of an event (see [`recheck_body`]): the event
    /// it wraps, read and checked as any event is.
    Recheck(Result<Parsed, ParseError>),
    /// Anything else: what claims to be a CloudTrail event, as
    /// [`event::parse`] reads it.
    Event(Result<Parsed, ParseError>),
}

impl Body {
    /// Reads a message body. `scan_requests`: whether keywatch's own
    /// requests (scan requests, re-checks) are taken where the message came
    /// from; where they are not, one is read as any other body (and is no
    /// event).
    pub(crate) fn parse(body: &str, scan_requests: bool) -> Body {
        if scan_requests {
            if let Some(request) = ScanRequest::parse(body) {
                return Body::ScanRequest(request);
            }
            if let Some(event) = parse_recheck(body) {
                return Body::Recheck(event);
            }
        }
        Body::Event(event::parse(body))
    }
}

/// The value of `keywatch` in a re-check.
const RECHECK: &str = "recheck";

/// The body of a re-check of the event whose message body is `original`:
/// `{"keywatch": "recheck", "event": <original>}`, the event as it came, so
/// that the re-check is read and checked as that event was. `None` when
/// `original` is not JSON (no event then).
pub(crate) fn recheck_body(original: &str) -> Option<String> {
    let event: serde_json::Value = serde_json::from_str(original).ok()?;
    Some(serde_json::json!({ "keywatch": RECHECK, "event": event }).to_string())
}

/// The event a re-check wraps, when `body` is one (its `keywatch` is
/// `recheck`): parsed as any message body, so every check an event passes
/// applies. A re-check of another shape than [`recheck_body`]'s is refused.
fn parse_recheck(body: &str) -> Option<Result<Parsed, ParseError>> {
    // Cheap test first: most bodies lack the marker.
    if !body.contains(RECHECK) {
        return None;
    }
    let serde_json::Value::Object(mut fields) = serde_json::from_str(body).ok()? else { return None };
    if fields.get("keywatch").and_then(|k| k.as_str()) != Some(RECHECK) {
        return None;
    }
    Some(match fields.remove("event").filter(|e| e.is_object() && fields.len() == 1) {
        Some(event) => event::parse(&event.to_string()),
        None => Err(ParseError::rejected(Check::Recheck, body)),
    })
}

/// The body of a scan request on the worker's queue: a JSON object with
/// `"keywatch": "scan-request"` (no CloudTrail event has a `keywatch` key)
/// and, optionally, one account. Without an account the worker fans the
/// request out: one request per account keywatch may act in, onto the same
/// queue, so that replicas share the work and each account is retried and
/// dead-lettered on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScanRequest {
    keywatch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) account_id: Option<String>,
    #[serde(default)]
    pub(crate) include_passed: bool,
}

/// The value of `keywatch` in a scan request.
const SCAN_REQUEST: &str = "scan-request";

impl ScanRequest {
    /// A request for one account.
    pub(crate) fn for_account(account_id: &str, include_passed: bool) -> Self {
        ScanRequest { keywatch: SCAN_REQUEST.into(), account_id: Some(account_id.into()), include_passed }
    }

    /// The request a message body holds, if it is one. A body that claims to
    /// be a request but names a malformed account is an error.
    pub(crate) fn parse(body: &str) -> Option<Result<ScanRequest, String>> {
        // Cheap test first: every CloudTrail envelope lacks the marker.
        if !body.contains(SCAN_REQUEST) {
            return None;
        }
        let request: ScanRequest = serde_json::from_str(body).ok()?;
        if request.keywatch != SCAN_REQUEST {
            return None;
        }
        match &request.account_id {
            Some(a) if !is_account_id(a) => Some(Err(format!("scan request names a malformed account: {:?}", truncate(a)))),
            _ => Some(Ok(request)),
        }
    }

    pub(crate) fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a scan request always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_requests_are_told_apart_from_cloudtrail_events() {
        assert_eq!(
            ScanRequest::parse(r#"{"keywatch":"scan-request"}"#),
            Some(Ok(ScanRequest { keywatch: SCAN_REQUEST.into(), account_id: None, include_passed: false }))
        );
        let one = ScanRequest::for_account("111122223333", true);
        assert_eq!(ScanRequest::parse(&one.to_body()), Some(Ok(one)));
        assert!(matches!(ScanRequest::parse(r#"{"keywatch":"scan-request","account_id":"12"}"#), Some(Err(_))));
        let event = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/create_access_key_admin.json")).unwrap();
        assert_eq!(ScanRequest::parse(&event), None);
        assert_eq!(ScanRequest::parse(r#"{"detail":{"note":"scan-request"}}"#), None, "the marker must be the keywatch field");
    }

    #[test]
    fn a_recheck_wraps_its_event_which_is_read_as_any_event() {
        let event = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/create_access_key_admin.json")).unwrap();
        let recheck = recheck_body(&event).unwrap();
        assert_eq!(Body::parse(&recheck, true), Body::Recheck(event::parse(&event)));
        assert!(matches!(Body::parse(&recheck, false), Body::Event(Err(_))), "only where keywatch's own requests are taken");
        assert_eq!(recheck_body("not json"), None);
        // What the event would fail, its re-check fails.
        let forged = recheck.replace("aws.iam", "evil.source");
        assert!(matches!(Body::parse(&forged, true), Body::Recheck(Err(ParseError::Rejected { check: Check::Source, .. }))));
        // Another shape is refused, not taken for an event.
        for shape in [r#"{"keywatch":"recheck"}"#, r#"{"keywatch":"recheck","event":"x"}"#, r#"{"keywatch":"recheck","event":{},"more":1}"#]
        {
            assert!(matches!(Body::parse(shape, true), Body::Recheck(Err(ParseError::Rejected { check: Check::Recheck, .. }))), "{shape}");
        }
        // An event that merely mentions the word is an event.
        let named = event.replace("\"alice\"", "\"recheck\"");
        assert!(matches!(Body::parse(&named, true), Body::Event(Ok(Parsed::Key(_)))));
    }

    #[test]
    fn a_body_is_a_scan_request_only_where_scan_requests_are_taken() {
        let request = ScanRequest::for_account("111122223333", false).to_body();
        assert_eq!(Body::parse(&request, true), Body::ScanRequest(Ok(ScanRequest::for_account("111122223333", false))));
        assert!(matches!(Body::parse(&request, false), Body::Event(Err(_))), "elsewhere it is no event");
        let event = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/create_access_key_admin.json")).unwrap();
        assert!(matches!(Body::parse(&event, true), Body::Event(Ok(Parsed::Key(_)))));
    }
}
