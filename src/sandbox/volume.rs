//! Root volumes of a fixed size: each is an ext4 filesystem in a sparse image file,
//! `volume_dir/disk.img`, holding the overlay's `upper/` and `work/`. Inside, `df /` shows the
//! volume's size, and writing past it fails with ENOSPC; the host's disk is never used beyond
//! it.
//!
//! Order:
//! - [`make_template`] once per data dir: an empty ext4 filesystem of the size in a sparse
//!   file, made by `mkfs.ext4 -d` (`upper/` and `work/` at its root) — nothing is mounted on
//!   the host, ever; [`create`] (host, ahead of launches for spare volumes) copies it, holes
//!   kept. A volume's own first files (SSH host keys, hostname…) are written by PID 1 at its
//!   first boot, through `guestfs`.
//! - [`attach`] (launcher, host root): a loop device for the image with `LO_FLAGS_AUTOCLEAR`,
//!   so the device goes away by itself when the last user (the mount, or our descriptor if the
//!   launch fails or is killed) is gone; the launcher adds that one block device to the
//!   instance's device allow-list (read/write, never mknod) so that PID 1, already in the
//!   instance's cgroup, may mount it.
//! - PID 1 mounts it (nodev) in its own mount namespace only (see `mounts`): when the instance
//!   ends, the mount and then the loop device disappear with it; a crash leaves nothing.
//!
//! A volume made before images existed (a plain `upper/` directory) still boots, unbounded.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::sys;

/// The image file in a volume directory.
pub const IMAGE: &str = "disk.img";
/// EC2's default root volume size for Amazon Linux, and ours.
pub const DEFAULT_BYTES: u64 = 8 << 30;

pub fn image(volume_dir: &Path) -> PathBuf {
    volume_dir.join(IMAGE)
}

/// Makes the image every new volume starts as: an empty ext4 filesystem of `bytes` (sparse)
/// with `upper/` and `work/` at its root. Made once per data dir (`mkfs.ext4 -d`), atomically.
pub fn make_template(path: &Path, bytes: u64) -> io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    // One name per call: two makers at once (the spare refill and a first launch) must not
    // share a staging dir (`tmp.with_extension("d")` would give every call the same one).
    let r = rand::random::<u64>();
    let tmp = path.with_extension(format!("tmp-{r:016x}"));
    let staging = path.with_extension(format!("tmp-{r:016x}.d"));
    fs::create_dir_all(staging.join("upper"))?;
    fs::create_dir_all(staging.join("work"))?;
    let made = mkfs(&tmp, bytes, &staging).and_then(|()| fs::rename(&tmp, path));
    let _ = fs::remove_dir_all(&staging);
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    made
}

fn mkfs(img: &Path, bytes: u64, staging: &Path) -> io::Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(img)?;
    f.set_len(bytes)?;
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
        ])
        .arg("-d")
        .arg(staging)
        .arg(img)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(io::Error::other(format!(
            "mkfs.ext4 {}: {}",
            img.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("mkfs.ext4 (e2fsprogs) for {}: {e}", img.display()),
        )),
    }
}

/// Makes `volume_dir/disk.img` as a copy of `template` that keeps its holes (only the few MiB
/// mkfs wrote are copied: milliseconds, whatever the volume's size).
pub fn create(volume_dir: &Path, template: &Path) -> io::Result<()> {
    let img = image(volume_dir);
    let src = fs::File::open(template)?;
    let dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&img)?;
    let copied = copy_sparse(&src, &dst).and_then(|()| dst.set_len(src.metadata()?.len()));
    if copied.is_err() {
        let _ = fs::remove_file(&img);
    }
    copied
}

