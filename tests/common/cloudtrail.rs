//! CloudTrail record builders: the `detail` of the access-key events as
//! CloudTrail writes them, made by an IAM user, a role, in any account.

use serde_json::{json, Value};

use super::ACCOUNT;

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The one CloudTrail template the Rust tests and the Python tools
/// (`scripts/kwtools/cloudtrail.py`) both build from: an envelope around an
/// IAM user's `CreateAccessKey` record.
fn template() -> Value {
    serde_json::from_str(include_str!("../fixtures/cloudtrail_template.json")).expect("tests/fixtures/cloudtrail_template.json")
}

fn iam_user_identity(account: &str, user: &str) -> Value {
    let mut identity = template()["detail"]["userIdentity"].take();
    identity["principalId"] = json!(format!("AIDA{}", user.to_uppercase()));
    identity["arn"] = json!(format!("arn:aws:iam::{account}:user/{user}"));
    identity["accountId"] = json!(account);
    identity["userName"] = json!(user);
    identity
}

fn record(event_name: &str, event_id: &str, identity: Value, request: Value, response: Value) -> Value {
    let mut r = template()["detail"].take();
    r["userIdentity"] = identity;
    r["eventTime"] = json!(now_rfc3339());
    r["eventName"] = json!(event_name);
    r["requestParameters"] = request;
    r["responseElements"] = response;
    r["requestID"] = json!(format!("req-{event_id}"));
    r["eventID"] = json!(event_id);
    r["recipientAccountId"] = json!(ACCOUNT);
    r
}

/// The CloudTrail record of `actor` creating `key_id` for `user`.
pub fn create_key_event(event_id: &str, actor: &str, user: &str, key_id: &str) -> Value {
    record(
        "CreateAccessKey",
        event_id,
        iam_user_identity(ACCOUNT, actor),
        json!({"userName": user}),
        json!({"accessKey": {"accessKeyId": key_id, "status": "Active", "userName": user, "createDate": template()["detail"]["responseElements"]["accessKey"]["createDate"]}}),
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
