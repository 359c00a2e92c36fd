//! The instance runtime: namespaces, overlay root, cgroups, the instance's PID 1, entering a
//! running instance, sockets inside its network namespace.
//!
//! No namespace work ever happens on the daemon's (tokio) threads. The daemon only spawns
//! single-threaded helper modes of its own binary (dispatched by `main.rs` before any runtime
//! starts) and talks to them over pipes:
//!
//! ```text
//! daemon ── launch() ──> `exe __launch` (launcher_main)            stdin: LaunchSpec JSON
//!   L1 close inherited fds ≥ 3, reset signal dispositions          stdout: JSON lines
//!   L2 create run_dir (0700), volume upper/ + work/, run_dir/rootfs; flock the volume
//!      (held by PID 1 for its life: one instance per root volume)
//!   L3 open run_dir/console.log (append) on the host side
//!   L4 create cgroup ec2lab/<id> with limits, join it (so PID 1 is born inside); a spare
//!      launcher made ahead (see `spare`, cgroup v1) renames the cgroup it waits in instead
//!   L4a the root volume's image on a loop device (see `volume`), allowed in the cgroup
//!   L4b the instance's user namespace (see `userns`), a descriptor PID 1 inherits
//!   L5 clone3(NEWNS|NEWPID|NEWUTS|NEWIPC|NEWNET|NEWCGROUP | CLONE_PARENT | CLONE_PIDFD)
//!      → PID 1, whose parent is the *daemon* (CLONE_PARENT): the daemon reaps it and reads its
//!        exit code (see `init` for the contract) without being a subreaper
//!   │  PID 1 (launch::pid1), reporting the failing step over a close-on-exec pipe:
//!   │  P1 stdout/stderr = console.log, stdin = /dev/null
//!   │  P2 mounts (see `mounts`): private, overlay over idmapped
//!   │     layers, idmapped ro binds, /proc (+masks), /sys ro, /dev, /run
//!   │  P4 also: low ports and ping open to the instance's users (its netns is the host's)
//!   │  P3 hostname   P4 lo up + /32 addresses (rtnetlink)
//!   │  P5 oom_score_adj -1000 (skipped when the host root lacks CAP_SYS_RESOURCE)
//!   │  P6 pivot_root + detach old root   P7 /proc/1/cmdline = init_argv (builtin init)
//!   │  P8 join the user namespace as its root, seccomp filter (see `seccomp`), drop capabilities (bounding set; no_new_privs NOT
//!   │     set), RLIMIT_NOFILE, not dumpable
//!   │  P9 close fds (keep stdio, volume lock, report pipe)
//!   │  P10 builtin init: close the pipe, call the init entry in-process (init_main)
//!   │      otherwise: execve(init_argv) inside the instance (pipe closes on success)
//!   L6 EOF on the pipe = PID 1 runs: write run_dir/init.json, print `ready`, exit
//!      error on the pipe = kill PID 1, print `failed` with the step, exit
//! daemon: on `failed` (or a launcher crash) reap PID 1, kill+remove the cgroup, remove what
//!         launch created in run_dir; both errors are kept if cleanup fails too.
//! ```
//!
//! Entering (`enter_command` → `exe __enter <json>`, see `enter`): join the instance's cgroup,
//! `setns` through a pidfd of its PID 1 (all namespaces at once, atomically — mount included),
//! fork into the PID namespace, become the user from the *instance's* passwd, exec.
//!
//! What the daemon must do (the contract):
//! - `main.rs` dispatches `__launch` → `launcher_main(init_entry)` (PID 1 calls
//!   `init_entry(&argv, payload)`, which calls `init_main`), `__enter` → `enter_main(argv[2])`,
//!   `__sessiond` → `sessiond_main(argv[2])` (the SSH gateway's per-instance session helper),
//!   before any runtime starts. `launch`, `stop`, `cleanup_stale` block for milliseconds to seconds:
//!   call them from `spawn_blocking`.
//! - `init_argv[0]` = the same `exe` passed to `launch` (e.g. `std::env::current_exe()`), so
//!   PID 1 runs init in-process from the host binary.
//! - The daemon is PID 1's parent: it must reap it (`open_pidfd` + `AsyncFd` readable →
//!   `try_reap`, or `stop`, which reaps and returns the `InitExit`), and must not set SIGCHLD
//!   to SIG_IGN (the kernel would auto-reap and the exit code would be lost). No subreaper
//!   and no PDEATHSIG are used (PDEATHSIG fires when the spawning *thread* exits, and blocking
//!   pool threads come and go).
//! - Sockets into the instance come from its `Connector` (`Connector::of(init_pid,
//!   start_time)`, shared by the front and the gateway): `close` it when the instance stops,
//!   and close its listeners too (they keep the instance's network namespace alive).
//! - After a daemon crash instances keep running (orphaned, reparented to the host's init);
//!   nothing else survives that matters: `list_stale_cgroups` + `cleanup_stale` remove them
//!   (processes, cgroup, run_dir; mounts only ever lived in the dead namespaces). Root volumes
//!   (`volume_dir`) are never touched by cleanup.
//! - Cost note (cgroup v1, and v2 without `favordynmods`): moving a process into a cgroup
//!   waits for an RCU grace period when no migration happened recently (measured 4–11 ms
//!   here; ~0.3 ms with the cgroup2 mount option `favordynmods`). On v1 `launch` takes a spare
//!   launcher that paid it ahead (`spare`; a cgroup rename costs ~0.1 ms), else the launcher
//!   joins; the first `enter` after a quiet period pays it too.
//!
//! Files: `spec` (what an instance is), `launch` (L*/P* above), `mounts`, `cgroup` (v1+v2),
//! `caps`, `netns` (loopback setup), `connector` (sockets for the daemon inside an instance's
//! network namespace), `init` (PID 1), `enter`, `pty`, `passwd`,
//! `sys` (the syscall seam: every raw call in one place), `process` (pid + start time),
//! `guestfs` (the only way the host reads or writes an instance's files), `seccomp`, `userns`,
//! `volume` (root volumes as fixed-size ext4 images on loop devices), `spare` (launchers made
//! ahead, already in a cgroup).

