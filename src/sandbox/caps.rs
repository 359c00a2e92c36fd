//! The instance's capability set: what a normal root in a container keeps (Docker's default
//! list). Everything else — SYS_ADMIN, SYS_MODULE, SYS_PTRACE, SYS_TIME, SYS_BOOT, MAC_*,
//! NET_ADMIN, SYS_RAWIO, SYS_RESOURCE, DAC_READ_SEARCH, BPF, PERFMON, MKNOD (Docker keeps it;
//! an instance needs no new device nodes: /dev is made for it) … — leaves the bounding
//! set, so neither root in the instance nor a setuid program there can regain it.
//!
//! `no_new_privs` is deliberately NOT set: `sudo` and other setuid programs must work inside.
//! Applied in this order (SETPCAP is still effective while dropping): bounding set, ambient
//! set cleared, then effective = permitted = the kept set, inheritable = empty.

use std::io;

use super::sys;

/// Capabilities an instance keeps (numbers from linux/capability.h).
pub const KEEP: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// The kept set as a bit mask (bit n = capability n).
pub fn keep_mask() -> u64 {
    KEEP.iter().fold(0, |m, (c, _)| m | (1u64 << c))
}

/// Highest capability number this kernel knows. Read it before `pivot_root` (needs /proc).
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Reduces the calling process to the instance's capability set.
pub(crate) fn drop_to_instance_set(last_cap: u32) -> io::Result<()> {
    let keep = keep_mask();
    for cap in 0..=last_cap.min(63) {
        if keep & (1 << cap) != 0 {
            continue;
        }
        match sys::prctl(libc::PR_CAPBSET_DROP, cap.into(), 0) {
            Ok(_) => {}
            // A number this kernel does not know.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )?;
    sys::capset(keep, keep, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_has_exactly_the_kept_caps() {
        let m = keep_mask();
        assert_eq!(m.count_ones() as usize, KEEP.len());
        for forbidden in [2, 12, 16, 17, 19, 21, 22, 24, 25, 27, 32, 33, 38, 39] {
            // DAC_READ_SEARCH, NET_ADMIN, SYS_MODULE, SYS_RAWIO, SYS_PTRACE, SYS_ADMIN,
            // SYS_BOOT, SYS_RESOURCE, SYS_TIME, MKNOD, MAC_OVERRIDE, MAC_ADMIN, PERFMON, BPF
            assert_eq!(m & (1 << forbidden), 0, "cap {forbidden} must be dropped");
        }
        assert_eq!(m, 0xa00425fb);
    }
}
