//! Launching an instance: `launch` (daemon side), `launcher_main` (the `__launch` helper) and
//! `pid1` (the instance's PID 1 until it becomes init). The L*/P* steps are listed in `mod.rs`.
//!
//! Protocol. Daemon → launcher: `LauncherInput` JSON on stdin. Launcher → daemon: JSON lines
//! on stdout — `started` (as soon as PID 1 exists, so the daemon can always reap it), then
//! `ready` or `failed`. PID 1 → launcher: a close-on-exec pipe that carries one
//! `ChildFailure` JSON, or nothing (EOF) once PID 1 runs init.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cgroup::{self, CgroupPaths};
use super::mounts::{self, OpError};
use super::spare::Spare;
use super::spec::{CONSOLE_LOG, INIT_STATE, LaunchSpec, LauncherInput};
use super::sys::{self, Fork};
use super::{Running, SandboxError, Step, caps, netns, process};

/// The builtin init, called in PID 1 with `init_argv` and `LaunchSpec::init_payload`.
pub type InitEntry = fn(&[String], Option<&str>) -> !;

/// `argv[1]` of the launcher helper mode.
pub const LAUNCH_ARG: &str = "__launch";

/// PATH given to the launcher and inherited by PID 1.
pub(super) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Report {
    /// A spare launcher sits in its cgroup and waits for its input (see `spare`).
    SpareReady,
    Started {
        init_pid: i32,
    },
    Ready {
        init_pid: i32,
        start_time: u64,
        cgroup: CgroupPaths,
    },
    Failed {
        step: Step,
        what: String,
        errno: i32,
        message: String,
    },
}

