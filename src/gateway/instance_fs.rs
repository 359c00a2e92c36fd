//! Reading an instance's files from the daemon without trusting the instance, through
//! `sandbox::guestfs` against `/proc/<init>/root`: symlinks planted by the instance's root
//! (`authorized_keys -> /etc/shadow` of the host, `..` chains) stay inside the instance, only
//! regular files are read (a FIFO or device is never opened, so nothing stalls the daemon), and
//! only up to a size limit.
//!
//! Order: verify PID 1 (pid + start time) → open its root → resolve/read → verify PID 1 again
//! (a recycled pid cannot slip in between unnoticed). No namespace is entered: these are plain
//! file operations, cheap enough for `spawn_blocking`.

use std::io;

use crate::sandbox::guestfs::GuestDir;

/// A user from the instance's /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceUser {
    pub name: String,
    pub uid: u32,
    pub home: String,
    pub shell: String,
}

/// The root directory of a running instance, pinned by a descriptor.
pub struct InstanceRoot {
    root: GuestDir,
    init_pid: i32,
    start_time: u64,
}

fn gone(pid: i32) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("instance init (pid {pid}) is not running"),
    )
}

/// Field 22 of /proc/<pid>/stat (start time in clock ticks).
pub fn start_time_of(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // after ")" come field 3 (state) onwards: field 22 is index 19 here.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Is `(pid, start_time)` still the same live process? `start_time == 0` skips the check.
pub fn same_process(pid: i32, start_time: u64) -> bool {
    match start_time_of(pid) {
        Some(t) => start_time == 0 || t == start_time,
        None => false,
    }
}

impl InstanceRoot {
    pub fn open(init_pid: i32, start_time: u64) -> io::Result<InstanceRoot> {
        if !same_process(init_pid, start_time) {
            return Err(gone(init_pid));
        }
        let root = GuestDir::of_process(init_pid)?;
        if !same_process(init_pid, start_time) {
            return Err(gone(init_pid));
        }
        Ok(InstanceRoot {
            root,
            init_pid,
            start_time,
        })
    }

    /// Reads a regular file inside the instance, at most `max` bytes.
    pub fn read(&self, path: &str, max: u64) -> io::Result<Vec<u8>> {
        let buf = self.root.read(path, max)?;
        if !same_process(self.init_pid, self.start_time) {
            return Err(gone(self.init_pid));
        }
        Ok(buf)
    }

    /// Is `path` a regular file with an execute bit, inside the instance?
    pub fn is_executable(&self, path: &str) -> bool {
        self.root.is_executable(path)
    }

    /// Looks `name` up in the instance's /etc/passwd.
    pub fn user(&self, name: &str) -> io::Result<Option<InstanceUser>> {
        let text = self.read("/etc/passwd", 4 << 20)?;
        Ok(find_user(&String::from_utf8_lossy(&text), name))
    }

    /// The user's `~/.ssh/authorized_keys` (empty when missing).
    pub fn authorized_keys(&self, user: &InstanceUser) -> io::Result<String> {
        let path = format!("{}/.ssh/authorized_keys", user.home.trim_end_matches('/'));
        match self.read(&path, 1 << 20) {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(String::new()),
            Err(e) => Err(e),
        }
    }
}

/// The passwd entry named `name` (by name only: sshd does not log in by uid).
pub fn find_user(passwd: &str, name: &str) -> Option<InstanceUser> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') || f[0] != name {
            return None;
        }
        Some(InstanceUser {
            name: f[0].to_string(),
            uid: f[2].parse().ok()?,
            home: f[5].to_string(),
            shell: if f[6].is_empty() {
                "/bin/sh".to_string()
            } else {
                f[6].to_string()
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let pw = "root:x:0:0:root:/root:/bin/bash\nec2-user:x:1000:1000::/home/ec2-user:\n";
        let u = find_user(pw, "ec2-user").unwrap();
        assert_eq!(u.uid, 1000);
        assert_eq!(u.home, "/home/ec2-user");
        assert_eq!(u.shell, "/bin/sh");
        assert!(find_user(pw, "1000").is_none());
        assert!(find_user(pw, "nobody").is_none());
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let t = start_time_of(me).unwrap();
        assert!(same_process(me, t));
        assert!(!same_process(me, t + 1));
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        // Needs no root: our own /proc/<pid>/root is "/", so use a temp dir as a fake root via
        // openat2 semantics on a directory fd instead.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home/u/.ssh")).unwrap();
        std::fs::write(dir.path().join("secret"), "inside").unwrap();
        std::os::unix::fs::symlink(
            "/../../../secret",
            dir.path().join("home/u/.ssh/authorized_keys"),
        )
        .unwrap();
        let root = InstanceRoot {
            root: GuestDir::open(dir.path()).unwrap(),
            init_pid: std::process::id() as i32,
            start_time: 0,
        };
        let u = InstanceUser {
            name: "u".into(),
            uid: 1,
            home: "/home/u".into(),
            shell: "/bin/sh".into(),
        };
        assert_eq!(root.authorized_keys(&u).unwrap(), "inside");
        assert!(root.read("/home/u", 10).is_err()); // a directory
    }
}
