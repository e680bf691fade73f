//! Processor: a batch of messages in, one [`Disposition`] per message out.
//!
//! For each message it reads the body once (`Body`), takes the time once,
//! gathers what IAM says (through the [`KeyInventory`] port: the user's
//! keys, a key's owner, the root user's keys, the keys' last use), lets
//! [`crate::decide`] conclude once, and publishes the findings of the batch
//! together (through the [`FindingSink`] port). It
//! never touches a queue: acknowledging is the source's job
//! ([`crate::source::drive`]), so the same processor serves SQS and any
//! other source.
//!
//! Each message is handled in a span of its own that carries its
//! `message_id`: the lines logged for it, here and in the ports, take the
//! id from there, so nothing is passed along only to be logged.
//!
//! A message is acknowledged only when its finding was accepted or when
//! nothing needed publishing. Anything that may succeed later (throttling,
//! a 5xx, a rejected entry) leaves it for redelivery; a body that cannot be
//! understood is left too, so that the queue's redrive policy moves it to
//! the dead-letter queue.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::{error_span, Instrument, Span};

use crate::accounts::Accounts;
use crate::decide::{self, Outcome, Rules};
use crate::event::KeyEvent;
use crate::exceptions::Exceptions;
use crate::finding::Finding;
use crate::inventory::KeyInventory;
use crate::ledger::Ledger;
use crate::limit;
use crate::message::{Body, Disposition, Message, Requeue, ScanRequest};
use crate::record;
use crate::scan::{self, ScanSettings, Scanner};
use crate::sink::{Dropped, FindingSink, SinkError};
use crate::telemetry;

/// How the processor treats IAM's eventual consistency and its own load.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    pub(crate) rules: Rules,
    /// Pauses between re-reads of a listing that does not show a fresh
    /// event yet; their sum bounds the extra latency.
    pub(crate) relist_delays: Vec<Duration>,
    /// Messages checked at once, across all receive loops: bounds the IAM
    /// calls in flight so that one slow call never stalls the rest.
    pub(crate) max_concurrent_checks: usize,
}

impl ProcessorSettings {
    /// Doubling delays from 100 ms whose sum is `budget`.
    pub(crate) fn relist_delays_for(budget: Duration) -> Vec<Duration> {
        let mut delays = Vec::new();
        let mut left = budget;
        let mut next = Duration::from_millis(100);
        while !left.is_zero() {
            let d = next.min(left);
            delays.push(d);
            left -= d;
            next *= 2;
        }
        delays
    }
}

pub struct Processor<I> {
    inventory: Arc<I>,
    sink: Arc<dyn FindingSink>,
    settings: ProcessorSettings,
    accounts: Arc<Accounts>,
    /// Where a scan request that names no account is fanned out to (the
    /// worker's own queue); `None`: scan requests are not taken.
    requeue: Option<Arc<dyn Requeue>>,
    /// The ledger scans read the account's open violations from, to close
    /// those no longer failing; `None`: scans close what they are asked to
    /// publish (`include_passed`). The last word is kept by the sink (see
    /// [`crate::ledger::sink`]).
    ledger: Option<Arc<dyn Ledger>>,
    /// The worker's quarantine of planted keys; `None`: off.
    quarantine: Option<quarantine::Quarantiner>,
    /// Approved exceptions; replaced whole on reload.
    exceptions: RwLock<Arc<Exceptions>>,
    checks: Semaphore,
    /// Scans carried out at once; the others wait their turn.
    scans: Semaphore,
}

/// Account scans one processor carries out at once (each with
/// `max_concurrent_checks` users in flight).
pub(crate) use self::quarantine::{Deactivate, KillSwitch, Quarantiner};

pub(crate) const SCANS_AT_ONCE: usize = 4;

/// The span of one message: every line logged while it is handled, here
/// and in the ports, names it. At `ERROR`, so that it is on whenever any
/// line is (a `warn` filter still shows whose message a warning is about).
fn message_span(m: &Message) -> Span {
    error_span!("message", message_id = %m.message_id)
}