mod caps;
mod cgroup;
mod connector;
mod enter;
mod enter_exec;
pub(crate) mod fdpass;
pub mod guestfs;
mod init;
mod launch;
mod mounts;
mod netns;
pub(crate) mod passwd;
mod pkgtools;
pub(crate) mod process;
pub mod procview;
mod pty;
pub mod seccomp;
mod sessiond;
mod spare;
mod spec;
mod stale;
pub(crate) mod sys;
pub mod userns;
pub mod volume;
pub mod vpc;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use caps::{KEEP as KEPT_CAPABILITIES, keep_mask as kept_capability_mask};
pub use cgroup::{CgroupPaths, CgroupVersion};
pub use connector::{CONNECT_TIMEOUT, Connector, ConnectorError};
pub use enter::{ENTER_ARG, EXIT_ENTER_FAILED, EnterSpec, enter_command, enter_main};
pub use init::{
    EXIT_FAILURE, EXIT_HOST_STOP, EXIT_POWEROFF, EXIT_REBOOT, InitConfig, InitExit, init_main,
};
pub use launch::{InitEntry, LAUNCH_ARG, launch, launch_with, launcher_main};
pub use pty::open_pty;
pub(crate) use sessiond::SessionRequest;
pub use sessiond::{HelperSpec, SESSIOND_ARG, decode_status, sessiond_main};
pub use spare::{SPARES, Spare, Spares};
pub use spec::{LaunchSpec, Limits, VolumeFile};
pub use sys::WaitStatus;

/// One step of building an instance; named in errors so a failure says where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// L1: reading and validating the spec from stdin.
    ReadSpec,
    /// L2: creating run_dir and its rootfs mount point.
    RunDir,
    /// L2: creating upper/work in the root volume, or locking it (EBUSY: in use).
    VolumeDir,
    /// L3: opening run_dir/console.log.
    ConsoleLog,
    /// L4: creating, configuring or joining the cgroup.
    Cgroup,
    /// L5: clone3 into new namespaces.
    Clone,
    /// P1: PID 1's stdin (/dev/null) and stdout/stderr (console log).
    Stdio,
    /// P2/P8: creating or joining the instance's user namespace.
    UserNamespace,
    /// P2: making every mount private.
    MakePrivate,
    /// P2: the overlay root.
    MountOverlay,
    /// P2: a read-only bind from the host (or its symlink replica).
    BindReadOnly,
    /// P2: the fresh /proc.
    MountProc,
    /// P2: masking or write-protecting a /proc or /sys path.
    MaskProc,
    /// P2: the read-only /sys.
    MountSys,
    /// P2: /dev (tmpfs, nodes, links, devpts, shm, read-only remount).
    MountDev,
    /// P2: the /run tmpfs.
    MountRun,
    /// P3: sethostname.
    Hostname,
    /// P4: lo up and its extra addresses.
    Loopback,
    /// P5: oom_score_adj of PID 1.
    OomScore,
    /// P6: pivot_root.
    PivotRoot,
    /// P6: detaching the old root.
    DetachOldRoot,
    /// P8: the seccomp filter.
    Seccomp,
    /// P8: capability bounding set and dumpable flag.
    DropCaps,
    /// P9: closing inherited descriptors.
    CloseFds,
    /// P10: exec of init_argv inside the instance.
    ExecInit,
    /// L6: the PID 1 → launcher → daemon reports.
    Report,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::ReadSpec => "read launch spec",
            Step::RunDir => "create run dir",
            Step::VolumeDir => "create volume dir",
            Step::ConsoleLog => "open console log",
            Step::Cgroup => "set up cgroup",
            Step::Clone => "create instance namespaces",
            Step::Stdio => "set up init stdio",
            Step::UserNamespace => "user namespace:",
            Step::MakePrivate => "make mounts private",
            Step::MountOverlay => "mount overlay root",
            Step::BindReadOnly => "bind read-only",
            Step::MountProc => "mount proc at",
            Step::MaskProc => "mask or protect",
            Step::MountSys => "mount sysfs at",
            Step::MountDev => "set up",
            Step::MountRun => "set up",
            Step::Hostname => "set hostname",
            Step::Loopback => "configure loopback",
            Step::OomScore => "set oom_score_adj",
            Step::PivotRoot => "pivot_root into",
            Step::DetachOldRoot => "detach old root",
            Step::Seccomp => "install seccomp filter",
            Step::DropCaps => "drop capabilities",
            Step::CloseFds => "close inherited fds",
            Step::ExecInit => "exec init",
            Step::Report => "report to launcher",
        })
    }
}

