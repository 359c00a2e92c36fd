//! The per-instance session helper (`__sessiond`): one single-threaded process per instance
//! that has already entered it, and forks each SSH session from there instead of a fresh
//! `__enter` from the host. A fork inherits the cgroups (no migration into them: joining a v1
//! memory cgroup waits for an RCU grace period, ~10 ms) and the namespaces.
//!
//! ```text
//! start    not dumpable → steps 1–3 of `enter` (PID 1 verified by pidfd + start time, its
//!          cgroup, NET|UTS|IPC|CGROUP|PID|MNT) → its user namespace as root → "R" on the
//!          control socket (fd 0, SEQPACKET, from the daemon)
//! loop     poll: PID 1's pidfd (readable = the instance is gone: exit) · SIGCHLD (reap, send
//!          each status to its session socket) · the control socket (a request:
//!          `SessionRequest` JSON — the spec, and the account the daemon read from the
//!          instance's passwd/group at login, so nothing is read again per channel — + stdin,
//!          stdout, stderr, session socket → fork → the child runs step 6 of
//!          `enter`: setsid (+TIOCSCTTY on a given terminal), seccomp, fd limit, the
//!          instance's capability set, groups/gid/uid, cwd, login env, exec) · each session
//!          socket (4 bytes = a signal for its command; EOF = the client went away)
//! end      the control socket closed (daemon gone, route removed) and no session left, or
//!          PID 1 gone
//! ```
//!
//! The helper is not in the instance's PID namespace (only its children are), so nothing in
//! the instance sees or signals it; it is not dumpable, so the instance's root can neither
//! ptrace it nor open its /proc files. A session socket carries a status of 8 bytes: kind
//! (0 = exited, 1 = killed by a signal) and value, little-endian u32s. Exit codes are those of
//! `__enter`: 125 entering failed, 126/127 cannot execute / not found.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::enter::{EnterSpec, Tty, enter_instance, fail};
use super::enter_exec::exec_child;
use super::passwd::User;
use super::sys::{self, Fork, WaitStatus};
use super::{fdpass, passwd, userns};

/// `argv[1]` of the session helper mode.
pub const SESSIOND_ARG: &str = "__sessiond";

/// The instance a helper serves (`argv[2]`, JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperSpec {
    pub init_pid: i32,
    pub start_time: u64,
}

/// One session asked of the helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRequest {
    pub spec: EnterSpec,
    /// The user as the daemon resolved it at login; `None`: look it up in the instance.
    pub account: Option<User>,
}

/// Encodes a status for a session socket.
pub fn encode_status(st: WaitStatus) -> [u8; 8] {
    let (kind, value) = match st {
        WaitStatus::Exited(c) => (0u32, c as u32),
        WaitStatus::Signaled(s) => (1u32, s as u32),
    };
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&kind.to_le_bytes());
    b[4..].copy_from_slice(&value.to_le_bytes());
    b
}

/// Decodes a status from a session socket.
pub fn decode_status(b: [u8; 8]) -> WaitStatus {
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    match word(0) {
        0 => WaitStatus::Exited(word(4) as i32),
        _ => WaitStatus::Signaled(word(4) as i32),
    }
}

struct Session {
    sock: OwnedFd,
    /// The daemon's end is gone: stop polling it, still reap the command.
    hung_up: bool,
}

