//! DynamoDB: the ledger every replica shares (see [`crate::ledger`]), one
//! item per `finding_id`. Every call goes through `aws::call`.
//!
//! A claim reads the item (strongly consistent), lets [`ledger::claim`]
//! decide, and writes the new item on condition that its `version` is still
//! the one read (or that there was none): of two replicas deciding on one
//! `finding_id` at once, the second write fails its condition, reads the
//! winner's item and decides again, so an older IAM answer never overwrites
//! a newer one. Open violations carry `open_account` (their account), the
//! key of the sparse index `open`: listing who fails now reads only them.
//! A closed item carries `expires_at`, the table's TTL attribute, a year
//! after its close.
//!
//! Times are numbers, nanoseconds since the Unix epoch (`expires_at`, the
//! TTL, is in seconds, as DynamoDB wants).
//!
//! Cost per finding: one strongly consistent read and two writes of an item
//! under 1 KB (the claim and the published mark), i.e. 1 read and 2 write
//! request units on an on-demand table.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use time::OffsetDateTime;

use super::call;
use crate::finding::{Severity, Status};
use crate::ledger::{self, Claim, Claimed, Entry, Last, Ledger, LedgerError};
use crate::telemetry::Service;

/// The sparse index of open violations (partition key `open_account`).
pub(crate) const OPEN_INDEX: &str = "open";
/// Claims tried before a `finding_id` is left for redelivery as contended.
const CLAIM_ATTEMPTS: usize = 4;
/// How long a closed item is kept (the table's TTL).
const KEEP_CLOSED: Duration = Duration::from_secs(365 * 86400);
/// The condition error of a conditional write.
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// The ledger's table.
#[derive(Clone)]
pub(crate) struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLedger {
    pub(crate) fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoLedger { client, table }
    }

    /// Whether the table is there and keywatch may read it
    /// (`DescribeTable`), asked at start-up so that a wrong name stops the
    /// worker with its name rather than failing every finding.
    pub(crate) async fn check(&self) -> Result<(), super::AwsError> {
        call(Service::DynamoDb, "DescribeTable", self.client.describe_table().table_name(&self.table).send()).await.map(|_| ())
    }

    async fn read(&self, finding_id: &str) -> Result<Option<Entry>, LedgerError> {
        let request = self.client.get_item().table_name(&self.table).key("finding_id", s(finding_id)).consistent_read(true).send();
        let out = call(Service::DynamoDb, "GetItem", request).await?;
        out.item().map(|item| from_item(finding_id, item)).transpose()
    }

    async fn claim_one(&self, f: &crate::finding::Finding) -> Result<Claimed, LedgerError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let old = self.read(&f.finding_id).await?;
            let entry = match ledger::claim(old.as_ref().map(|o| &o.last), f, OffsetDateTime::now_utc()) {
                Claim::Publish(entry) => entry,
                other => return Ok(Claimed::of(old.as_ref().map(|o| &o.last), other)),
            };
            let put = self.client.put_item().table_name(&self.table).set_item(Some(to_item(&entry)));
            let put = match &old {
                None => put.condition_expression("attribute_not_exists(finding_id)"),
                Some(old) => put.condition_expression("version = :v").expression_attribute_values(":v", n(old.last.version)),
            };
            match call(Service::DynamoDb, "PutItem", put.send()).await {
                Ok(_) => return Ok(Claimed::of(old.as_ref().map(|o| &o.last), Claim::Publish(entry))),
                // Another writer got there first: read its item, decide again.
                Err(e) if e.code.as_deref() == Some(CONDITION_FAILED) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LedgerError::Contended(f.finding_id.clone()))
    }

    /// Updates the claim `entry` wrote (`update` with `:x` for `value`),
    /// unless another has been written since: that one has the last word.
    async fn update_claim(&self, entry: &Entry, update: &str, value: AttributeValue) -> Result<(), LedgerError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("finding_id", s(&entry.finding_id))
            .update_expression(update)
            .condition_expression("version = :v")
            .expression_attribute_values(":x", value)
            .expression_attribute_values(":v", n(entry.last.version))
            .send();
        match call(Service::DynamoDb, "UpdateItem", request).await {
            Ok(_) => Ok(()),
            Err(e) if e.code.as_deref() == Some(CONDITION_FAILED) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn open_entries(&self, account: Option<&str>) -> Result<Vec<Entry>, LedgerError> {
        let mut entries = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let (items, next) = match account {
                Some(account) => {
                    let request = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name(OPEN_INDEX)
                        .key_condition_expression("open_account = :a")
                        .expression_attribute_values(":a", s(account))
                        .set_exclusive_start_key(start.take())
                        .send();
                    let out = call(Service::DynamoDb, "Query", request).await?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
                None => {
                    let request =
                        self.client.scan().table_name(&self.table).index_name(OPEN_INDEX).set_exclusive_start_key(start.take()).send();
                    let out = call(Service::DynamoDb, "Scan", request).await?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
            };
            for item in &items {
                let id = item.get("finding_id").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let entry = from_item(&id, item)?;
                // The index is read eventually consistent: an item closed a
                // moment ago may still be in it.
                if entry.is_open() {
                    entries.push(entry);
                }
            }
            match next.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        ledger::oldest_first(&mut entries);
        Ok(entries)
    }
}

impl Ledger for DynamoLedger {
    fn claim<'a>(&'a self, f: &'a crate::finding::Finding) -> BoxFuture<'a, Result<Claimed, LedgerError>> {
        self.claim_one(f).boxed()
    }

    fn published<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Result<(), LedgerError>> {
        self.update_claim(entry, "SET published = :x", AttributeValue::Bool(true)).boxed()
    }

    fn released<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Result<(), LedgerError>> {
        self.update_claim(entry, "SET claimed_at = :x", n(0)).boxed()
    }

    fn journal<'a>(&'a self, access_key_id: &'a str, entry: &'a serde_json::Value) -> BoxFuture<'a, Result<(), LedgerError>> {
        async move {
            // Outside the index "open" (no open attribute): never taken for
            // a finding; kept a year (TTL).
            let expires = OffsetDateTime::now_utc() + time::Duration::days(365);
            let request = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("finding_id", s(&format!("quarantine#{access_key_id}")))
                .item("journal", s(&entry.to_string()))
                .item("expires_at", n(expires.unix_timestamp()))
                .send();
            call(Service::DynamoDb, "PutItem", request).await.map(|_| ()).map_err(LedgerError::from)
        }
        .boxed()
    }

    fn open<'a>(&'a self, account: Option<&'a str>) -> BoxFuture<'a, Result<Vec<Entry>, LedgerError>> {
        self.open_entries(account).boxed()
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A time as nanoseconds since the Unix epoch: `observed_at` must compare
/// exactly as in the finding (two answers a microsecond apart are two).
fn ns(t: OffsetDateTime) -> AttributeValue {
    n(t.unix_timestamp_nanos())
}

fn to_item(e: &Entry) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("finding_id".to_string(), s(&e.finding_id)),
        ("control_id".to_string(), s(&e.control_id)),
        ("account_id".to_string(), s(&e.account_id)),
        ("user_name".to_string(), s(&e.user_name)),
        ("status".to_string(), s(e.last.status.as_str())),
        ("severity".to_string(), s(ledger::severity_str(e.severity))),
        ("suppressed".to_string(), AttributeValue::Bool(e.last.suppressed)),
        ("active_key_count".to_string(), n(e.active_key_count)),
        ("observed_at".to_string(), ns(e.last.observed_at)),
        ("trigger_event_id".to_string(), s(&e.trigger_event_id)),
        ("trigger_event_name".to_string(), s(&e.trigger_event_name)),
        ("digest".to_string(), s(&format!("{:016x}", e.last.digest))),
        ("claimed_at".to_string(), ns(e.last.claimed_at)),
        ("published".to_string(), AttributeValue::Bool(e.last.published)),
        ("version".to_string(), n(e.last.version)),
    ]);
    let optional = [
        ("reason", e.reason.as_deref().map(s)),
        ("recommended_key", e.recommended_key.as_deref().map(s)),
        ("opened_at", e.last.opened_at.map(ns)),
        ("closed_at", e.last.closed_at.map(ns)),
        ("open_account", e.is_open().then(|| s(&e.account_id))),
        ("expires_at", (!e.is_open()).then(|| n((e.last.observed_at + KEEP_CLOSED).unix_timestamp()))),
    ];
    item.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))));
    item
}

