//! The package tools of step 8 (`mounts`): `yum`, `dnf`, `amazon-linux-extras` where the image
//! has none, for the two cases `mounts`' plain link cannot serve. Run by PID 1 before
//! `pivot_root`, every path resolved in the new root (`RESOLVE_IN_ROOT`).
//!
//! 1. [`link_target`]: what the links point to: the tools' binary, or, in an image that cannot
//!    run it (no glibc: the busybox AMI) but has a `/bin/sh`, a two-line script written into the
//!    fresh `/run/ec2lab` that says "this image has no package manager" and exits 1;
//! 2. [`link_in_fallback`]: when `usr/bin` is read-only (`lab-linux`: the host's `/usr`), a
//!    small tmpfs over `usr/local/sbin` (on root's and sudo's `PATH`) holding the links, made
//!    read-only — only if that directory is empty, so nothing of the image is hidden.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::mounts::{Create, mount_at, resolve, resolve_existing};
use super::sys;

/// The script for images without glibc.
const NO_PACKAGE_MANAGER: &str = "run/ec2lab/no-package-manager";
/// Where the links go when `usr/bin` is read-only.
const FALLBACK_DIR: &str = "usr/local/sbin";

/// What the package tools' links point to (step 1); `None`: leave them out.
pub(super) fn link_target(root: BorrowedFd<'_>, glibc: bool) -> Option<CString> {
    if glibc {
        return Some(c"/run/ec2lab/ctl".into());
    }
    resolve_existing(root, "bin/sh").ok()??;
    let (dir, name) = NO_PACKAGE_MANAGER.rsplit_once('/')?;
    let dfd = sys::openat2(
        root,
        &sys::cstring(dir).ok()?,
        libc::O_DIRECTORY | libc::O_RDONLY,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_SYMLINKS,
    )
    .ok()?;
    let name_c = sys::cstring(name).ok()?;
    // SAFETY: openat with a valid dir fd and name; the descriptor is closed below.
    let fd = unsafe {
        libc::openat(
            dfd.as_raw_fd(),
            name_c.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o755,
        )
    };
    if fd < 0 {
        return None;
    }
    let script = "#!/bin/sh\necho \"${0##*/}: this image has no package manager (no dpkg, no \
                  rpm): its programs are all it has\" >&2\nexit 1\n";
    let written = sys::write_all_fd(fd, script.as_bytes());
    // SAFETY: fd is the descriptor opened above, owned here.
    unsafe { libc::close(fd) };
    written.ok()?;
    CString::new(format!("/{NO_PACKAGE_MANAGER}")).ok()
}

/// Step 2: the links `names` → `link` in a read-only tmpfs over an empty `usr/local/sbin`.
pub(super) fn link_in_fallback(
    root: BorrowedFd<'_>,
    link: &CString,
    names: &[&str],
    owner: Option<u32>,
) {
    let Ok(Some(dir)) = resolve_existing(root, FALLBACK_DIR) else {
        return;
    };
    let empty = std::fs::read_dir(sys::fd_path(dir.as_fd()).to_string_lossy().as_ref())
        .is_ok_and(|mut rd| rd.next().is_none());
    if !empty {
        return;
    }
    let data = match owner {
        Some(b) => format!("mode=755,size=16k,uid={b},gid={b}"),
        None => "mode=755,size=16k".to_string(),
    };
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if mount_at(Some(c"tmpfs"), dir.as_fd(), Some(c"tmpfs"), flags, &data).is_err() {
        return;
    }
    let Ok(top) = resolve(root, FALLBACK_DIR, None::<Create>) else {
        return;
    };
    if let Ok(dfd) = sys::openat2(
        root,
        &sys::cstring(FALLBACK_DIR).expect("no nul"),
        libc::O_DIRECTORY | libc::O_RDONLY,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
    ) {
        for n in names {
            let _ = sys::cstring(n).and_then(|n| sys::symlinkat(link, dfd.as_fd(), &n));
        }
    }
    let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags;
    let _ = mount_at(None, top.as_fd(), None, ro, "");
}
