//! The daemon's side of an instance's session helper (`sandbox::sessiond`): started on the
//! first session of a route (an instance nobody logs into costs nothing), kept while the route
//! lives, started again when it is gone (killed, crashed) — the request that finds it gone
//! starts the new one and is sent there.
//!
//! ```text
//! start_session(request, stdin, stdout, stderr)   (blocking: call from spawn_blocking)
//!   helper running? else spawn `exe __sessiond {init_pid,start_time}` with a SEQPACKET
//!   control socket as its stdin, wait for its "R" (it has entered the instance)
//!   → a SOCK_STREAM session pair → send the spec JSON + the three stdio descriptors + one end
//!   (a send that fails on a dead helper: spawn a new one, send once more)
//!   → the other end: 8-byte exit status from the helper, 4-byte signals to it
//! drop   the control socket closes: the helper exits once its sessions have ended
//! ```

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use crate::sandbox::fdpass;
use crate::sandbox::{HelperSpec, SESSIOND_ARG, SessionRequest};

/// How long a new helper may take to enter its instance.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("start the session helper: {0}")]
    Spawn(io::Error),
    #[error("the session helper did not start (is the instance running?)")]
    NotReady,
    #[error("hand the session to the helper: {0}")]
    Send(io::Error),
}

struct Running {
    control: OwnedFd,
    child: tokio::process::Child,
}

/// One instance's helper (one per route).
pub(crate) struct Helper {
    exe: PathBuf,
    spec: HelperSpec,
    running: Mutex<Option<Running>>,
}

impl Helper {
    pub fn new(exe: PathBuf, init_pid: i32, start_time: u64) -> Helper {
        Helper {
            exe,
            spec: HelperSpec {
                init_pid,
                start_time,
            },
            running: Mutex::new(None),
        }
    }

    /// Starts `req` in the instance with this stdio; returns the session socket.
    pub fn start_session(
        &self,
        req: &SessionRequest,
        stdio: [BorrowedFd<'_>; 3],
    ) -> Result<std::os::unix::net::UnixStream, HelperError> {
        let msg = serde_json::to_vec(req).expect("session request serializes");
        let (ours, theirs) = fdpass::socketpair(libc::SOCK_STREAM).map_err(HelperError::Send)?;
        let fds = [stdio[0], stdio[1], stdio[2], theirs.as_fd()];
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            let alive = match running.as_mut() {
                Some(r) => matches!(r.child.try_wait(), Ok(None)),
                None => false,
            };
            if !alive {
                if let Some(mut old) = running.take() {
                    let _ = old.child.start_kill();
                }
                *running = Some(self.spawn()?);
            }
            let r = running.as_ref().expect("just set");
            match fdpass::send(r.control.as_fd(), &msg, &fds) {
                Ok(()) => return Ok(std::os::unix::net::UnixStream::from(ours)),
                Err(e) if attempt == 1 => return Err(HelperError::Send(e)),
                Err(e) => {
                    tracing::debug!(instance_pid = self.spec.init_pid, error = %e, "session helper gone, starting another");
                    if let Some(mut old) = running.take() {
                        let _ = old.child.start_kill();
                    }
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn spawn(&self) -> Result<Running, HelperError> {
        let (control, theirs) =
            fdpass::socketpair(libc::SOCK_SEQPACKET).map_err(HelperError::Spawn)?;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg(SESSIOND_ARG)
            .arg(serde_json::to_string(&self.spec).expect("helper spec serializes"))
            .env_clear()
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(HelperError::Spawn)?;
        drop(cmd); // our copy of its end: its exit is then seen as EOF here
        let ready = fdpass::wait_readable(control.as_fd(), READY_TIMEOUT)
            && matches!(fdpass::recv(control.as_fd(), &mut [0u8; 1]), Ok((1, _)));
        if !ready {
            let _ = child.start_kill();
            return Err(HelperError::NotReady);
        }
        Ok(Running { control, child })
    }
}
