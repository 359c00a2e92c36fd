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
//!    argv empty = login shell (`-bash`), else argv as given (PATH search)
//! 7. the parent forwards TERM/INT/HUP/QUIT, waits, and exits with the child's status
//!    (signal death = 128 + signal; 125 = entering failed, 126/127 = cannot execute / not found)

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::passwd::{self, User};
use super::pty::{self, copy_winsize, give_tty, is_instance_pty, open_pty_inside};
use super::sys::{self, Fork, WaitStatus};
use super::{caps, cgroup, process, seccomp, userns};

/// `argv[1]` of the enter helper mode.
pub const ENTER_ARG: &str = "__enter";

/// Exit status of `__enter` when entering itself failed (like `docker exec`).
pub const EXIT_ENTER_FAILED: i32 = 125;

const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

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

/// The login environment, then the caller's variables on top.
fn build_env(spec: &EnterSpec, user: &User) -> Vec<(String, String)> {
    let path = if user.uid == 0 { ROOT_PATH } else { USER_PATH };
    let mut env: Vec<(String, String)> = [
        ("HOME", user.home.as_str()),
        ("USER", user.name.as_str()),
        ("LOGNAME", user.name.as_str()),
        ("SHELL", user.shell.as_str()),
        ("PATH", path),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if spec.tty {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    for (k, v) in &spec.env {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// argv for exec: the login shell (`-bash`) when empty.
fn command_argv(spec: &EnterSpec, user: &User) -> (String, Vec<String>) {
    if spec.argv.is_empty() {
        let base = user.shell.rsplit('/').next().unwrap_or("sh");
        (user.shell.clone(), vec![format!("-{base}")])
    } else {
        (spec.argv[0].clone(), spec.argv.clone())
    }
}

pub(super) fn exec_child(spec: &EnterSpec, user: &User, tty: Tty, last_cap: u32) -> ! {
    sys::reset_signals();
    let die = |what: &str, e: io::Error| -> ! {
        eprintln!("ec2lab exec: {what}: {e}");
        sys::exit_now(EXIT_ENTER_FAILED)
    };
    if let Err(e) = sys::setsid() {
        die("setsid", e);
    }
    match tty {
        Tty::None => {}
        Tty::Direct => {
            if let Err(e) = sys::ioctl_int(stdin_fd(), libc::TIOCSCTTY, 0) {
                eprintln!("ec2lab exec: no controlling terminal: {e}");
            }
        }
        Tty::Relay(master, slave) => {
            drop(master);
            for fd in 0..3 {
                if let Err(e) = sys::dup2(slave.as_raw_fd(), fd) {
                    die("attach pty", e);
                }
            }
            drop(slave);
            if let Err(e) = sys::ioctl_int(stdin_fd(), libc::TIOCSCTTY, 0) {
                die("set controlling terminal", e);
            }
        }
    }
    if let Err(e) = sys::close_fds_except(&[]) {
        die("close fds", e);
    }
    // As in PID 1: the seccomp filter while CAP_SYS_ADMIN is still held, the instance's fd
    // limit, then the instance's capability set.
    if let Err(e) = seccomp::install(&seccomp::Policy::instance()) {
        die("install seccomp filter", e);
    }
    if let Err(e) = super::launch::set_fd_limit() {
        die("set RLIMIT_NOFILE", e);
    }
    if let Err(e) = caps::drop_to_instance_set(last_cap) {
        die("drop capabilities", e);
    }
    if let Err(e) = sys::setgroups(&user.groups)
        .and_then(|_| sys::setresgid(user.gid))
        .and_then(|_| sys::setresuid(user.uid))
    {
        die(&format!("become {} (uid {})", user.name, user.uid), e);
    }
    let home = sys::cstring(&user.home).unwrap_or_else(|_| c"/".into());
    if sys::chdir(&home).is_err() {
        let _ = sys::chdir(c"/");
    }
    sys::umask(0o022);
    let env = build_env(spec, user);
    let (prog, argv) = command_argv(spec, user);
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(USER_PATH.to_string(), |(_, v)| v.clone());
    let (code, err) = exec_search(&prog, &argv, &env, &path);
    eprintln!("ec2lab exec: {prog}: {err}");
    sys::exit_now(code)
}

/// execve with a PATH search like execvp. Returns (exit code, error) on failure: 127 when
/// nothing was found, 126 when something was found but could not be executed.
fn exec_search(
    prog: &str,
    argv: &[String],
    env: &[(String, String)],
    path: &str,
) -> (i32, io::Error) {
    let cargv: Result<Vec<_>, _> = argv.iter().map(sys::cstring).collect();
    let cenv: Result<Vec<_>, _> = env
        .iter()
        .map(|(k, v)| sys::cstring(format!("{k}={v}")))
        .collect();
    let (Ok(cargv), Ok(cenv)) = (cargv, cenv) else {
        return (
            EXIT_ENTER_FAILED,
            io::Error::new(io::ErrorKind::InvalidInput, "argument contains a nul byte"),
        );
    };
    let candidates: Vec<String> = if prog.contains('/') {
        vec![prog.to_string()]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{prog}", d.trim_end_matches('/')))
            .collect()
    };
    let mut found: Option<io::Error> = None;
    for c in candidates {
        let Ok(cpath) = sys::cstring(&c) else {
            continue;
        };
        let e = sys::execve(&cpath, &cargv, &cenv);
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
            _ => found = found.or(Some(e)),
        }
    }
    match found {
        Some(e) => (126, e),
        None => (
            127,
            io::Error::new(io::ErrorKind::NotFound, "command not found"),
        ),
    }
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
fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: descriptor 0 stays open for the life of the process (we only dup2 over it).
    unsafe { BorrowedFd::borrow_raw(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            name: "ec2-user".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/ec2-user".into(),
            shell: "/bin/bash".into(),
            groups: vec![1000, 10],
        }
    }

    fn spec(argv: &[&str]) -> EnterSpec {
        EnterSpec {
            init_pid: 1,
            start_time: 0,
            user: "ec2-user".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            tty: false,
        }
    }

    #[test]
    fn login_shell_argv() {
        assert_eq!(
            command_argv(&spec(&[]), &user()),
            ("/bin/bash".to_string(), vec!["-bash".to_string()])
        );
        assert_eq!(
            command_argv(&spec(&["ls", "-l"]), &user()),
            ("ls".to_string(), vec!["ls".to_string(), "-l".to_string()])
        );
    }

    #[test]
    fn env_overrides() {
        let mut s = spec(&[]);
        s.tty = true;
        s.env = vec![
            ("TERM".into(), "vt100".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        let env = build_env(&s, &user());
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/home/ec2-user"));
        assert_eq!(get("USER"), Some("ec2-user"));
        assert_eq!(get("TERM"), Some("vt100"));
        assert_eq!(get("LANG"), Some("C.UTF-8"));
        assert_eq!(get("PATH"), Some(USER_PATH));
        assert_eq!(env.iter().filter(|(k, _)| k == "TERM").count(), 1);
    }

    #[test]
    fn spec_round_trip_defaults_start_time() {
        let s: EnterSpec =
            serde_json::from_str(r#"{"init_pid":5,"user":"root","argv":[],"env":[],"tty":false}"#)
                .unwrap();
        assert_eq!(s.start_time, 0);
    }
}