fn from_item(finding_id: &str, item: &HashMap<String, AttributeValue>) -> Result<Entry, LedgerError> {
    let bad = |what: &str| LedgerError::Unreadable { finding_id: finding_id.to_string(), message: format!("{what} missing or malformed") };
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
    let time = |k: &str| {
        let nanos = item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i128>().ok())?;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
    };
    let flag = |k: &str| item.get(k).and_then(|v| v.as_bool().ok()).copied();
    let status = match text("status").as_deref() {
        Some("FAILED") => Status::Failed,
        Some("PASSED") => Status::Passed,
        _ => return Err(bad("status")),
    };
    Ok(Entry {
        finding_id: finding_id.to_string(),
        control_id: text("control_id").ok_or_else(|| bad("control_id"))?,
        account_id: text("account_id").ok_or_else(|| bad("account_id"))?,
        user_name: text("user_name").ok_or_else(|| bad("user_name"))?,
        severity: text("severity").as_deref().and_then(ledger::parse_severity).unwrap_or(Severity::Informational),
        reason: text("reason"),
        active_key_count: number("active_key_count").unwrap_or(0).max(0) as usize,
        recommended_key: text("recommended_key"),
        trigger_event_id: text("trigger_event_id").unwrap_or_default(),
        trigger_event_name: text("trigger_event_name").unwrap_or_default(),
        last: Last {
            status,
            suppressed: flag("suppressed").unwrap_or(false),
            observed_at: time("observed_at").ok_or_else(|| bad("observed_at"))?,
            opened_at: time("opened_at"),
            closed_at: time("closed_at"),
            digest: text("digest").and_then(|d| u64::from_str_radix(&d, 16).ok()).unwrap_or_default(),
            claimed_at: time("claimed_at").unwrap_or(OffsetDateTime::UNIX_EPOCH),
            published: flag("published").unwrap_or(false),
            version: number("version").ok_or_else(|| bad("version"))?.max(0) as u64,
        },
    })
}