/// What PID 1 sends back when a step fails.
#[derive(Debug, Serialize, Deserialize)]
struct ChildFailure {
    step: Step,
    what: String,
    errno: i32,
    message: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct InitState {
    instance_id: String,
    init_pid: i32,
    start_time: u64,
}

fn failed(step: Step, what: impl Into<String>, e: &io::Error) -> Report {
    Report::Failed {
        step,
        what: what.into(),
        errno: e.raw_os_error().unwrap_or(0),
        message: e.to_string(),
    }
}

fn failed_from(e: &SandboxError) -> Report {
    match e {
        SandboxError::Cgroup {
            action,
            path,
            source,
        } => failed(
            Step::Cgroup,
            format!("({action} {})", path.display()),
            source,
        ),
        SandboxError::WithCleanup { first, .. } => failed_from(first),
        other => Report::Failed {
            step: other.step().unwrap_or(Step::Cgroup),
            what: String::new(),
            errno: 0,
            message: other.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Daemon side

/// What existed in run_dir before this launch (cleanup removes only what launch created).
struct Before {
    run_dir: bool,
    console: bool,
}

/// Launches an instance and returns once its PID 1 runs init (builtin) or has exec'd
/// `init_argv`. Blocking (a few ms): call it from `spawn_blocking`, never from async code.
///
/// The caller becomes the parent of PID 1 (CLONE_PARENT): it must reap it — `try_reap` after
/// the pidfd from `open_pidfd` turns readable, or `stop`. On any failure nothing is left:
/// no process, no cgroup, no mount (they only ever existed in the dead PID 1's namespace), and
/// nothing in run_dir that launch created.
pub fn launch(exe: &Path, spec: &LaunchSpec) -> Result<Running, SandboxError> {
    launch_with(exe, spec, None)
}

/// [`launch`], handing the spec to a spare launcher made ahead (see `spare`) when one is given
/// and has room for `init_argv`; otherwise a fresh launcher is spawned.
pub fn launch_with(
    exe: &Path,
    spec: &LaunchSpec,
    spare: Option<Spare>,
) -> Result<Running, SandboxError> {
    let t0 = Instant::now();
    spec.validate()?;
    let cg = cgroup::layout()?.paths(&spec.instance_id);
    if !cgroup::pids(&cg).unwrap_or_default().is_empty() {
        return Err(SandboxError::CgroupBusy { path: cg.procs_dir });
    }
    let before = Before {
        run_dir: spec.run_dir.exists(),
        console: spec.console_log().exists(),
    };
    let input = LauncherInput {
        spec: spec.clone(),
        builtin_init: Path::new(&spec.init_argv[0]) == exe,
    };
    let json = serde_json::to_vec(&input).expect("launch spec serializes");

    let lerr = |what| move |source| SandboxError::Launcher { what, source };
    let room: usize = spec.init_argv[1..].iter().map(|a| a.len() + 1).sum();
    let spare = spare.filter(|_| room <= super::spare::ARGV_ROOM);
    let (spare, mut child, mut out) = match spare {
        Some(s) => {
            let (name, child, out) = s.into_parts();
            (Some(name), child, out)
        }
        None => {
            let mut child = Command::new(exe)
                .arg(LAUNCH_ARG)
                // Not read by the launcher: room in the argv area for PID 1's cmdline (see
                // set_cmdline).
                .args(&spec.init_argv[1..])
                .env_clear()
                .env("PATH", DEFAULT_PATH)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(lerr("spawn"))?;
            let out = BufReader::new(child.stdout.take().expect("piped stdout"));
            (None, child, out)
        }
    };
    // The launcher reads all of stdin before anything else; a write error means it died, which
    // the missing report below shows.
    let _ = child.stdin.take().expect("piped stdin").write_all(&json);
    let mut reports = Vec::new();
    let mut line = String::new();
    while matches!(out.read_line(&mut line), Ok(n) if n > 0) {
        if let Ok(r) = serde_json::from_str::<Report>(&line) {
            reports.push(r);
        }
        line.clear();
    }
    let status = child.wait().map_err(lerr("wait for"))?;
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("piped stderr")
        .take(4096)
        .read_to_string(&mut stderr);

    let init_pid = reports.iter().find_map(|r| match r {
        Report::Started { init_pid } | Report::Ready { init_pid, .. } => Some(*init_pid),
        Report::Failed { .. } | Report::SpareReady => None,
    });
    let err = match reports.pop() {
        Some(Report::Ready {
            init_pid,
            start_time,
            cgroup,
        }) if status.success() => {
            tracing::debug!(instance = %spec.instance_id, init_pid, spare = spare.is_some(), elapsed_us = t0.elapsed().as_micros() as u64, "instance launched");
            return Ok(Running {
                instance_id: spec.instance_id.clone(),
                init_pid,
                start_time,
                cgroup,
                run_dir: spec.run_dir.clone(),
            });
        }
        Some(Report::Failed {
            step,
            what,
            errno,
            message,
        }) => SandboxError::Setup {
            step,
            what,
            source: if errno > 0 {
                io::Error::from_raw_os_error(errno)
            } else {
                io::Error::other(message)
            },
        },
        _ => {
            let stderr = stderr.trim();
            SandboxError::LauncherDied {
                status: status.to_string(),
                stderr: if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                },
            }
        }
    };
    // A spare's cgroup carries its own name until (and where) the launcher renamed it.
    let spare_cleanup = spare.as_deref().map_or(Ok(()), super::spare::destroy);
    match cleanup_failed(spec, &cg, init_pid, &before).and(spare_cleanup) {
        Ok(()) => Err(err),
        Err(c) => Err(SandboxError::with_cleanup(err, c)),
    }
}

fn cleanup_failed(
    spec: &LaunchSpec,
    cg: &CgroupPaths,
    init_pid: Option<i32>,
    before: &Before,
) -> Result<(), SandboxError> {
    if let Some(pid) = init_pid {
        // Our child thanks to CLONE_PARENT, so the pid cannot have been reused: kill and reap.
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait_pid(pid, true);
    }
    cgroup::destroy(cg, Duration::from_secs(5))?;
    let rm = |p: PathBuf, dir: bool| {
        let r = if dir {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        match r {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(SandboxError::Cleanup { path: p, source: e })
            }
            _ => Ok(()),
        }
    };
    if !before.run_dir {
        return rm(spec.run_dir.clone(), true);
    }
    remove_runtime_files(&spec.run_dir)?;
    if !before.console {
        rm(spec.console_log(), false)?;
    }
    Ok(())
}

/// Removes `rootfs/` and `init.json` from a run_dir (console.log stays).
pub(crate) fn remove_runtime_files(run_dir: &Path) -> Result<(), SandboxError> {
    for (name, dir) in [("rootfs", true), (INIT_STATE, false)] {
        let p = run_dir.join(name);
        let r = if dir {
            fs::remove_dir(&p)
        } else {
            fs::remove_file(&p)
        };
        match r {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(SandboxError::Cleanup { path: p, source: e });
            }
            _ => {}
        }
    }
    Ok(())
}

/// (init pid, start time) recorded by the launcher in run_dir/init.json.
pub(crate) fn read_init_state(run_dir: &Path) -> Option<(i32, u64)> {
    let s: InitState = serde_json::from_slice(&fs::read(run_dir.join(INIT_STATE)).ok()?).ok()?;
    Some((s.init_pid, s.start_time))
}

// ---------------------------------------------------------------------------------------------
// The `__launch` helper

pub(super) fn emit(r: &Report) {
    let mut line = serde_json::to_vec(r).expect("report serializes");
    line.push(b'\n');
    let _ = sys::write_all_fd(1, &line);
}

/// Body of the hidden `__launch` mode: reads a `LauncherInput` from stdin, launches, reports
/// on stdout, exits. In PID 1 (when `init_argv[0]` is the launcher's own binary) it calls
/// `init_entry(&init_argv, payload)` instead of exec'ing, so PID 1 runs init from the host
/// binary with the host's libraries whatever the AMI contains.
pub fn launcher_main(init_entry: InitEntry) -> ! {
    // L1: a clean process: no inherited descriptors beyond stdio, default signal handling.
    let _ = sys::close_fds_except(&[]);
    sys::reset_signals();
    // A spare (`__launch --spare NAME …`) waits in its own cgroup for its input first.
    let args: Vec<String> = std::env::args().collect();
    let spare = (args.get(2).map(String::as_str) == Some(super::spare::SPARE_ARG))
        .then(|| args.get(3).cloned())
        .flatten();
    if let Some(name) = &spare
        && let Err(e) = super::spare::wait_in_cgroup(name)
    {
        emit(&failed_from(&e));
        super::spare::give_up(name)
    }
    let mut buf = Vec::new();
    let read = io::stdin().lock().read_to_end(&mut buf);
    if let Some(name) = &spare
        && buf.is_empty()
    {
        super::spare::give_up(name)
    }
    let input: LauncherInput = match read.and_then(|_| {
        serde_json::from_slice(&buf).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
    }) {
        Ok(i) => i,
        Err(e) => {
            emit(&failed(Step::ReadSpec, "stdin", &e));
            std::process::exit(1)
        }
    };
    match run_launcher(&input, spare.as_deref(), init_entry) {
        Ok(ready) => {
            emit(&ready);
            std::process::exit(0)
        }
        Err(f) => {
            emit(&f);
            std::process::exit(1)
        }
    }
}

fn run_launcher(
    input: &LauncherInput,
    spare: Option<&str>,
    init_entry: InitEntry,
) -> Result<Report, Report> {
    let spec = &input.spec;
    if let Err(e) = spec.validate() {
        return Err(Report::Failed {
            step: Step::ReadSpec,
            what: String::new(),
            errno: libc::EINVAL,
            message: e.to_string(),
        });
    }

    // L2: directories on the host.
    let dir = |step, p: &Path| {
        fs::create_dir_all(p).map_err(|e| failed(step, p.display().to_string(), &e))
    };
    dir(Step::RunDir, &spec.run_dir)?;
    fs::set_permissions(&spec.run_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| failed(Step::RunDir, spec.run_dir.display().to_string(), &e))?;
    let has_image = super::volume::image(&spec.volume_dir).exists();
    if !has_image {
        // A volume made before images: plain directories on the host (unbounded).
        dir(Step::VolumeDir, &spec.upper_dir())?;
        dir(Step::VolumeDir, &spec.work_dir())?;
    }
    dir(Step::RunDir, &spec.rootfs())?;
    // One instance per root volume: overlayfs does not refuse a second mount of the same
    // upper dir, so PID 1 holds an flock on the volume for its whole life.
    let lock = lock_volume(&spec.volume_dir)?;

    // L3: the console log, opened here so PID 1 writes to a host file it cannot name.
    let console_path = spec.run_dir.join(CONSOLE_LOG);
    let console = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&console_path)
        .map_err(|e| failed(Step::ConsoleLog, console_path.display().to_string(), &e))?;

    // L4: cgroup with limits; join it so PID 1 (and all it forks) is born inside. A spare
    // launcher is inside one already: it renames it to the instance's and writes the limits.
    let cg = match spare {
        Some(name) => cgroup::adopt(name, &spec.instance_id, &spec.limits),
        None => cgroup::create(&spec.instance_id, &spec.limits),
    }
    .map_err(|e| failed_from(&e))?;
    // L4a: the volume's image on a loop device (auto-clear) — the one the daemon attached
    // ahead if it still holds this image, else a new one —, the one block device the
    // instance's cgroup may use (for PID 1's mount; there is no node for it inside).
    let ahead = spec
        .volume_loop
        .and_then(|minor| super::volume::reuse(minor, &spec.volume_dir).ok().flatten());
    let volume = match ahead {
        Some(v) => Ok(Some(v)),
        None => super::volume::attach(&spec.volume_dir),
    }
    .map_err(|e| {
        failed(
            Step::VolumeDir,
            super::volume::image(&spec.volume_dir).display().to_string(),
            &e,
        )
    })?;
    if let Some(v) = &volume {
        cgroup::allow_device(&cg, &format!("b 7:{} rw", v.minor)).map_err(|e| failed_from(&e))?;
    }
    match spare {
        None => cgroup::join(&cg, sys::getpid()).map_err(|e| failed_from(&e))?,
        Some(_) => {
            for rule in super::spare::LOOP_RULES {
                cgroup::deny_device(&cg, rule).map_err(|e| failed_from(&e))?;
            }
        }
    }

    // L4b: the instance's user namespace (its root is an unprivileged host uid range), made
    // here in the host's PID namespace (its uid_map is written through /proc/<pid>); PID 1
    // inherits the descriptor, idmaps its mounts with it and joins it last.
    let userns = if spec.user_namespace {
        let base = super::userns::base(&spec.instance_id);
        Some(super::userns::create(base).map_err(|e| failed(Step::UserNamespace, "create", &e))?)
    } else {
        None
    };

    // L5: PID 1 in new namespaces, child of our parent (the daemon).
    let (report_rd, report_wr) =
        sys::pipe_cloexec().map_err(|e| failed(Step::Clone, "report pipe", &e))?;
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_PARENT
        | libc::CLONE_PIDFD;
    // CLONE_PARENT requires exit_signal 0; the child inherits ours (SIGCHLD to the daemon).
    let (pid, pidfd) = match sys::clone3(flags as u64, 0) {
        Err(e) => return Err(failed(Step::Clone, "", &e)),
        Ok(Fork::Child) => {
            drop(report_rd);
            pid1(
                input,
                console,
                lock,
                report_wr,
                (userns, volume),
                init_entry,
            )
        }
        Ok(Fork::Parent { pid, pidfd }) => (pid, pidfd.expect("CLONE_PIDFD gives a pidfd")),
    };
    emit(&Report::Started { init_pid: pid });
    drop(report_wr);
    drop(console);
    drop(lock);
    drop(userns);
    drop(volume);

    // L6: EOF without a message = PID 1 runs init.
    let mut msg = Vec::new();
    let read = File::from(report_rd).read_to_end(&mut msg);
    if read.is_ok() && msg.is_empty() {
        let start_time = process::start_time(pid)
            .map_err(|e| failed(Step::Report, format!("/proc/{pid}/stat"), &e))?;
        let state = InitState {
            instance_id: spec.instance_id.clone(),
            init_pid: pid,
            start_time,
        };
        let tmp = spec.run_dir.join(".init.json.tmp");
        // Runtime state: no fsync (it means nothing after a host crash, when PID 1 is gone too).
        fs::write(&tmp, serde_json::to_vec(&state).expect("state serializes"))
            .and_then(|_| fs::rename(&tmp, spec.run_dir.join(INIT_STATE)))
            .map_err(|e| {
                failed(
                    Step::Report,
                    spec.run_dir.join(INIT_STATE).display().to_string(),
                    &e,
                )
            })?;
        return Ok(Report::Ready {
            init_pid: pid,
            start_time,
            cgroup: cg,
        });
    }
    let report = match (read, serde_json::from_slice::<ChildFailure>(&msg)) {
        (_, Ok(f)) => Report::Failed {
            step: f.step,
            what: f.what,
            errno: f.errno,
            message: f.message,
        },
        (Err(e), _) => failed(Step::Report, "report pipe", &e),
        (Ok(_), Err(e)) => Report::Failed {
            step: Step::Report,
            what: "report pipe".into(),
            errno: 0,
            message: format!("garbled report: {e}"),
        },
    };
    // PID 1 exits by itself after reporting; make sure, and wait so its namespaces are gone
    // before the daemon removes the cgroup. The daemon reaps it.
    let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    let _ = sys::poll_readable(pidfd.as_fd(), Some(Duration::from_secs(5)));
    Err(report)
}

// ---------------------------------------------------------------------------------------------
// PID 1, before it becomes init

/// `volume_dir/.ec2lab-lock`, flock'ed exclusively; EBUSY when another instance holds it.
fn lock_volume(volume_dir: &Path) -> Result<OwnedFd, Report> {
    let p = volume_dir.join(".ec2lab-lock");
    let what = || format!("{} (root volume lock)", p.display());
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&p)
        .map_err(|e| failed(Step::VolumeDir, what(), &e))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        let e = if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            io::Error::from_raw_os_error(libc::EBUSY)
        } else {
            e
        };
        return Err(failed(Step::VolumeDir, what(), &e));
    }
    Ok(OwnedFd::from(f))
}

