//! An instance's `/proc` as its type sees it: `free` and `/proc/meminfo` show its memory limit,
//! `/proc/cpuinfo` and `/proc/stat` its vCPUs, `uptime` and `/proc/uptime` the time since its
//! own boot. The view is LXCFS (Debian's `lxcfs`), the FUSE filesystem LXD and Incus use for
//! the same purpose: it answers each read by the reading process's cgroups (memory limit, CPU
//! quota with `--enable-cfs`) and its PID namespace's init (uptime).
//!
//! Order: at daemon start `start` ends whatever an earlier daemon's LXCFS left (its pid file,
//! then a lazy unmount of the mount point) and runs one `lxcfs -f` on `DIR/lxcfs`, from a
//! thread that lives as long as it does, with `PR_SET_PDEATHSIG`: a daemon killed with
//! SIGKILL takes its LXCFS (and so its mount) with it → each launch binds the files in
//! [`FILES`] that LXCFS serves over the instance's fresh `/proc` (`mounts`, before the masks;
//! the instance cannot unmount them: its mount namespace belongs to the host's user namespace)
//! → at daemon stop, after every instance, `stop` ends LXCFS and unmounts. Without `lxcfs`
//! installed the instances see the host's figures; the daemon says so once.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::sys;

/// The files of LXCFS's `proc/` bound over the instance's.
pub const FILES: &[&str] = &["cpuinfo", "meminfo", "stat", "uptime", "swaps", "diskstats"];

/// A running LXCFS on `mount_point`.
pub struct ProcView {
    mount_point: PathBuf,
    child: Arc<Mutex<Option<u32>>>,
}

impl ProcView {
    /// Starts LXCFS on `data_dir/lxcfs` after clearing an earlier one; `None` (said in the
    /// log) when `lxcfs` is not installed or does not come up.
    pub fn start(data_dir: &Path) -> Option<ProcView> {
        let mount_point = data_dir.join("lxcfs");
        let pid_file = data_dir.join("lxcfs.pid");
        clear_stale(&mount_point, &pid_file);
        let Some(bin) = find_lxcfs() else {
            tracing::warn!(
                "lxcfs is not installed: instances see the host's memory, CPUs and uptime in /proc (apt-get install lxcfs)"
            );
            return None;
        };
        if let Err(e) = fs::create_dir_all(&mount_point) {
            tracing::warn!(error = %e, "no /proc view for instances");
            return None;
        }
        let child = Arc::new(Mutex::new(None));
        let (tx, rx) = std::sync::mpsc::channel::<io::Result<u32>>();
        let (mp, pf, slot) = (mount_point.clone(), pid_file.clone(), child.clone());
        let daemon = std::process::id();
        // The thread that spawns LXCFS waits for it: PR_SET_PDEATHSIG fires when the *thread*
        // that made the child ends, so it must not be a pool thread.
        std::thread::spawn(move || {
            let mut cmd = Command::new(bin);
            cmd.arg("-f")
                .arg("--enable-cfs")
                .arg("-p")
                .arg(&pf)
                .arg(&mp)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: the closure only makes async-signal-safe system calls (setsid, prctl,
            // getppid, _exit).
            unsafe {
                cmd.pre_exec(move || {
                    libc::setsid();
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The daemon died before the death signal was armed: go at once.
                    if libc::getppid() as u32 != daemon {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
            match cmd.spawn() {
                Ok(mut c) => {
                    *slot.lock().unwrap() = Some(c.id());
                    let _ = tx.send(Ok(c.id()));
                    let _ = c.wait();
                    *slot.lock().unwrap() = None;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        match rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot run lxcfs: instances see the host's /proc figures");
                return None;
            }
            Err(_) => return None,
        }
        // Up when its files are there.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !mount_point.join("proc/meminfo").exists() {
            if Instant::now() > deadline || child.lock().unwrap().is_none() {
                tracing::warn!("lxcfs did not come up: instances see the host's /proc figures");
                let view = ProcView { mount_point, child };
                view.stop();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(ProcView { mount_point, child })
    }

    /// LXCFS's `proc/` directory, for `LaunchSpec::proc_view`.
    pub fn proc_dir(&self) -> PathBuf {
        self.mount_point.join("proc")
    }

    /// Ends LXCFS (it unmounts on SIGTERM) and makes sure the mount point is gone.
    pub fn stop(&self) {
        if let Some(pid) = *self.child.lock().unwrap() {
            // SAFETY: kill has no memory preconditions; the pid is our child's, still unreaped
            // while the slot holds it.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.lock().unwrap().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        unmount(&self.mount_point);
        let _ = fs::remove_dir(&self.mount_point);
    }
}

fn find_lxcfs() -> Option<PathBuf> {
    ["/usr/bin/lxcfs", "/usr/local/bin/lxcfs", "/bin/lxcfs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// What an earlier daemon's LXCFS left: its process (by pid file, only if it is an lxcfs on
/// this mount point) and its mount.
fn clear_stale(mount_point: &Path, pid_file: &Path) {
    if let Ok(pid) = fs::read_to_string(pid_file).map(|s| s.trim().parse::<i32>().unwrap_or(0))
        && pid > 0
        && fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                let c = String::from_utf8_lossy(&c).into_owned();
                c.contains("lxcfs") && c.contains(&*mount_point.to_string_lossy())
            })
            .unwrap_or(false)
    {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = fs::remove_file(pid_file);
    unmount(mount_point);
}

fn unmount(mount_point: &Path) {
    if let Ok(c) = sys::cpath(mount_point) {
        // SAFETY: umount2 reads a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}
