//! What a crashed daemon's helpers leave outside any cgroup: `__launch` processes (and the PID 1
//! they are cloning) that were still building an instance when the daemon died. A launcher joins
//! the instance's cgroup only at L4, so killing the cgroup at start-up can miss one that is
//! about to create it, and that instance would then run without a record of its boot.
//!
//! Order: list `/proc`, open a pidfd for each candidate, read its cmdline through that pid (a
//! pid recycled in between fails the check on the re-read), SIGKILL through the pidfd, wait
//! briefly for it to go.

use std::fs;
use std::os::fd::AsFd;
use std::time::Duration;

use super::launch::LAUNCH_ARG;
use super::sys;

/// argv of a launcher: `exe __launch <init_argv[1..]>` (init_argv = exe, `__init`, id, ...).
fn is_launcher_of(cmdline: &[u8], instance_id: &str) -> bool {
    let mut args = cmdline.split(|b| *b == 0);
    args.nth(1) == Some(LAUNCH_ARG.as_bytes()) && args.any(|a| a == instance_id.as_bytes())
}

fn cmdline(pid: i32) -> Vec<u8> {
    fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

/// SIGKILLs every `__launch` helper (and not-yet-init PID 1) building `instance_id`; returns how
/// many there were.
pub(crate) fn kill_orphan_launchers(instance_id: &str) -> usize {
    let Ok(rd) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for pid in rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if !is_launcher_of(&cmdline(pid), instance_id) {
            continue;
        }
        let Ok(fd) = sys::pidfd_open(pid) else {
            continue;
        };
        // Checked again through the open pidfd: the pid cannot be recycled while it is open.
        if !is_launcher_of(&cmdline(pid), instance_id) {
            continue;
        }
        if sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL).is_ok() {
            tracing::warn!(instance = %instance_id, pid, "killed a launcher left by a previous daemon");
            let _ = sys::poll_readable(fd.as_fd(), Some(Duration::from_secs(2)));
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::is_launcher_of;

    #[test]
    fn recognises_only_the_instances_own_launcher() {
        let l =
            b"/proc/self/exe\0__launch\0__init\0i-0123456789abcdef0\0/var/lib/ec2lab/boot.json\0";
        assert!(is_launcher_of(l, "i-0123456789abcdef0"));
        assert!(!is_launcher_of(l, "i-0123456789abcdef1"));
        let init = b"/proc/self/exe\0__init\0i-0123456789abcdef0\0/var/lib/ec2lab/boot.json\0";
        assert!(!is_launcher_of(init, "i-0123456789abcdef0"));
        assert!(!is_launcher_of(b"", "i-0123456789abcdef0"));
    }
}
