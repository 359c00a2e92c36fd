//! Entering a running instance (`ec2lab exec`, the SSH gateway): the `__enter` helper.
//!
//! Order (single-threaded helper process, never a daemon thread):
//! 0. not dumpable (until the exec)
//! 1. pidfd of the instance's PID 1, checked against its start time (no pid-reuse mistakes)
//! 2. join the instance's cgroup (before entering its cgroup namespace, which would hide it)
//! 3. `setns(pidfd, NET|UTS|IPC|CGROUP|PID|MNT)`: one call, all namespaces at once (Linux 5.8+);
//!    the kernel switches the mount namespace last and atomically. The user namespace comes
//!    later (5b): these namespaces belong to the host's, which a member of the instance's
//!    could not join
//! 4. look the user up in the instance's own /etc/passwd and /etc/group
//! 5. tty: a fresh terminal passed as stdin becomes the controlling terminal directly — best
//!    one from `open_pty` (the instance's own devpts: `/dev/pts/N` inside, given to the user),
//!    which is what the SSH gateway should use; if stdin is the caller's own controlling
//!    terminal (the CLI's `-t`) or not a terminal, a pty is made inside the instance's devpts
//!    and relayed by the helper (caller's terminal in raw mode, SIGWINCH passed on);
//!    terminals are chowned to the user's *host* ids (its uid_map) while still host root
//!    then (5b) join the instance's user namespace as its root
//! 6. fork (the child is in the instance's PID namespace); the child: setsid (+TIOCSCTTY),
//!    seccomp filter, fd limit, drop to the instance's capability set, groups/gid/uid,
//!    cwd = home, login env, exec —
//!    argv empty = login shell (`-bash`), else argv as given (PATH search) — `enter_exec.rs`,
//!    shared with the session helper (`sessiond.rs`, which runs steps 1–3 and 5b once)
//! 7. the parent forwards TERM/INT/HUP/QUIT, waits, and exits with the child's status
//!    (signal death = 128 + signal; 125 = entering failed, 126/127 = cannot execute / not found)

use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::enter_exec::exec_child;
use super::passwd;
use super::pty::{self, copy_winsize, give_tty, is_instance_pty, open_pty_inside};
use super::sys::{self, Fork, WaitStatus};
use super::{caps, cgroup, process, userns};

/// `argv[1]` of the enter helper mode.
pub const ENTER_ARG: &str = "__enter";

/// Exit status of `__enter` when entering itself failed (like `docker exec`).
pub const EXIT_ENTER_FAILED: i32 = 125;

/// A command to run inside a running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnterSpec {
    /// `Running::init_pid`.
    pub init_pid: i32,
    /// `Running::start_time`, so a recycled pid is refused; 0 skips the check.
    #[serde(default)]
    pub start_time: u64,
    /// Name (or uid) in the instance's /etc/passwd.
    pub user: String,
    /// Empty = the user's login shell.
    pub argv: Vec<String>,
    /// Added to (and overriding) the login environment.
    pub env: Vec<(String, String)>,
    /// Give the command a terminal (see the module docs for how).
    pub tty: bool,
}

/// `exe __enter <json>`. The caller sets stdio (and may spawn it from async code: it is a
/// separate single-threaded process). Its exit status is the command's.
pub fn enter_command(exe: &Path, spec: &EnterSpec) -> Command {
    let mut c = Command::new(exe);
    c.arg(ENTER_ARG)
        .arg(serde_json::to_string(spec).expect("enter spec serializes"))
        .env_clear();
    c
}

pub(super) fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("ec2lab exec: {msg}");
    std::process::exit(EXIT_ENTER_FAILED)
}

pub(super) enum Tty {
    None,
    /// stdin becomes the controlling terminal.
    Direct,
    /// A pty inside the instance, relayed by the parent: (master, slave).
    Relay(OwnedFd, OwnedFd),
}

/// Body of the hidden `__enter` mode.
pub fn enter_main(json: &str) -> ! {
    // Not dumpable until exec: once in the instance's namespaces, its root must not ptrace us
    // nor open our /proc/<pid>/exe, fd/ or mem (we are the host binary, with host caps, until
    // the exec; exec of the command resets this).
    if let Err(e) = sys::prctl(libc::PR_SET_DUMPABLE, 0, 0) {
        fail(format!("prctl(PR_SET_DUMPABLE): {e}"));
    }
    let spec: EnterSpec =
        serde_json::from_str(json).unwrap_or_else(|e| fail(format!("bad request: {e}")));

    let Entered {
        pidfd,
        id,
        last_cap,
        uid_map,
        gid_map,
    } = enter_instance(spec.init_pid, spec.start_time);
    let host_id = |map: &str, n: u32| {
        userns::to_host(map, n)
            .unwrap_or_else(|| fail(format!("id {n} is not mapped in instance {id}")))
    };

    // 4. The user, from the instance's files.
    let read =
        |p: &str| passwd::read_instance_file(p).unwrap_or_else(|e| fail(format!("read {p}: {e}")));
    let (pw, gr) = (read("/etc/passwd"), read("/etc/group"));
    let user = passwd::lookup(&spec.user, &pw, &gr).unwrap_or_else(|| {
        fail(format!(
            "user {:?} not found in the instance's /etc/passwd",
            spec.user
        ))
    });

    // 5. Terminal, chowned (as host root, still) to the user's host ids.
    let tty_gid = host_id(&gid_map, passwd::group_id("tty", &gr).unwrap_or(user.gid));
    let mut owner = user.clone();
    owner.uid = host_id(&uid_map, user.uid);
    let tty = if !spec.tty {
        Tty::None
    } else if sys::isatty(0) && !is_our_ctty(0) {
        if is_instance_pty(0) {
            give_tty(stdin_fd(), &owner, tty_gid)
                .unwrap_or_else(|e| fail(format!("chown terminal: {e}")));
        }
        Tty::Direct
    } else {
        let (m, s) = open_pty_inside(&owner, tty_gid)
            .unwrap_or_else(|e| fail(format!("allocate a pty in the instance: {e}")));
        Tty::Relay(m, s)
    };

    // 5b. The user namespace: from here on ids and capabilities are the instance's.
    if !userns::is_identity(&uid_map) {
        userns::join_as_root(pidfd.as_fd())
            .unwrap_or_else(|e| fail(format!("join the user namespace of instance {id}: {e}")));
    }
    drop(pidfd);

    // 6. Fork into the PID namespace. Signals are blocked before, so none is lost.
    let sfd = sys::signalfd(&[
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGWINCH,
    ])
    .unwrap_or_else(|e| fail(format!("signalfd: {e}")));
    let child = match sys::fork() {
        Err(e) => fail(format!("fork: {e}")),
        Ok(Fork::Child) => {
            drop(sfd);
            exec_child(&spec, &user, tty, last_cap)
        }
        Ok(Fork::Parent { pid, .. }) => pid,
    };

    // 7. Wait (relaying the pty if we made one) and pass the status on.
    let status = match tty {
        Tty::Relay(master, slave) => {
            drop(slave);
            pty::relay(master, child, sfd.as_fd())
        }
        _ => wait_plain(child, sfd.as_fd()),
    };
    // A signal death is passed on as one, so the caller sees how the command ended (the SSH
    // gateway sends exit-signal; `ec2lab exec` still exits 128 + n). No core file of ours.
    if let WaitStatus::Signaled(sig) = status {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit with a valid struct; raise with default dispositions restored.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            sys::reset_signals();
            libc::raise(sig);
        }
    }
    std::process::exit(status.code())
}

