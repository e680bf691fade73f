//! Accounts: which AWS accounts keywatch may act in.
//!
//! An event names its account, and an event can be forged: keywatch assumes
//! a role, lists keys and attributes findings only in accounts it was told
//! about. The worker's own account is always one of them; others come from
//! `KEYWATCH_ACCOUNTS`, a list of ids or `organization` (the organisation's
//! ACTIVE accounts, listed through an [`AccountLister`], cached, and read
//! again when the list is old or an unknown account shows up, at most once
//! a minute).
//!
//! In organisation mode an event for an account the cached list does not
//! hold is refused only by a list taken after the event happened (with
//! [`LIST_LAG`] to spare): until then — the list older than the event, a
//! listing under way in another task, Organizations unreachable — the
//! answer is [`NotListedYet`] and the event is left for redelivery, so an
//! account that joined a moment ago loses no event.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use time::OffsetDateTime;
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

/// How long after an event a listing must have started to be the truth
/// about it: Organizations' answers and the clocks may lag a little.
pub const LIST_LAG: Duration = Duration::from_secs(30);

/// The organisation's accounts as last listed.
struct Members {
    /// When the list was last read, or last failed to be (the pause before
    /// the next listing runs from it).
    looked: Instant,
    /// When the listing that gave `ids` started (wall clock, to compare
    /// with an event's time).
    started: OffsetDateTime,
    ids: BTreeSet<String>,
}

struct Organization {
    lister: Arc<dyn AccountLister>,
    members: RwLock<Members>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Organization {
    fn members(&self) -> std::sync::RwLockReadGuard<'_, Members> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The account is not in the organisation's list, but the list was not
/// taken after the event: ask again once it has been listed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotListedYet;

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
                let started = OffsetDateTime::now_utc();
                let ids: BTreeSet<String> = lister.active_accounts().await?.into_iter().collect();
                info!(accounts = ids.len(), "organisation accounts listed");
                let members = Members { looked: Instant::now(), started, ids };
                accounts.organization = Some(Organization { lister, members: RwLock::new(members), refreshing: Default::default() });
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
            || self.organization.as_ref().is_some_and(|o| o.members().ids.contains(account_id))
    }

    /// Whether keywatch may act in `account_id`; in organisation mode the
    /// accounts are listed again first when the list is old, or when the
    /// account is unknown and the list is at least a minute old.
    pub(crate) async fn knows(&self, account_id: &str) -> bool {
        let known = self.contains(account_id);
        if let Some(org) = &self.organization {
            let age = org.members().looked.elapsed();
            if age >= ORG_REFRESH || (!known && age >= ORG_MIN_REFRESH) {
                self.refresh(org).await;
                return self.contains(account_id);
            }
        }
        known
    }

    /// Whether keywatch may act in `account_id` for an event of
    /// `event_time`, as [`Accounts::knows`]; in organisation mode an account
    /// outside the list is [`NotListedYet`] unless the list was taken at
    /// least [`LIST_LAG`] after the event.
    pub(crate) async fn knows_at(&self, account_id: &str, event_time: OffsetDateTime) -> Result<bool, NotListedYet> {
        if self.knows(account_id).await {
            return Ok(true);
        }
        let Some(org) = &self.organization else { return Ok(false) };
        let started = org.members().started;
        if started >= event_time + LIST_LAG {
            return Ok(false);
        }
        info!(
            account_id,
            listed_at = %crate::finding::rfc3339(started),
            "account not in the organisation's list taken before its event; left for redelivery until it is listed again"
        );
        Err(NotListedYet)
    }

    /// Every account keywatch may act in, its own first.
    pub(crate) fn all(&self) -> Vec<String> {
        let mut all = vec![self.own.clone()];
        let org = self.organization.as_ref().map(|o| o.members().ids.clone()).unwrap_or_default();
        all.extend(self.listed.iter().chain(org.iter()).filter(|a| **a != self.own).cloned());
        all.dedup();
        all
    }

    async fn refresh(&self, org: &Organization) {
        // One listing at a time; callers meanwhile use the list they have.
        let Ok(_guard) = org.refreshing.try_lock() else { return };
        let started = OffsetDateTime::now_utc();
        match org.lister.active_accounts().await {
            Ok(ids) => {
                *org.members.write().unwrap_or_else(|e| e.into_inner()) =
                    Members { looked: Instant::now(), started, ids: ids.into_iter().collect() };
            }
            Err(e) => {
                warn!(error = %e, "cannot list the organisation's accounts; keeping the last list");
                // Try again after the short pause, not at once.
                org.members.write().unwrap_or_else(|e| e.into_inner()).looked = Instant::now() - (ORG_REFRESH - ORG_MIN_REFRESH);
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

    #[tokio::test(start_paused = true)]
    async fn an_unlisted_account_waits_for_a_listing_taken_after_its_event() {
        let lister = Arc::new(Lister(AtomicUsize::new(0)));
        let accounts = Accounts::new("999999999999".into(), Scope::Organization, Some(lister.clone())).await.unwrap();
        let just_now = OffsetDateTime::now_utc() - time::Duration::seconds(5);
        assert_eq!(accounts.knows_at("111111111111", just_now).await, Ok(true));
        assert_eq!(accounts.knows_at("222222222222", just_now).await, Err(NotListedYet), "the list predates the event: not refused");
        assert_eq!(accounts.knows_at("333333333333", just_now - time::Duration::hours(1)).await, Ok(false), "listed after the event");
        assert_eq!(lister.0.load(Ordering::SeqCst), 1);
        tokio::time::advance(ORG_MIN_REFRESH).await;
        assert_eq!(accounts.knows_at("222222222222", just_now).await, Ok(true), "listed again, it is there");
        let own = Accounts::only("999999999999");
        assert_eq!(own.knows_at("111111111111", just_now).await, Ok(false), "no organisation: the answer is final");
    }
}
