//! Worker: poll → parse → check → emit → delete.
//!
//! Two layers, so that the same core serves the long-running worker, a
//! Lambda handler (SQS event source with partial batch responses) and a
//! replay of saved messages:
//! - [`Processor::handle_batch`]: a batch of messages in, one
//!   [`Disposition`] per message out. It parses, re-checks IAM, and publishes
//!   findings (in `PutEvents` batches), but never touches the queue.
//! - [`run`]: the SQS long-poll loops around it, which delete exactly the
//!   messages the core acknowledged, keep the next receive waiting while a
//!   batch is checked, and stop on the shutdown token after finishing the
//!   batches in hand.
//!
//! A message is acknowledged only when its finding was accepted by
//! EventBridge or when nothing needed publishing. Anything that may succeed
//! later (throttling, a 5xx, a rejected entry) leaves it for redelivery after
//! its visibility timeout; a body that cannot be understood is left too, so
//! that the queue's redrive policy moves it to the dead-letter queue.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::Semaphore;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admin::Health;
use crate::coalesce::{Recent, SingleFlight};
use crate::emit::FindingSink;
use crate::evaluate::{self, listing_reflects, KeyUsage, Verdict};
use crate::event::{self, EventName, KeyEvent, Parsed, Target};
use crate::exceptions::Exceptions;
use crate::finding::{self, Finding, Status};
use crate::inventory::{InventoryError, KeyInventory, KeyLastUsed};
use crate::queue::{Received, SqsQueue};
use crate::telemetry::{self, Coalesced, EventOutcome, MessageResult};

/// One queue message as the core sees it (no receipt handle: a Lambda
/// batch has none to give, and acknowledging is the caller's job).
#[derive(Debug, Clone)]
pub struct Message {
    pub message_id: String,
    pub body: String,
    /// SQS `ApproximateReceiveCount`, for logs about poison messages.
    pub receive_count: Option<u32>,
    /// Wall-clock time of receipt, for the upstream delivery delay.
    pub received_at: OffsetDateTime,
    /// Monotonic time of receipt, for our own processing time.
    pub received: Instant,
}

impl Message {
    /// A message received now (for callers other than the SQS loop).
    pub fn new(message_id: impl Into<String>, body: impl Into<String>) -> Self {
        Message {
            message_id: message_id.into(),
            body: body.into(),
            receive_count: None,
            received_at: OffsetDateTime::now_utc(),
            received: Instant::now(),
        }
    }
}

/// What to do with a message once the core is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done: delete it.
    Ack,
    /// Not done yet (AWS error, finding not accepted): leave it to be
    /// delivered again after its visibility timeout.
    Retry,
    /// The body cannot be understood: leave it, so that the redrive policy
    /// moves it to the dead-letter queue after `maxReceiveCount` receives.
    Invalid,
}

/// How the core treats IAM's eventual consistency.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// An event younger than this is recent enough that a listing which
    /// does not show its change is taken as stale (IAM propagation); the
    /// listing is re-read and, failing that, the event's state is assumed.
    /// An older event's listing is taken as the truth.
    pub consistency_window: Duration,
    /// Pauses between re-reads of a listing that does not show the event
    /// yet; their sum bounds the extra latency.
    pub relist_delays: Vec<Duration>,
    /// Messages checked at once, across all receive loops: bounds the IAM
    /// calls in flight so that one slow call never stalls the rest.
    pub max_concurrent_checks: usize,
    /// How long a key's `GetAccessKeyLastUsed` answer is reused. Last use
    /// is enrichment for the responder (AWS itself updates it only every few
    /// hours), and a key's owner never changes, so a burst need not ask
    /// again per event.
    pub last_used_ttl: Duration,
    /// How long a user's listing may serve events that happened before it
    /// started (a backlog holds several per user). Such a listing already
    /// shows those changes; a later change has its own event, which never
    /// reuses an older listing. Zero lists for every event.
    pub listing_reuse: Duration,
}

