//! keywatch: near-real-time detection of IAM users with more than one active
//! access key (CIS AWS Foundations 1.13).
//!
//! One core, many sources and sinks. Dependencies point one way, from the
//! edges to the core:
//!
//! - **Core, pure** (no async, no AWS types, no clock): [`keys`] (the IAM
//!   key model), [`event`] (a message body → a typed key event),
//!   [`message`] (a message as a source hands it over, and what to do with
//!   it), [`evaluate`] (keys + event → verdict), [`decide`]
//!   (event + IAM's answer + last use + exceptions + now → [`decide::Outcome`]),
//!   [`finding`] (the published document), [`exceptions`], [`replay`]'s
//!   parsers (CloudTrail files and EventBridge exports → messages).
//! - **Formats**: [`format`] turns a finding into OCSF and into ASFF (pure
//!   mappings, no I/O; ASFF is built from the Security Hub SDK's types).
//! - **Ports**: `error` (a failed AWS call as the core sees it), [`source`] (where messages come from, and the loop that
//!   drives any source), [`sink`] (where findings go), [`inventory`] (what
//!   IAM says, with [`inventory::cached`] as a caching decorator),
//!   [`exceptions_source`] (where the approved exceptions come from, and the
//!   loop that keeps them current), [`accounts`] (the accounts keywatch may
//!   act in, and the organisation's list kept current).
//! - **Processor**: [`processor`] gathers the facts for each message through
//!   the ports, lets `decide` decide, publishes, and says per message what
//!   to do with it ([`message::Disposition`]); `record` logs and counts
//!   each outcome. [`ledger`] is the record of findings: every finding is
//!   claimed there before it is published (a decorator of the sinks), so an
//!   older IAM answer or a copy never goes out, and it can say who fails
//!   now (a DynamoDB table shared by every replica, or this process's
//!   memory). [`scan`] checks every user of an account
//!   through the same ports; [`replay`] hands the processor the events of
//!   files; [`remediate`] plans, applies and undoes the deactivation of
//!   failing users' keys, its choice made in [`decide::remediation`].
//! - **Shared pieces**: `cache` (a bounded map with a time to live, and
//!   single-flight coalescing of concurrent look-ups), [`health`] (liveness
//!   and readiness as the loops report them).
//! - **Adapters**: [`aws`] (SQS, IAM, EventBridge, Security Hub, STS, Organizations, SSM, S3, DynamoDB; every call through
//!   one timed, counted path), [`limit`] (IAM rate limiting and retries),
//!   [`admin`] (the HTTP port), [`telemetry`] (every metric; with the
//!   `lambda` feature, also as CloudWatch EMF lines).
//! - **Wiring**: [`app`] builds and runs it all from [`config`]; the binary,
//!   the tests and the benchmarks use it. With the `lambda` feature (off by
//!   default) the `bootstrap` binary runs the same wiring as an AWS Lambda
//!   function, an invocation's SQS batch being one more source.
//!
//! The `aws` feature (on by default) holds the ports' drivers, the
//! adapters, the wiring and the command line. Without it the crate is the
//! core alone: what the fuzz targets link, without the AWS SDK crates.

// Without `aws` (the fuzz targets' build) the core's helpers that only the
// adapters call, and the crate-private re-exports of them, are unused: that
// is expected there, not dead code.
#![cfg_attr(not(feature = "aws"), allow(dead_code, unused_imports))]

pub mod accounts;
#[cfg(feature = "aws")]
pub mod admin;
#[cfg(feature = "aws")]
pub mod app;
#[cfg(feature = "aws")]
pub mod aws;
mod cache;
#[cfg(feature = "aws")]
pub mod config;
pub mod decide;
mod error;
pub mod evaluate;
pub mod event;
pub mod exceptions;
#[cfg(feature = "aws")]
pub mod exceptions_source;
pub mod finding;
pub mod format;
pub mod health;
pub mod inventory;
pub mod keys;
pub mod ledger;
#[cfg(feature = "aws")]
pub mod limit;
pub mod message;
#[cfg(feature = "aws")]
pub mod processor;
#[cfg(feature = "aws")]
mod record;
#[cfg(feature = "aws")]
pub mod remediate;
pub mod replay;
#[cfg(feature = "aws")]
pub mod scan;
#[cfg(feature = "aws")]
pub mod sink;
#[cfg(feature = "aws")]
pub mod source;
pub mod telemetry;
