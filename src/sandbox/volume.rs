//! Root volumes of a fixed size: each is an ext4 filesystem in a sparse image file,
//! `volume_dir/disk.img`, holding the overlay's `upper/` and `work/`. Inside, `df /` shows the
//! volume's size, and writing past it fails with ENOSPC; the host's disk is never used beyond
//! it.
//!
//! Order:
//! - [`create`] (host, ahead of launches for spare volumes): a sparse file of the size, then
//!   `mkfs.ext4 -d` from a staging directory with the files the volume starts with (its SSH
//!   host keys) — nothing is mounted on the host, ever.
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

/// Makes `volume_dir/disk.img` (`bytes`, sparse) with `staging`'s tree as its root (e.g.
/// `upper/etc/ssh/…` and `work/`), then removes `staging`.
pub fn create(volume_dir: &Path, bytes: u64, staging: &Path) -> io::Result<()> {
    let img = image(volume_dir);
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&img)?;
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
        .arg(&img)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output();
    let out = match out {
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
    };
    if out.is_err() {
        let _ = fs::remove_file(&img);
    }
    let _ = fs::remove_dir_all(staging);
    out
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_has_the_size_and_the_staged_files() {
        if !Path::new("/usr/sbin/mkfs.ext4").exists() && !Path::new("/sbin/mkfs.ext4").exists() {
            eprintln!("SKIPPED: needs mkfs.ext4 (e2fsprogs)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let staging = t.path().join(".fs");
        fs::create_dir_all(staging.join("upper/etc/ssh")).unwrap();
        fs::create_dir_all(staging.join("work")).unwrap();
        fs::write(staging.join("upper/etc/ssh/k"), "key").unwrap();
        create(t.path(), 64 << 20, &staging).unwrap();
        let meta = fs::metadata(image(t.path())).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        // Sparse: far less than the size is on disk.
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 32 << 20);
        assert!(!staging.exists());
        // A second image in the same place is refused (never overwritten).
        fs::create_dir_all(&staging).unwrap();
        assert!(create(t.path(), 64 << 20, &staging).is_err());
    }
}
