//! User namespaces: an instance's root is an unprivileged range of host uids.
//!
//! Every instance gets [`RANGE`] host uids and gids starting at its [`base`] (above 2^20, far
//! from real users): uid 0 inside is `base` on the host, `ec2-user` (1000) is `base + 1000`.
//! So the instance's root shares nothing that the kernel keys by uid with the host's root or
//! users — keyrings, inotify and other per-user limits, `RLIMIT_NPROC`, signals.
//!
//! The AMI layers and the read-only host binds keep their ordinary owners (0, 1000…): they are
//! *idmapped mounts* (`mount_setattr(MOUNT_ATTR_IDMAP)` with the instance's user namespace), so
//! root-owned files appear root-owned inside without being chowned. The root volume's upper
//! layer cannot be idmapped (overlayfs writes to it with the mounter's — host root's —
//! credentials), so it stores host ids: `guestfs::GuestDir::shift_ids` shifts a fresh or older
//! volume once.
//!
//! Order (PID 1, as host root, before its mounts): [`create`] forks a child into a new user
//! namespace, writes its `uid_map`/`gid_map` from outside, keeps a descriptor of the namespace
//! and lets the child exit → the mounts use that descriptor for their idmaps → after
//! `pivot_root` and everything else that needs the host's privileges, PID 1 joins the namespace
//! ([`join_as_root`]) and becomes its root; `__enter` joins it the same way. The instance's
//! other namespaces stay owned by the host's user namespace, so inside it cannot mount, change
//! its network or hostname, whatever capabilities it holds in its own user namespace.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::sys::{self, Fork};

/// uids (and gids) per instance.
pub const RANGE: u32 = 65536;
/// First host uid used for instances.
const FIRST: u32 = 1 << 20;
/// How many ranges fit below 2^31 (some programs treat uids past that as negative).
const SLOTS: u32 = ((1u32 << 31) - FIRST) / RANGE;

/// The host uid that is root inside instance `id` (stable per id, so `ps` on the host shows
/// the same owner for an instance across reboots).
pub fn base(id: &str) -> u32 {
    // FNV-1a: stable across builds and runs.
    let h = id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    FIRST + (h % SLOTS) * RANGE
}

/// Makes a user namespace mapping `0..RANGE` inside to `base..base+RANGE` on the host, for
/// uids and gids, and returns a descriptor of it. Needs host root (CAP_SETUID/CAP_SETGID);
/// call from a single-threaded process. The namespace lives as long as the descriptor (or a
/// process or mount that uses it).
pub(crate) fn create(base: u32) -> io::Result<OwnedFd> {
    let (rd, wr) = sys::pipe_cloexec()?;
    let pid = match sys::clone3(libc::CLONE_NEWUSER as u64, libc::SIGCHLD as u64)? {
        Fork::Child => {
            // Wait until the parent has read our namespace, then leave.
            drop(wr);
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into our own buffer.
            let _ = unsafe { libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            sys::exit_now(0)
        }
        Fork::Parent { pid, .. } => pid,
    };
    drop(rd);
    let map = format!("0 {base} {RANGE}\n");
    let made = std::fs::write(format!("/proc/{pid}/uid_map"), &map)
        .and_then(|()| std::fs::write(format!("/proc/{pid}/gid_map"), &map))
        .and_then(|()| {
            sys::open(
                &sys::cstring(format!("/proc/{pid}/ns/user"))?,
                libc::O_RDONLY,
                0,
            )
        });
    drop(wr);
    let _ = sys::wait_pid(pid, true);
    made
}

/// Joins the user namespace `ns` (a namespace descriptor, or a pidfd of a process in it) and
/// becomes its root (uid, gid 0, no supplementary groups), keeping every capability *within*
/// it. Call after the work that needs host privileges.
pub(crate) fn join_as_root(ns: BorrowedFd<'_>) -> io::Result<()> {
    sys::setns(ns, libc::CLONE_NEWUSER)?;
    sys::setgroups(&[])?;
    sys::setresgid(0)?;
    sys::setresuid(0)
}

/// The host id that `id` inside maps to, from a `uid_map`/`gid_map` text ("inside host count"
/// lines); `None` when it is not mapped.
pub(crate) fn to_host(map: &str, id: u32) -> Option<u32> {
    map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [inside, host, count] = f[..] else {
            return None;
        };
        let id = u64::from(id);
        (id >= inside && id < inside + count).then(|| (host + id - inside) as u32)
    })
}

/// Whether a `uid_map` text maps everything to itself (the host's own user namespace).
pub(crate) fn is_identity(map: &str) -> bool {
    map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_aligned_disjoint_ranges_above_real_users() {
        for id in ["i-0123456789abcdef0", "i-1", "i-ffffffffffffffff"] {
            let b = base(id);
            assert!(b >= FIRST && (b - FIRST).is_multiple_of(RANGE), "{id}: {b}");
            assert!(u64::from(b) + u64::from(RANGE) <= 1 << 31);
            assert_eq!(base(id), b, "stable");
        }
        assert_ne!(base("i-1"), base("i-2"));
    }

    #[test]
    fn maps_translate_ids() {
        let m = "         0    1048576      65536\n";
        assert_eq!(to_host(m, 0), Some(1_048_576));
        assert_eq!(to_host(m, 1000), Some(1_049_576));
        assert_eq!(to_host(m, 65536), None);
        assert_eq!(to_host("0 0 4294967295\n", 5), Some(5));
        assert!(is_identity("         0          0 4294967295\n"));
        assert!(!is_identity(m));
    }
}
