//! Event: an SQS message body → a typed access-key event.
//!
//! The body is the EventBridge envelope that an SQS target receives when the
//! rule has no input transformer, carrying a CloudTrail record in `detail`.
//! This module is pure (no AWS types, no I/O) so that every shape CloudTrail
//! produces can be pinned by a JSON fixture under `tests/fixtures/`.
//!
//! Parsing is lenient where AWS is: fields that CloudTrail leaves `null` or
//! omits are `Option`. It is strict only about what the re-check needs: an
//! event id, an event time, an account and an event name.
//!
//! This file holds the typed event, the checks and their errors; `wire.rs`
//! holds the JSON as it arrives and [`parse`], which reads it.

mod wire;

use time::OffsetDateTime;

pub use self::wire::parse;
pub use crate::keys::KeyStatus;

/// The three CloudTrail events that change a user's access keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventName {
    CreateAccessKey,
    UpdateAccessKey,
    DeleteAccessKey,
}

impl EventName {
    fn from_str(name: &str) -> Option<Self> {
        match name {
            "CreateAccessKey" => Some(Self::CreateAccessKey),
            "UpdateAccessKey" => Some(Self::UpdateAccessKey),
            "DeleteAccessKey" => Some(Self::DeleteAccessKey),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::CreateAccessKey => "CreateAccessKey",
            Self::UpdateAccessKey => "UpdateAccessKey",
            Self::DeleteAccessKey => "DeleteAccessKey",
        }
    }
}

/// Who made the call (`detail.userIdentity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `IAMUser`, `AssumedRole`, `Root`, `FederatedUser`, `AWSService`, ...
    pub identity_type: Option<String>,
    pub arn: Option<String>,
    /// Present only for `IAMUser` callers.
    pub user_name: Option<String>,
    pub account_id: Option<String>,
}

impl Actor {
    pub(crate) fn is_iam_user(&self) -> bool {
        self.identity_type.as_deref() == Some("IAMUser")
    }
    pub fn is_root(&self) -> bool {
        self.identity_type.as_deref() == Some("Root")
    }
}

/// Whose keys the event changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IAM user, named by the event.
    User { name: String, from: TargetSource },
    /// The account's root user (a root access key, not a CIS-1.13 matter).
    Root,
    /// The event does not name the user; only the key id can lead to it.
    Unresolved,
}

/// Where the target user's name was found, for the finding and for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSource {
    ResponseElements,
    RequestParameters,
    CallerIdentity,
}

/// A CloudTrail record of a call that failed (`errorCode` present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCall {
    /// The `errorCode`; [`OTHER_ERROR_CODE`] when it is not a token of at
    /// most [`MAX_TOKEN`] characters of `[A-Za-z0-9._:-]`.
    pub code: String,
    pub message: Option<String>,
}

/// One access-key event, as much as the re-check and the finding need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// CloudTrail `eventID`: unique per API call, the idempotency key.
    pub event_id: String,
    pub event_name: EventName,
    pub event_time: OffsetDateTime,
    /// The account whose IAM changed.
    pub account_id: String,
    pub region: Option<String>,
    pub actor: Actor,
    pub target: Target,
    /// The key the call created, updated or deleted (when the record says).
    pub access_key_id: Option<String>,
    /// The key's status right after the call: `Active` for a create, the
    /// requested status for an update, `None` for a delete.
    pub key_status: Option<KeyStatus>,
    pub failed: Option<FailedCall>,
}

/// What a message body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Key(Box<KeyEvent>),
    /// A well-formed event that is not one of the three access-key events
    /// (or not from IAM). Acknowledged and counted, never re-checked.
    Ignored {
        event_name: Option<String>,
        event_id: Option<String>,
    },
}

