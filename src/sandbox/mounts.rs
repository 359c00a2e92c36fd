//! The instance's filesystem, built by PID 1 in its fresh mount namespace before `pivot_root`.
//!
//! `plan` turns a spec into an ordered list of operations (pure, unit-tested); `apply` performs
//! them. Order:
//! 1. make every mount private (nothing propagates back to the host)
//! 2. overlay root at `run_dir/rootfs`, nodev (lowers = AMI layers, upper/work in the root volume)
//! 3. read-only (nodev) binds from the host (`/usr`, …); a host symlink (`/bin -> usr/bin`)
//!    becomes the same symlink inside when the instance has nothing there
//! 4. fresh `/proc` with Docker's masked and read-only paths (kcore, sysrq-trigger, /proc/sys…)
//! 5. read-only `/sys` (with `/sys/firmware` masked)
//! 6. `/dev`: tmpfs with null zero full random urandom tty, `ptmx -> pts/ptmx`, fd links,
//!    devpts (newinstance, ptmxmode=0666), shm tmpfs; then `/dev` itself is made read-only
//! 7. `/run`: a fresh tmpfs (with `lock/` and `ec2lab/`), as after a reboot
//! 8. the instance's tools (`tools_exe`, the daemon's binary): bound read-only at
//!    `/run/ec2lab/ctl`, and over `systemctl`, `journalctl`, `service`, `poweroff`… where the
//!    image has them as regular files; where it has nothing there and can run a glibc binary,
//!    a symlink to `/run/ec2lab/ctl`; a symlink of the image (busybox applets) is left alone.
//!    The package tools (`yum`, `dnf`, `amazon-linux-extras`) are linked only where the image
//!    has nothing (`pkgtools`: a read-only `/usr`, an image without glibc).
//!    Best effort: a failure here leaves the tools out, never fails the launch.
//!
//! Every target inside the root is resolved with `openat2(RESOLVE_IN_ROOT)` and mounted through
//! `/proc/self/fd/N`, so a symlink planted in the image or in the persistent upper layer (e.g.
//! `/proc -> /`) can never redirect a mount to the host. Writable instance mounts are `nodev`
//! (except `/dev`, which is read-only), so a device node made with CAP_MKNOD cannot be opened.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Step;
use super::spec::{LaunchSpec, overlay_data};
use super::sys;

/// Files in /proc hidden behind /dev/null.
const PROC_MASKED_FILES: &[&str] = &[
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/sysrq-trigger",
];
/// Directories hidden behind an empty read-only tmpfs.
const MASKED_DIRS: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];
/// /proc subtrees made read-only.
const PROC_READ_ONLY: &[&str] = &["proc/bus", "proc/fs", "proc/irq", "proc/sys"];

/// Character devices in /dev: (name, major, minor).
pub(crate) const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
const DEV_LINKS: &[(&str, &str)] = &[
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

/// One operation; `target`s are relative to the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// `mount --make-rprivate /`
    MakePrivate,
    Overlay {
        data: String,
    },
    /// Read-only, nodev bind of a host path (or symlink replica, see module docs).
    BindReadOnly {
        src: PathBuf,
        target: String,
    },
    /// A fresh filesystem; the target directory is created if missing.
    Fs {
        fstype: &'static str,
        target: String,
        flags: libc::c_ulong,
        data: String,
        step: Step,
    },
    /// Bind /dev/null over a file, if it exists.
    MaskFile {
        target: String,
    },
    /// Bind a host file (LXCFS's) over a file of the instance's /proc, if both exist.
    ProcView {
        src: PathBuf,
        target: String,
    },
    /// Empty read-only tmpfs over a directory, if it exists.
    MaskDir {
        target: String,
    },
    /// Bind a subtree onto itself and make it read-only, if it exists.
    ReadOnly {
        target: String,
    },
    Mkdir {
        target: String,
        mode: libc::mode_t,
        /// Host uid (and gid) to own it: the instance's root when it has a user namespace.
        owner: Option<u32>,
    },
    CharDev {
        target: String,
        major: u32,
        minor: u32,
    },
    Symlink {
        target: String,
        link: &'static str,
    },
    /// The instance's tools (step 8).
    Tools {
        exe: PathBuf,
        /// Host uid (and gid) of the instance's root, as for `Mkdir`.
        owner: Option<u32>,
    },
    /// Make an existing mount read-only (bind remount), keeping `flags`.
    RemountReadOnly {
        target: String,
        flags: libc::c_ulong,
        step: Step,
    },
}

