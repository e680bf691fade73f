//! Accounts: which AWS accounts keywatch may act in.
//!
//! An event names its account, and an event can be forged: keywatch assumes
//! a role, lists keys and attributes findings only in accounts it was told
//! about. The worker's own account is always one of them; others come from
//! `KEYWATCH_ACCOUNTS`, a list of ids or `organization` (the organisation's
//! ACTIVE accounts, listed through an [`AccountLister`], cached, and read
//! again when the list is old or an unknown account shows up, at most once
//! a minute).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::AwsError;
use crate::event::is_account_id;

/// Lists the organisation's ACTIVE accounts.
pub trait AccountLister: Send + Sync + 'static {
    fn active_accounts(&self) -> BoxFuture<'_, Result<Vec<String>, AwsError>>;
}

/// What `KEYWATCH_ACCOUNTS` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Only the worker's own account (the setting is absent).
    Own,
    /// These accounts (and the worker's own).
    List(BTreeSet<String>),
    /// Every ACTIVE account of the organisation.
    Organization,
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("organization") {
            return Ok(Scope::Organization);
        }
        let ids: BTreeSet<String> = s.split(',').map(|id| id.trim().to_string()).filter(|id| !id.is_empty()).collect();
        match ids.iter().find(|id| !is_account_id(id)) {
            Some(bad) => Err(format!("{bad:?} is not a 12-digit account id (expected ids separated by commas, or `organization`)")),
            None if ids.is_empty() => Err("expected account ids separated by commas, or `organization`".into()),
            None => Ok(Scope::List(ids)),
        }
    }
}

/// How often the organisation's accounts are listed again.
const ORG_REFRESH: Duration = Duration::from_secs(600);
/// The shortest pause between two listings.
const ORG_MIN_REFRESH: Duration = Duration::from_secs(60);

struct Organization {
    lister: Arc<dyn AccountLister>,
    members: RwLock<(Instant, BTreeSet<String>)>,
    refreshing: tokio::sync::Mutex<()>,
}

/// The accounts keywatch may act in.
pub struct Accounts {
    own: String,
    listed: BTreeSet<String>,
    organization: Option<Organization>,
}

impl Accounts {
    /// The worker's own account and `scope`; for `Scope::Organization`,
    /// `lister` is asked now (start-up fails if it cannot answer).
    pub async fn new(own: String, scope: Scope, lister: Option<Arc<dyn AccountLister>>) -> Result<Accounts, AwsError> {
        let mut accounts = Accounts { own, listed: BTreeSet::new(), organization: None };
        match scope {
            Scope::Own => {}
            Scope::List(ids) => accounts.listed = ids,
            Scope::Organization => {
                let lister = lister.expect("an organisation scope comes with a lister");
                let members: BTreeSet<String> = lister.active_accounts().await?.into_iter().collect();
                info!(accounts = members.len(), "organisation accounts listed");
                accounts.organization =
                    Some(Organization { lister, members: RwLock::new((Instant::now(), members)), refreshing: Default::default() });
            }
        }
        Ok(accounts)
    }

    /// Only `own`.
    pub fn only(own: impl Into<String>) -> Accounts {
        Accounts { own: own.into(), listed: BTreeSet::new(), organization: None }
    }

    pub(crate) fn own(&self) -> &str {
        &self.own
    }

    /// Whether keywatch may act in `account_id`, from what is known now.
    fn contains(&self, account_id: &str) -> bool {
        account_id == self.own
            || self.listed.contains(account_id)
            || self.organization.as_ref().is_some_and(|o| o.members.read().unwrap_or_else(|e| e.into_inner()).1.contains(account_id))
    }

    /// Whether keywatch may act in `account_id`; in organisation mode the
    /// accounts are listed again first when the list is old, or when the
    /// account is unknown and the list is at least a minute old.
    pub(crate) async fn knows(&self, account_id: &str) -> bool {
        let known = self.contains(account_id);
        if let Some(org) = &self.organization {
            let age = org.members.read().unwrap_or_else(|e| e.into_inner()).0.elapsed();
            if age >= ORG_REFRESH || (!known && age >= ORG_MIN_REFRESH) {
                self.refresh(org).await;
                return self.contains(account_id);
            }
        }
        known
    }

    /// Every account keywatch may act in, its own first.
    pub(crate) fn all(&self) -> Vec<String> {
        let mut all = vec![self.own.clone()];
        let org = self.organization.as_ref().map(|o| o.members.read().unwrap_or_else(|e| e.into_inner()).1.clone()).unwrap_or_default();
        all.extend(self.listed.iter().chain(org.iter()).filter(|a| **a != self.own).cloned());
        all.dedup();
        all
    }

    async fn refresh(&self, org: &Organization) {
        // One listing at a time; callers meanwhile use the list they have.
        let Ok(_guard) = org.refreshing.try_lock() else { return };
        match org.lister.active_accounts().await {
            Ok(ids) => {
                *org.members.write().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), ids.into_iter().collect());
            }
            Err(e) => {
                warn!(error = %e, "cannot list the organisation's accounts; keeping the last list");
                // Try again after the short pause, not at once.
                org.members.write().unwrap_or_else(|e| e.into_inner()).0 = Instant::now() - (ORG_REFRESH - ORG_MIN_REFRESH);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Lister(AtomicUsize);

    impl AccountLister for Lister {
        fn active_accounts(&self) -> BoxFuture<'_, Result<Vec<String>, AwsError>> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            // The second listing knows a newly joined account.
            let mut ids = vec!["111111111111".to_string()];
            if n > 0 {
                ids.push("222222222222".into());
            }
            std::future::ready(Ok(ids)).boxed()
        }
    }

    #[test]
    fn a_scope_is_a_list_of_ids_or_the_organisation() {
        assert_eq!("organization".parse::<Scope>(), Ok(Scope::Organization));
        assert_eq!(" 111111111111, 222222222222 ".parse::<Scope>(), Ok(Scope::List(["111111111111".into(), "222222222222".into()].into())));
        assert!("11111111111".parse::<Scope>().is_err(), "11 digits");
        assert!("111111111111,abc".parse::<Scope>().is_err());
        assert!(",".parse::<Scope>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_own_account_is_always_known_and_others_only_when_listed() {
        let own = Accounts::only("999999999999");
        assert!(own.knows("999999999999").await);
        assert!(!own.knows("111111111111").await);
        let listed = Accounts::new("999999999999".into(), "111111111111".parse().unwrap(), None).await.unwrap();
        assert!(listed.knows("111111111111").await && !listed.knows("222222222222").await);
        assert_eq!(listed.all(), ["999999999999", "111111111111"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_account_lists_the_organisation_again_at_most_once_a_minute() {
        let lister = Arc::new(Lister(AtomicUsize::new(0)));
        let accounts = Accounts::new("999999999999".into(), Scope::Organization, Some(lister.clone())).await.unwrap();
        assert!(accounts.knows("111111111111").await);
        assert!(!accounts.knows("222222222222").await, "joined after the first listing, and the list is fresh");
        assert_eq!(lister.0.load(Ordering::SeqCst), 1);
        tokio::time::advance(ORG_MIN_REFRESH).await;
        assert!(accounts.knows("222222222222").await, "listed again");
        assert_eq!(lister.0.load(Ordering::SeqCst), 2);
        assert!(!accounts.knows("333333333333").await);
        assert_eq!(lister.0.load(Ordering::SeqCst), 2, "not again within the minute");
    }
}