fn copy_sparse(src: &fs::File, dst: &fs::File) -> io::Result<()> {
    let len = src.metadata()?.len() as i64;
    let mut pos = 0i64;
    while pos < len {
        // SAFETY: lseek on a descriptor we borrow.
        let data = unsafe { libc::lseek(src.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                return Ok(()); // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut off_in, mut off_out) = (data, data);
        while off_in < hole {
            // SAFETY: copy_file_range between two descriptors we borrow, with offsets we own.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    (hole - off_in) as usize,
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
        }
        pos = hole;
    }
    Ok(())
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A loop device attached to a volume's image: its descriptor keeps it (auto-clear) and
/// `minor` names it (`/dev/loop<minor>`, block 7:minor).
pub struct Attached {
    pub device: OwnedFd,
    pub minor: u32,
}

impl Attached {
    pub fn path(&self) -> String {
        format!("/dev/loop{}", self.minor)
    }
}

/// Attaches `volume_dir/disk.img` to a free loop device; `None` when the volume has no image.
pub fn attach(volume_dir: &Path) -> io::Result<Option<Attached>> {
    let img = image(volume_dir);
    let file = match sys::open(&sys::cpath(&img)?, libc::O_RDWR | libc::O_NOFOLLOW, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let ctl = sys::open(c"/dev/loop-control", libc::O_RDWR, 0)?;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let minor = sys::cvt(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) })?;
        let dev = match sys::open(&sys::cstring(format!("/dev/loop{minor}"))?, libc::O_RDWR, 0) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: LoopConfig is plain data; zero is valid for every field.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = file.as_raw_fd() as u32;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config` that outlives the call.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if r == 0 {
            return Ok(Some(Attached {
                device: dev,
                minor: minor as u32,
            }));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
        // Another process took this device between GET_FREE and CONFIGURE: try the next.
    }
    Err(io::Error::other("no free loop device after 16 attempts"))
}

/// Opens `/dev/loop<minor>` if it is bound to `volume_dir/disk.img` (same device and inode:
/// a device attached ahead by the daemon, which may have been cleared and reused meanwhile);
/// `None` otherwise.
pub fn reuse(minor: u32, volume_dir: &Path) -> io::Result<Option<Attached>> {
    use std::os::unix::fs::MetadataExt;
    let st = fs::symlink_metadata(image(volume_dir))?;
    let dev = sys::open(&sys::cstring(format!("/dev/loop{minor}"))?, libc::O_RDWR, 0)?;
    // SAFETY: LoopInfo64 is plain data; zero is valid for every field.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: LOOP_GET_STATUS64 fills a `struct loop_info64` that outlives the call.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_GET_STATUS64,
            &mut info as *mut LoopInfo64,
        )
    };
    if r != 0 {
        // ENXIO: not bound to anything (cleared).
        return Ok(None);
    }
    let same = info.lo_inode == st.ino() && info.lo_device == st.dev();
    Ok(same.then_some(Attached { device: dev, minor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_sparse_copies_of_the_template() {
        if !Path::new("/usr/sbin/mkfs.ext4").exists() && !Path::new("/sbin/mkfs.ext4").exists() {
            eprintln!("SKIPPED: needs mkfs.ext4 (e2fsprogs)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let template = t.path().join("template.img");
        make_template(&template, 256 << 20).unwrap();
        make_template(&template, 256 << 20).unwrap(); // already there: kept
        let vol = t.path().join("vol");
        fs::create_dir(&vol).unwrap();
        create(&vol, &template).unwrap();
        let meta = fs::metadata(image(&vol)).unwrap();
        assert_eq!(meta.len(), 256 << 20);
        // Sparse: far less than the size is on disk.
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 64 << 20);
        // Same bytes as the template.
        assert_eq!(fs::read(image(&vol)).unwrap(), fs::read(&template).unwrap());
        // A second image in the same place is refused (never overwritten).
        assert!(create(&vol, &template).is_err());
    }

    #[test]
    fn a_device_attached_ahead_is_reused_only_for_its_own_image() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: loop devices need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for v in [&a, &b] {
            fs::create_dir(v).unwrap();
            fs::File::create(image(v))
                .unwrap()
                .set_len(16 << 20)
                .unwrap();
        }
        let ahead = attach(&a).unwrap().expect("a has an image");
        // The volume dir may be renamed (a spare claimed): the device follows its file.
        let moved = t.path().join("claimed");
        fs::rename(&a, &moved).unwrap();
        let again = reuse(ahead.minor, &moved).unwrap().expect("same image");
        assert_eq!(again.minor, ahead.minor);
        assert!(
            reuse(ahead.minor, &b).unwrap().is_none(),
            "another image's device"
        );
        // Once every descriptor is gone the device clears itself and is no one's.
        drop((ahead, again));
        assert!(reuse_after_clear(&moved).is_none());
    }

    /// `reuse` of whatever minor the cleared device had: it must no longer match.
    fn reuse_after_clear(volume_dir: &Path) -> Option<u32> {
        (0..256).find(|m| matches!(reuse(*m, volume_dir), Ok(Some(_))))
    }
}
