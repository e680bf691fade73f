//! Inventory: the port through which the core asks IAM about keys.
//!
//! [`KeyInventory`] is what the processor sees: a user's keys (every page of
//! `ListAccessKeys`), a key's owner and last use (`GetAccessKeyLastUsed`),
//! whether the root user has keys (`GetAccountSummary`). The IAM adapter
//! ([`crate::aws::iam::IamInventory`]) answers from the API; the
//! [`cached::CachingInventory`] decorator spares calls (coalescing, reuse,
//! a last-use cache, enrichment only while the budget allows) and is itself
//! a `KeyInventory`; tests and benchmarks supply their own. `add_last_use`
//! is how the processor and the scan both gather keys' last use.

#[cfg(feature = "aws")]
pub mod cached;

use std::collections::HashMap;
use std::future::Future;

use futures_util::future::join_all;
use time::OffsetDateTime;
use tracing::{debug, warn};

use crate::error::AwsError;
use crate::keys::{KeyLastUsed, KeyStatus, KeyUsage, Listing, User};

/// Why a look-up failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InventoryError {
    /// The user no longer exists (deleted since the event): nothing to check.
    #[error("IAM user {user_name} does not exist in account {account_id}")]
    NoSuchUser { account_id: String, user_name: String },
    /// An optional look-up left out: the account's IAM budget is kept for
    /// the calls detection needs.
    #[error("left out: the account's IAM budget is kept for listings")]
    Deferred,
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl InventoryError {
    /// Whether the same look-up may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            InventoryError::NoSuchUser { .. } => false,
            InventoryError::Deferred => true,
            InventoryError::Aws(e) => e.is_retryable(),
        }
    }
}

/// How much a look-up matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Detection depends on it (a key's owner).
    Required,
    /// Enrichment for the responder: may be left out under a burst.
    Optional,
}

/// Read access to IAM access keys, per account.
pub trait KeyInventory: Send + Sync + 'static {
    /// Every access key of `user_name` in `account_id`, all pages, from a
    /// listing that started after `newer_than` (a new call always did).
    fn list_keys(
        &self,
        account_id: &str,
        user_name: &str,
        newer_than: Option<OffsetDateTime>,
    ) -> impl Future<Output = Result<Listing, InventoryError>> + Send;

    /// The keys of a user `ListUsers` named, so `user.name` is IAM's own
    /// spelling already: like [`KeyInventory::list_keys`] with no
    /// `newer_than`, but a user without keys costs no extra call to learn
    /// it. A scan lists every user this way.
    fn list_user_keys(&self, account_id: &str, user: &User) -> impl Future<Output = Result<Listing, InventoryError>> + Send {
        self.list_keys(account_id, &user.name, None)
    }

    /// Owner and last use of `access_key_id`; `None` when IAM no longer
    /// knows the key (deleted).
    fn last_used(
        &self,
        account_id: &str,
        access_key_id: &str,
        need: Need,
    ) -> impl Future<Output = Result<Option<KeyLastUsed>, InventoryError>> + Send;

    /// Keeps a key's last use learned without asking IAM (the key an event
    /// just created, as the user's listing confirms: see
    /// [`crate::decide::just_created`]), so that the user's next events
    /// find it as they would find an answer from IAM. An inventory without
    /// a cache has nothing to keep it in.
    fn remember_last_used(&self, account_id: &str, access_key_id: &str, last: KeyLastUsed) {
        let _ = (account_id, access_key_id, last);
    }

    /// `AccountAccessKeysPresent` of `GetAccountSummary`: how many access
    /// keys the account's root user has (0 or 1 in practice).
    fn root_keys_present(&self, account_id: &str) -> impl Future<Output = Result<u32, InventoryError>> + Send;

    /// Every IAM user of `account_id` (`ListUsers`, all pages), for a scan.
    /// An inventory that cannot list users has none.
    fn list_users(&self, account_id: &str) -> impl Future<Output = Result<Vec<User>, InventoryError>> + Send {
        let _ = account_id;
        async { Ok(Vec::new()) }
    }
}

/// Write access to IAM access keys: the one change `keywatch remediate`
/// makes (`UpdateAccessKey`; a key is never deleted).
pub trait KeyAdmin: KeyInventory {
    /// Sets the status of `access_key_id`, a key of `user_name`.
    fn set_key_status(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
        status: &KeyStatus,
    ) -> impl Future<Output = Result<(), InventoryError>> + Send;
}

/// Asks for the last use of each of `keys` at once and adds the answers to
/// `usage`, for the finding's responder. Shared by events and scans, so a
/// look-up fails the same way for both: a failed one leaves that key out
/// (its last use unknown, the finding without a recommended key) rather
/// than holding back the finding; so does one the account's IAM budget
/// cannot afford while listings need it (a burst). Its log lines name the
/// message or the scan through the span they are logged in.
pub(crate) async fn add_last_use<I: KeyInventory, K: AsRef<str>>(
    inventory: &I,
    account_id: &str,
    keys: &[K],
    usage: &mut HashMap<String, KeyUsage>,
) {
    let lookups = keys.iter().map(|id| async move { (id.as_ref(), inventory.last_used(account_id, id.as_ref(), Need::Optional).await) });
    for (id, result) in join_all(lookups).await {
        note_last_use(account_id, id, result, usage);
    }
}

/// Adds one last-use answer to `usage`; a failed or deferred look-up leaves
/// the key out, with a log line.
pub(crate) fn note_last_use(
    account_id: &str,
    id: &str,
    result: Result<Option<KeyLastUsed>, InventoryError>,
    usage: &mut HashMap<String, KeyUsage>,
) {
    match result {
        Ok(Some(last)) => {
            usage.insert(id.to_string(), last.usage);
        }
        // IAM does not know the key yet (created moments ago, not
        // propagated): it cannot have been used.
        Ok(None) => {
            usage.insert(id.to_string(), KeyUsage::default());
        }
        Err(InventoryError::Deferred) => {
            debug!(account_id, access_key_id = %id, "IAM budget kept for listings; last use left out")
        }
        Err(e) => warn!(
            account_id,
            access_key_id = %id,
            error = %e,
            "could not read the key's last use; finding published without it"
        ),
    }
}