/// The outcome of a finding the ledger dropped.
fn dropped(f: &Finding, why: Dropped) -> Outcome {
    match why {
        Dropped::Superseded => Outcome::Superseded(Box::new(f.clone())),
        Dropped::Identical => Outcome::Identical(Box::new(f.clone())),
    }
}

/// One message checked, before publishing.
enum Checked {
    Done(Disposition),
    /// Done, nothing published, and a re-check due after this delay (a
    /// rotation under way, with `--rotation-grace-quiet`).
    Recheck(Duration),
    Publish {
        finding: Box<Finding>,
        event: Box<KeyEvent>,
    },
}

impl<I: KeyInventory> Processor<I> {
    pub fn new(inventory: I, sink: Arc<dyn FindingSink>, accounts: Arc<Accounts>, settings: ProcessorSettings) -> Self {
        Processor {
            inventory: Arc::new(inventory),
            sink,
            accounts,
            requeue: None,
            ledger: None,
            quarantine: None,
            checks: Semaphore::new(settings.max_concurrent_checks.max(1)),
            scans: Semaphore::new(SCANS_AT_ONCE),
            settings,
            exceptions: RwLock::new(Arc::new(Exceptions::default())),
        }
    }

    pub fn inventory(&self) -> &I {
        &self.inventory
    }

    /// Takes scan requests off the queue: one naming an account is scanned
    /// here; one naming none is fanned out through `requeue`, a request per
    /// account.
    pub(crate) fn with_scans(mut self, requeue: Arc<dyn Requeue>) -> Self {
        self.requeue = Some(requeue);
        self
    }

