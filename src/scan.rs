//! Scan: the control's whole current truth, not only what changed while
//! keywatch ran.
//!
//! For one account: every IAM user (`ListUsers`, every page), each user's
//! keys (`ListAccessKeys`), the same decision and the same `finding_id` as
//! the event path, under the same per-account rate limit and retries. A
//! violating user gets the `FAILED` finding the worker would publish (its
//! trigger says it came from a scan); with `include_passed` every compliant
//! user gets a `PASSED`, a baseline that closes stale alerts. The root
//! user's keys are read as for a root key event (`GetAccountSummary`): a
//! root key is a `FAILED` CIS-1.4 finding, none a `PASSED` with
//! `include_passed`. Each account ends with a summary (users checked,
//! failing, active keys, root keys, errors).
//!
//! `keywatch scan` runs it over every account keywatch may act in; the
//! worker runs it for a scan request taken off its queue (a scheduled
//! reconciliation), one account per message.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use time::OffsetDateTime;
use tracing::{error_span, info, warn, Instrument};

use crate::accounts::Accounts;
use crate::event::truncate;
use crate::exceptions::Exceptions;
use crate::finding::{self, rfc3339, Finding, ScanSummary, Status};
use crate::inventory::{self, InventoryError, KeyInventory};
use crate::keys::User;
use crate::ledger::{Entry, Ledger};
use crate::message::{Disposition, Requeue, ScanRequest};
use crate::sink::{FindingSink, SinkError};
use crate::telemetry;

/// Error messages a summary quotes at most.
const ERROR_SAMPLES: usize = 5;
/// Findings published per sink call.
const PUBLISH_BATCH: usize = 10;

/// How a scan behaves.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// A `PASSED` for every compliant user too.
    pub include_passed: bool,
    /// Last use of a failing user's keys, for the recommended key.
    pub last_use: bool,
    /// Users checked at once in one account (the rate limit paces them).
    pub users_in_flight: usize,
}

/// Told of a scan's progress (a progress bar, log lines, nothing).
pub trait Progress: Send + Sync {
    fn users_found(&self, account_id: &str, users: usize);
    fn user_checked(&self);
}

/// No progress reports.
pub struct Quiet;

impl Progress for Quiet {
    fn users_found(&self, _: &str, _: usize) {}
    fn user_checked(&self) {}
}

/// Scans accounts through an inventory and publishes to a sink.
pub struct Scanner<I> {
    inventory: Arc<I>,
    sink: Arc<dyn FindingSink>,
    settings: ScanSettings,
    /// Where the account's open violations are read from, so that each is
    /// closed when it no longer fails; `None`: only `include_passed` closes.
    ledger: Option<Arc<dyn Ledger>>,
}

/// One user's outcome.
enum Checked {
    Finding(Box<Finding>, usize),
    Compliant(usize),
    Gone,
    Failed(String),
}

impl<I: KeyInventory> Scanner<I> {
    pub fn new(inventory: Arc<I>, sink: Arc<dyn FindingSink>, settings: ScanSettings) -> Self {
        Scanner { inventory, sink, settings, ledger: None }
    }

    /// Closes the violations `ledger` holds open for each scanned account
    /// that no longer fail: a `PASSED` for each such user (a user IAM no
    /// longer has gets one with reason `user_deleted`), and for the root
    /// user, whatever `include_passed` says.
    pub(crate) fn with_ledger(mut self, ledger: Option<Arc<dyn Ledger>>) -> Self {
        self.ledger = ledger;
        self
    }

    /// The same scanner with other settings.
    fn with_settings(&self, settings: ScanSettings) -> Self {
        Scanner { inventory: self.inventory.clone(), sink: self.sink.clone(), settings, ledger: self.ledger.clone() }
    }

    /// The violations the ledger holds open for `account_id`, by
    /// `finding_id` (none without a ledger; an error is the summary's).
    async fn open_violations(&self, account_id: &str, summary: &mut ScanSummary) -> HashMap<String, Entry> {
        let Some(ledger) = &self.ledger else { return HashMap::new() };
        match ledger.open(Some(account_id)).await {
            Ok(open) => open.into_iter().map(|e| (e.finding_id.clone(), e)).collect(),
            Err(e) => {
                note_error(summary, format!("reading the ledger's open violations: {e}"));
                HashMap::new()
            }
        }
    }

    /// Scans one account and publishes its findings and its summary, in a
    /// span of its own that names the account on every line logged for it
    /// (at `ERROR`, so that it is on whenever any line is).
    pub async fn scan_account(&self, account_id: &str, exceptions: &Exceptions, progress: &dyn Progress) -> ScanSummary {
        let span = error_span!("scan", account_id = %account_id);
        self.check_account(account_id, exceptions, progress).instrument(span).await
    }