fn pid1(
    input: &LauncherInput,
    console: File,
    lock: OwnedFd,
    report: OwnedFd,
    ns_and_volume: (Option<OwnedFd>, Option<super::volume::Attached>),
    init_entry: InitEntry,
) -> ! {
    let report_failure = |(step, what, e): OpError| -> ! {
        let f = ChildFailure {
            step,
            what,
            errno: e.raw_os_error().unwrap_or(0),
            message: e.to_string(),
        };
        let _ = sys::write_all_fd(
            report.as_raw_fd(),
            &serde_json::to_vec(&f).unwrap_or_default(),
        );
        sys::exit_now(1)
    };
    if let Err(f) = pid1_setup(input, console, &lock, &report, ns_and_volume) {
        report_failure(f)
    }
    let argv = &input.spec.init_argv;
    if input.builtin_init {
        // P10: builtin init. Block init's signals first: a SIGTERM that `stop` sends right after
        // `launch` returns must stay pending for init's signalfd, not be dropped (a namespace's
        // PID 1 discards signals it has no handler for). Closing the pipe tells the launcher.
        let _ = sys::sigprocmask(
            libc::SIG_BLOCK,
            &sys::sigset(&super::init::handled_signals()),
        );
        drop(report);
        init_entry(argv, input.spec.init_payload.as_deref())
    }
    // P10: exec init_argv inside the instance; success closes the pipe (close-on-exec). The
    // volume lock must outlive the exec.
    let _ = sys::set_cloexec(lock.as_raw_fd(), false);
    let err = exec_init(argv);
    report_failure((Step::ExecInit, argv[0].clone(), err))
}