/// The mount sequence for `spec`, in order.
pub(crate) fn plan(spec: &LaunchSpec) -> Vec<Op> {
    let s = |x: &str| x.to_string();
    // With a user namespace, what PID 1 makes as host root must belong to the instance's root.
    let root = spec
        .user_namespace
        .then(|| super::userns::base(&spec.instance_id));
    let owned = |data: &str| match root {
        Some(b) => format!("{data},uid={b},gid={b}"),
        None => data.to_string(),
    };
    let mut ops = vec![
        Op::MakePrivate,
        Op::Overlay {
            data: overlay_data(spec),
        },
    ];
    for (src, inside) in &spec.ro_binds {
        let target = inside.to_string_lossy().trim_start_matches('/').to_string();
        ops.push(Op::BindReadOnly {
            src: src.clone(),
            target,
        });
    }
    // /proc
    ops.push(Op::Fs {
        fstype: "proc",
        target: s("proc"),
        flags: NOSUID | NODEV | NOEXEC,
        data: String::new(),
        step: Step::MountProc,
    });
    if let Some(dir) = &spec.proc_view {
        ops.extend(super::procview::FILES.iter().map(|f| Op::ProcView {
            src: dir.join(f),
            target: format!("proc/{f}"),
        }));
    }
    ops.extend(
        PROC_MASKED_FILES
            .iter()
            .map(|t| Op::MaskFile { target: s(t) }),
    );
    ops.extend(
        MASKED_DIRS
            .iter()
            .filter(|t| t.starts_with("proc/"))
            .map(|t| Op::MaskDir { target: s(t) }),
    );
    ops.extend(PROC_READ_ONLY.iter().map(|t| Op::ReadOnly { target: s(t) }));
    // /sys
    ops.push(Op::Fs {
        fstype: "sysfs",
        target: s("sys"),
        flags: libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
        data: String::new(),
        step: Step::MountSys,
    });
    ops.extend(
        MASKED_DIRS
            .iter()
            .filter(|t| t.starts_with("sys/"))
            .map(|t| Op::MaskDir { target: s(t) }),
    );
    // /dev
    ops.push(Op::Fs {
        fstype: "tmpfs",
        target: s("dev"),
        flags: NOSUID | NOEXEC,
        data: s("mode=755,size=64k"),
        step: Step::MountDev,
    });
    for (name, major, minor) in DEVICES {
        ops.push(Op::CharDev {
            target: format!("dev/{name}"),
            major: *major,
            minor: *minor,
        });
    }
    for (name, link) in DEV_LINKS {
        ops.push(Op::Symlink {
            target: format!("dev/{name}"),
            link,
        });
    }
    ops.push(Op::Fs {
        fstype: "devpts",
        target: s("dev/pts"),
        flags: NOSUID | NOEXEC,
        data: format!(
            "newinstance,ptmxmode=0666,mode=0620,gid={}",
            root.unwrap_or(0) + 5
        ),
        step: Step::MountDev,
    });
    ops.push(Op::Fs {
        fstype: "tmpfs",
        target: s("dev/shm"),
        flags: NOSUID | NODEV | NOEXEC,
        data: owned("mode=1777,size=65536k"),
        step: Step::MountDev,
    });
    ops.push(Op::RemountReadOnly {
        target: s("dev"),
        flags: NOSUID | NOEXEC,
        step: Step::MountDev,
    });
    // /run
    ops.push(Op::Fs {
        fstype: "tmpfs",
        target: s("run"),
        flags: NOSUID | NODEV,
        data: owned("mode=755,size=65536k"),
        step: Step::MountRun,
    });
    ops.push(Op::Mkdir {
        target: s("run/lock"),
        mode: 0o1777,
        owner: root,
    });
    ops.push(Op::Mkdir {
        target: s("run/ec2lab"),
        mode: 0o755,
        owner: root,
    });
    if let Some(exe) = &spec.tools_exe {
        ops.push(Op::Tools {
            exe: exe.clone(),
            owner: root,
        });
    }
    ops
}

