//! The end-to-end tests: the real `keywatch` binary (or the production
//! wiring in process) against a real AWS emulator (moto server, from the
//! venv `scripts/python-env.sh` makes), a real Prometheus, and the OCSF
//! schema validator. One test binary with its own harness
//! ([`harness`]), because these tests need tools outside Cargo: without
//! them a plain `cargo test` reports every test here as ignored and says
//! what is missing, rather than failing or passing them; `scripts/test.sh`
//! installs the tools and sets `KEYWATCH_REQUIRE_E2E=1`, which turns a
//! missing tool into a failure.
//!
//! Each module lists its tests in a `trials!` block; a test function not
//! listed there is dead code, which clippy (`-D warnings`) refuses.

/// `trials! { multi a, current b, sync c }`: the module's tests, each with
/// the runtime it runs on (see [`harness`]).
macro_rules! trials {
    ($($kind:ident $name:ident),* $(,)?) => {
        pub(crate) fn trials() -> Vec<libtest_mimic::Trial> {
            vec![$(crate::harness::$kind(module_path!(), stringify!($name), $name)),*]
        }
    };
}

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod closing;
mod credentials;
mod detect;
mod exceptions_sources;
mod faults;
mod integrity;
#[cfg(feature = "lambda")]
mod lambda;
mod ledger;
mod long_scan;
mod monitoring;
mod ocsf_schema;
mod pipeline;
mod quarantine;
mod remediate;
mod replicas;
mod rotation;
mod scan;
mod semantics;
mod sinks;
mod stack;

fn main() {
    let trials: Vec<libtest_mimic::Trial> = [
        closing::trials(),
        credentials::trials(),
        detect::trials(),
        exceptions_sources::trials(),
        faults::trials(),
        integrity::trials(),
        #[cfg(feature = "lambda")]
        lambda::trials(),
        ledger::trials(),
        long_scan::trials(),
        monitoring::trials(),
        ocsf_schema::trials(),
        pipeline::trials(),
        quarantine::trials(),
        remediate::trials(),
        replicas::trials(),
        rotation::trials(),
        scan::trials(),
        semantics::trials(),
        sinks::trials(),
        stack::trials(),
    ]
    .into_iter()
    .flatten()
    .collect();
    harness::run(trials)
}