fn pid1_setup(
    input: &LauncherInput,
    console: File,
    lock: &OwnedFd,
    report: &OwnedFd,
    (userns, volume): (Option<OwnedFd>, Option<super::volume::Attached>),
) -> Result<(), OpError> {
    let spec = &input.spec;
    let err = |step: Step, what: &str| {
        let what = what.to_string();
        move |e: io::Error| (step, what, e)
    };

    // P1: stdio. The console log (a host file opened by the launcher) is stdout and stderr.
    let devnull =
        sys::open(c"/dev/null", libc::O_RDWR, 0).map_err(err(Step::Stdio, "/dev/null"))?;
    sys::dup2(devnull.as_raw_fd(), 0).map_err(err(Step::Stdio, "stdin"))?;
    sys::dup2(console.as_raw_fd(), 1).map_err(err(Step::Stdio, "stdout"))?;
    sys::dup2(console.as_raw_fd(), 2).map_err(err(Step::Stdio, "stderr"))?;
    drop(devnull);
    drop(console);
    sys::umask(0);

    // P2: the filesystem (see mounts.rs for the order), idmapped for the user namespace.
    let rootfs = spec.rootfs();
    // The upper layer, once attached: stored with the instance's host ids (see `userns`), then
    // the files the host gives a first boot (hostname, hosts…), through `guestfs`.
    let prepare = |upper: &Path| -> io::Result<()> {
        let mut g = super::guestfs::GuestDir::open(upper)?;
        if spec.user_namespace {
            let base = super::userns::base(&spec.instance_id);
            g.shift_ids(base, super::userns::RANGE)?;
            g = g.owned_by(base, base);
        }
        for f in &spec.volume_files {
            g.write(&f.path, f.content.as_bytes(), f.mode)?;
        }
        Ok(())
    };
    let vol = mounts::Volume {
        device: volume.as_ref(),
        prepare: &prepare,
    };
    mounts::apply(
        &rootfs,
        &mounts::plan(spec),
        userns.as_ref().map(|f| f.as_fd()),
        &vol,
    )?;
    drop(volume);

    // P3: hostname (UTS namespace).
    sys::sethostname(&spec.hostname).map_err(err(Step::Hostname, &spec.hostname))?;

    // P4: loopback up, extra /32s (network namespace).
    netns::setup_loopback(&spec.lo_addrs).map_err(|(what, e)| (Step::Loopback, what, e))?;
    if let Some(link) = &spec.vpc {
        super::vpc::attach(link).map_err(|(what, e)| (Step::Loopback, what, e))?;
    }
    if userns.is_some() {
        // The network namespace stays the host's (the instance cannot reconfigure it), so its
        // root holds no CAP_NET_BIND_SERVICE/NET_RAW there: low ports and ping are opened to
        // every process of the instance, as Docker does.
        for (key, value) in [
            ("net/ipv4/ip_unprivileged_port_start", "0"),
            ("net/ipv4/ping_group_range", "0 2147483647"),
        ] {
            fs::write(format!("/proc/sys/{key}"), value).map_err(err(Step::Loopback, key))?;
        }
    }

    // P5: the OOM killer should pick the process that overran the limit, never init. Needs
    // CAP_SYS_RESOURCE; a host root without it (containers, this lab VM) just skips it.
    match fs::write("/proc/self/oom_score_adj", "-1000") {
        Err(e) if !matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            return Err((Step::OomScore, "-1000".into(), e));
        }
        _ => {}
    }
    let last_cap = caps::last_cap();

    // P6: switch root.
    mounts::pivot(&rootfs)?;

    // P7: /proc/1/cmdline shows init_argv rather than the launcher's argv.
    if input.builtin_init {
        set_cmdline(&spec.init_argv);
    }

    // P8: become root of the user namespace (capabilities from here on are the namespace's),
    // the seccomp filter (needs CAP_SYS_ADMIN without no_new_privs), then capabilities.
    if let Some(ns) = &userns {
        super::userns::join_as_root(ns.as_fd()).map_err(err(Step::UserNamespace, "join"))?;
    }
    drop(userns);
    // no_new_privs stays off so setuid programs (sudo) work.
    sys::umask(0o022);
    super::seccomp::install(&super::seccomp::Policy::instance())
        .map_err(err(Step::Seccomp, "instance policy"))?;
    set_fd_limit().map_err(err(Step::DropCaps, "RLIMIT_NOFILE"))?;
    caps::drop_to_instance_set(last_cap).map_err(err(Step::DropCaps, "bounding set"))?;
    // Not dumpable: root inside cannot ptrace init nor open its /proc/1/fd (the console log
    // and volume lock are host files). exec resets this for an exec'd init.
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).map_err(err(Step::DropCaps, "dumpable"))?;

    // P9: nothing from the host but stdio, the volume lock and the report pipe.
    sys::close_fds_except(&[lock.as_raw_fd(), report.as_raw_fd()])
        .map_err(err(Step::CloseFds, ">= 3"))?;
    Ok(())
}

