//! IAM: the [`KeyInventory`] over the IAM API, in any account, and the
//! [`KeyAdmin`] that `keywatch remediate` changes a key's status through.
//!
//! Every call is rate-limited and retried per account ([`crate::limit`])
//! and goes through `aws::call`. Events from an organisation carry
//! member account ids: with a member role configured, calls for an account
//! other than the worker's own use an IAM client whose credentials come
//! from `sts:AssumeRole` into `arn:<partition>:iam::<account>:role/<name>`
//! (`sts::AssumeRoleCredentials`, cached and renewed by the SDK), the
//! partition that of the worker's own region.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use aws_sdk_iam::types::SummaryKeyType;
use time::OffsetDateTime;

use super::sts::AssumeRoleCredentials;
use super::{call, AwsError, ErrorClass, CREDENTIALS_ERROR};
use crate::cache::BoundedCache;
use crate::finding::partition_of_region;
use crate::inventory::{InventoryError, KeyAdmin, KeyInventory, Need};
use crate::keys::{AccessKey, KeyLastUsed, KeyStatus, KeyUsage, Listing, User};
use crate::limit::{RateLimiter, RetryPolicy};
use crate::telemetry::Service;

/// Member accounts whose IAM clients are kept at once, at least: more when
/// keywatch may act in more accounts ([`MemberRole::accounts`]), so that a
/// large organisation does not assume its roles again and again.
const MEMBER_CLIENTS: usize = 1_000;
/// ... and at most, whatever the organisation's size (a client with its
/// credentials is a few kilobytes).
const MEMBER_CLIENTS_MAX: usize = 50_000;

/// Cross-account access through a role in each member account.
#[derive(Debug, Clone)]
pub struct MemberRole {
    /// Role name, the same in every member account.
    pub name: String,
    /// `sts:ExternalId` the role's trust policy requires, if any.
    pub external_id: Option<String>,
    /// The account the worker's own credentials belong to: calls for it do
    /// not assume the role.
    pub own_account_id: String,
    /// How many accounts keywatch may act in (at start-up): the clients of
    /// that many, and a quarter more for accounts that join, are kept.
    pub accounts: usize,
}

impl MemberRole {
    /// Member clients kept at once.
    fn clients_kept(&self) -> usize {
        (self.accounts + self.accounts / 4).clamp(MEMBER_CLIENTS, MEMBER_CLIENTS_MAX)
    }
}

/// [`KeyInventory`] over the IAM API.
#[derive(Clone)]
pub struct IamInventory {
    own: aws_sdk_iam::Client,
    member: Option<Arc<Members>>,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
}

struct Members {
    role: MemberRole,
    /// The partition of the worker's region (`aws`, `aws-cn`, `aws-us-gov`, ...):
    /// member roles are in the worker's partition.
    partition: &'static str,
    /// Accounts whose role could not be assumed lately: until when their
    /// calls fail at once, and the pause that led there.
    failing: BoundedCache<String, (Instant, Duration)>,
    /// The IAM client configuration that member clients start from.
    base: aws_sdk_iam::Config,
    sts: aws_sdk_sts::Client,
    clients: BoundedCache<String, aws_sdk_iam::Client>,
}

impl IamInventory {
    /// Every call with the worker's own credentials.
    /// No rate limit, default retries.
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        IamInventory { own: client, member: None, limiter: Arc::new(RateLimiter::new(0.0)), retry: RetryPolicy::default() }
    }

    /// Rate limiting per account and the retry policy. The client itself
    /// should not retry (retries here are counted attempt by attempt).
    pub fn with_limits(mut self, limiter: Arc<RateLimiter>, retry: RetryPolicy) -> Self {
        self.limiter = limiter;
        self.retry = retry;
        self
    }

    /// Calls for accounts other than `role.own_account_id` assume the member
    /// role there, through `sts`.
    pub fn with_member_role(mut self, sts: aws_sdk_sts::Client, role: MemberRole) -> Self {
        let base = self.own.config().clone();
        // Clients live as long as their credentials are worth keeping.
        let kept = role.clients_kept();
        let clients = BoundedCache::new(kept, std::time::Duration::from_secs(12 * 3600));
        let failing = BoundedCache::new(kept, Duration::from_secs(3600));
        let partition = partition_of_region(sts.config().region().map(|r| r.as_ref()).unwrap_or_default());
        self.member = Some(Arc::new(Members { role, partition, base, sts, clients, failing }));
        self
    }

    fn client_for(&self, account_id: &str) -> aws_sdk_iam::Client {
        let Some(m) = &self.member else { return self.own.clone() };
        if account_id == m.role.own_account_id {
            return self.own.clone();
        }
        if let Some(c) = m.clients.get(&account_id.to_string()) {
            return c;
        }
        let role_arn = m.role_arn(account_id);
        let provider = AssumeRoleCredentials::new(m.sts.clone(), role_arn, m.role.external_id.clone());
        let client = aws_sdk_iam::Client::from_conf(m.base.to_builder().credentials_provider(provider).build());
        m.clients.insert(account_id.to_string(), client.clone());
        client
    }
}

