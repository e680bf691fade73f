//! Test support, one module per concern: the emulator ([`emulator`]), the
//! production wiring on it ([`pipeline`]), CloudTrail records
//! ([`cloudtrail`]), the real `keywatch` binary ([`worker`]) and reading its
//! metrics ([`metrics`]). Every process started here is killed on drop, by
//! pid.

#![allow(dead_code, unused_imports)]

mod cloudtrail;
mod emulator;
mod faults;
mod metrics;
mod pipeline;
mod worker;

pub use cloudtrail::*;
pub use emulator::*;
pub use faults::*;
pub use metrics::*;
pub use pipeline::*;
pub use worker::*;

pub const ACCOUNT: &str = "123456789012";
pub const FINDINGS_BUS: &str = "keywatch-findings";