/// Open files per instance process: systemd's default for services (1024 soft, 524288 hard)
/// would let one instance pin millions of host file structures; the hard limit here, times
/// `pids.max`, stays far below the host's `fs.file-max`, and every `struct file` is charged to
/// the instance's memory cgroup. Without CAP_SYS_RESOURCE the instance cannot raise it.
pub(crate) const NOFILE: (u64, u64) = (1024, 4096);

pub(crate) fn set_fd_limit() -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: NOFILE.0,
        rlim_max: NOFILE.1,
    };
    // SAFETY: setrlimit with a valid struct.
    sys::cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }).map(drop)
}

/// Rewrites our argv area in place so `/proc/1/cmdline` (and `ps`) show `init_argv`, not the
/// launcher's argv. `launch` passes `init_argv[1..]` as extra launcher arguments, so the area
/// is always large enough for the builtin case; the rest is padded with NULs. (PR_SET_MM would
/// need CAP_SYS_RESOURCE, which some hosts' roots — this lab VM's included — do not have.)
fn set_cmdline(argv: &[String]) {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return;
    };
    // rest starts at field 3; arg_start and arg_end are fields 48 and 49.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (Some(Ok(start)), Some(Ok(end))) = (
        f.get(45).map(|s| s.parse::<usize>()),
        f.get(46).map(|s| s.parse::<usize>()),
    ) else {
        return;
    };
    let mut new = Vec::new();
    for a in argv {
        new.extend_from_slice(a.as_bytes());
        new.push(0);
    }
    if start == 0 || end <= start || new.len() > end - start {
        return;
    }
    new.resize(end - start, 0);
    // SAFETY: [arg_start, arg_end) is this process's own argument block on its initial stack,
    // mapped read-write for its whole life. Nothing in this single-threaded process reads it
    // any more (the launcher parsed its arguments long ago; init gets `argv` as owned
    // Strings), and we write exactly its length.
    unsafe { std::ptr::copy_nonoverlapping(new.as_ptr(), start as *mut u8, new.len()) };
}

fn exec_init(argv: &[String]) -> io::Error {
    let cargs: Result<Vec<_>, _> = argv.iter().map(sys::cstring).collect();
    let env: Result<Vec<_>, _> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            sys::cstring(kv)
        })
        .collect();
    match (cargs, env) {
        (Ok(a), Ok(e)) => {
            sys::reset_signals();
            sys::execve(&a[0], &a, &e)
        }
        (Err(e), _) | (_, Err(e)) => e,
    }
}