/// What steps 1–3 leave: the verified pidfd of PID 1 (for the user namespace, and to notice
/// its end), the instance id, the host's last capability and the user namespace's id maps.
pub(super) struct Entered {
    pub pidfd: OwnedFd,
    pub id: String,
    pub last_cap: u32,
    pub uid_map: String,
    pub gid_map: String,
}

/// Steps 1–3: PID 1 verified, its cgroup joined, every namespace but the user one entered.
pub(super) fn enter_instance(init_pid: i32, start_time: u64) -> Entered {
    // 1. PID 1, verified.
    let pidfd = match process::open_verified_pidfd(init_pid, start_time) {
        Ok(Some(fd)) => fd,
        Ok(None) => fail(format!("instance init (pid {}) is not running", init_pid)),
        Err(e) => fail(format!("open pidfd of pid {}: {e}", init_pid)),
    };
    // 2. Its cgroup.
    let cg_text = std::fs::read_to_string(format!("/proc/{}/cgroup", init_pid))
        .unwrap_or_else(|e| fail(format!("read /proc/{}/cgroup: {e}", init_pid)));
    let id = cgroup::instance_of(&cg_text)
        .unwrap_or_else(|| fail(format!("pid {} is not in an instance cgroup", init_pid)));
    let paths = cgroup::layout().unwrap_or_else(|e| fail(e)).paths(&id);
    cgroup::join(&paths, sys::getpid()).unwrap_or_else(|e| fail(e));
    let last_cap = caps::last_cap();
    // Its user namespace's id maps (host view), to give a terminal to a user inside.
    let map = |kind: &str| {
        let p = format!("/proc/{}/{kind}", init_pid);
        std::fs::read_to_string(&p).unwrap_or_else(|e| fail(format!("read {p}: {e}")))
    };
    let (uid_map, gid_map) = (map("uid_map"), map("gid_map"));

    // 3. All namespaces at once, but the user namespace (joined last, in step 5b).
    let ns = libc::CLONE_NEWNET
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS;
    sys::setns(pidfd.as_fd(), ns)
        .unwrap_or_else(|e| fail(format!("setns into instance {id}: {e}")));

    Entered {
        pidfd,
        id,
        last_cap,
        uid_map,
        gid_map,
    }
}

/// Is `fd` the controlling terminal of our session (the CLI's own terminal)?
fn is_our_ctty(fd: RawFd) -> bool {
    // SAFETY: plain call on an integer descriptor.
    unsafe { libc::tcgetsid(fd) >= 0 }
}

/// Handles pending signals; returns the child's status once it has exited.
pub(crate) fn handle_signals(
    sfd: BorrowedFd<'_>,
    child: libc::pid_t,
    master: Option<RawFd>,
) -> Option<WaitStatus> {
    let mut status = None;
    while let Ok(Some((sig, _))) = sys::read_signalfd(sfd) {
        match sig {
            libc::SIGCHLD => {
                if let Ok(Some(st)) = sys::wait_pid(child, false) {
                    status = Some(st);
                }
            }
            libc::SIGWINCH => {
                if let Some(m) = master {
                    copy_winsize(0, m);
                }
            }
            s => {
                let _ = sys::kill(child, s);
            }
        }
    }
    status
}

fn wait_plain(child: libc::pid_t, sfd: BorrowedFd<'_>) -> WaitStatus {
    loop {
        let _ = sys::poll_readable(sfd, None);
        if let Some(st) = handle_signals(sfd, child, None) {
            return st;
        }
    }
}

/// stdin as a `BorrowedFd`.
pub(super) fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: descriptor 0 stays open for the life of the process (we only dup2 over it).
    unsafe { BorrowedFd::borrow_raw(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip_defaults_start_time() {
        let s: EnterSpec =
            serde_json::from_str(r#"{"init_pid":5,"user":"root","argv":[],"env":[],"tty":false}"#)
                .unwrap();
        assert_eq!(s.start_time, 0);
    }
}
