//! The one safe way for the host to touch an instance's files.
//!
//! Everything the daemon (host root) reads from or writes into an instance-writable tree goes
//! through a [`GuestDir`]: the root volume's upper layer before a boot, or a running instance's
//! root (`/proc/<init>/root`) for the SSH gateway and `ec2lab exec`. The instance's root may
//! have planted anything there — a symlink to a host file, a FIFO, a device node, a file of
//! many gigabytes — so every operation:
//!
//! 1. resolves the path with `openat2` against the pinned directory descriptor:
//!    `RESOLVE_IN_ROOT` (`..` and absolute links stay inside) and `RESOLVE_NO_MAGICLINKS`;
//!    writes also use `RESOLVE_NO_SYMLINKS` (no symlink anywhere on the path) — the instance
//!    cannot redirect a host write, not even to another place inside itself;
//! 2. opens only `O_PATH` first and checks the file type with `fstat`; only a regular file is
//!    then opened for reading (`O_NONBLOCK`, and checked again to be the same inode) — a FIFO
//!    or a device is not opened for I/O, so nothing blocks and no driver is poked;
//! 3. reads at most the caller's bound;
//! 4. writes to a fresh `O_EXCL` temporary in the resolved parent directory, sets its mode
//!    with `fchmod` on the descriptor (never `chmod` by path), and `renameat`s it over the
//!    target — a symlink or FIFO at the target is replaced, never followed.
//!
//! Directories on a write path are created with `mkdirat` in the resolved parent, one
//! component at a time, and each is re-resolved without symlinks. [`GuestDir::shift_ids`]
//! walks a tree the same way (no link followed) to move its owners into an instance's range.

use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::sys;

/// Where a path goes: `openat2` resolution flags for reads and for writes.
const READ_RESOLVE: u64 = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;
const WRITE_RESOLVE: u64 = READ_RESOLVE | sys::RESOLVE_NO_SYMLINKS;

