//! The steps of one SSH login, timed from the accept: each step is a `debug` event on the
//! `ec2lab::ssh_timing` target with the connection id and the milliseconds since the accept,
//! so `EC2LAB_LOG=ec2lab::ssh_timing=debug` shows where a login spends its time.
//!
//! ```text
//! accepted → kex done (first userauth request) → key checked (authorized_keys and passwd
//! read) → auth accepted → channel open → request (exec/shell/sftp) → started (the session
//! process runs) → first byte → exited → exit status sent → closed
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The clock of one connection (cheap to clone).
#[derive(Clone)]
pub(crate) struct Timeline(Arc<Inner>);

struct Inner {
    id: u64,
    t0: Instant,
    kex_done: AtomicBool,
}

impl Timeline {
    pub fn start(id: u64) -> Timeline {
        Timeline(Arc::new(Inner {
            id,
            t0: Instant::now(),
            kex_done: AtomicBool::new(false),
        }))
    }

    /// Records `step` now.
    pub fn mark(&self, step: &'static str) {
        if tracing::enabled!(target: "ec2lab::ssh_timing", tracing::Level::DEBUG) {
            let ms = self.0.t0.elapsed().as_secs_f64() * 1000.0;
            tracing::debug!(target: "ec2lab::ssh_timing", conn = self.0.id, step, ms = format_args!("{ms:.2}"));
        }
    }

    /// Records "kex done" at the first userauth request of the connection.
    pub fn auth_request(&self) {
        if !self.0.kex_done.swap(true, Ordering::Relaxed) {
            self.mark("kex done");
        }
    }
}
