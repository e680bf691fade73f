//! Health: the worker's readiness, set by the receive loops and read by the
//! admin port's `/readyz` (kept apart from the HTTP server so that the core
//! does not depend on it).

use std::sync::atomic::{AtomicBool, Ordering};

/// Ready after the first successful receive; not ready again once draining.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
}