/// A directory of an instance-writable tree, pinned by a descriptor; paths below it are
/// resolved as if it were `/`.
pub struct GuestDir {
    root: OwnedFd,
    /// Host uid/gid that files and directories made here get (default: root's).
    owner: Option<(u32, u32)>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// `rel` without leading slashes; empty or nul-containing paths are refused.
fn relative(rel: &str) -> io::Result<CString> {
    let r = rel.trim_start_matches('/');
    if r.is_empty() {
        return Ok(CString::from(c"."));
    }
    sys::cstring(r)
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid out-parameter; fstat on a borrowed descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    sys::cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

fn is_type(st: &libc::stat, t: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == t
}

impl GuestDir {
    /// Pins `dir` (a host path the instance cannot rename, e.g. a root volume's `upper/`).
    /// `dir` itself must be a real directory, not a symlink.
    pub fn open(dir: &Path) -> io::Result<GuestDir> {
        let c = sys::cpath(dir)?;
        let root = sys::open(&c, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
        Ok(GuestDir { root, owner: None })
    }

    /// Pins the root directory of the process `pid` (`/proc/<pid>/root`), e.g. a running
    /// instance's PID 1. The caller verifies the pid names the right process before and after.
    pub fn of_process(pid: i32) -> io::Result<GuestDir> {
        let c = sys::cstring(format!("/proc/{pid}/root"))?;
        let root = sys::open(&c, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok(GuestDir { root, owner: None })
    }

    /// Files and directories made from now on belong to `uid:gid` (e.g. the instance's root
    /// as the host sees it).
    pub fn owned_by(mut self, uid: u32, gid: u32) -> GuestDir {
        self.owner = Some((uid, gid));
        self
    }

    fn resolve(&self, rel: &str, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
        sys::openat2(self.root.as_fd(), &relative(rel)?, flags, resolve)
    }

    /// `O_PATH` descriptor and type of `rel` (symlinks inside the tree are followed, within it).
    fn stat(&self, rel: &str) -> io::Result<(OwnedFd, libc::stat)> {
        let fd = self.resolve(rel, libc::O_PATH, READ_RESOLVE)?;
        let st = fstat(fd.as_fd())?;
        Ok((fd, st))
    }

    /// Reads the regular file `rel`, at most `max` bytes. FIFOs, devices, sockets and
    /// directories are refused without being opened for reading.
    pub fn read(&self, rel: &str, max: u64) -> io::Result<Vec<u8>> {
        let (fd, st) = self.stat(rel)?;
        if !is_type(&st, libc::S_IFREG) {
            return Err(invalid(format!("{rel} is not a regular file")));
        }
        drop(fd);
        // Open it for reading (O_PATH descriptors cannot read; /proc/self/fd may not exist in
        // the instance's /proc), non-blocking, and check it is still that same regular file:
        // a FIFO or device swapped in meanwhile is refused without blocking.
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        let f = self.resolve(rel, flags, READ_RESOLVE)?;
        let again = fstat(f.as_fd())?;
        if !is_type(&again, libc::S_IFREG) || (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino)
        {
            return Err(invalid(format!("{rel} changed while it was read")));
        }
        let mut buf = Vec::new();
        std::fs::File::from(f).take(max).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// [`read`](Self::read) as UTF-8 text (invalid bytes replaced).
    pub fn read_text(&self, rel: &str, max: u64) -> io::Result<String> {
        Ok(String::from_utf8_lossy(&self.read(rel, max)?).into_owned())
    }

    /// Is `rel` a regular file with an execute bit?
    pub fn is_executable(&self, rel: &str) -> bool {
        self.stat(rel)
            .is_ok_and(|(_, st)| is_type(&st, libc::S_IFREG) && st.st_mode & 0o111 != 0)
    }

    /// The directory `rel` as a real directory descriptor, created (mode `mode`, and missing
    /// parents 0755) if absent. No symlink is followed on the way.
    pub fn mkdirs(&self, rel: &str, mode: u32) -> io::Result<()> {
        self.dir(rel, mode).map(drop)
    }

    fn dir(&self, rel: &str, mode: u32) -> io::Result<OwnedFd> {
        let flags = libc::O_DIRECTORY | libc::O_RDONLY;
        let mut dir = self.resolve("", flags, WRITE_RESOLVE)?;
        let names: Vec<&str> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        for (i, name) in names.iter().enumerate() {
            if *name == ".." {
                return Err(invalid(format!("{rel}: '..' is not allowed")));
            }
            let n = sys::cstring(name)?;
            let last = i + 1 == names.len();
            match sys::mkdirat(dir.as_fd(), &n, if last { mode } else { 0o755 }) {
                Ok(()) => {
                    let made = sys::openat2(dir.as_fd(), &n, flags, WRITE_RESOLVE)?;
                    if last {
                        // mkdir applies the umask; the caller asked for this mode.
                        sys::fchmod(made.as_fd(), mode)?;
                    }
                    if let Some((u, g)) = self.owner {
                        sys::fchown(made.as_fd(), u, g)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            // ELOOP (a symlink) or ENOTDIR (a file, FIFO…) here: refused.
            dir = sys::openat2(dir.as_fd(), &n, flags, WRITE_RESOLVE)?;
        }
        Ok(dir)
    }

    /// Replaces the file `rel` with `content` (mode `mode`, owner root), creating missing
    /// parent directories 0755. Whatever was at `rel` (a symlink, a FIFO) is replaced, never
    /// followed or opened; a directory there is an error.
    pub fn write(&self, rel: &str, content: &[u8], mode: u32) -> io::Result<()> {
        let rel = rel.trim_start_matches('/');
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if name.is_empty() || name == "." || name == ".." {
            return Err(invalid(format!("{rel} is not a file name")));
        }
        let dir = self.dir(parent, 0o755)?;
        let tmp = sys::cstring(format!(".{name}.ec2lab-{:016x}", rand::random::<u64>()))?;
        let f = openat_excl(dir.as_fd(), &tmp)?;
        let done = (|| {
            let mut file = std::fs::File::from(f);
            file.write_all(content)?;
            if let Some((u, g)) = self.owner {
                sys::fchown(file.as_fd(), u, g)?;
            }
            sys::fchmod(file.as_fd(), mode)?;
            renameat(dir.as_fd(), &tmp, &sys::cstring(name)?)
        })();
        if done.is_err() {
            // SAFETY: unlinkat of the temporary we created in this directory.
            unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
        }
        done
    }
}

impl GuestDir {
    /// Shifts the tree's owners into the host id range of an instance: every file whose owner
    /// or group is below `range` (as the host and older volumes write them: 0, 1000…) gets
    /// `base` added. For a root volume's upper layer, which overlayfs cannot idmap (it writes
    /// there as the mounter). Done once: a tree whose root already belongs to `base` is left
    /// alone. Never follows a symlink; setuid/setgid bits, which chown clears, are put back.
    pub fn shift_ids(&self, base: u32, range: u32) -> io::Result<()> {
        let root = self.resolve("", libc::O_DIRECTORY | libc::O_RDONLY, WRITE_RESOLVE)?;
        let st = fstat(root.as_fd())?;
        if st.st_uid == base {
            return Ok(());
        }
        let shift = |id: u32| if id < range { id + base } else { id };
        shift_dir(root.as_fd(), &shift, 0)?;
        sys::fchown(root.as_fd(), shift(st.st_uid), shift(st.st_gid))
    }
}

fn shift_dir(dir: BorrowedFd<'_>, shift: &dyn Fn(u32) -> u32, depth: usize) -> io::Result<()> {
    if depth > 1024 {
        return Err(io::Error::other("tree nested deeper than 1024 directories"));
    }
    for e in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let name = sys::cstring(e?.file_name().as_encoded_bytes())?;
        // SAFETY: a zeroed stat is a valid out-parameter; fstatat on a borrowed directory,
        // AT_SYMLINK_NOFOLLOW: a link is looked at, never through.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        sys::cvt(unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        if is_type(&st, libc::S_IFDIR) {
            let sub = sys::openat2(
                dir,
                &name,
                libc::O_RDONLY | libc::O_DIRECTORY,
                WRITE_RESOLVE,
            )?;
            shift_dir(sub.as_fd(), shift, depth + 1)?;
        }
        let (uid, gid) = (shift(st.st_uid), shift(st.st_gid));
        if (uid, gid) == (st.st_uid, st.st_gid) {
            continue;
        }
        // SAFETY: fchownat on a name in a borrowed directory, not following links.
        sys::cvt(unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        if is_type(&st, libc::S_IFREG) && st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
            // SAFETY: fchmodat on a regular file's name in a borrowed directory.
            sys::cvt(unsafe {
                libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), st.st_mode & 0o7777, 0)
            })?;
        }
    }
    Ok(())
}

fn openat_excl(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: openat with a borrowed directory descriptor and a valid name; on success we own
    // the new descriptor.
    let fd = sys::cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    })?;
    // SAFETY: fresh descriptor from openat.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn renameat(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: both names are valid strings relative to the same borrowed directory.
    sys::cvt(unsafe {
        libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr())
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> (tempfile::TempDir, GuestDir) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("root")).unwrap();
        let g = GuestDir::open(&t.path().join("root")).unwrap();
        (t, g)
    }

    #[test]
    fn writes_never_follow_symlinks() {
        let (t, g) = tree();
        let outside = t.path().join("host-file");
        std::fs::write(&outside, "host").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("var/lib/ec2lab")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("var/lib/ec2lab/boot.json")).unwrap();
        g.write("/var/lib/ec2lab/boot.json", b"{}", 0o600).unwrap();
        // The link was replaced by a file; the host file is untouched, mode included.
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host");
        let m = std::fs::metadata(&outside).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o644);
        let meta = std::fs::symlink_metadata(root.join("var/lib/ec2lab/boot.json")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // A directory on the way that is a symlink is refused, and the host dir is not touched.
        std::fs::create_dir(t.path().join("host-dir")).unwrap();
        std::os::unix::fs::symlink(t.path().join("host-dir"), root.join("etc")).unwrap();
        let e = g.write("etc/hostname", b"x", 0o644).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(
            std::fs::read_dir(t.path().join("host-dir"))
                .unwrap()
                .next()
                .is_none()
        );
        assert!(g.mkdirs("etc/ssh", 0o755).is_err());
    }

