//! Launchers made ahead, on cgroup v1 hosts. Moving a process into a v1 cgroup waits for an
//! RCU grace period (10–20 ms on this host, the largest single cost of a launch). A spare
//! launcher pays it before anyone waits: `exe __launch --spare NAME PAD` makes `ec2lab/NAME`
//! (no limits yet, the device allow-list already), joins it, says `spare_ready` on stdout and
//! blocks on stdin. A launch hands it the `LauncherInput`; it renames its cgroup to the
//! instance's id (`cgroup::adopt`, no migration) and goes on as a fresh launcher would.
//!
//! Order of steps: `Spares::clean_stale` (daemon start) → `Spares::refill` (a background
//! thread, one spare at a time, up to `serve --spare-launchers`, default [`SPARES`]) → `Spares::take` (a launch) →
//! `launch::launch_with` → `refill` again (not while the daemon is short of descriptors:
//! `ratelimit::reserve::descriptors_scarce`). A spare whose stdin closes with no input — its
//! daemon dropped it, stopped or was killed — leaves its cgroup, removes it and exits; what a
//! killed spare could not remove, `clean_stale` removes at the next start. Spare names carry a
//! tag of the data dir, so no other lab's spares are ever touched. cgroup2 refuses renames:
//! there are no spares and every launch joins (where `CLONE_INTO_CGROUP` would be the fix).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::launch::{self, LAUNCH_ARG, Report};
use super::spec::Limits;
use super::{SandboxError, cgroup, sys};

/// Spare launchers kept ready per daemon, by default (`serve --spare-launchers`).
pub const SPARES: u8 = 2;
/// `argv[2]` of a spare launcher.
pub(crate) const SPARE_ARG: &str = "--spare";
/// Bytes of argv a spare reserves for PID 1's `/proc/1/cmdline` (see `launch::set_cmdline`).
pub(crate) const ARGV_ROOM: usize = 200;

/// One spare launcher, waiting in its cgroup. Dropping it closes its stdin: it cleans up and
/// exits, and the drop waits for that.
pub struct Spare {
    pub(crate) name: String,
    child: Option<Child>,
    out: Option<BufReader<ChildStdout>>,
}

impl Spare {
    /// The process and its stdout (the `spare_ready` line already read), for `launch_with`.
    pub(crate) fn into_parts(mut self) -> (String, Child, BufReader<ChildStdout>) {
        let child = self.child.take().expect("a spare has its process");
        let out = self.out.take().expect("a spare has its stdout");
        (std::mem::take(&mut self.name), child, out)
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}

/// Starts one spare launcher and waits until it sits in its cgroup.
fn make(exe: &Path, name: &str) -> Result<Spare, SandboxError> {
    let lerr = |what| move |source| SandboxError::Launcher { what, source };
    let mut child = Command::new(exe)
        .args([LAUNCH_ARG, SPARE_ARG, name])
        .arg(format!("{:<ARGV_ROOM$}", "(room for init's argv)"))
        .env_clear()
        .env("PATH", launch::DEFAULT_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(lerr("spawn"))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    if matches!(serde_json::from_str(&line), Ok(Report::SpareReady)) {
        return Ok(Spare {
            name: name.to_string(),
            child: Some(child),
            out: Some(out),
        });
    }
    let _ = child.kill();
    let status = child.wait().map_err(lerr("wait for"))?;
    let _ = destroy(name);
    Err(SandboxError::LauncherDied {
        status: status.to_string(),
        stderr: format!(": as a spare: {}", line.trim()),
    })
}

/// Kills and removes a spare's cgroup (a launch that failed before or after adopting it).
pub(crate) fn destroy(name: &str) -> Result<(), SandboxError> {
    cgroup::destroy(&cgroup::layout()?.paths(name), Duration::from_secs(5))
}

/// What a spare's cgroup allows beyond the instance's devices until its launch has attached
/// the root volume (`/dev/loop-control` and every loop device): the launcher attaches it from
/// inside; `launch` removes both rules before PID 1 exists.
pub(crate) const LOOP_RULES: [&str; 2] = ["c 10:237 rwm", "b 7:* rwm"];

/// The launcher side: make the cgroup, join it, say so. Then `launcher_main` reads stdin.
pub(crate) fn wait_in_cgroup(name: &str) -> Result<(), SandboxError> {
    let paths = cgroup::create(name, &Limits::default())?;
    for rule in LOOP_RULES {
        cgroup::allow_device(&paths, rule)?;
    }
    cgroup::join(&paths, sys::getpid())?;
    launch::emit(&Report::SpareReady);
    Ok(())
}

/// The launcher side, when stdin closed with no input: nothing of the spare may stay.
pub(crate) fn give_up(name: &str) -> ! {
    let code = match cgroup::leave_and_remove(name) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    std::process::exit(code)
}

/// A daemon's pool of spare launchers.
pub struct Spares {
    exe: PathBuf,
    /// `spare-<tag of the data dir>-`: every spare of this daemon's cgroups starts with it.
    prefix: String,
    /// How many to keep ready (0: none, every launch joins its cgroup).
    keep: usize,
    ready: Mutex<Vec<Spare>>,
    filling: AtomicBool,
    stopped: AtomicBool,
}

impl Spares {
    pub fn new(exe: &Path, data_dir: &Path, keep: usize) -> Arc<Spares> {
        let dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let tag = hex::encode(&Sha256::digest(dir.as_os_str().as_encoded_bytes())[..4]);
        Arc::new(Spares {
            exe: exe.to_path_buf(),
            prefix: format!("spare-{tag}-"),
            keep,
            ready: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, Vec<Spare>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At daemon start: removes the cgroups (and any process) a killed daemon's spares left.
    pub fn clean_stale(&self) {
        if !cgroup::can_adopt() {
            return;
        }
        for name in cgroup::list_prefixed(&self.prefix).unwrap_or_default() {
            if let Err(e) = destroy(&name) {
                tracing::warn!(spare = %name, error = %e, "cannot remove a stale spare launcher");
            }
        }
    }

    /// A spare for the next launch, if one is ready.
    pub fn take(&self) -> Option<Spare> {
        self.ready().pop()
    }

    /// Keeps `keep` spares ready, on a background thread (one at a time).
    pub fn refill(self: &Arc<Self>) {
        if self.keep == 0
            || !cgroup::can_adopt()
            || self.stopped.load(Ordering::SeqCst)
            || crate::ratelimit::reserve::descriptors_scarce()
            || self.filling.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let me = self.clone();
        std::thread::spawn(move || {
            while me.ready().len() < me.keep
                && !me.stopped.load(Ordering::SeqCst)
                && !crate::ratelimit::reserve::descriptors_scarce()
            {
                let name = format!("{}{:08x}", me.prefix, rand::random::<u32>());
                match make(&me.exe, &name) {
                    Ok(s) if !me.stopped.load(Ordering::SeqCst) => me.ready().push(s),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot make a spare launcher");
                        break;
                    }
                }
            }
            me.filling.store(false, Ordering::SeqCst);
        });
    }

    /// Daemon shutdown: no new spares; the ready ones clean up and exit.
    pub fn drain(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let spares = std::mem::take(&mut *self.ready());
        drop(spares);
        // A spare being made right now is dropped by its filler once made.
        while self.filling.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The prefix of this daemon's spare cgroups (tests and `ec2lab why`-style diagnostics).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}