impl Members {
    /// The member role's ARN in `account_id`, in the worker's partition.
    fn role_arn(&self, account_id: &str) -> String {
        format!("arn:{}:iam::{account_id}:role/{}", self.partition, self.role.name)
    }
}

/// The first pause after a role could not be assumed; it doubles up to
/// [`CREDENTIALS_MAX_PAUSE`] while the failures go on.
const CREDENTIALS_PAUSE: Duration = Duration::from_secs(30);
const CREDENTIALS_MAX_PAUSE: Duration = Duration::from_secs(900);

impl IamInventory {
    /// One IAM call for `account_id` under its rate limit and retries. An
    /// account whose credentials could not be had lately fails at once (a
    /// permanent error for the message, whose redelivery comes later)
    /// instead of asking STS again per call.
    async fn run<T, F, Fut>(&self, account_id: &str, call: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let failing = self.member.as_ref().map(|m| &m.failing);
        if let Some((until, _)) = failing.and_then(|f| f.get(&account_id.to_string())) {
            let now = Instant::now();
            if until > now {
                return Err(AwsError {
                    operation: "AssumeRole",
                    class: ErrorClass::Permanent,
                    code: Some("CredentialsBackoff".into()),
                    message: format!(
                        "the member role could not be assumed in account {account_id} lately; next try in {} s",
                        (until - now).as_secs()
                    ),
                });
            }
        }
        let result = self.limiter.run(account_id, &self.retry, call).await;
        if let Some(failing) = failing {
            match &result {
                Err(e) if e.code.as_deref() == Some(CREDENTIALS_ERROR) => {
                    let pause = failing.get(&account_id.to_string()).map_or(CREDENTIALS_PAUSE, |(_, p)| (p * 2).min(CREDENTIALS_MAX_PAUSE));
                    failing.insert(account_id.to_string(), (Instant::now() + pause, pause));
                }
                Ok(_) => failing.remove(&account_id.to_string()),
                Err(_) => {}
            }
        }
        result
    }