    #[test]
    fn reads_refuse_fifos_devices_and_stay_bounded() {
        let (t, g) = tree();
        let root = t.path().join("root");
        let fifo = sys::cpath(&root.join("fifo")).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = g.read("fifo", 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        // In-root resolution: /dev/zero here means <root>/dev/zero, which does not exist.
        assert_eq!(
            g.read("zero", 10).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        std::fs::write(root.join("big"), vec![b'x'; 100_000]).unwrap();
        assert_eq!(g.read("big", 1000).unwrap().len(), 1000);
        std::os::unix::fs::symlink("../../../../big", root.join("up")).unwrap();
        assert_eq!(g.read("up", 5).unwrap(), b"xxxxx");
        assert!(g.read("/", 10).is_err());
        // A FIFO as write target is replaced, never opened (this would block otherwise).
        g.write("fifo", b"ok", 0o600).unwrap();
        assert_eq!(g.read("fifo", 10).unwrap(), b"ok");
    }

    #[test]
    fn shift_ids_moves_owners_once_and_never_through_links() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: chown needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let (t, g) = tree();
        let root = t.path().join("root");
        let outside = t.path().join("host-file");
        std::fs::write(&outside, "host").unwrap();
        g.write("usr/bin/tool", b"x", 0o4755).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let base = 1 << 20;
        g.shift_ids(base, 65536).unwrap();
        let tool = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
        assert_eq!((tool.uid(), tool.gid()), (base, base));
        assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid kept");
        assert_eq!(std::fs::metadata(&root).unwrap().uid(), base);
        assert_eq!(
            std::fs::symlink_metadata(root.join("link")).unwrap().uid(),
            base
        );
        assert_eq!(
            std::fs::metadata(&outside).unwrap().uid(),
            0,
            "link target untouched"
        );
        // Already shifted: a second call changes nothing.
        g.shift_ids(base, 65536).unwrap();
        assert_eq!(
            std::fs::metadata(root.join("usr/bin/tool")).unwrap().uid(),
            base
        );
    }

    #[test]
    fn mkdirs_sets_the_mode() {
        let (t, g) = tree();
        g.mkdirs("/var/lib/ec2lab", 0o700).unwrap();
        let m = std::fs::metadata(t.path().join("root/var/lib/ec2lab")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
        g.write("etc/ssh/key", b"k", 0o600).unwrap();
        assert!(!g.is_executable("etc/ssh/key"));
    }
}
