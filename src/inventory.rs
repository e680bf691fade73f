//! Inventory: what IAM says about a user's keys, right now, in any account.
//!
//! [`KeyInventory`] is the seam between the worker and IAM: the worker asks
//! for a user's keys (every page of `ListAccessKeys`), for a key's owner and
//! last use (`GetAccessKeyLastUsed`), and whether the root user has keys
//! (`GetAccountSummary`). The IAM implementation lives here; tests and
//! benchmarks can supply their own.
//!
//! Events from an organisation carry member account ids. With a member role
//! configured, calls for an account other than the worker's own go through
//! `sts:AssumeRole` into `arn:aws:iam::<account>:role/<name>`; each account's
//! client keeps its credentials cached and renews them before they expire
//! (the SDK's identity cache). Without one, every call uses the worker's own
//! credentials.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_iam::types::SummaryKeyType;
use time::OffsetDateTime;
use tokio::sync::RwLock;

use crate::aws::{self, AwsError, ErrorClass};
use crate::limit::{RateLimiter, RetryPolicy};
use crate::evaluate::{AccessKey, KeyUsage};
use crate::event::KeyStatus;
use crate::telemetry::Service;

/// Why a look-up failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InventoryError {
    /// The user no longer exists (deleted since the event): nothing to check.
    #[error("IAM user {user_name} does not exist in account {account_id}")]
    NoSuchUser { account_id: String, user_name: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl InventoryError {
    /// Whether the same look-up may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            InventoryError::NoSuchUser { .. } => false,
            InventoryError::Aws(e) => e.is_retryable(),
        }
    }
}

/// What `GetAccessKeyLastUsed` says of a key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyLastUsed {
    /// The key's owner.
    pub user_name: Option<String>,
    pub usage: KeyUsage,
}

/// Read access to IAM access keys, per account.
pub trait KeyInventory: Send + Sync + 'static {
    /// Every access key of `user_name` in `account_id`, all pages.
    fn list_keys(&self, account_id: &str, user_name: &str) -> impl Future<Output = Result<Vec<AccessKey>, InventoryError>> + Send;

    /// Owner and last use of `access_key_id`; `None` when IAM no longer
    /// knows the key (deleted).
    fn last_used(&self, account_id: &str, access_key_id: &str) -> impl Future<Output = Result<Option<KeyLastUsed>, InventoryError>> + Send;

    /// `AccountAccessKeysPresent` of `GetAccountSummary`: how many access
    /// keys the account's root user has (0 or 1 in practice).
    fn root_keys_present(&self, account_id: &str) -> impl Future<Output = Result<u32, InventoryError>> + Send;

    /// Whether `account_id`'s IAM budget has room for enrichment (last-use
    /// look-ups) now. Under a burst, listings, which detection needs, come
    /// first; a finding then goes out without the last use it could not
    /// afford.
    fn has_room_for_enrichment(&self, _account_id: &str) -> bool {
        true
    }
}

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
}

/// [`KeyInventory`] over the IAM API, rate-limited and retried per account
/// (see [`crate::limit`]).
#[derive(Clone)]
pub struct IamInventory {
    own: aws_sdk_iam::Client,
    member: Option<Arc<Members>>,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
}

struct Members {
    role: MemberRole,
    /// The IAM client configuration that member clients start from.
    base: aws_sdk_iam::Config,
    sdk: SdkConfig,
    clients: RwLock<HashMap<String, aws_sdk_iam::Client>>,
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
    /// role there. `sdk` supplies the credentials that call STS.
    pub fn with_member_role(client: aws_sdk_iam::Client, sdk: SdkConfig, role: MemberRole) -> Self {
        let base = client.config().clone();
        IamInventory {
            member: Some(Arc::new(Members { role, base, sdk, clients: RwLock::new(HashMap::new()) })),
            ..IamInventory::new(client)
        }
    }

    async fn client_for(&self, account_id: &str) -> aws_sdk_iam::Client {
        let Some(m) = &self.member else { return self.own.clone() };
        if account_id == m.role.own_account_id {
            return self.own.clone();
        }
        if let Some(c) = m.clients.read().await.get(account_id) {
            return c.clone();
        }
        let mut clients = m.clients.write().await;
        if let Some(c) = clients.get(account_id) {
            return c.clone();
        }
        let role_arn = format!("arn:aws:iam::{account_id}:role/{}", m.role.name);
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role_arn).session_name("keywatch");
        if let Some(id) = &m.role.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.configure(&m.sdk).build().await;
        let config = m.base.to_builder().credentials_provider(provider).build();
        let client = aws_sdk_iam::Client::from_conf(config);
        clients.insert(account_id.to_string(), client.clone());
        client
    }
}

fn to_time(t: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()
}

/// IAM says `N/A` for a key that was never used.
fn known(s: &str) -> Option<String> {
    (!s.is_empty() && s != "N/A").then(|| s.to_string())
}

impl KeyInventory for IamInventory {
    async fn list_keys(&self, account_id: &str, user_name: &str) -> Result<Vec<AccessKey>, InventoryError> {
        let client = self.client_for(account_id).await;
        let mut keys = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .limiter
                .run(account_id, &self.retry, || {
                    aws::call(Service::Iam, "ListAccessKeys", client.list_access_keys().user_name(user_name).set_marker(marker.clone()).send())
                })
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) if e.code.as_deref() == Some("NoSuchEntity") => {
                    return Err(InventoryError::NoSuchUser { account_id: account_id.to_string(), user_name: user_name.to_string() })
                }
                Err(e) => return Err(e.into()),
            };
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
        Ok(keys)
    }

    async fn last_used(&self, account_id: &str, access_key_id: &str) -> Result<Option<KeyLastUsed>, InventoryError> {
        let client = self.client_for(account_id).await;
        let result = self
            .limiter
            .run(account_id, &self.retry, || {
                aws::call(Service::Iam, "GetAccessKeyLastUsed", client.get_access_key_last_used().access_key_id(access_key_id).send())
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

    fn has_room_for_enrichment(&self, account_id: &str) -> bool {
        self.limiter.has_headroom(account_id)
    }

    async fn root_keys_present(&self, account_id: &str) -> Result<u32, InventoryError> {
        let client = self.client_for(account_id).await;
        let out = self
            .limiter
            .run(account_id, &self.retry, || aws::call(Service::Iam, "GetAccountSummary", client.get_account_summary().send()))
            .await?;
        let present = out.summary_map().and_then(|m| m.get(&SummaryKeyType::AccountAccessKeysPresent)).copied().unwrap_or(0);
        Ok(present.max(0) as u32)
    }
}
