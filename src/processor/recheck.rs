//! Re-checks: the second look, once the consistency window has passed, at a
//! `FAILED` that counted a key IAM did not list yet (see
//! [`decide::wants_recheck`]). The look is a message on the worker's own
//! queue, delivered after the window (SQS `DelaySeconds`), not a timer in
//! memory: it outlives a restart, and any replica may take it. Its body
//! wraps the event's own message ([`message::recheck_body`]), and is read
//! and screened as that event was (a forged one may at most make keywatch
//! look at a user of an account it knows); [`decide::conclude_recheck`]
//! concludes from IAM's answer alone.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::{info, warn, Span};

use super::Processor;
use crate::decide::{self, Outcome, RecheckWhen};
use crate::event::KeyEvent;
use crate::inventory::KeyInventory;
use crate::message::{self, Disposition, Message};
use crate::record;
use crate::sink::SinkError;

impl<I: KeyInventory> Processor<I> {
    /// Puts a re-check on the queue for each message `due` names (its
    /// index in `batch`, and how long until it is due), those due alike
    /// sent together (so a consistency window's re-check never waits for a
    /// rotation grace's). A message whose re-check cannot be put there is
    /// left for redelivery: the re-check is not lost with it. Where
    /// keywatch's own requests are not taken (a replay), there is no queue
    /// to come back on, and nothing is put.
    pub(super) async fn schedule_rechecks(
        &self,
        batch: &[Message],
        spans: &[Span],
        mut due: Vec<(usize, Duration)>,
        dispositions: &mut [Disposition],
    ) {
        let Some(requeue) = self.requeue.as_ref() else { return };
        due.sort_by_key(|(_, d)| *d);
        for alike in due.chunk_by(|a, b| a.1 == b.1) {
            let delay = alike[0].1;
            let bodies: Vec<String> = alike.iter().filter_map(|(i, _)| message::recheck_body(&batch[*i].body)).collect();
            let sent = requeue.send_delayed(&bodies, delay).await;
            for (i, _) in alike {
                let _in_message = spans[*i].enter();
                match &sent {
                    Ok(()) => info!(delay_seconds = delay.as_secs(), "re-check put on the queue"),
                    Err(e) => {
                        warn!(error = %e, "could not put the re-check on the queue; message left for redelivery");
                        dispositions[*i] = Disposition::Retry;
                    }
                }
            }
        }
    }

    /// Carries out a re-check taken off the queue, its event screened like
    /// any other: put back, delayed, while the event is within the
    /// consistency window or its key within the rotation grace; then re-listed (a listing that starts now, never
    /// one kept from before) and concluded, and its finding published.
    pub(super) async fn recheck(&self, m: &Message, ev: &KeyEvent, now: OffsetDateTime) -> Disposition {
        let rules = &self.settings.rules;
        match decide::recheck_when(ev, now, rules) {
            Err(outcome) => {
                record::recheck_outcome(m, Some(ev), &outcome);
                return outcome.disposition();
            }
            Ok(RecheckWhen::Later(delay)) => return self.recheck_later(m, delay).await,
            Ok(RecheckWhen::Now) => {}
        }
        let outcome = match self.gather(ev, now, now).await {
            Ok(facts) => decide::conclude_recheck(ev, facts.iam(), &facts.usage, &self.exceptions(), now),
            Err(outcome) => outcome,
        };
        let finding = match outcome {
            Outcome::Publish(mut f) => {
                // A key IAM did not list at first may be quarantined now.
                self.quarantine(ev, &mut f).await;
                f
            }
            outcome => {
                record::recheck_outcome(m, Some(ev), &outcome);
                return outcome.disposition();
            }
        };
        let found = std::slice::from_ref(&*finding);
        match self.sink.publish(found).await.pop() {
            Some(Ok(())) => {
                record::rechecked(&finding);
                Disposition::Ack
            }
            Some(Err(SinkError::Dropped(why))) => {
                record::recheck_outcome(m, Some(ev), &super::dropped(&finding, why));
                Disposition::Ack
            }
            Some(Err(e)) => {
                record::not_accepted(&finding, &e);
                Disposition::Retry
            }
            None => Disposition::Retry,
        }
    }

    /// Puts a re-check that is not due yet back on the queue, delayed.
    async fn recheck_later(&self, m: &Message, delay: Duration) -> Disposition {
        let Some(requeue) = &self.requeue else { unreachable!("re-checks are read only where keywatch's own requests are taken") };
        match requeue.send_delayed(std::slice::from_ref(&m.body), delay).await {
            Ok(()) => {
                info!(
                    delay_seconds = delay.as_secs(),
                    "re-check not due yet (the consistency window or the rotation grace has not passed); put back"
                );
                Disposition::Ack
            }
            Err(e) => {
                warn!(error = %e, "could not put the re-check back on the queue; left for redelivery");
                Disposition::Retry
            }
        }
    }
}