    async fn check_account(&self, account_id: &str, exceptions: &Exceptions, progress: &dyn Progress) -> ScanSummary {
        let started = OffsetDateTime::now_utc();
        let clock = std::time::Instant::now();
        let mut summary = ScanSummary {
            account_id: account_id.to_string(),
            users_checked: 0,
            users_failing: 0,
            keys_active: 0,
            root_access_keys: None,
            findings_published: 0,
            started_at: rfc3339(started),
            finished_at: String::new(),
            duration_seconds: 0.0,
            errors: 0,
            error_samples: Vec::new(),
        };
        let open = self.open_violations(account_id, &mut summary).await;
        let users = self.inventory.list_users(account_id).await;
        // The root user's ARN is in the partition of the users' (which
        // ListUsers gives); `aws` for an account without users.
        let partition: String =
            users.as_ref().ok().and_then(|u| u.first()).and_then(|u| finding::partition_of_arn(&u.arn)).unwrap_or("aws").to_string();
        let partition = partition.as_str();
        let mut pending = Vec::new();
        let root_open = open.contains_key(&finding::finding_id(finding::ROOT_CONTROL_ID, account_id, finding::ROOT_USER));
        match self.check_root(account_id, partition, started, root_open).await {
            Ok((present, finding)) => {
                summary.root_access_keys = Some(present);
                pending.extend(finding);
            }
            Err(e) => note_error(&mut summary, e),
        }
        let users = match users {
            Ok(users) => users,
            Err(e) => {
                note_error(&mut summary, format!("ListUsers: {e}"));
                if !pending.is_empty() {
                    self.publish(&mut summary, pending).await;
                }
                return self.finish(summary, clock).await;
            }
        };
        progress.users_found(account_id, users.len());
        // Open violations of users ListUsers no longer shows: looked at one
        // by one after the others (deleted, most likely).
        let listed: HashSet<&str> = users.iter().map(|u| u.name.as_str()).collect();
        let missing: Vec<User> = open
            .values()
            .filter(|e| e.control_id == finding::CONTROL_ID && !listed.contains(e.user_name.as_str()))
            .map(|e| User { name: e.user_name.clone(), arn: format!("arn:{partition}:iam::{account_id}:user/{}", e.user_name) })
            .collect();
        let mut users = users;
        users.extend(missing);
        let open = &open;
        let checks = stream::iter(users)
            .map(|user| async move {
                let is_open = open.contains_key(&finding::finding_id(finding::CONTROL_ID, account_id, &user.name));
                let checked = match self.check_user(account_id, &user, exceptions, started, is_open).await {
                    Checked::Gone if is_open => {
                        let now = OffsetDateTime::now_utc();
                        let f = finding::build_scan_user_gone(account_id, &user.name, partition, started, now);
                        Checked::Finding(Box::new(f), 0)
                    }
                    checked => checked,
                };
                progress.user_checked();
                checked
            })
            .buffer_unordered(self.settings.users_in_flight.max(1));
        let mut checks = std::pin::pin!(checks);
        while let Some(checked) = checks.next().await {
            match checked {
                Checked::Finding(f, active) => {
                    summary.users_checked += 1;
                    summary.keys_active += active;
                    if f.status == Status::Failed {
                        summary.users_failing += 1;
                    }
                    pending.push(*f);
                    if pending.len() == PUBLISH_BATCH {
                        self.publish(&mut summary, std::mem::take(&mut pending)).await;
                    }
                }
                Checked::Compliant(active) => {
                    summary.users_checked += 1;
                    summary.keys_active += active;
                }
                Checked::Gone => {}
                Checked::Failed(e) => note_error(&mut summary, e),
            }
        }
        if !pending.is_empty() {
            self.publish(&mut summary, pending).await;
        }
        self.finish(summary, clock).await
    }

    /// The root user's keys (`GetAccountSummary`, as for a root key event):
    /// how many, and the CIS-1.4 finding they make (`FAILED` while there is
    /// one; `PASSED` only with `include_passed`).
    async fn check_root(
        &self,
        account_id: &str,
        partition: &str,
        started: OffsetDateTime,
        open: bool,
    ) -> Result<(u32, Option<Finding>), String> {
        let observed_at = OffsetDateTime::now_utc();
        let present = self.inventory.root_keys_present(account_id).await.map_err(|e| format!("GetAccountSummary: {e}"))?;
        let now = OffsetDateTime::now_utc();
        let built = finding::build_scan_root(account_id, partition, present, started, self.settings.include_passed || open, now);
        Ok((present, built.map(|f| f.observed(observed_at))))
    }

