//! Wire format: the EventBridge envelope and CloudTrail record as serde
//! reads them, and [`parse`], which turns them into a [`KeyEvent`] or a
//! refusal. The serde structs stay private to this file so that nothing
//! else comes to depend on CloudTrail's spelling.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    is_access_key_id, is_account_id, is_token, is_user_name, truncate, Actor, Check, EventName, FailedCall, KeyEvent, KeyStatus,
    ParseError, Parsed, Target, TargetSource, CLOUDTRAIL_DETAIL_TYPE, IAM_EVENT_SOURCE, IAM_SOURCE, OTHER_ERROR_CODE, REPLAY_SOURCE,
};

/// The EventBridge envelope. `account` is absent in the local emulator's
/// deliveries, hence optional.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
    #[serde(default)]
    detail: Option<Record>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(rename = "eventID", default)]
    event_id: Option<String>,
    #[serde(default)]
    event_time: Option<String>,
    #[serde(default)]
    event_source: Option<String>,
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    aws_region: Option<String>,
    #[serde(default)]
    recipient_account_id: Option<String>,
    #[serde(default)]
    user_identity: Option<UserIdentity>,
    #[serde(default)]
    request_parameters: Option<KeyFields>,
    #[serde(default)]
    response_elements: Option<ResponseElements>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity {
    #[serde(rename = "type", default)]
    identity_type: Option<String>,
    #[serde(default)]
    arn: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    user_name: Option<String>,
}

/// `requestParameters` of the three calls, and `responseElements.accessKey`
/// of `CreateAccessKey`: the same three names, each optional.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyFields {
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseElements {
    #[serde(default)]
    access_key: Option<KeyFields>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn parse_time(field: &'static str, value: &str) -> Result<OffsetDateTime, ParseError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| ParseError::BadTime { field, value: truncate(value) })
}

/// Refuses `value` unless `ok`.
fn check(ok: bool, check: Check, value: &str) -> Result<(), ParseError> {
    if ok {
        Ok(())
    } else {
        Err(ParseError::rejected(check, value))
    }
}

/// Parses one SQS message body.
pub fn parse(body: &str) -> Result<Parsed, ParseError> {
    let envelope: Envelope = serde_json::from_str(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let record = envelope.detail.ok_or(ParseError::NoDetail)?;

    // Only what an IAM CloudTrail rule can deliver: anything else reaching
    // the queue was sent by someone else, or routed by mistake.
    let source = envelope.source.unwrap_or_default();
    check(source == IAM_SOURCE || source == REPLAY_SOURCE, Check::Source, &source)?;
    let detail_type = envelope.detail_type.unwrap_or_default();
    check(detail_type == CLOUDTRAIL_DETAIL_TYPE, Check::DetailType, &detail_type)?;
    let event_source = record.event_source.unwrap_or_default();
    check(event_source == IAM_EVENT_SOURCE, Check::EventSource, &event_source)?;

    let event_name_raw = non_empty(record.event_name);
    let Some(event_name) = event_name_raw.as_deref().and_then(EventName::from_str) else {
        return Ok(Parsed::Ignored {
            // Logged and counted: an event name is a token (CloudTrail's
            // are letters), anything else is left out.
            event_name: event_name_raw.as_deref().filter(|n| is_token(n)).map(truncate),
            event_id: record.event_id.filter(|id| is_token(id)),
        });
    };

    let event_id = non_empty(record.event_id).ok_or(ParseError::MissingField("eventID"))?;
    check(is_token(&event_id), Check::EventId, &event_id)?;
    let event_time = match (non_empty(record.event_time), non_empty(envelope.time)) {
        (Some(t), _) => parse_time("eventTime", &t)?,
        (None, Some(t)) => parse_time("time", &t)?,
        (None, None) => return Err(ParseError::MissingField("eventTime")),
    };
    let (envelope_account, recipient) = (non_empty(envelope.account), non_empty(record.recipient_account_id));
    if let (Some(a), Some(r)) = (&envelope_account, &recipient) {
        check(a == r, Check::AccountMismatch, &format!("{a} != {r}"))?;
    }
    let account_id = envelope_account.or(recipient).ok_or(ParseError::MissingField("account or recipientAccountId"))?;
    check(is_account_id(&account_id), Check::Account, &account_id)?;

    let identity = record.user_identity;
    let actor = Actor {
        identity_type: identity.as_ref().and_then(|i| non_empty(i.identity_type.clone())),
        arn: identity.as_ref().and_then(|i| non_empty(i.arn.clone())),
        user_name: identity.as_ref().and_then(|i| non_empty(i.user_name.clone())),
        account_id: identity.as_ref().and_then(|i| non_empty(i.account_id.clone())),
    };

    let request = record.request_parameters;
    let response_key = record.response_elements.and_then(|r| r.access_key);

    let target = if let Some(name) = response_key.as_ref().and_then(|k| non_empty(k.user_name.clone())) {
        Target::User { name, from: TargetSource::ResponseElements }
    } else if let Some(name) = request.as_ref().and_then(|r| non_empty(r.user_name.clone())) {
        Target::User { name, from: TargetSource::RequestParameters }
    } else if let (true, Some(name)) = (actor.is_iam_user(), actor.user_name.clone()) {
        // No userName in the request: IAM acted on the caller's own keys.
        Target::User { name, from: TargetSource::CallerIdentity }
    } else if actor.is_root() {
        Target::Root
    } else {
        Target::Unresolved
    };

    let access_key_id = response_key
        .as_ref()
        .and_then(|k| non_empty(k.access_key_id.clone()))
        .or_else(|| request.as_ref().and_then(|r| non_empty(r.access_key_id.clone())));

    let key_status = match event_name {
        EventName::CreateAccessKey => {
            Some(response_key.as_ref().and_then(|k| non_empty(k.status.clone())).map_or(KeyStatus::Active, |s| KeyStatus::parse(&s)))
        }
        EventName::UpdateAccessKey => request.as_ref().and_then(|r| non_empty(r.status.clone())).map(|s| KeyStatus::parse(&s)),
        EventName::DeleteAccessKey => None,
    };

    if let Target::User { name, .. } = &target {
        check(is_user_name(name), Check::UserName, name)?;
    }
    if let Some(id) = &access_key_id {
        check(is_access_key_id(id), Check::AccessKeyId, id)?;
    }

    let failed = non_empty(record.error_code).map(|code| FailedCall {
        code: if is_token(&code) { code } else { OTHER_ERROR_CODE.to_string() },
        message: non_empty(record.error_message),
    });

    Ok(Parsed::Key(Box::new(KeyEvent {
        event_id,
        event_name,
        event_time,
        account_id,
        region: non_empty(record.aws_region).or(non_empty(envelope.region)),
        actor,
        target,
        access_key_id,
        key_status,
        failed,
    })))
}