/// Errors of the sandbox. Messages are lowercase and name the path or value that failed.
#[allow(missing_docs)] // fields are named for what they hold
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec failed validation before anything was created.
    #[error("invalid launch spec: {0}")]
    InvalidSpec(String),
    /// A launch step failed; `what` is the path or value it failed on.
    #[error("{step} {what}: {source}")]
    Setup {
        step: Step,
        what: String,
        source: io::Error,
    },
    /// A cgroup file operation failed.
    #[error("cgroup: {action} {path}: {source}")]
    Cgroup {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// No usable cgroup layout (controller not mounted, /sys/fs/cgroup unreadable).
    #[error("cgroups unusable: {0}")]
    CgroupUnsupported(String),
    /// The instance's cgroup already holds processes.
    #[error(
        "cgroup {path} still has processes (instance already running, or stale: run cleanup_stale)"
    )]
    CgroupBusy { path: PathBuf },
    /// Spawning or talking to the `__launch` helper failed.
    #[error("launcher: {what}: {source}")]
    Launcher {
        what: &'static str,
        source: io::Error,
    },
    /// The launcher exited without a final report (crashed or killed).
    #[error("launcher ended without a report ({status}){stderr}")]
    LauncherDied { status: String, stderr: String },
    /// The instance's PID 1 is gone (or the pid now names another process).
    #[error("instance init (pid {pid}) is not running")]
    NotRunning { pid: i32 },
    /// Signalling, waiting for or reaping PID 1 failed.
    #[error("{action} instance init (pid {pid}): {source}")]
    Process {
        action: &'static str,
        pid: i32,
        source: io::Error,
    },
    /// Removing a runtime file or directory failed.
    #[error("clean up {path}: {source}")]
    Cleanup { path: PathBuf, source: io::Error },
    /// The operation failed and so did the cleanup after it; both are kept.
    #[error("{first}; cleanup also failed: {cleanup}")]
    WithCleanup {
        first: Box<SandboxError>,
        cleanup: Box<SandboxError>,
    },
}

impl SandboxError {
    /// Keeps both the original error and the cleanup's.
    pub(crate) fn with_cleanup(first: SandboxError, cleanup: SandboxError) -> SandboxError {
        SandboxError::WithCleanup {
            first: Box::new(first),
            cleanup: Box::new(cleanup),
        }
    }

    /// The launch step that failed, if this is a launch failure.
    pub fn step(&self) -> Option<Step> {
        match self {
            SandboxError::Setup { step, .. } => Some(*step),
            SandboxError::Cgroup { .. }
            | SandboxError::CgroupBusy { .. }
            | SandboxError::CgroupUnsupported(_) => Some(Step::Cgroup),
            SandboxError::WithCleanup { first, .. } => first.step(),
            _ => None,
        }
    }
}

/// A launched instance. Serializable so the daemon can record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The instance id (also its cgroup name).
    pub instance_id: String,
    /// Host pid of the instance's PID 1. Its parent is the process that called `launch`.
    pub init_pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: together with the pid, names this process and no other.
    pub start_time: u64,
    /// The instance's cgroup directories.
    pub cgroup: CgroupPaths,
    /// The spec's run_dir (console.log, init.json).
    pub run_dir: PathBuf,
}

/// Is the instance's PID 1 still running (same process, not a zombie)?
pub fn is_alive(r: &Running) -> bool {
    process::is_same_live_process(r.init_pid, r.start_time)
}

