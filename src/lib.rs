//! keywatch: near-real-time detection of IAM users with more than one active
//! access key (CIS AWS Foundations 1.13).
//!
//! The flow, one module per stage:
//! [`queue`] (SQS receive) → [`event`] (body → typed key event) →
//! [`inventory`] (IAM ListAccessKeys) → [`evaluate`] (keys + event → verdict)
//! → [`finding`] (verdict → document) → [`emit`] (EventBridge PutEvents) →
//! [`queue`] (delete), driven by [`worker`]. [`config`] is the command line,
//! [`telemetry`] names every metric, [`admin`] serves `/metrics`,
//! `/healthz` and `/readyz`, [`aws`] times and classifies every AWS call.
//!
//! `event`, `evaluate` and `finding` are pure (no AWS types, no I/O).

pub mod admin;
pub mod aws;
pub mod coalesce;
pub mod config;
pub mod emit;
pub mod evaluate;
pub mod exceptions;
pub mod event;
pub mod finding;
pub mod inventory;
pub mod limit;
pub mod queue;
pub mod telemetry;
pub mod worker;
