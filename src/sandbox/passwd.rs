//! Users as the *instance* sees them: `/etc/passwd` and `/etc/group` read inside its mount
//! namespace (never the host's, never through NSS/glibc).

use std::io;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Primary group first, then supplementary groups from /etc/group, without duplicates.
    pub groups: Vec<u32>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
    shell: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
            shell: f[6],
        })
    })
}

/// Looks `user` up (by name, or by number when no name matches) in passwd/group texts.
pub(crate) fn lookup(user: &str, passwd: &str, group: &str) -> Option<User> {
    let by_name = passwd_entries(passwd).find(|e| e.name == user);
    let e = match by_name {
        Some(e) => e,
        None => {
            let uid: u32 = user.parse().ok()?;
            passwd_entries(passwd).find(|e| e.uid == uid)?
        }
    };
    let mut groups = vec![e.gid];
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            continue;
        }
        let Ok(gid) = f[2].parse::<u32>() else {
            continue;
        };
        if f[3].split(',').any(|m| m.trim() == e.name) && !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    Some(User {
        name: e.name.to_string(),
        uid: e.uid,
        gid: e.gid,
        home: if e.home.is_empty() {
            "/".into()
        } else {
            e.home.to_string()
        },
        shell: if e.shell.is_empty() {
            "/bin/sh".into()
        } else {
            e.shell.to_string()
        },
        groups,
    })
}

/// gid of a group by name, e.g. "tty".
pub(crate) fn group_id(name: &str, group: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// Reads a small file of the instance we are in (after `setns` into its mount namespace, "/"
/// is its root) through `guestfs`: no FIFO, device or symlink out of the tree, bounded size.
pub(crate) fn read_instance_file(path: &str) -> io::Result<String> {
    super::guestfs::GuestDir::open(std::path::Path::new("/"))?.read_text(path, 4 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n# comment\nec2-user:x:1000:1000:EC2 Default User:/home/ec2-user:/bin/bash\nnoshell:x:1001:1001:::\n";
    const GROUP: &str = "root:x:0:\ntty:x:5:\nwheel:x:10:ec2-user,admin\nadm:x:4:admin, ec2-user\nec2-user:x:1000:\n";

    #[test]
    fn finds_users_and_groups() {
        let u = lookup("ec2-user", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.home, "/home/ec2-user");
        assert_eq!(u.shell, "/bin/bash");
        assert_eq!(u.groups, vec![1000, 10, 4]);
        let r = lookup("root", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.groups.as_slice()), (0, &[0u32][..]));
        assert_eq!(lookup("1000", PASSWD, GROUP).unwrap().name, "ec2-user");
        let n = lookup("noshell", PASSWD, GROUP).unwrap();
        assert_eq!((n.home.as_str(), n.shell.as_str()), ("/", "/bin/sh"));
        assert!(lookup("nobody", PASSWD, GROUP).is_none());
        assert_eq!(group_id("tty", GROUP), Some(5));
    }
}