/// A pidfd for the instance's PID 1, verified against `start_time` (poll it for POLLIN to learn
/// about its exit, e.g. with tokio's `AsyncFd`; then call `try_reap`).
pub fn open_pidfd(r: &Running) -> Result<OwnedFd, SandboxError> {
    process::open_verified_pidfd(r.init_pid, r.start_time)
        .map_err(|source| SandboxError::Process {
            action: "open pidfd of",
            pid: r.init_pid,
            source,
        })?
        .ok_or(SandboxError::NotRunning { pid: r.init_pid })
}

/// Reaps PID 1 if it has exited and the caller is its parent. `Ok(None)`: still running, or
/// already reaped by someone else (e.g. `stop`).
pub fn try_reap(r: &Running) -> Result<Option<InitExit>, SandboxError> {
    let Ok(fd) = open_pidfd(r) else {
        return Ok(None);
    };
    match sys::waitid_pidfd(fd.as_fd(), false) {
        Ok(s) => Ok(s.map(InitExit::from_status)),
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(None),
        Err(source) => Err(SandboxError::Process {
            action: "reap",
            pid: r.init_pid,
            source,
        }),
    }
}

/// Stops an instance: SIGTERM to PID 1 (which TERMs everything, then KILLs after its own
/// `shutdown_grace`), wait up to `grace` for it to exit, SIGKILL it if it did not (works even if
/// init is stuck or ignores signals), then kill whatever is left in the cgroup (e.g. `__enter`
/// helpers) and remove the cgroup and run_dir's `rootfs`/`init.json` (console.log is kept).
///
/// Pass `grace` ≥ the init's `shutdown_grace` plus a little. Returns how init ended when the
/// caller is its parent (it is reaped here), `None` otherwise or if it was already gone.
pub fn stop(r: &Running, grace: Duration) -> Result<Option<InitExit>, SandboxError> {
    let mut exit = None;
    if let Ok(fd) = open_pidfd(r) {
        let pid = r.init_pid;
        let perr = |action| {
            move |source| SandboxError::Process {
                action,
                pid,
                source,
            }
        };
        match sys::pidfd_send_signal(fd.as_fd(), libc::SIGTERM) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(perr("signal")(e)),
        }
        if !sys::poll_readable(fd.as_fd(), Some(grace)).map_err(perr("wait for"))? {
            tracing::warn!(instance = %r.instance_id, pid, "init did not stop within grace, killing it");
            let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            sys::poll_readable(fd.as_fd(), Some(Duration::from_secs(10)))
                .map_err(perr("wait for"))?;
        }
        exit = match sys::waitid_pidfd(fd.as_fd(), false) {
            Ok(s) => s.map(InitExit::from_status),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => None,
            Err(e) => return Err(perr("reap")(e)),
        };
    }
    cgroup::destroy(&r.cgroup, Duration::from_secs(10))?;
    launch::remove_runtime_files(&r.run_dir)?;
    Ok(exit)
}

/// After a daemon crash: kill the launchers still building the instance (see `stale`), every
/// process in its cgroup, remove the cgroup, and remove `run_dir` entirely. Safe to call when
/// nothing is left, and again after a failure.
pub fn cleanup_stale(instance_id: &str, run_dir: &Path) -> Result<(), SandboxError> {
    if !spec::valid_instance_id(instance_id) {
        return Err(SandboxError::InvalidSpec(format!(
            "instance id {instance_id:?}"
        )));
    }
    stale::kill_orphan_launchers(instance_id);
    let paths = cgroup::layout()?.paths(instance_id);
    // If the recorded PID 1 is our child (e.g. the launcher was killed), reap it afterwards.
    let pidfd = launch::read_init_state(run_dir)
        .and_then(|(pid, start)| process::open_verified_pidfd(pid, start).ok().flatten());
    let result = cgroup::destroy(&paths, Duration::from_secs(10));
    if let Some(fd) = pidfd {
        let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        if sys::poll_readable(fd.as_fd(), Some(Duration::from_secs(2))).unwrap_or(false) {
            let _ = sys::waitid_pidfd(fd.as_fd(), false);
        }
    }
    result?;
    match std::fs::remove_dir_all(run_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SandboxError::Cleanup {
            path: run_dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Instance ids that have an `ec2lab/<id>` cgroup (so the daemon can clean up ones it has no
/// record of). Errors are logged and give an empty list.
pub fn list_stale_cgroups() -> Vec<String> {
    cgroup::list().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list instance cgroups");
        Vec::new()
    })
}

/// Pids (host view) of every process in the instance's cgroup, PID 1 included.
pub fn instance_pids(r: &Running) -> Vec<i32> {
    cgroup::pids(&r.cgroup).unwrap_or_default()
}
