//! Inventory: what IAM says about a user's keys, right now.
//!
//! [`KeyInventory`] is the seam between the worker and IAM: the worker asks
//! for a user's keys (every page of `ListAccessKeys`) and, when an event does
//! not name its user, for the owner of a key (`GetAccessKeyLastUsed`). The
//! IAM implementation lives here; tests and benchmarks can supply their own.

use std::future::Future;

use time::OffsetDateTime;

use crate::aws::{self, AwsError, ErrorClass};
use crate::event::KeyStatus;
use crate::evaluate::AccessKey;
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

/// Read access to IAM access keys, per account.
pub trait KeyInventory: Send + Sync + 'static {
    /// Every access key of `user_name` in `account_id`, all pages.
    fn list_keys(&self, account_id: &str, user_name: &str) -> impl Future<Output = Result<Vec<AccessKey>, InventoryError>> + Send;

    /// The user that owns `access_key_id`, or `None` when IAM no longer
    /// knows the key (deleted).
    fn key_owner(&self, account_id: &str, access_key_id: &str) -> impl Future<Output = Result<Option<String>, InventoryError>> + Send;
}

/// [`KeyInventory`] over the IAM API with the worker's own credentials.
#[derive(Clone)]
pub struct IamInventory {
    client: aws_sdk_iam::Client,
}

impl IamInventory {
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        IamInventory { client }
    }

    fn client_for(&self, _account_id: &str) -> &aws_sdk_iam::Client {
        &self.client
    }
}

fn to_time(t: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()
}

impl KeyInventory for IamInventory {
    async fn list_keys(&self, account_id: &str, user_name: &str) -> Result<Vec<AccessKey>, InventoryError> {
        let client = self.client_for(account_id);
        let mut keys = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let request = client.list_access_keys().user_name(user_name).set_marker(marker.take()).send();
            let page = match aws::call(Service::Iam, "ListAccessKeys", request).await {
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

    async fn key_owner(&self, account_id: &str, access_key_id: &str) -> Result<Option<String>, InventoryError> {
        let client = self.client_for(account_id);
        let request = client.get_access_key_last_used().access_key_id(access_key_id).send();
        match aws::call(Service::Iam, "GetAccessKeyLastUsed", request).await {
            Ok(out) => Ok(out.user_name().map(str::to_string)),
            // A deleted key is unknown to IAM.
            Err(e) if e.class == ErrorClass::Permanent && e.code.as_deref() == Some("NoSuchEntity") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

