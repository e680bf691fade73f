//! The tests that need nothing but the crate: parsers and fixtures, the pure
//! decision and its properties, the processor and the worker loop in process
//! against in-memory ports, the mappings, the rate limiter, the admin port
//! and the command line. One test binary (each binary links the AWS SDK
//! crates, so one is much cheaper to build than one per file); a plain
//! `cargo test` runs it. The tests that need the emulator, the venv or
//! Prometheus are in `tests/e2e/`.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod cli;
mod closing;
mod decide;
mod enrichment;
mod event_fixtures;
mod exceptions;
mod finding_fields;
mod formats;
mod instant_backend;
mod limits;
mod processor;
mod properties;
mod quarantine;
mod remediation;
mod rotation;
mod securityhub_sink;
mod verdicts;