    /// One user's keys, and the finding they make (a `PASSED` too when
    /// `include_passed` or `open`: a violation is open for the user).
    async fn check_user(&self, account_id: &str, user: &User, exceptions: &Exceptions, started: OffsetDateTime, open: bool) -> Checked {
        let listing = match self.inventory.list_user_keys(account_id, user).await {
            Ok(listing) => listing,
            // Deleted since ListUsers: nothing to say.
            Err(InventoryError::NoSuchUser { .. }) => return Checked::Gone,
            Err(e) => return Checked::Failed(format!("ListAccessKeys {}: {e}", truncate(&user.name))),
        };
        let user_name = user.name.as_str();
        let active: Vec<&str> = listing.keys.iter().filter(|k| k.is_active()).map(|k| k.access_key_id.as_str()).collect();
        let mut usage = HashMap::new();
        if active.len() > 1 && self.settings.last_use {
            inventory::add_last_use(&*self.inventory, account_id, &active, &mut usage).await;
        }
        let now = OffsetDateTime::now_utc();
        let built = finding::build_scan(account_id, user, &listing.keys, &usage, started, self.settings.include_passed || open, now);
        match built {
            Some(f) => {
                let mut f = f.observed(listing.observed_at);
                if f.status == Status::Failed {
                    if let Some(e) = exceptions.matching(account_id, user_name, now) {
                        f.suppress(e);
                    }
                }
                Checked::Finding(Box::new(f), active.len())
            }
            None => Checked::Compliant(active.len()),
        }
    }

    async fn publish(&self, summary: &mut ScanSummary, findings: Vec<Finding>) {
        for (f, result) in findings.iter().zip(self.sink.publish(&findings).await) {
            match result {
                Ok(()) => {
                    summary.findings_published += 1;
                    telemetry::finding_accepted(f.status.as_str(), f.detection_latency_seconds);
                }
                // The ledger's last word is newer, or says the same: nothing
                // to publish.
                Err(SinkError::Dropped(_)) => {}
                Err(e) => note_error(summary, format!("publishing {}: {e}", f.finding_id)),
            }
        }
    }

    async fn finish(&self, mut summary: ScanSummary, clock: std::time::Instant) -> ScanSummary {
        summary.finished_at = rfc3339(OffsetDateTime::now_utc());
        summary.duration_seconds = clock.elapsed().as_secs_f64();
        if let Err(e) = self.sink.publish_summary(&summary).await {
            note_error(&mut summary, format!("publishing the summary: {e}"));
        }
        telemetry::scan_finished(summary.complete(), summary.duration_seconds, summary.users_checked, summary.users_failing);
        summary
    }
}

fn note_error(summary: &mut ScanSummary, error: String) {
    summary.errors += 1;
    if summary.error_samples.len() < ERROR_SAMPLES {
        summary.error_samples.push(error.chars().take(300).collect());
    }
}

/// Carries out a scan request taken off the worker's queue (see
/// [`ScanRequest`]): what to do with its message.
pub(crate) async fn carry_out<I: KeyInventory>(
    scanner: &Scanner<I>,
    accounts: &Accounts,
    exceptions: &Exceptions,
    requeue: &dyn Requeue,
    request: Result<ScanRequest, String>,
) -> Disposition {
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            warn!(error = %e, "invalid scan request; left for the dead-letter queue");
            return Disposition::Invalid;
        }
    };
    let Some(account_id) = request.account_id.as_deref() else {
        let bodies: Vec<String> = accounts.all().iter().map(|a| ScanRequest::for_account(a, request.include_passed).to_body()).collect();
        return match requeue.send(&bodies).await {
            Ok(()) => {
                info!(accounts = bodies.len(), "scan request fanned out, one per account");
                Disposition::Ack
            }
            Err(e) => {
                warn!(error = %e, "could not fan the scan request out; left for redelivery");
                Disposition::Retry
            }
        };
    };
    if !accounts.knows(account_id).await {
        warn!(account_id, "scan request for an account outside KEYWATCH_ACCOUNTS; acknowledged");
        return Disposition::Ack;
    }
    let settings = ScanSettings { include_passed: request.include_passed, ..scanner.settings.clone() };
    let summary = scanner.with_settings(settings).scan_account(account_id, exceptions, &Quiet).await;
    info!(
        account_id,
        users_checked = summary.users_checked,
        users_failing = summary.users_failing,
        errors = summary.errors,
        duration_seconds = summary.duration_seconds,
        "account scanned"
    );
    if summary.complete() {
        Disposition::Ack
    } else {
        warn!(account_id, errors = ?summary.error_samples, "scan incomplete; left for redelivery");
        Disposition::Retry
    }
}
