//! Test support, one module per concern: the emulator ([`emulator`]), the
//! production wiring on it ([`pipeline`]), CloudTrail records
//! ([`cloudtrail`]), findings decided in process ([`decided`]), a sink that keeps what it is given ([`kept`]), the real `keywatch` binary ([`worker`]), reading its
//! metrics ([`metrics`]) and checking OCSF documents ([`ocsf`]). Every process started here is killed on drop, by
//! pid.

#![allow(dead_code, unused_imports)]

mod cloudtrail;
mod decided;
mod emulator;
mod faults;
mod kept;
mod lambda;
mod ledger;
mod metrics;
mod ocsf;
mod pipeline;
mod worker;

pub use cloudtrail::*;
pub use decided::*;
pub use emulator::*;
pub use faults::*;
pub use kept::*;
#[cfg(feature = "lambda")]
pub use lambda::*;
pub use ledger::*;
pub use metrics::*;
pub use ocsf::*;
pub use pipeline::*;
pub use worker::*;

pub const ACCOUNT: &str = "123456789012";
pub const FINDINGS_BUS: &str = "keywatch-findings";