/// Where the tools' binary is bound inside the instance.
const TOOLS_COPY: &str = "run/ec2lab/ctl";
/// The tool paths (directory, name) bound or linked to it.
const TOOL_PATHS: &[(&str, &str)] = &[
    ("usr/bin", "systemctl"),
    ("usr/bin", "journalctl"),
    ("usr/bin", "systemd-notify"),
    ("usr/sbin", "service"),
    ("usr/sbin", "poweroff"),
    ("usr/sbin", "reboot"),
    ("usr/sbin", "halt"),
    ("usr/sbin", "shutdown"),
];
/// Package tools: linked only where the image has nothing at that path and no `rpm` (never
/// over or beside a real `yum`); see `pkgtools` for a read-only `/usr` and images that cannot
/// run the binary.
const PACKAGE_TOOL_PATHS: &[(&str, &str)] = &[
    ("usr/bin", "yum"),
    ("usr/bin", "dnf"),
    ("usr/bin", "amazon-linux-extras"),
];

/// Step 8 (best effort, see the module docs).
fn bind_tools(
    root: BorrowedFd<'_>,
    exe: &Path,
    userns: Option<BorrowedFd<'_>>,
    owner: Option<u32>,
) {
    // The file itself: `bind_read_only` would copy a symlink (`/proc/self/exe` -> a host path
    // that does not exist inside) as a symlink, and every link to `TOOLS_COPY` would dangle.
    let exe = &fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    if bind_read_only(root, exe, TOOLS_COPY, userns).is_err() {
        return;
    }
    let glibc = matches!(
        resolve_existing(root, "lib64/ld-linux-x86-64.so.2"),
        Ok(Some(_))
    );
    for (dir, name) in TOOL_PATHS {
        match tool_path(root, dir, name) {
            Some((_, Some(libc::S_IFREG))) => {
                let _ = bind_read_only(root, exe, &format!("{dir}/{name}"), userns);
            }
            Some((dfd, None)) if glibc => {
                let _ = sys::cstring(name)
                    .and_then(|n| sys::symlinkat(c"/run/ec2lab/ctl", dfd.as_fd(), &n));
            }
            _ => {}
        }
    }
    // An RPM image has its own yum or dnf, even where one of the names is missing.
    if matches!(tool_path(root, "usr/bin", "rpm"), Some((_, Some(_)))) {
        return;
    }
    let Some(link) = super::pkgtools::link_target(root, glibc) else {
        return;
    };
    let mut read_only = Vec::new();
    for (dir, name) in PACKAGE_TOOL_PATHS {
        if let Some((dfd, None)) = tool_path(root, dir, name) {
            let r = sys::cstring(name).and_then(|n| sys::symlinkat(&link, dfd.as_fd(), &n));
            if r.is_err_and(|e| e.raw_os_error() == Some(libc::EROFS)) {
                read_only.push(*name);
            }
        }
    }
    if !read_only.is_empty() {
        super::pkgtools::link_in_fallback(root, &link, &read_only, owner);
    }
}

