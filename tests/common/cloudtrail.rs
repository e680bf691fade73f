//! CloudTrail record builders: the `detail` of the access-key events as
//! CloudTrail writes them, made by an IAM user, a role, in any account.

use serde_json::{json, Value};

use super::ACCOUNT;

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn iam_user_identity(account: &str, user: &str) -> Value {
    json!({
        "type": "IAMUser",
        "principalId": format!("AIDA{}", user.to_uppercase()),
        "arn": format!("arn:aws:iam::{account}:user/{user}"),
        "accountId": account,
        "accessKeyId": "AKIACALLERKEY",
        "userName": user,
    })
}

fn record(event_name: &str, event_id: &str, identity: Value, request: Value, response: Value) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": now_rfc3339(),
        "eventSource": "iam.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": request,
        "responseElements": response,
        "requestID": format!("req-{event_id}"),
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    })
}

/// The CloudTrail record of `actor` creating `key_id` for `user`.
pub fn create_key_event(event_id: &str, actor: &str, user: &str, key_id: &str) -> Value {
    record(
        "CreateAccessKey",
        event_id,
        iam_user_identity(ACCOUNT, actor),
        json!({"userName": user}),
        json!({"accessKey": {"accessKeyId": key_id, "status": "Active", "userName": user, "createDate": "Nov 28, 2026 10:00:00 AM"}}),
    )
}

/// The CloudTrail record of `actor` setting `key_id` of `user` to `status`.
pub fn update_key_event(event_id: &str, actor: &str, user: &str, key_id: &str, status: &str) -> Value {
    record(
        "UpdateAccessKey",
        event_id,
        iam_user_identity(ACCOUNT, actor),
        json!({"accessKeyId": key_id, "status": status, "userName": user}),
        Value::Null,
    )
}

/// The CloudTrail record of `actor` deleting `key_id` of `user`.
pub fn delete_key_event(event_id: &str, actor: &str, user: &str, key_id: &str) -> Value {
    record("DeleteAccessKey", event_id, iam_user_identity(ACCOUNT, actor), json!({"accessKeyId": key_id, "userName": user}), Value::Null)
}

/// The same record, made by an assumed role (no userName in the identity).
pub fn by_role(mut detail: Value) -> Value {
    let account = detail["recipientAccountId"].clone();
    detail["userIdentity"] = json!({
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLE:ops",
        "arn": format!("arn:aws:sts::{}:assumed-role/OpsAdmin/ops", account.as_str().unwrap_or(ACCOUNT)),
        "accountId": account,
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{}:role/OpsAdmin", account.as_str().unwrap_or(ACCOUNT))}},
    });
    detail
}

/// The same record, in another account.
pub fn in_account(mut detail: Value, account: &str) -> Value {
    detail["recipientAccountId"] = json!(account);
    detail["userIdentity"]["accountId"] = json!(account);
    detail
}