    /// IAM's spelling of `user_name` (`GetUser`).
    async fn canonical_name(
        &self,
        client: &aws_sdk_iam::Client,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<String>, InventoryError> {
        let out = self.run(account_id, || call(Service::Iam, "GetUser", client.get_user().user_name(user_name).send())).await;
        match out {
            Ok(out) => Ok(out.user().map(|u| u.user_name().to_string())),
            Err(e) if e.code.as_deref() == Some("NoSuchEntity") => {
                Err(InventoryError::NoSuchUser { account_id: account_id.to_string(), user_name: user_name.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn to_time(t: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()
}

/// IAM says `N/A` for a key that was never used.
fn known(s: &str) -> Option<String> {
    (!s.is_empty() && s != "N/A").then(|| s.to_string())
}

impl IamInventory {
    /// `ListAccessKeys`, every page. IAM's spelling of the name comes with
    /// the keys; for a user without keys it is `known`, or asked for
    /// (`GetUser`).
    async fn list(&self, account_id: &str, user_name: &str, known: Option<&str>) -> Result<Listing, InventoryError> {
        let client = self.client_for(account_id);
        let observed_at = OffsetDateTime::now_utc();
        let mut keys = Vec::new();
        let mut canonical: Option<String> = None;
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .run(account_id, || {
                    call(Service::Iam, "ListAccessKeys", client.list_access_keys().user_name(user_name).set_marker(marker.clone()).send())
                })
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) if e.code.as_deref() == Some("NoSuchEntity") => {
                    return Err(InventoryError::NoSuchUser { account_id: account_id.to_string(), user_name: user_name.to_string() })
                }
                Err(e) => return Err(e.into()),
            };
            if canonical.is_none() {
                canonical = page.access_key_metadata().iter().find_map(|k| k.user_name()).map(str::to_string);
            }
            keys.extend(page.access_key_metadata().iter().filter_map(|k| {
                Some(AccessKey {
                    access_key_id: k.access_key_id()?.to_string(),
                    status: k.status().map_or(KeyStatus::Other(String::new()), |s| KeyStatus::parse(s.as_str())),
                    created_at: k.create_date().and_then(to_time),
                })
            }));
            match page.marker() {
                Some(next) if page.is_truncated() => marker = Some(next.to_string()),
                _ => break,
            }
        }
        if canonical.is_none() {
            canonical = known.map(str::to_string);
        }
        if keys.is_empty() && canonical.is_none() {
            // No key to read IAM's spelling from: ask for the user.
            canonical = self.canonical_name(&client, account_id, user_name).await?;
        }
        Ok(Listing { user_name: canonical, keys, observed_at })
    }
}

impl KeyInventory for IamInventory {
    async fn list_keys(&self, account_id: &str, user_name: &str, _newer_than: Option<OffsetDateTime>) -> Result<Listing, InventoryError> {
        self.list(account_id, user_name, None).await
    }

    async fn list_user_keys(&self, account_id: &str, user: &User) -> Result<Listing, InventoryError> {
        self.list(account_id, &user.name, Some(&user.name)).await
    }

    async fn last_used(&self, account_id: &str, access_key_id: &str, _need: Need) -> Result<Option<KeyLastUsed>, InventoryError> {
        let client = self.client_for(account_id);
        let result = self
            .run(account_id, || {
                call(Service::Iam, "GetAccessKeyLastUsed", client.get_access_key_last_used().access_key_id(access_key_id).send())
            })
            .await;
        match result {
            Ok(out) => {
                let used = out.access_key_last_used();
                Ok(Some(KeyLastUsed {
                    user_name: out.user_name().map(str::to_string),
                    usage: KeyUsage {
                        last_used_at: used.and_then(|u| u.last_used_date()).and_then(to_time),
                        service: used.and_then(|u| known(u.service_name())),
                        region: used.and_then(|u| known(u.region())),
                    },
                }))
            }
            // A deleted key is unknown to IAM.
            Err(e) if e.class == ErrorClass::Permanent && e.code.as_deref() == Some("NoSuchEntity") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn root_keys_present(&self, account_id: &str) -> Result<u32, InventoryError> {
        let client = self.client_for(account_id);
        let out = self.run(account_id, || call(Service::Iam, "GetAccountSummary", client.get_account_summary().send())).await?;
        let present = out.summary_map().and_then(|m| m.get(&SummaryKeyType::AccountAccessKeysPresent)).copied().unwrap_or(0);
        Ok(present.max(0) as u32)
    }

    async fn list_users(&self, account_id: &str) -> Result<Vec<User>, InventoryError> {
        let client = self.client_for(account_id);
        let mut users = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page =
                self.run(account_id, || call(Service::Iam, "ListUsers", client.list_users().set_marker(marker.clone()).send())).await?;
            users.extend(page.users().iter().map(|u| User { name: u.user_name().to_string(), arn: u.arn().to_string() }));
            match page.marker() {
                Some(next) if page.is_truncated() => marker = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(users)
    }
}

impl KeyAdmin for IamInventory {
    async fn set_key_status(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
        status: &KeyStatus,
    ) -> Result<(), InventoryError> {
        let client = self.client_for(account_id);
        let status = aws_sdk_iam::types::StatusType::from(status.as_str());
        let result = self
            .run(account_id, || {
                call(
                    Service::Iam,
                    "UpdateAccessKey",
                    client.update_access_key().user_name(user_name).access_key_id(access_key_id).status(status.clone()).send(),
                )
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code.as_deref() == Some("NoSuchEntity") => {
                Err(InventoryError::NoSuchUser { account_id: account_id.to_string(), user_name: user_name.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl crate::processor::Deactivate for IamInventory {
    fn deactivate<'a>(
        &'a self,
        account_id: &'a str,
        user_name: &'a str,
        access_key_id: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(self.set_key_status(account_id, user_name, access_key_id, &KeyStatus::Inactive))
    }
}

#[cfg(test)]
mod tests;