/// The directory of a tool path (resolved in root) and the file type at the name, if any.
fn tool_path(
    root: BorrowedFd<'_>,
    dir: &str,
    name: &str,
) -> Option<(OwnedFd, Option<libc::mode_t>)> {
    let dfd = sys::openat2(
        root,
        &sys::cstring(dir).ok()?,
        libc::O_DIRECTORY | libc::O_RDONLY,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    let name_c = sys::cstring(name).ok()?;
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dir fd, name and out-parameter.
    let r = unsafe {
        libc::fstatat(
            std::os::fd::AsRawFd::as_raw_fd(&dfd),
            name_c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    Some((dfd, (r == 0).then_some(st.st_mode & libc::S_IFMT)))
}

/// A failed operation: the step and the path or value it failed on.
pub(crate) type OpError = (Step, String, io::Error);

fn op_err(step: Step, what: impl Into<String>) -> impl FnOnce(io::Error) -> OpError {
    let what = what.into();
    move |e| (step, what, e)
}

/// What to create when a target is missing.
#[derive(Clone, Copy)]
pub(super) enum Create {
    Dir,
    File,
}

/// Opens `rel` (O_PATH) with `root` as "/", creating it (and missing parents) if asked.
pub(super) fn resolve(
    root: BorrowedFd<'_>,
    rel: &str,
    create: Option<Create>,
) -> io::Result<OwnedFd> {
    let rel_c = sys::cstring(if rel.is_empty() { "." } else { rel })?;
    let flags = libc::O_PATH;
    let res = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;
    match sys::openat2(root, &rel_c, flags, res) {
        Err(e) if e.kind() == ErrorKind::NotFound && create.is_some() => {}
        other => return other,
    }
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    let parent_fd = resolve(root, parent, Some(Create::Dir))?;
    // Re-open the parent as a real directory descriptor for the *at calls.
    let parent_dir = sys::openat2(
        root,
        &sys::cstring(if parent.is_empty() { "." } else { parent })?,
        libc::O_DIRECTORY | libc::O_RDONLY,
        res,
    )?;
    drop(parent_fd);
    let name_c = sys::cstring(name)?;
    match create {
        Some(Create::Dir) => match sys::mkdirat(parent_dir.as_fd(), &name_c, 0o755) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        },
        Some(Create::File) => {
            // SAFETY: openat with a valid dir fd and name; the result is closed right away.
            let fd = unsafe {
                libc::openat(
                    std::os::fd::AsRawFd::as_raw_fd(&parent_dir),
                    name_c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != ErrorKind::AlreadyExists {
                    return Err(e);
                }
            } else {
                // SAFETY: fd is a fresh descriptor we own.
                unsafe { libc::close(fd) };
            }
        }
        None => unreachable!(),
    }
    sys::openat2(root, &rel_c, flags, res)
}

/// Like `resolve` without creating; `None` when the target does not exist.
pub(super) fn resolve_existing(root: BorrowedFd<'_>, rel: &str) -> io::Result<Option<OwnedFd>> {
    match resolve(root, rel, None) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the parent of `rel` as a directory (resolved in root) plus the last component.
fn parent_of(root: BorrowedFd<'_>, rel: &str) -> io::Result<(OwnedFd, CString)> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let _ = resolve(root, parent, Some(Create::Dir))?;
    let dir = sys::openat2(
        root,
        &sys::cstring(if parent.is_empty() { "." } else { parent })?,
        libc::O_DIRECTORY | libc::O_RDONLY,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
    )?;
    Ok((dir, sys::cstring(name)?))
}

pub(super) fn mount_at(
    src: Option<&std::ffi::CStr>,
    target: BorrowedFd<'_>,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let data_c = if data.is_empty() {
        None
    } else {
        Some(sys::cstring(data)?)
    };
    sys::mount(src, &sys::fd_path(target), fstype, flags, data_c.as_deref())
}

/// Per-mount flags of the mount holding `path` that a bind remount must keep.
fn inherited_flags(path: &std::ffi::CStr) -> io::Result<libc::c_ulong> {
    let f = sys::statvfs_flags(path)?;
    let mut m = 0;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f & st != 0 {
            m |= ms;
        }
    }
    Ok(m)
}

/// Bind `src` (host path) read-only onto `rel` inside the root (idmapped for `userns`).
fn bind_read_only(
    root: BorrowedFd<'_>,
    src: &Path,
    rel: &str,
    userns: Option<BorrowedFd<'_>>,
) -> Result<(), OpError> {
    let what = format!("{} at /{rel}", src.display());
    let err = |e| (Step::BindReadOnly, what.clone(), e);
    let meta = fs::symlink_metadata(src).map_err(err)?;
    let src_real = if meta.file_type().is_symlink() {
        // Merged-usr hosts: /bin -> usr/bin. Reproduce the link unless the image has its own.
        let link = fs::read_link(src).map_err(err)?;
        let (dir, name) = parent_of(root, rel).map_err(err)?;
        // SAFETY: zeroed stat is a valid out-parameter; fstatat with a valid dir fd and name.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let r = unsafe {
            libc::fstatat(
                std::os::fd::AsRawFd::as_raw_fd(&dir),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != ErrorKind::NotFound {
                return Err(err(e));
            }
            let link_c = sys::cstring(link.as_os_str().as_bytes()).map_err(err)?;
            return sys::symlinkat(&link_c, dir.as_fd(), &name).map_err(err);
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Ok(());
        }
        fs::canonicalize(src).map_err(err)?
    } else {
        src.to_path_buf()
    };
    let is_dir = fs::metadata(&src_real).map_err(err)?.is_dir();
    let target = resolve(
        root,
        rel,
        Some(if is_dir { Create::Dir } else { Create::File }),
    )
    .map_err(err)?;
    let src_c = sys::cpath(&src_real).map_err(err)?;
    if let Some(ns) = userns {
        // A detached clone, made read-only, nodev and idmapped before it is attached.
        let mnt = sys::open_tree_clone(&src_c).map_err(err)?;
        let attrs = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_IDMAP;
        sys::mount_setattr(mnt.as_fd(), attrs, Some(ns)).map_err(err)?;
        return sys::move_mount_to(mnt.as_fd(), target.as_fd()).map_err(err);
    }
    mount_at(Some(&src_c), target.as_fd(), None, libc::MS_BIND, "").map_err(err)?;
    // Re-resolve: the old descriptor still points below the new mount.
    let top = resolve(root, rel, None).map_err(err)?;
    let keep = inherited_flags(&src_c).map_err(err)?;
    mount_at(
        None,
        top.as_fd(),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NODEV | keep,
        "",
    )
    .map_err(err)
}

/// The root volume as PID 1 mounts it: its loop device (none: a plain directory volume), and
/// what to do with its upper layer once it is attached and before the overlay is mounted (the
/// id shift and the first-boot files, as host root).
pub(crate) struct Volume<'a> {
    pub device: Option<&'a super::volume::Attached>,
    pub prepare: &'a dyn Fn(&Path) -> io::Result<()>,
}

/// Binds host file `src` over `target` inside the root, if `target` exists (a /proc file).
fn bind_file(root: BorrowedFd<'_>, src: &CStr, target: &str) -> Result<(), OpError> {
    let err = || op_err(Step::MaskProc, format!("/{target}"));
    if let Some(t) = resolve_existing(root, target).map_err(err())? {
        mount_at(Some(src), t.as_fd(), None, libc::MS_BIND, "").map_err(err())?;
    }
    Ok(())
}

/// Performs `ops` with the new root at `rootfs`. Stops at the first failure. With `userns`,
/// the overlay's layers and the read-only binds are idmapped mounts for that namespace.
pub(crate) fn apply(
    rootfs: &Path,
    ops: &[Op],
    userns: Option<BorrowedFd<'_>>,
    vol: &Volume<'_>,
) -> Result<(), OpError> {
    let rootfs_c =
        sys::cpath(rootfs).map_err(op_err(Step::MountOverlay, rootfs.display().to_string()))?;
    let mut root: Option<OwnedFd> = None;
    let root_fd = |r: &Option<OwnedFd>| -> Result<OwnedFd, OpError> {
        match r {
            Some(fd) => fd
                .try_clone()
                .map_err(op_err(Step::MountOverlay, "root fd")),
            None => Err((
                Step::MountOverlay,
                "overlay must be mounted first".into(),
                io::Error::from(ErrorKind::InvalidInput),
            )),
        }
    };
    for op in ops {
        match op {
            Op::MakePrivate => {
                sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
                    .map_err(op_err(Step::MakePrivate, "/"))?;
            }
            Op::Overlay { data } if userns.is_some() => {
                let what = format!("{} ({data})", rootfs.display());
                let ns = userns.expect("checked");
                root = Some(
                    idmapped_overlay(&rootfs_c, data, ns, vol)
                        .map_err(op_err(Step::MountOverlay, what))?,
                );
            }
            Op::Overlay { data } => {
                let what = format!("{} ({data})", rootfs.display());
                let data_c =
                    sys::cstring(data).map_err(op_err(Step::MountOverlay, what.clone()))?;
                // nodev: a device node in the root volume (made before CAP_MKNOD was dropped,
                // or copied in from a host) can never be opened. setuid stays (sudo).
                sys::mount(
                    Some(c"overlay"),
                    &rootfs_c,
                    Some(c"overlay"),
                    NODEV,
                    Some(&data_c),
                )
                .map_err(op_err(Step::MountOverlay, what.clone()))?;
                // Open after mounting: this is the overlay's root, the new "/".
                root = Some(
                    sys::open(&rootfs_c, libc::O_PATH | libc::O_DIRECTORY, 0)
                        .map_err(op_err(Step::MountOverlay, what))?,
                );
            }
            Op::BindReadOnly { src, target } => {
                bind_read_only(root_fd(&root)?.as_fd(), src, target, userns)?
            }
            Op::Tools { exe, owner } => bind_tools(root_fd(&root)?.as_fd(), exe, userns, *owner),
            Op::Fs {
                fstype,
                target,
                flags,
                data,
                step,
            } => {
                let r = root_fd(&root)?;
                let err = op_err(*step, format!("/{target}"));
                let t = resolve(r.as_fd(), target, Some(Create::Dir)).map_err(err)?;
                let fs_c = sys::cstring(fstype).map_err(op_err(*step, format!("/{target}")))?;
                mount_at(Some(&fs_c), t.as_fd(), Some(&fs_c), *flags, data)
                    .map_err(op_err(*step, format!("/{target}")))?;
            }
            Op::MaskFile { target } => bind_file(root_fd(&root)?.as_fd(), c"/dev/null", target)?,
            Op::ProcView { src, target } => {
                // LXCFS gone (or a file it does not serve): the host's figures, not a failure.
                if src.exists() {
                    let src =
                        sys::cpath(src).map_err(op_err(Step::MaskProc, format!("/{target}")))?;
                    bind_file(root_fd(&root)?.as_fd(), &src, target)?;
                }
            }
            Op::MaskDir { target } => {
                let r = root_fd(&root)?;
                let err = || op_err(Step::MaskProc, format!("/{target}"));
                if let Some(t) = resolve_existing(r.as_fd(), target).map_err(err())? {
                    mount_at(
                        Some(c"tmpfs"),
                        t.as_fd(),
                        Some(c"tmpfs"),
                        libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
                        "size=0",
                    )
                    .map_err(err())?;
                }
            }
            Op::ReadOnly { target } => {
                let r = root_fd(&root)?;
                let err = || op_err(Step::MaskProc, format!("/{target}"));
                if let Some(t) = resolve_existing(r.as_fd(), target).map_err(err())? {
                    let p = sys::fd_path(t.as_fd());
                    sys::mount(Some(&p), &p, None, libc::MS_BIND | libc::MS_REC, None)
                        .map_err(err())?;
                    let top = resolve(r.as_fd(), target, None).map_err(err())?;
                    mount_at(
                        None,
                        top.as_fd(),
                        None,
                        libc::MS_BIND
                            | libc::MS_REMOUNT
                            | libc::MS_RDONLY
                            | NOSUID
                            | NODEV
                            | NOEXEC,
                        "",
                    )
                    .map_err(err())?;
                }
            }
            Op::Mkdir {
                target,
                mode,
                owner,
            } => {
                let r = root_fd(&root)?;
                let err = || op_err(Step::MountRun, format!("/{target}"));
                let (dir, name) = parent_of(r.as_fd(), target).map_err(err())?;
                match sys::mkdirat(dir.as_fd(), &name, *mode) {
                    Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(err()(e)),
                    _ => {}
                }
                if let Some(uid) = owner {
                    let made = sys::openat2(
                        dir.as_fd(),
                        &name,
                        libc::O_DIRECTORY | libc::O_RDONLY,
                        sys::RESOLVE_NO_SYMLINKS,
                    )
                    .map_err(err())?;
                    sys::fchown(made.as_fd(), *uid, *uid).map_err(err())?;
                }
            }
            Op::CharDev {
                target,
                major,
                minor,
            } => {
                let r = root_fd(&root)?;
                let err = || op_err(Step::MountDev, format!("/{target}"));
                let (dir, name) = parent_of(r.as_fd(), target).map_err(err())?;
                let dev = libc::makedev(*major, *minor);
                sys::mknodat(dir.as_fd(), &name, libc::S_IFCHR | 0o666, dev).map_err(err())?;
            }
            Op::Symlink { target, link } => {
                let r = root_fd(&root)?;
                let err = || op_err(Step::MountDev, format!("/{target}"));
                let (dir, name) = parent_of(r.as_fd(), target).map_err(err())?;
                let link_c = sys::cstring(link).map_err(err())?;
                sys::symlinkat(&link_c, dir.as_fd(), &name).map_err(err())?;
            }
            Op::RemountReadOnly {
                target,
                flags,
                step,
            } => {
                let r = root_fd(&root)?;
                let err = || op_err(*step, format!("/{target}"));
                let t = resolve(r.as_fd(), target, None).map_err(err())?;
                mount_at(
                    None,
                    t.as_fd(),
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
                    "",
                )
                .map_err(err())?;
            }
        }
    }
    Ok(())
}

/// The overlay root over idmapped layers. Each lower layer is cloned, idmapped for `userns` and
/// attached (and the volume dir holding upperdir/workdir bound) in a small tmpfs at
/// `rootfs` itself; the overlay is then mounted on top of that tmpfs with paths relative to it
/// (`lowerdir=0:1,upperdir=v/upper,workdir=v/work`), so the staging mounts are hidden under
/// the new root and `/proc/mounts` inside names no host path.
fn idmapped_overlay(
    rootfs: &CStr,
    data: &str,
    userns: BorrowedFd<'_>,
    vol: &Volume<'_>,
) -> io::Result<OwnedFd> {
    let (lowers, volume) = staged_layers(data)?;
    sys::mount(
        Some(c"tmpfs"),
        rootfs,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"mode=0700,size=16k"),
    )?;
    let staging = sys::open(rootfs, libc::O_DIRECTORY | libc::O_RDONLY, 0)?;
    let attach = |src: &str, name: &str| -> io::Result<()> {
        let n = sys::cstring(name)?;
        sys::mkdirat(staging.as_fd(), &n, 0o700)?;
        let at = sys::openat2(staging.as_fd(), &n, libc::O_PATH, sys::RESOLVE_NO_SYMLINKS)?;
        let mnt = sys::open_tree_clone(&sys::cstring(src)?)?;
        sys::mount_setattr(mnt.as_fd(), sys::MOUNT_ATTR_IDMAP, Some(userns))?;
        sys::move_mount_to(mnt.as_fd(), at.as_fd())
    };
    let mut names = Vec::new();
    for (i, l) in lowers.iter().enumerate() {
        attach(l, &i.to_string())?;
        names.push(i.to_string());
    }
    // The volume (upper and work): its ext4 image on the loop device, or (a volume made before
    // images) its directory bound as it is. Not idmapped: overlay writes to it with the
    // mounter's credentials (host root), which an idmap for the instance cannot represent, so
    // its files are stored with host ids (`GuestDir::shift_ids`, in `vol.prepare`).
    let v = sys::cstring("v")?;
    sys::mkdirat(staging.as_fd(), &v, 0o700)?;
    let at = sys::openat2(staging.as_fd(), &v, libc::O_PATH, sys::RESOLVE_NO_SYMLINKS)?;
    match vol.device {
        Some(dev) => {
            let src = sys::cstring(dev.path())?;
            // noinit_itable: no background zeroing of inode tables on a fresh volume (a disk
            // write of megabytes at every first boot); unused tables are never read.
            mount_at(
                Some(&src),
                at.as_fd(),
                Some(c"ext4"),
                libc::MS_NODEV,
                "noinit_itable",
            )?;
        }
        None => {
            let mnt = sys::open_tree_clone(&sys::cstring(&volume)?)?;
            sys::move_mount_to(mnt.as_fd(), at.as_fd())?;
        }
    }
    let mut upper = PathBuf::from(rootfs.to_string_lossy().into_owned());
    upper.push("v/upper");
    if vol.device.is_some() {
        // An image made by `volume::create` has upper/ and work/ at its root.
        for d in ["v/upper", "v/work"] {
            match sys::mkdirat(staging.as_fd(), &sys::cstring(d)?, 0o755) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
    }
    (vol.prepare)(&upper)?;
    let opts = format!(
        "lowerdir={},upperdir=v/upper,workdir=v/work",
        names.join(":")
    );
    sys::fchdir(staging.as_fd())?;
    let mounted = sys::mount(
        Some(c"overlay"),
        rootfs,
        Some(c"overlay"),
        NODEV,
        Some(&sys::cstring(&opts)?),
    );
    sys::chdir(c"/")?;
    mounted?;
    // The overlay's root, on top of the staging tmpfs: the new "/".
    sys::open(rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// (lower dirs, volume dir) from an option string made by `overlay_data`.
fn staged_layers(data: &str) -> io::Result<(Vec<String>, String)> {
    let mut lowers = Vec::new();
    let mut upper = None;
    for kv in data.split(',') {
        match kv.split_once('=') {
            Some(("lowerdir", v)) => lowers = v.split(':').map(str::to_string).collect(),
            Some(("upperdir", v)) => upper = v.strip_suffix("/upper").map(str::to_string),
            _ => {}
        }
    }
    match upper {
        Some(vol) if !lowers.is_empty() => Ok((lowers, vol)),
        _ => Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("overlay options {data:?} lack lowerdir or upperdir=<volume>/upper"),
        )),
    }
}

/// `pivot_root` into `rootfs` and detach the old root (the `pivot_root(".", ".")` idiom: no
/// `put_old` directory is needed inside the image).
pub(crate) fn pivot(rootfs: &Path) -> Result<(), OpError> {
    let what = rootfs.display().to_string();
    let c = sys::cpath(rootfs).map_err(op_err(Step::PivotRoot, what.clone()))?;
    let dir = sys::open(&c, libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .map_err(op_err(Step::PivotRoot, what.clone()))?;
    sys::fchdir(dir.as_fd()).map_err(op_err(Step::PivotRoot, what.clone()))?;
    sys::pivot_root(c".", c".").map_err(op_err(Step::PivotRoot, what))?;
    // The old root is now stacked on top of "."; detach it lazily.
    sys::umount2(c".", libc::MNT_DETACH).map_err(op_err(Step::DetachOldRoot, "/"))?;
    sys::chdir(c"/").map_err(op_err(Step::DetachOldRoot, "/"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::example_spec;

    #[test]
    fn plan_order() {
        let ops = plan(&example_spec());
        assert_eq!(ops[0], Op::MakePrivate);
        assert!(
            matches!(&ops[1], Op::Overlay { data } if data.starts_with("lowerdir=/var/lib/ec2lab/images/ami-1/rootfs,"))
        );
        assert_eq!(
            ops[2],
            Op::BindReadOnly {
                src: "/usr".into(),
                target: "usr".into()
            }
        );
        assert_eq!(
            ops[3],
            Op::BindReadOnly {
                src: "/bin".into(),
                target: "bin".into()
            }
        );
        assert!(matches!(&ops[4], Op::Fs { fstype: "proc", target, .. } if target == "proc"));
        // Masks come right after /proc, before /sys.
        let sys_at = ops
            .iter()
            .position(|o| {
                matches!(
                    o,
                    Op::Fs {
                        fstype: "sysfs",
                        ..
                    }
                )
            })
            .unwrap();
        assert!(ops[5..sys_at].iter().all(|o| matches!(
            o,
            Op::MaskFile { .. } | Op::MaskDir { .. } | Op::ReadOnly { .. }
        )));
        assert!(ops[5..sys_at].contains(&Op::ReadOnly {
            target: "proc/sys".into()
        }));
        assert!(ops[5..sys_at].contains(&Op::MaskFile {
            target: "proc/kcore".into()
        }));
        assert!(matches!(&ops[sys_at], Op::Fs { flags, .. } if flags & libc::MS_RDONLY != 0));
        // /dev: tmpfs, nodes, links, devpts, shm, read-only — in that order; then /run.
        let kinds: Vec<&str> = ops[sys_at + 1..]
            .iter()
            .map(|o| match o {
                Op::MaskDir { .. } => "mask",
                Op::Fs { fstype, .. } => fstype,
                Op::CharDev { .. } => "chr",
                Op::Symlink { .. } => "ln",
                Op::RemountReadOnly { .. } => "ro",
                Op::Mkdir { .. } => "mkdir",
                _ => "?",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "mask", "mask", "tmpfs", "chr", "chr", "chr", "chr", "chr", "chr", "ln", "ln",
                "ln", "ln", "ln", "devpts", "tmpfs", "ro", "tmpfs", "mkdir", "mkdir"
            ]
        );
        assert!(ops.contains(&Op::CharDev {
            target: "dev/null".into(),
            major: 1,
            minor: 3
        }));
        assert!(ops.iter().any(|o| matches!(o, Op::Fs { fstype: "devpts", data, .. } if data.contains("newinstance") && data.contains("ptmxmode=0666"))));
    }

    #[test]
    fn writable_mounts_are_nodev() {
        for op in plan(&example_spec()) {
            if let Op::Fs {
                fstype,
                flags,
                target,
                ..
            } = op
            {
                let writable = flags & libc::MS_RDONLY == 0;
                if writable && target != "dev" {
                    assert!(
                        flags & libc::MS_NODEV != 0 || fstype == "devpts",
                        "{target} must be nodev"
                    );
                }
                assert!(flags & libc::MS_NOSUID != 0, "{target} must be nosuid");
            }
        }
    }
}