    /// Scans close the open violations `ledger` holds for their account.
    pub(crate) fn with_ledger(mut self, ledger: Arc<dyn Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Deactivates planted keys before their findings are published.
    pub(crate) fn with_quarantine(mut self, quarantine: quarantine::Quarantiner) -> Self {
        self.quarantine = Some(quarantine);
        self
    }

    /// Replaces the approved exceptions (at start-up and on reload).
    pub(crate) fn set_exceptions(&self, exceptions: Exceptions) {
        *self.exceptions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(exceptions);
    }

    fn exceptions(&self) -> Arc<Exceptions> {
        self.exceptions.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Handles a batch: one disposition per message, in order.
    pub async fn handle_batch(&self, batch: &[Message]) -> Vec<Disposition> {
        let spans: Vec<Span> = batch.iter().map(message_span).collect();
        let checked = join_all(batch.iter().zip(&spans).map(|(m, span)| self.check(m).instrument(span.clone()))).await;
        let mut dispositions = vec![Disposition::Retry; batch.len()];
        let mut findings = Vec::new();
        let mut owners = Vec::new();
        let mut rechecks = Vec::new();
        for (i, c) in checked.into_iter().enumerate() {
            match c {
                Checked::Done(d) => dispositions[i] = d,
                Checked::Recheck(delay) => {
                    dispositions[i] = Disposition::Ack;
                    rechecks.push((i, delay));
                }
                Checked::Publish { finding, event } => {
                    findings.push(*finding);
                    owners.push((i, event));
                }
            }
        }
        if findings.is_empty() {
            self.schedule_rechecks(batch, &spans, rechecks, &mut dispositions).await;
            return dispositions;
        }
        let results = self.sink.publish(&findings).await;
        // When the sinks answered: the detection latency runs to it.
        let accepted_at = OffsetDateTime::now_utc();
        for ((i, ev), (f, result)) in owners.into_iter().zip(findings.iter().zip(results)) {
            let _in_message = spans[i].enter();
            dispositions[i] = match result {
                Ok(()) => {
                    let latency = (accepted_at - ev.event_time).as_seconds_f64();
                    record::published(&ev, f, latency);
                    if decide::wants_recheck(f) {
                        rechecks.push((i, decide::recheck_delay(&ev, accepted_at, &self.settings.rules)));
                    }
                    Disposition::Ack
                }
                Err(SinkError::Dropped(why)) => {
                    record::outcome(&batch[i], Some(&ev), &dropped(f, why));
                    Disposition::Ack
                }
                Err(e) => {
                    record::not_accepted(f, &e);
                    Disposition::Retry
                }
            };
        }
        self.schedule_rechecks(batch, &spans, rechecks, &mut dispositions).await;
        dispositions
    }

    async fn check(&self, m: &Message) -> Checked {
        // Closed only if the processor is gone, which cannot happen while
        // `self` is borrowed.
        let _permit = self.checks.acquire().await;
        // When the message was taken up: screening, and whether the event is
        // fresh enough for the listing to be read again until it shows it.
        let now = OffsetDateTime::now_utc();
        let (parsed, recheck) = match Body::parse(&m.body, self.requeue.is_some()) {
            Body::ScanRequest(request) => return Checked::Done(self.carry_out_scan(request).await),
            Body::Event(parsed) => (parsed, false),
            Body::Recheck(parsed) => (parsed, true),
        };
        let ev = match decide::triage(parsed) {
            Ok(ev) => ev,
            Err(outcome) => {
                record::outcome(m, None, &outcome);
                return Checked::Done(outcome.disposition());
            }
        };
        if !recheck {
            telemetry::delivery_delay((m.received_at - ev.event_time).as_seconds_f64());
        }
        let Ok(known) = self.accounts.knows_at(&ev.account_id, ev.event_time).await else { return Checked::Done(Disposition::Retry) };
        let outcome = match decide::screen(&ev, now, known) {
            Some(outcome) => outcome,
            None if recheck => return Checked::Done(self.recheck(m, &ev, now).await),
            None => match self.gather(&ev, now, ev.event_time).await {
                // Decided once IAM's answer is complete: the finding's
                // `detected_at` (and so its `detection_latency_seconds`)
                // includes the IAM calls, as the finding's schema says.
                Ok(facts) => {
                    let decided_at = OffsetDateTime::now_utc();
                    decide::conclude(&ev, facts.iam(), &facts.usage, &self.exceptions(), decided_at, &self.settings.rules)
                }
                Err(outcome) => outcome,
            },
        };
        match outcome {
            Outcome::Publish(mut finding) => {
                self.quarantine(&ev, &mut finding).await;
                Checked::Publish { finding, event: ev }
            }
            Outcome::RotationInProgress(_) => {
                record::outcome(m, Some(&ev), &outcome);
                Checked::Recheck(decide::recheck_delay(&ev, OffsetDateTime::now_utc(), &self.settings.rules))
            }
            outcome => {
                record::outcome(m, Some(&ev), &outcome);
                Checked::Done(outcome.disposition())
            }
        }
    }

    /// The scan request `m` holds, where scan requests are taken: what a
    /// source's driver runs on its own ([`Processor::scan`]) rather than in
    /// its batch.
    pub(crate) fn scan_request(&self, m: &Message) -> Option<Result<ScanRequest, String>> {
        self.requeue.as_ref()?;
        ScanRequest::parse(&m.body)
    }

    /// Carries out the scan request `m` holds (see [`ScanRequest`]), in the
    /// message's span.
    pub(crate) async fn scan(&self, m: &Message, request: Result<ScanRequest, String>) -> Disposition {
        self.carry_out_scan(request).instrument(message_span(m)).await
    }

    /// Carries out a scan request, at most [`SCANS_AT_ONCE`] account scans
    /// at once, their IAM calls after those of key events
    /// ([`limit::in_background`]); only called where scan requests are
    /// taken.
    async fn carry_out_scan(&self, request: Result<ScanRequest, String>) -> Disposition {
        let Some(requeue) = &self.requeue else { unreachable!("scan requests are read only where they are taken") };
        // A request naming no account is only fanned out: it needs no turn.
        // (Closed only if the processor is gone, which cannot happen while
        // `self` is borrowed.)
        let _turn = match &request {
            Ok(r) if r.account_id.is_some() => Some(self.scans.acquire().await),
            _ => None,
        };
        let settings = ScanSettings { include_passed: false, last_use: true, users_in_flight: self.settings.max_concurrent_checks };
        let scanner = Scanner::new(self.inventory.clone(), self.sink.clone(), settings).with_ledger(self.ledger.clone());
        limit::in_background(scan::carry_out(&scanner, &self.accounts, &self.exceptions(), requeue.as_ref(), request)).await
    }
}

mod gather;
mod quarantine;
mod recheck;
#[cfg(test)]
mod tests;
