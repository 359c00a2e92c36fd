//! Accepting when the process is out of file descriptors: one descriptor (`/dev/null`) is kept
//! in reserve, so that a connection waiting in the backlog can still be accepted and closed at
//! once — the client sees its connection close instead of hanging — and the accept loop never
//! dies or spins.
//!
//! ```text
//! accept(listener)   accept → the connection
//!                    EMFILE/ENFILE → release the reserve → accept4 the waiting connection and
//!                                    close it → reopen the reserve → accept again
//!                    reserve gone (another thread took the freed descriptor) or another error
//!                                  → back off 50 ms, refill the reserve, accept again
//! ```
//!
//! Failures are logged rate-limited with the number of connections closed this way.
//!
//! Work done ahead (spare launchers, spare volumes on loop devices, a connector's sockets made
//! ahead) asks [`descriptors_scarce`] first and waits while the process is short of
//! descriptors: a pool that refills into the last free descriptors would take the one the
//! reserve just released, and connections would wait in the backlog instead of closing.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::RateLimited;

/// How long an accept loop waits after an error it could not work around.
const BACKOFF: Duration = Duration::from_millis(50);

/// Free descriptors below which work done ahead is not done: the larger of this and an eighth
/// of the limit.
const SCARCE_BELOW: u64 = 64;

/// Whether this process is short of file descriptors (fewer free than [`SCARCE_BELOW`] or an
/// eighth of `RLIMIT_NOFILE`): optional work that holds descriptors should wait.
pub fn descriptors_scarce() -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return true; // no descriptor left even to look
    };
    let open = dir.count() as u64;
    lim.rlim_cur.saturating_sub(open) < SCARCE_BELOW.max(lim.rlim_cur / 8)
}

/// The reserve descriptor of a set of accept loops (share one per component).
pub struct FdReserve {
    spare: Mutex<Option<File>>,
    log: RateLimited,
}

impl std::fmt::Debug for FdReserve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdReserve").finish_non_exhaustive()
    }
}

impl Default for FdReserve {
    fn default() -> Self {
        Self::new()
    }
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl FdReserve {
    pub fn new() -> FdReserve {
        FdReserve {
            spare: Mutex::new(open_spare()),
            log: RateLimited::new(1.0, 5),
        }
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Option<File>> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts the next connection; never fails (errors are worked around or waited out).
    pub async fn accept(&self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            let e = match listener.accept().await {
                Ok(x) => return x,
                Err(e) => e,
            };
            let shed = out_of_fds(&e) && self.shed(listener);
            if let Some(suppressed) = self.log.check() {
                let addr = listener.local_addr().ok();
                tracing::warn!(listener = ?addr, error = %e, shed, suppressed, "accept failed");
            }
            if !shed {
                tokio::time::sleep(BACKOFF).await;
                let mut spare = self.spare();
                if spare.is_none() {
                    *spare = open_spare();
                }
            }
        }
    }

    /// Uses the reserve to accept one waiting connection and close it; false when the reserve
    /// is gone or nothing was waiting.
    fn shed(&self, listener: &TcpListener) -> bool {
        let mut spare = self.spare();
        if spare.take().is_none() {
            return false;
        }
        // SAFETY: accept4 on a listening socket we borrow, without an address buffer; the
        // descriptor it returns is ours and closed right away.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        if fd >= 0 {
            // SAFETY: fd was just returned by accept4 and nothing else refers to it.
            unsafe { libc::close(fd) };
        }
        *spare = open_spare();
        fd >= 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const CHILD: &str = "EC2LAB_TEST_RESERVE_CHILD";

    /// Runs itself in a child process (the descriptor limit is per process): with every
    /// descriptor taken, waiting clients are closed at once, and accepting works again after.
    #[test]
    fn out_of_descriptors_closes_waiting_clients_then_recovers() {
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "ratelimit::reserve::tests::out_of_descriptors_closes_waiting_clients_then_recovers",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            std_l.set_nonblocking(true).unwrap();
            let addr = std_l.local_addr().unwrap();
            let listener = TcpListener::from_std(std_l).unwrap();
            let reserve = std::sync::Arc::new(FdReserve::new());
            let waiting: Vec<_> = (0..3)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            let mut fillers = Vec::new();
            assert!(
                !descriptors_scarce(),
                "plenty free before the limit is lowered"
            );
            // SAFETY: setrlimit with a valid struct; this is the child process.
            unsafe {
                let lim = libc::rlimit {
                    rlim_cur: 64,
                    rlim_max: 64,
                };
                assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
            }
            assert!(descriptors_scarce(), "64 in all: work ahead must wait");
            while let Ok(f) = File::open("/dev/null") {
                fillers.push(f);
            }
            let r = reserve.clone();
            let task = tokio::spawn(async move { r.accept(&listener).await.1 });
            // Each client is kept (not dropped) after its read: freeing its descriptor would
            // let the accept loop take the next waiting one for real.
            let mut closed = Vec::new();
            for mut c in waiting {
                c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let (c, n) = tokio::task::spawn_blocking(move || {
                    let n = c.read(&mut [0u8; 1]);
                    (c, n)
                })
                .await
                .unwrap();
                assert_eq!(
                    n.unwrap(),
                    0,
                    "a waiting client must see its connection close"
                );
                closed.push(c);
            }
            drop(fillers);
            let late = std::net::TcpStream::connect(addr).unwrap();
            assert_eq!(task.await.unwrap(), late.local_addr().unwrap());
        });
    }
}