impl ProcessorSettings {
    /// Doubling delays from 100 ms whose sum is `budget`.
    pub fn relist_delays_for(budget: Duration) -> Vec<Duration> {
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

impl Default for ProcessorSettings {
    fn default() -> Self {
        ProcessorSettings {
            consistency_window: Duration::from_secs(120),
            relist_delays: Self::relist_delays_for(Duration::from_secs(2)),
            max_concurrent_checks: 32,
            last_used_ttl: Duration::from_secs(600),
            listing_reuse: Duration::from_secs(300),
        }
    }
}

type Listing = Result<Vec<evaluate::AccessKey>, InventoryError>;
type LastUsed = Result<Option<KeyLastUsed>, InventoryError>;
/// `GetAccessKeyLastUsed` answers by (account, key), with when they came.
type LastUsedCache = std::sync::Mutex<HashMap<(String, String), (Instant, Option<KeyLastUsed>)>>;

/// The batch core: parse, re-check, publish; no queue access.
pub struct Processor<I, S> {
    inventory: Arc<I>,
    sink: S,
    settings: ProcessorSettings,
    /// Approved exceptions; replaced whole on reload (SIGHUP).
    exceptions: RwLock<Arc<Exceptions>>,
    /// Listings in flight by (account, user): events for a user whose keys
    /// are being listed share that call instead of making their own.
    listings: SingleFlight<(String, String), Listing>,
    /// The latest listing by (account, user), with when it started.
    recent_listings: Recent<(String, String), Vec<evaluate::AccessKey>>,
    /// `GetAccessKeyLastUsed` calls in flight by (account, key).
    last_used_calls: SingleFlight<(String, String), LastUsed>,
    /// `GetAccessKeyLastUsed` answers by (account, key), with their time.
    last_used: LastUsedCache,
    checks: Semaphore,
}

/// Entries the last-use cache holds before expired ones are swept.
const LAST_USED_SWEEP: usize = 10_000;

/// The outcome of checking one message before publishing.
enum Checked {
    Done(Disposition),
    Publish { finding: Box<Finding>, event_name: EventName, event_time: OffsetDateTime },
}

impl<I: KeyInventory, S: FindingSink> Processor<I, S> {
    pub fn new(inventory: I, sink: S, settings: ProcessorSettings) -> Self {
        Processor {
            inventory: Arc::new(inventory),
            sink,
            checks: Semaphore::new(settings.max_concurrent_checks.max(1)),
            recent_listings: Recent::new(settings.listing_reuse),
            settings,
            exceptions: RwLock::new(Arc::new(Exceptions::default())),
            listings: SingleFlight::default(),
            last_used_calls: SingleFlight::default(),
            last_used: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The user's keys; joins a listing of the same user already in flight.
    /// Every listing made is kept for reuse by older events.
    async fn list_keys(&self, account_id: &str, user_name: &str) -> Listing {
        let inventory = self.inventory.clone();
        let key = (account_id.to_string(), user_name.to_string());
        let (account, user) = key.clone();
        let started = OffsetDateTime::now_utc();
        let (listing, joined) = self.listings.run(key.clone(), move || async move { inventory.list_keys(&account, &user).await }).await;
        if joined {
            telemetry::coalesced_check(Coalesced::InFlight);
        } else {
            match &listing {
                Ok(keys) => self.recent_listings.put(key, started, keys.clone()),
                Err(_) => self.recent_listings.forget(&key),
            }
        }
        listing
    }

    /// A fresh cached `GetAccessKeyLastUsed` answer.
    fn cached_last_used(&self, key: &(String, String)) -> Option<Option<KeyLastUsed>> {
        let cache = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        let (at, cached) = cache.get(key)?;
        (at.elapsed() < self.settings.last_used_ttl).then(|| cached.clone())
    }

    /// `GetAccessKeyLastUsed`, answered from the cache while fresh.
    async fn last_used(&self, account_id: &str, key_id: &str) -> Result<Option<KeyLastUsed>, InventoryError> {
        let key = (account_id.to_string(), key_id.to_string());
        let ttl = self.settings.last_used_ttl;
        if let Some(cached) = self.cached_last_used(&key) {
            return Ok(cached);
        }
        let inventory = self.inventory.clone();
        let (account, id) = key.clone();
        let (answer, _) = self.last_used_calls.run(key.clone(), move || async move { inventory.last_used(&account, &id).await }).await;
        let answer = answer?;
        if !ttl.is_zero() {
            let mut cache = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= LAST_USED_SWEEP {
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            cache.insert(key, (Instant::now(), answer.clone()));
        }
        Ok(answer)
    }

    /// Where findings go (for callers that keep them, e.g. a replay).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Replaces the approved exceptions (at start-up and on reload).
    pub fn set_exceptions(&self, exceptions: Exceptions) {
        *self.exceptions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(exceptions);
    }

    fn exceptions(&self) -> Arc<Exceptions> {
        self.exceptions.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Handles a batch: one disposition per message, in order.
    pub async fn handle_batch(&self, batch: &[Message]) -> Vec<Disposition> {
        let checked = join_all(batch.iter().map(|m| self.check(m))).await;
        let mut dispositions = vec![Disposition::Retry; batch.len()];
        let mut findings = Vec::new();
        let mut owners = Vec::new();
        for (i, c) in checked.into_iter().enumerate() {
            match c {
                Checked::Done(d) => dispositions[i] = d,
                Checked::Publish { finding, event_name, event_time } => {
                    findings.push(*finding);
                    owners.push((i, event_name, event_time));
                }
            }
        }
        if findings.is_empty() {
            return dispositions;
        }
        let results = self.sink.publish(&findings).await;
        for ((i, event_name, event_time), (f, result)) in owners.into_iter().zip(findings.iter().zip(results)) {
            let m = &batch[i];
            match result {
                Ok(()) => {
                    let latency = (OffsetDateTime::now_utc() - event_time).as_seconds_f64();
                    telemetry::finding_accepted(f.status.as_str(), latency);
                    telemetry::event(event_name.as_str(), EventOutcome::Finding);
                    info!(
                        message_id = %m.message_id,
                        finding_id = %f.finding_id,
                        status = f.status.as_str(),
                        account_id = %f.account_id,
                        user_name = %f.user_name,
                        active_key_count = f.active_key_count,
                        event_id = %f.trigger.event_id,
                        detection_latency_seconds = latency,
                        "finding published"
                    );
                    dispositions[i] = Disposition::Ack;
                }
                Err(e) => {
                    warn!(
                        message_id = %m.message_id,
                        finding_id = %f.finding_id,
                        error = %e,
                        "finding not accepted by EventBridge; message left for redelivery"
                    );
                    dispositions[i] = Disposition::Retry;
                }
            }
        }
        dispositions
    }

    async fn check(&self, m: &Message) -> Checked {
        // Closed only if the processor is gone, which cannot happen while
        // `self` is borrowed.
        let _permit = self.checks.acquire().await;
        let parsed = match event::parse(&m.body) {
            Ok(p) => p,
            Err(e) => {
                warn!(
                    message_id = %m.message_id,
                    receive_count = m.receive_count,
                    reason = e.reason(),
                    error = %e,
                    "invalid message body; left for the dead-letter queue"
                );
                telemetry::event("unknown", EventOutcome::Invalid);
                return Checked::Done(Disposition::Invalid);
            }
        };
        let ev = match parsed {
            Parsed::Key(ev) => ev,
            Parsed::Ignored { event_name, event_id } => {
                debug!(message_id = %m.message_id, event_name, event_id, "not an access-key event; acknowledged");
                telemetry::event("other", EventOutcome::Ignored);
                return Checked::Done(Disposition::Ack);
            }
        };
        telemetry::delivery_delay((m.received_at - ev.event_time).as_seconds_f64());
        let label = ev.event_name.as_str();

        if let Some(failed) = &ev.failed {
            info!(
                message_id = %m.message_id,
                event_id = %ev.event_id,
                event_name = label,
                account_id = %ev.account_id,
                error_code = %failed.code,
                "call failed in CloudTrail; nothing changed, acknowledged"
            );
            telemetry::event(label, EventOutcome::FailedCall);
            telemetry::failed_call(label, &failed.code);
            return Checked::Done(Disposition::Ack);
        }

        let fresh = OffsetDateTime::now_utc() - ev.event_time <= self.settings.consistency_window;
        if ev.target == Target::Root {
            return self.check_root(m, &ev, fresh).await;
        }

        let user_name = match self.target_user(m, &ev).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                telemetry::event(label, EventOutcome::Ignored);
                return Checked::Done(Disposition::Ack);
            }
            Err(d) => return Checked::Done(d),
        };

        let keys = match self.list_until_reflected(&ev, &user_name, fresh).await {
            Ok(keys) => keys,
            Err(InventoryError::NoSuchUser { .. }) => {
                info!(
                    message_id = %m.message_id,
                    event_id = %ev.event_id,
                    account_id = %ev.account_id,
                    user_name = %user_name,
                    "user no longer exists; nothing to check, acknowledged"
                );
                telemetry::event(label, EventOutcome::Ignored);
                return Checked::Done(Disposition::Ack);
            }
            Err(e) => {
                warn!(
                    message_id = %m.message_id,
                    event_id = %ev.event_id,
                    account_id = %ev.account_id,
                    user_name = %user_name,
                    retryable = e.is_retryable(),
                    error = %e,
                    "could not list access keys; message left for redelivery"
                );
                return Checked::Done(Disposition::Retry);
            }
        };

        let assessment = evaluate::evaluate(&ev, keys, fresh);
        let usage = if assessment.verdict == Verdict::Violation {
            self.usage(m, &ev, assessment.active_keys().map(|k| k.access_key_id.as_str())).await
        } else {
            HashMap::new()
        };
        match finding::build(&ev, &user_name, &assessment, &usage, OffsetDateTime::now_utc()) {
            None => {
                debug!(
                    message_id = %m.message_id,
                    event_id = %ev.event_id,
                    account_id = %ev.account_id,
                    user_name = %user_name,
                    active_key_count = assessment.active_count(),
                    "compliant; acknowledged"
                );
                telemetry::event(label, EventOutcome::Compliant);
                Checked::Done(Disposition::Ack)
            }
            Some(mut f) => {
                if f.status == Status::Failed {
                    if let Some(e) = self.exceptions().matching(&ev.account_id, &user_name, OffsetDateTime::now_utc()) {
                        info!(
                            message_id = %m.message_id,
                            account_id = %ev.account_id,
                            user_name = %user_name,
                            exception_owner = %e.owner,
                            exception_expires = %e.expires,
                            "approved exception applies; finding marked suppressed"
                        );
                        f.suppress(e);
                    }
                }
                Checked::Publish { finding: Box::new(f), event_name: ev.event_name, event_time: ev.event_time }
            }
        }
    }

    /// A root access-key event: judged against CIS 1.4 (no root access key)
    /// with `GetAccountSummary`, never against 1.13.
    async fn check_root(&self, m: &Message, ev: &KeyEvent, fresh: bool) -> Checked {
        match self.inventory.root_keys_present(&ev.account_id).await {
            Ok(present) => {
                let (verdict, present, assumed) = evaluate::evaluate_root(ev, present, fresh);
                let f = finding::build_root(ev, verdict, present, assumed, OffsetDateTime::now_utc());
                Checked::Publish { finding: Box::new(f), event_name: ev.event_name, event_time: ev.event_time }
            }
            Err(e) => {
                warn!(
                    message_id = %m.message_id,
                    event_id = %ev.event_id,
                    account_id = %ev.account_id,
                    error = %e,
                    "could not read the account summary for a root key event; message left for redelivery"
                );
                Checked::Done(Disposition::Retry)
            }
        }
    }

    /// Last use of each key, for the responder. A failed look-up leaves that
    /// key's usage unknown (and the finding without a recommended key)
    /// rather than holding back the finding; so does a look-up the account's
    /// IAM budget cannot afford while listings need it (a burst).
    async fn usage<'a>(&self, m: &Message, ev: &KeyEvent, keys: impl Iterator<Item = &'a str>) -> HashMap<String, KeyUsage> {
        let lookups = keys.map(|id| async move {
            let cached = self.cached_last_used(&(ev.account_id.clone(), id.to_string()));
            if cached.is_none() && !self.inventory.has_room_for_enrichment(&ev.account_id) {
                telemetry::enrichment_skipped();
                debug!(message_id = %m.message_id, account_id = %ev.account_id, access_key_id = id, "IAM budget kept for listings; last use left out");
                return (id, None);
            }
            (id, Some(match cached {
                Some(answer) => Ok(answer),
                None => self.last_used(&ev.account_id, id).await,
            }))
        });
        let mut usage = HashMap::new();
        for (id, result) in join_all(lookups).await {
            let Some(result) = result else { continue };
            match result {
                Ok(Some(last)) => {
                    usage.insert(id.to_string(), last.usage);
                }
                // IAM does not know the key yet (created moments ago, not
                // propagated): it cannot have been used.
                Ok(None) => {
                    usage.insert(id.to_string(), KeyUsage::default());
                }
                Err(e) => warn!(
                    message_id = %m.message_id,
                    account_id = %ev.account_id,
                    access_key_id = id,
                    error = %e,
                    "could not read the key's last use; finding published without it"
                ),
            }
        }
        usage
    }

    /// The IAM user whose keys the event changed. `Ok(None)`: nothing to
    /// check (logged here); `Err`: the message's disposition.
    async fn target_user(&self, m: &Message, ev: &KeyEvent) -> Result<Option<String>, Disposition> {
        match &ev.target {
            Target::User { name, .. } => Ok(Some(name.clone())),
            // Handled by `check_root` before this is called.
            Target::Root => Ok(None),
            Target::Unresolved => {
                let Some(key_id) = ev.access_key_id.as_deref() else {
                    warn!(
                        message_id = %m.message_id,
                        event_id = %ev.event_id,
                        "event names neither a user nor a key; acknowledged"
                    );
                    return Ok(None);
                };
                match self.last_used(&ev.account_id, key_id).await {
                    Ok(Some(last)) if last.user_name.is_some() => Ok(last.user_name),
                    Ok(_) => {
                        warn!(
                            message_id = %m.message_id,
                            event_id = %ev.event_id,
                            account_id = %ev.account_id,
                            access_key_id = key_id,
                            "owner of the key is unknown (key deleted); acknowledged"
                        );
                        Ok(None)
                    }
                    // A deleted key's owner may be unknowable: retrying
                    // forever would not help.
                    Err(e) if ev.event_name == EventName::DeleteAccessKey && !e.is_retryable() => {
                        warn!(
                            message_id = %m.message_id,
                            event_id = %ev.event_id,
                            account_id = %ev.account_id,
                            access_key_id = key_id,
                            error = %e,
                            "owner of the deleted key cannot be found; acknowledged"
                        );
                        Ok(None)
                    }
                    Err(e) => {
                        warn!(
                            message_id = %m.message_id,
                            event_id = %ev.event_id,
                            account_id = %ev.account_id,
                            access_key_id = key_id,
                            error = %e,
                            "could not find the key's owner; message left for redelivery"
                        );
                        Err(Disposition::Retry)
                    }
                }
            }
        }
    }

    /// Lists the user's keys; while the event is fresh and the listing does
    /// not show its change yet, waits and lists again (bounded).
    async fn list_until_reflected(&self, ev: &KeyEvent, user_name: &str, fresh: bool) -> Result<Vec<evaluate::AccessKey>, InventoryError> {
        // A listing that started after the event shows its change, unless
        // IAM had not propagated it yet (then list as usual).
        let key = (ev.account_id.clone(), user_name.to_string());
        if let Some(keys) = self.recent_listings.get(&key, ev.event_time) {
            if !fresh || listing_reflects(ev, &keys) {
                telemetry::coalesced_check(Coalesced::Recent);
                return Ok(keys);
            }
        }
        let mut keys = self.list_keys(&ev.account_id, user_name).await?;
        if fresh {
            for delay in &self.settings.relist_delays {
                if listing_reflects(ev, &keys) {
                    break;
                }
                tokio::time::sleep(*delay).await;
                keys = self.list_keys(&ev.account_id, user_name).await?;
            }
        }
        Ok(keys)
    }
}

/// How the poll loop receives.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Messages per `ReceiveMessage` (1–10).
    pub max_messages: i32,
    /// Long-poll wait (0–20 s).
    pub wait: Duration,
    /// Overrides the queue's visibility timeout on receive.
    pub visibility_timeout: Option<Duration>,
    /// Receive loops running side by side.
    pub receivers: usize,
    /// How often to read queue depth for `keywatch_queue_messages`.
    pub queue_metrics_interval: Option<Duration>,
}

/// Batches a receive loop holds at once: the one being checked and the
/// next, whose receive is already waiting meanwhile (so the queue's answer
/// time overlaps the IAM and EventBridge calls instead of adding to them).
const BATCHES_PER_RECEIVER: usize = 2;

/// Runs the worker until `shutdown` is cancelled, then finishes the batches
/// in hand (acknowledging what is done) and returns.
pub async fn run<I: KeyInventory, S: FindingSink>(
    queue: SqsQueue,
    processor: Arc<Processor<I, S>>,
    settings: PollSettings,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    for receiver in 0..settings.receivers.max(1) {
        tracker.spawn(receive_loop(
            receiver,
            queue.clone(),
            processor.clone(),
            settings.clone(),
            health.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(interval) = settings.queue_metrics_interval {
        tracker.spawn(depth_loop(queue.clone(), interval, shutdown.clone()));
    }
    tracker.close();
    shutdown.cancelled().await;
    health.set_draining();
    info!("shutting down: no new receives; finishing messages in flight");
    tracker.wait().await;
    info!("all messages in flight handled");
}

/// Receives batches and hands each to a task of its own (tracked, so that
/// shutdown waits for it), holding at most [`BATCHES_PER_RECEIVER`].
#[allow(clippy::too_many_arguments)]
async fn receive_loop<I: KeyInventory, S: FindingSink>(
    receiver: usize,
    queue: SqsQueue,
    processor: Arc<Processor<I, S>>,
    settings: PollSettings,
    health: Arc<Health>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(500);
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    let slots = Arc::new(Semaphore::new(BATCHES_PER_RECEIVER));
    let mut backoff = MIN_BACKOFF;
    loop {
        // Only waiting (for a slot, for messages) races shutdown: a batch
        // once received is always finished and acknowledged.
        let slot = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = queue.receive(settings.max_messages, settings.wait, settings.visibility_timeout) => r,
        };
        match received {
            Ok(batch) => {
                backoff = MIN_BACKOFF;
                health.set_ready();
                if !batch.is_empty() {
                    let (queue, processor) = (queue.clone(), processor.clone());
                    tracker.spawn(async move {
                        process(&queue, &processor, batch).await;
                        drop(slot);
                    });
                }
            }
            Err(e) => {
                warn!(receiver, error = %e, retry_in_ms = backoff.as_millis() as u64, "receive failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    debug!(receiver, "receive loop stopped");
}

/// Handles one received batch and deletes what the core acknowledged.
async fn process<I: KeyInventory, S: FindingSink>(queue: &SqsQueue, processor: &Processor<I, S>, batch: Vec<Received>) {
    let n = batch.len();
    telemetry::inflight_add(n);
    let (messages, handles): (Vec<Message>, Vec<String>) = batch.into_iter().map(|r| (r.message, r.receipt_handle)).unzip();
    let dispositions = processor.handle_batch(&messages).await;

    let acked: Vec<usize> = (0..n).filter(|&i| dispositions[i] == Disposition::Ack).collect();
    let ack_handles: Vec<&str> = acked.iter().map(|&i| handles[i].as_str()).collect();
    let deleted = if ack_handles.is_empty() { Vec::new() } else { queue.delete(&ack_handles).await };
    for (&i, result) in acked.iter().zip(deleted) {
        match result {
            Ok(()) => telemetry::message(MessageResult::Deleted),
            Err(e) => {
                warn!(message_id = %messages[i].message_id, error = %e, "delete failed; the message will be delivered again");
                telemetry::message(MessageResult::Retried);
            }
        }
    }
    for (m, d) in messages.iter().zip(&dispositions) {
        match d {
            Disposition::Ack => {}
            Disposition::Retry => telemetry::message(MessageResult::Retried),
            Disposition::Invalid => telemetry::message(MessageResult::Invalid),
        }
        telemetry::processing(m.received.elapsed());
    }
    telemetry::inflight_sub(n);
}

/// Reads the input queue's and its dead-letter queue's depth periodically.
async fn depth_loop(queue: SqsQueue, interval: Duration, shutdown: CancellationToken) {
    let mut dlq: Option<SqsQueue> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match queue.attributes().await {
            Ok(state) => {
                telemetry::queue_depth("input", state.visible, state.in_flight);
                if dlq.is_none() {
                    if let Some(arn) = &state.dead_letter_arn {
                        match queue.url_of_arn(arn).await {
                            Ok(Some(url)) => dlq = Some(queue.with_url(url)),
                            Ok(None) => {}
                            Err(e) => warn!(error = %e, dead_letter_arn = %arn, "cannot resolve the dead-letter queue"),
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read the input queue's depth"),
        }
        if let Some(dlq) = &dlq {
            match dlq.attributes().await {
                Ok(state) => telemetry::queue_depth("dlq", state.visible, state.in_flight),
                Err(e) => warn!(error = %e, "cannot read the dead-letter queue's depth"),
            }
        }
    }
}
