//! What the processor gathers from IAM for one event before the decision:
//! the user's keys (read again while a fresh event's change does not show
//! yet), or the root user's, and the keys' last use.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::Processor;
use crate::decide::{self, Iam, Outcome};
use crate::evaluate;
use crate::event::{KeyEvent, Target};
use crate::inventory::{self, InventoryError, KeyInventory, Need};
use crate::keys::{KeyLastUsed, KeyUsage, Listing};

/// What the processor learned of an event's user, for [`decide::conclude`].
pub(super) struct Facts {
    pub(super) answer: Answer,
    /// The last use of the keys a finding will name, where it was learned.
    pub(super) usage: HashMap<String, KeyUsage>,
}

/// IAM's answer, owned.
pub(super) enum Answer {
    /// `AccountAccessKeysPresent`, for a root key event, and when it was
    /// asked for (the finding's `observed_at`: like a listing's, the time
    /// of the request, not of the message, so that of two answers the later
    /// one wins).
    RootKeys(Result<u32, InventoryError>, OffsetDateTime),
    /// The user's keys, and when they were first asked for (the
    /// `observed_at` of a user IAM no longer has).
    Keys { user_name: String, listing: Result<Listing, InventoryError>, asked_at: OffsetDateTime },
}

impl Facts {
    /// IAM's answer as the decision reads it.
    pub(super) fn iam(&self) -> Iam<'_> {
        match &self.answer {
            Answer::RootKeys(Ok(present), observed_at) => Iam::RootKeys { present: *present, observed_at: *observed_at },
            Answer::RootKeys(Err(e), _) => Iam::Failed(e),
            Answer::Keys { user_name, listing, asked_at } => Iam::listed(user_name, listing, *asked_at),
        }
    }
}

impl<I: KeyInventory> Processor<I> {
    /// Gathers what IAM says of the event's user (its keys, or the root
    /// user's, and the keys' last use) for [`decide::conclude`], from a
    /// listing that started after `newer_than`; `Err` when the event ends
    /// before its keys can be asked for (its key's owner cannot be found).
    pub(super) async fn gather(&self, ev: &KeyEvent, now: OffsetDateTime, newer_than: OffsetDateTime) -> Result<Facts, Outcome> {
        let rules = &self.settings.rules;
        let user_name = match &ev.target {
            Target::Root => {
                let observed_at = OffsetDateTime::now_utc();
                let present = self.inventory.root_keys_present(&ev.account_id).await;
                return Ok(Facts { answer: Answer::RootKeys(present, observed_at), usage: HashMap::new() });
            }
            Target::User { name, .. } => name.clone(),
            Target::Unresolved => {
                let lookup = match ev.access_key_id.as_deref() {
                    Some(key_id) => Some(self.inventory.last_used(&ev.account_id, key_id, Need::Required).await),
                    None => None,
                };
                decide::owner(ev, lookup)?
            }
        };
        // The last use of the key the event made active is asked for while
        // the listing is read, not after it: a finding naming that key then
        // waits for no extra round trip.
        let prefetch = decide::usage_to_prefetch(ev, now, rules);
        let asked_at = OffsetDateTime::now_utc();
        let (listing, prefetched) = tokio::join!(self.list_until_reflected(ev, &user_name, rules.fresh(ev, now), newer_than), async {
            match prefetch {
                Some(id) => Some((id, self.inventory.last_used(&ev.account_id, id, Need::Optional).await)),
                None => None,
            }
        });
        let mut usage = HashMap::new();
        let listing = match listing {
            Ok(listing) => listing,
            Err(e) => return Ok(Facts { answer: Answer::Keys { user_name, listing: Err(e), asked_at }, usage }),
        };
        if let Some(created) = decide::just_created(ev, &listing, now, rules) {
            usage.insert(created.access_key_id.to_string(), KeyUsage::default());
            if created.listed {
                let owner = listing.user_name.clone().unwrap_or_else(|| user_name.clone());
                let last = KeyLastUsed { user_name: Some(owner), usage: KeyUsage::default() };
                self.inventory.remember_last_used(&ev.account_id, created.access_key_id, last);
            }
        }
        if let Some((id, result)) = prefetched {
            inventory::note_last_use(&ev.account_id, id, result, &mut usage);
        }
        let wanted = decide::usage_wanted(ev, Iam::Keys { user_name: &user_name, listing: &listing }, &usage, now, rules);
        if !wanted.is_empty() {
            inventory::add_last_use(&*self.inventory, &ev.account_id, &wanted, &mut usage).await;
        }
        Ok(Facts { answer: Answer::Keys { user_name, listing: Ok(listing), asked_at }, usage })
    }

    /// Lists the user's keys (a listing that started after `newer_than`);
    /// while the event is fresh and the listing does not show its change
    /// yet, waits and lists again (bounded).
    async fn list_until_reflected(
        &self,
        ev: &KeyEvent,
        user_name: &str,
        fresh: bool,
        newer_than: OffsetDateTime,
    ) -> Result<Listing, InventoryError> {
        let mut listing = self.inventory.list_keys(&ev.account_id, user_name, Some(newer_than)).await?;
        if fresh {
            for delay in &self.settings.relist_delays {
                if evaluate::listing_reflects(ev, &listing.keys) {
                    break;
                }
                tokio::time::sleep(*delay).await;
                listing = self.inventory.list_keys(&ev.account_id, user_name, Some(listing.observed_at)).await?;
            }
        }
        Ok(listing)
    }
}
