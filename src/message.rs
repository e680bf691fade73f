//! A message as the core sees it, whatever its source (an SQS queue, a
//! replayed file), and what the core decided to do with it.

use std::time::Instant;

use time::OffsetDateTime;

/// One message. It carries no receipt handle: acknowledging is the
/// source's job, and some sources have none to give.
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
    /// A message received now.
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
    /// Done: acknowledge (delete) it.
    Ack,
    /// Not done yet (AWS error, finding not accepted): leave it to be
    /// delivered again after its visibility timeout.
    Retry,
    /// The body cannot be understood: leave it, so that the redrive policy
    /// moves it to the dead-letter queue after `maxReceiveCount` receives.
    Invalid,
}

/// Puts new messages on the source a message came from (a scan request
/// fanned out per account onto the worker's own queue).
pub trait Requeue: Send + Sync {
    fn send<'a>(&'a self, bodies: &'a [String]) -> futures_util::future::BoxFuture<'a, Result<(), crate::error::AwsError>>;
}
