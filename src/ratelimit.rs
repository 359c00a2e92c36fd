//! Rate limiting for log lines that a client can trigger (bad signatures, denied connections): a
//! token bucket per call site, so a client hammering the daemon cannot flood its log. Suppressed
//! lines are counted and reported with the next line that gets through.
//!
//! Submodules keep a client from exhausting what its connections hold: `conns` caps concurrent
//! connections per source and in total (with fair eviction), `reserve` keeps a descriptor in
//! reserve so accept loops survive running out of them.

pub mod conns;
pub mod reserve;

use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimited {
    inner: Mutex<Bucket>,
    per_sec: f64,
    burst: f64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl RateLimited {
    pub fn new(per_sec: f64, burst: u32) -> RateLimited {
        RateLimited {
            inner: Mutex::new(Bucket {
                tokens: burst as f64,
                last: Instant::now(),
                suppressed: 0,
            }),
            per_sec,
            burst: burst as f64,
        }
    }

    /// `Some(n)` when a line may be logged now (`n` = lines suppressed since the last one),
    /// `None` when it must be dropped.
    pub fn check(&self) -> Option<u64> {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        b.tokens =
            (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_sec).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(std::mem::take(&mut b.suppressed))
        } else {
            b.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_suppresses_and_counts() {
        let r = RateLimited::new(0.0001, 3);
        assert_eq!(r.check(), Some(0));
        assert_eq!(r.check(), Some(0));
        assert_eq!(r.check(), Some(0));
        for _ in 0..100 {
            assert_eq!(r.check(), None);
        }
    }
}
