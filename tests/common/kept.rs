//! A finding sink that accepts every finding and keeps it, for the tests
//! that drive the processor in process.

use std::sync::Mutex;

use futures_util::future::BoxFuture;
use keywatch::finding::Finding;
use keywatch::sink::{FindingSink, SinkError};

#[derive(Default)]
pub struct Kept(pub Mutex<Vec<Finding>>);

impl FindingSink for Kept {
    fn name(&self) -> &'static str {
        "kept"
    }
    fn publish<'a>(&'a self, findings: &'a [Finding]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        self.0.lock().unwrap().extend_from_slice(findings);
        Box::pin(std::future::ready(findings.iter().map(|_| Ok(())).collect()))
    }
}