/// `source` of CloudTrail IAM events on EventBridge.
const IAM_SOURCE: &str = "aws.iam";
/// `source` of events replayed onto a bus where `aws.*` sources are refused
/// (real AWS refuses customer `PutEvents` with them).
pub(crate) const REPLAY_SOURCE: &str = "keywatch.replay";
/// `detail-type` of CloudTrail API calls on EventBridge.
pub(crate) const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
/// `eventSource` of IAM calls in CloudTrail.
pub(crate) const IAM_EVENT_SOURCE: &str = "iam.amazonaws.com";
/// How far in the future an `eventTime` may be (clock skew) before the
/// event is rejected.
pub(crate) const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// A claim of the event that keywatch refuses to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `source` is neither `aws.iam` nor the replay source.
    Source,
    /// `detail-type` is not a CloudTrail API call.
    DetailType,
    /// `detail.eventSource` is not IAM.
    EventSource,
    /// The account id is not 12 digits.
    Account,
    /// The envelope's `account` differs from `detail.recipientAccountId`.
    AccountMismatch,
    /// `eventTime` is more than `MAX_CLOCK_SKEW` in the future.
    FutureTime,
    /// The user name is outside IAM's pattern `[\w+=,.@-]{1,64}`.
    UserName,
    /// The access key id is outside IAM's pattern `[\w]{16,128}`.
    AccessKeyId,
    /// `eventID` is not a token of at most [`MAX_TOKEN`] characters of
    /// `[A-Za-z0-9._:-]` (CloudTrail's are UUIDs).
    EventId,
    /// A re-check that is not `{"keywatch": "recheck", "event": {...}}`, or
    /// of an event that made no key active.
    Recheck,
}

impl Check {
    fn reason(self) -> &'static str {
        match self {
            Check::Source => "bad_source",
            Check::DetailType => "bad_detail_type",
            Check::EventSource => "bad_event_source",
            Check::Account => "bad_account",
            Check::AccountMismatch => "account_mismatch",
            Check::FutureTime => "future_time",
            Check::UserName => "bad_user_name",
            Check::AccessKeyId => "bad_access_key_id",
            Check::EventId => "bad_event_id",
            Check::Recheck => "bad_recheck",
        }
    }
}

/// Why a body could not be understood, or was refused. The message is then
/// left to the queue's redrive policy (a human looks at what reached the
/// dead-letter queue: forged or misrouted input is worth seeing);
/// `reason()` is a bounded label for metrics. Values quoted from the input
/// are truncated.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not a JSON EventBridge envelope: {0}")]
    NotJson(String),
    #[error("envelope has no CloudTrail record in `detail`")]
    NoDetail,
    #[error("CloudTrail record lacks `{0}`")]
    MissingField(&'static str),
    #[error("`{field}` is not an RFC 3339 time: {value:?}")]
    BadTime { field: &'static str, value: String },
    #[error("refused ({}): {value:?}", check.reason())]
    Rejected { check: Check, value: String },
}

impl ParseError {
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::NotJson(_) => "not_json",
            ParseError::NoDetail => "no_detail",
            ParseError::MissingField(_) => "missing_field",
            ParseError::BadTime { .. } => "bad_time",
            ParseError::Rejected { check, .. } => check.reason(),
        }
    }

    pub(crate) fn rejected(check: Check, value: &str) -> Self {
        ParseError::Rejected { check, value: truncate(value) }
    }
}

/// Characters of an input value kept in errors and logs.
const QUOTED_CHARS: usize = 64;

/// `value`, cut to [`QUOTED_CHARS`] characters (marked with `…`).
pub(crate) fn truncate(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

/// Characters of an `eventID` or an `errorCode`.
pub(crate) const MAX_TOKEN: usize = 128;

/// The code of a failed call whose `errorCode` is not a token.
pub const OTHER_ERROR_CODE: &str = "other";

/// An `eventID` or an `errorCode`: 1 to [`MAX_TOKEN`] characters of
/// `[A-Za-z0-9._:-]`, safe to log and to use as a key.
pub(crate) fn is_token(s: &str) -> bool {
    (1..=MAX_TOKEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The account an ARN names (`arn:aws:iam::111122223333:user/a` →
/// `111122223333`).
pub(crate) fn account_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    (parts.next() == Some("arn")).then(|| parts.nth(3)).flatten()
}

/// A 12-digit AWS account id.
pub(crate) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// IAM's user name pattern: `[\w+=,.@-]{1,64}`.
fn is_user_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// IAM's access key id pattern: `[\w]{16,128}`.
fn is_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