/// Body of the hidden `__sessiond` mode.
pub fn sessiond_main(json: &str) -> ! {
    if let Err(e) = sys::prctl(libc::PR_SET_DUMPABLE, 0, 0) {
        fail(format!("prctl(PR_SET_DUMPABLE): {e}"));
    }
    let spec: HelperSpec =
        serde_json::from_str(json).unwrap_or_else(|e| fail(format!("bad request: {e}")));
    // SAFETY: the daemon gives us the control socket as stdin; we own it from here.
    let control = unsafe { OwnedFd::from_raw_fd(0) };
    let entered = enter_instance(spec.init_pid, spec.start_time);
    if !userns::is_identity(&entered.uid_map) {
        userns::join_as_root(entered.pidfd.as_fd()).unwrap_or_else(|e| {
            fail(format!(
                "join the user namespace of instance {}: {e}",
                entered.id
            ))
        });
    }
    let sfd = sys::signalfd(&[libc::SIGCHLD]).unwrap_or_else(|e| fail(format!("signalfd: {e}")));
    if let Err(e) = fdpass::send(control.as_fd(), b"R", &[]) {
        fail(format!("tell the daemon: {e}"));
    }
    let mut control = Some(control);
    let mut sessions: HashMap<libc::pid_t, Session> = HashMap::new();
    loop {
        if control.is_none() && sessions.is_empty() {
            sys::exit_now(0);
        }
        let mut fds = vec![
            pollfd(entered.pidfd.as_raw_fd()),
            pollfd(sfd.as_raw_fd()),
            pollfd(control.as_ref().map_or(-1, |c| c.as_raw_fd())),
        ];
        let polled: Vec<libc::pid_t> = sessions
            .iter()
            .filter(|(_, s)| !s.hung_up)
            .map(|(pid, _)| *pid)
            .collect();
        fds.extend(polled.iter().map(|p| pollfd(sessions[p].sock.as_raw_fd())));
        // SAFETY: fds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            sys::exit_now(0); // PID 1 is gone: so is every session
        }
        if fds[1].revents != 0 {
            while let Ok(Some(_)) = sys::read_signalfd(sfd.as_fd()) {}
            while let Ok(Some((pid, st))) = sys::reap_any() {
                if let Some(s) = sessions.remove(&pid) {
                    let _ = sys::write_all_fd(s.sock.as_raw_fd(), &encode_status(st));
                }
            }
        }
        if fds[2].revents != 0
            && let Some(c) = &control
        {
            match serve_request(c.as_fd(), &entered, &sfd) {
                Ok(Some((pid, sock))) => {
                    sessions.insert(
                        pid,
                        Session {
                            sock,
                            hung_up: false,
                        },
                    );
                }
                Ok(None) => {}
                Err(Closed) => control = None,
            }
        }
        for (i, pid) in polled.iter().enumerate() {
            if fds[3 + i].revents == 0 {
                continue;
            }
            let Some(s) = sessions.get_mut(pid) else {
                continue;
            };
            let mut sig = [0u8; 4];
            // SAFETY: reading into a 4-byte buffer.
            let got = unsafe { libc::read(s.sock.as_raw_fd(), sig.as_mut_ptr() as *mut _, 4) };
            if got == 4 {
                let _ = sys::kill(*pid, i32::from_le_bytes(sig));
            } else if got <= 0 {
                s.hung_up = true;
            }
        }
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// The control socket is closed.
struct Closed;

/// Reads one request and forks its session: Some((pid, session socket)).
fn serve_request(
    control: BorrowedFd<'_>,
    entered: &super::enter::Entered,
    sfd: &OwnedFd,
) -> Result<Option<(libc::pid_t, OwnedFd)>, Closed> {
    let mut buf = vec![0u8; 256 * 1024];
    let (n, mut fds) = match fdpass::recv(control, &mut buf) {
        Ok((0, fds)) if fds.is_empty() => return Err(Closed),
        Ok(got) => got,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(None),
        Err(_) => return Err(Closed),
    };
    let req: Option<SessionRequest> = serde_json::from_slice(&buf[..n]).ok();
    if fds.len() != fdpass::MAX_FDS {
        return Ok(None); // malformed: the daemon's end sees its session socket close
    }
    let sock = fds.pop().expect("four descriptors");
    let Some(req) = req else {
        let _ = sys::write_all_fd(sock.as_raw_fd(), &encode_status(WaitStatus::Exited(125)));
        return Ok(None);
    };
    // PID 1 still the one we entered (its pidfd would be readable otherwise).
    if sys::poll_readable(entered.pidfd.as_fd(), Some(std::time::Duration::ZERO)).unwrap_or(true) {
        sys::exit_now(0);
    }
    match sys::fork() {
        Err(e) => {
            let msg = format!("ec2lab: fork: {e}\r\n");
            let _ = sys::write_all_fd(fds[2].as_raw_fd(), msg.as_bytes());
            let _ = sys::write_all_fd(sock.as_raw_fd(), &encode_status(WaitStatus::Exited(125)));
            Ok(None)
        }
        Ok(Fork::Child) => {
            let _ = sfd;
            session_child(&req, &fds, entered.last_cap)
        }
        Ok(Fork::Parent { pid, .. }) => Ok(Some((pid, sock))),
    }
}

/// In the forked child: stdio from the request, the user from the instance's files, then
/// step 6 of `enter`.
fn session_child(req: &SessionRequest, stdio: &[OwnedFd], last_cap: u32) -> ! {
    let spec = &req.spec;
    for (i, fd) in stdio.iter().enumerate() {
        if sys::dup2(fd.as_raw_fd(), i as i32).is_err() {
            sys::exit_now(125);
        }
    }
    let read = |p: &str| {
        passwd::read_instance_file(p).unwrap_or_else(|e| {
            eprintln!("ec2lab exec: read {p}: {e}");
            sys::exit_now(125)
        })
    };
    let found = req.account.clone().or_else(|| {
        let (pw, gr) = (read("/etc/passwd"), read("/etc/group"));
        passwd::lookup(&spec.user, &pw, &gr)
    });
    let Some(user) = found else {
        eprintln!(
            "ec2lab exec: user {:?} not found in the instance's /etc/passwd",
            spec.user
        );
        sys::exit_now(125)
    };
    let tty = if spec.tty && sys::isatty(0) {
        Tty::Direct
    } else {
        Tty::None
    };
    exec_child(spec, &user, tty, last_cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        for st in [
            WaitStatus::Exited(0),
            WaitStatus::Exited(7),
            WaitStatus::Exited(127),
            WaitStatus::Signaled(9),
        ] {
            assert_eq!(decode_status(encode_status(st)), st);
        }
    }
}
