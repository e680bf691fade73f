//! The error of an AWS call as every layer sees it: no SDK types, only what
//! to do about it (retry, or not) and what to log. The AWS adapters
//! ([`crate::aws`]) make these from the SDK's errors; the ports (inventory,
//! sinks, sources) carry them without depending on the adapters.

/// What an AWS error means for the message that caused the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The service asked us to slow down.
    Throttled,
    /// Network, timeout or 5xx: the same call may well succeed later.
    Transient,
    /// The request itself is wrong (4xx other than throttling).
    Permanent,
}

impl ErrorClass {
    pub(crate) fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }
}

/// An AWS error reduced to what the layers above need: how to treat it and
/// what to log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub class: ErrorClass,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub(crate) fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }
}
