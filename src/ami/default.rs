//! The built-in AMI `lab-linux`, made at first start with no download.
//!
//! Its root filesystem holds only what an instance must own: an `/etc` with `root` and `ec2-user`
//! (passwordless sudo), an os-release that says what it is, and empty `/home`, `/root`, `/var`,
//! `/tmp`. The userland comes from the host: each real directory among `/usr`, `/bin`, `/sbin`,
//! `/lib*` is bound read-only; on merged-/usr hosts the others are symlinks, copied as such.
//! A few non-secret configuration files are copied from the host's `/etc` (PAM, NSS, the dynamic
//! linker cache, alternatives); secrets (`shadow`, `ssh/`, `ssl/private`, `sudoers`, apt auth…)
//! never are. The tree is built in a temporary directory and renamed into place.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};

use super::{AmiDir, AmiError, Manifest, inspect};

pub const DEFAULT_AMI_NAME: &str = "lab-linux";
/// Bump when the skeleton changes: the next start rebuilds it.
const SKELETON_VERSION: &str = "1";

/// Non-secret host `/etc` entries an instance needs for a working userland.
const HOST_ETC: &[&str] = &[
    "pam.d",
    "security",
    "login.defs",
    "nsswitch.conf",
    "shells",
    "profile",
    "profile.d",
    "bash.bashrc",
    "environment",
    "ld.so.conf",
    "ld.so.conf.d",
    "ld.so.cache",
    "alternatives",
    "skel",
    "sudo.conf",
    "host.conf",
    "protocols",
    "services",
    "networks",
    "inputrc",
    "localtime",
    "timezone",
    "mime.types",
    "debian_version",
    "adduser.conf",
    "deluser.conf",
    "terminfo",
    "ethertypes",
    "rpc",
    "ca-certificates.conf",
    "ssl/certs",
    "ssl/openssl.cnf",
    "magic",
    "magic.mime",
    "mke2fs.conf",
    "vim",
    "nanorc",
    "lsb-release",
    "bindresolvport",
];

const USERLAND: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Builds (or reuses) `DIR/amis/lab-linux` and returns it inspected.
pub fn build_default(data_dir: &Path) -> Result<AmiDir, AmiError> {
    let dir = data_dir.join("amis").join(DEFAULT_AMI_NAME);
    let marker = dir.join(".skeleton-version");
    if fs::read_to_string(&marker).ok().as_deref() == Some(SKELETON_VERSION) {
        return inspect(&dir);
    }
    let tmp = data_dir
        .join("amis")
        .join(format!(".{DEFAULT_AMI_NAME}.tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = build_into(&tmp).and_then(|()| {
        write(&tmp.join(".skeleton-version"), SKELETON_VERSION, 0o644)?;
        if dir.exists() {
            let old = data_dir
                .join("amis")
                .join(format!(".{DEFAULT_AMI_NAME}.old{}", std::process::id()));
            fs::rename(&dir, &old).map_err(|source| AmiError::Write {
                path: dir.clone(),
                source,
            })?;
            let _ = fs::remove_dir_all(&old);
        }
        fs::rename(&tmp, &dir).map_err(|source| AmiError::Write {
            path: dir.clone(),
            source,
        })
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    inspect(&dir)
}

fn build_into(dir: &Path) -> Result<(), AmiError> {
    let root = dir.join("rootfs");
    mkdir(&root, 0o755)?;
    // The userland: real directories are bound read-only, symlinks (merged /usr) copied.
    let mut host_binds = Vec::new();
    for u in USERLAND {
        let host = Path::new(u);
        let Ok(meta) = fs::symlink_metadata(host) else {
            continue;
        };
        let inside = root.join(&u[1..]);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(host).map_err(|source| AmiError::Read {
                path: host.into(),
                source,
            })?;
            symlink(&target, &inside).map_err(|source| AmiError::Write {
                path: inside.clone(),
                source,
            })?;
        } else if meta.is_dir() {
            mkdir(&inside, 0o755)?;
            host_binds.push(PathBuf::from(u));
        }
    }
    for (d, mode) in [
        ("etc", 0o755),
        ("etc/ssh", 0o755),
        ("etc/sudoers.d", 0o750),
        ("home", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("var", 0o755),
        ("var/log", 0o755),
        ("var/tmp", 0o1777),
        ("var/lib", 0o755),
        ("var/lib/cloud", 0o755),
        ("var/cache", 0o755),
        ("var/spool", 0o755),
        ("var/mail", 0o2775),
        ("run", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("mnt", 0o755),
        ("opt", 0o755),
        ("srv", 0o755),
        ("media", 0o755),
    ] {
        mkdir(&root.join(d), mode)?;
    }
    let etc = root.join("etc");
    for name in HOST_ETC {
        copy_host_etc(name, &etc)?;
    }
    write(&etc.join("passwd"), PASSWD, 0o644)?;
    write(&etc.join("group"), GROUP, 0o644)?;
    write(&etc.join("shadow"), SHADOW, 0o640)?;
    write(&etc.join("gshadow"), GSHADOW, 0o640)?;
    write(&etc.join("sudoers"), SUDOERS, 0o440)?;
    write(
        &etc.join("sudoers.d/90-cloud-init-users"),
        "# User rules for ec2-user\nec2-user ALL=(ALL) NOPASSWD:ALL\n",
        0o440,
    )?;
    write(&etc.join("hostname"), "localhost\n", 0o644)?;
    write(&etc.join("hosts"), HOSTS, 0o644)?;
    write(
        &etc.join("resolv.conf"),
        "# ec2lab instances have no DNS server: the lab is offline.\n",
        0o644,
    )?;
    write(
        &etc.join("fstab"),
        "# the root file system is an overlay set up by ec2lab\n",
        0o644,
    )?;
    write(&etc.join("machine-id"), "", 0o444)?;
    write(&etc.join("os-release"), &os_release(), 0o644)?;
    write(&etc.join("motd"), "", 0o644)?;
    let home = root.join("home/ec2-user");
    mkdir(&home, 0o700)?;
    for f in [".bashrc", ".profile", ".bash_logout"] {
        let src = Path::new("/etc/skel").join(f);
        if src.is_file() {
            let dst = home.join(f);
            fs::copy(&src, &dst).map_err(|source| AmiError::Write {
                path: dst.clone(),
                source,
            })?;
            own(&dst, 1000, 1000)?;
        }
    }
    own(&home, 1000, 1000)?;
    let manifest = Manifest {
        name: DEFAULT_AMI_NAME.into(),
        description:
            "ec2lab's built-in Linux: the host's userland read-only, its own /etc; user ec2-user"
                .into(),
        host_binds,
        ..Manifest::default()
    };
    write(
        &dir.join("manifest.json"),
        &serde_json::to_string_pretty(&manifest).expect("json"),
        0o644,
    )
}

fn copy_host_etc(name: &str, etc: &Path) -> Result<(), AmiError> {
    let src = Path::new("/etc").join(name);
    let Ok(meta) = fs::symlink_metadata(&src) else {
        return Ok(());
    };
    let dst = etc.join(name);
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|source| AmiError::Write {
            path: parent.into(),
            source,
        })?;
    }
    copy_tree(&src, &dst, &meta)
}

fn copy_tree(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<(), AmiError> {
    let werr = |source| AmiError::Write {
        path: dst.to_path_buf(),
        source,
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(|source| AmiError::Read {
            path: src.into(),
            source,
        })?;
        symlink(target, dst).map_err(werr)?;
    } else if meta.is_dir() {
        fs::create_dir_all(dst).map_err(werr)?;
        fs::set_permissions(
            dst,
            fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
        )
        .map_err(werr)?;
        let entries = fs::read_dir(src).map_err(|source| AmiError::Read {
            path: src.into(),
            source,
        })?;
        for e in entries.flatten() {
            // A file we cannot read (e.g. 0600 under a non-root test) is skipped, not fatal.
            if let Ok(m) = fs::symlink_metadata(e.path()) {
                copy_tree(&e.path(), &dst.join(e.file_name()), &m)?;
            }
        }
    } else if meta.is_file() {
        // Files readable only by their owner are not copied: they may be secrets.
        if meta.permissions().mode() & 0o004 == 0 {
            return Ok(());
        }
        fs::copy(src, dst).map_err(werr)?;
    }
    Ok(())
}

fn mkdir(p: &Path, mode: u32) -> Result<(), AmiError> {
    let err = |source| AmiError::Write {
        path: p.to_path_buf(),
        source,
    };
    fs::create_dir_all(p).map_err(err)?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(err)
}

fn write(p: &Path, content: &str, mode: u32) -> Result<(), AmiError> {
    let err = |source| AmiError::Write {
        path: p.to_path_buf(),
        source,
    };
    fs::write(p, content).map_err(err)?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(err)
}

fn own(p: &Path, uid: u32, gid: u32) -> Result<(), AmiError> {
    // Not root (unit tests): ownership cannot be set and does not matter there.
    match chown(p, Some(uid), Some(gid)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        Err(source) => Err(AmiError::Write {
            path: p.to_path_buf(),
            source,
        }),
    }
}

fn os_release() -> String {
    let host = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        host.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let like = [field("ID"), field("ID_LIKE")]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "NAME=\"ec2lab Linux\"\nPRETTY_NAME=\"ec2lab lab-linux (host userland: {})\"\nID=ec2lab\nID_LIKE=\"{}\"\nVERSION_ID=\"{}\"\nHOME_URL=\"https://github.com/ec2lab/ec2lab\"\nVARIANT=\"lab-linux: the host's /usr read-only with its own /etc\"\n",
        field("PRETTY_NAME"),
        like,
        env!("CARGO_PKG_VERSION"),
    )
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
ec2-user:x:1000:1000:EC2 Default User:/home/ec2-user:/bin/bash
";

const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:ec2-user
tty:x:5:
disk:x:6:
wheel:x:10:ec2-user
shadow:x:42:
utmp:x:43:
sudo:x:27:ec2-user
www-data:x:33:
systemd-journal:x:101:ec2-user
users:x:100:
nogroup:x:65534:
ec2-user:x:1000:
";

const SHADOW: &str = "root:*:20000:0:99999:7:::
daemon:*:20000:0:99999:7:::
bin:*:20000:0:99999:7:::
sys:*:20000:0:99999:7:::
www-data:*:20000:0:99999:7:::
nobody:*:20000:0:99999:7:::
ec2-user:!!:20000:0:99999:7:::
";

const GSHADOW: &str = "root:*::
adm:*::ec2-user
wheel:*::ec2-user
sudo:*::ec2-user
shadow:*::
ec2-user:!::
";

const SUDOERS: &str = "# ec2lab lab-linux sudoers
Defaults\tenv_reset
Defaults\tsecure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"
root\tALL=(ALL:ALL) ALL
%sudo\tALL=(ALL:ALL) ALL
@includedir /etc/sudoers.d
";

const HOSTS: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ami_has_users_and_no_host_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let ami = build_default(tmp.path()).unwrap();
        assert_eq!(ami.manifest.name, "lab-linux");
        assert_eq!(ami.manifest.default_user, "ec2-user");
        assert!(ami.manifest.host_binds.contains(&PathBuf::from("/usr")));
        let etc = ami.rootfs.join("etc");
        assert!(
            fs::read_to_string(etc.join("passwd"))
                .unwrap()
                .contains("ec2-user:x:1000:1000")
        );
        assert!(
            fs::read_to_string(etc.join("sudoers.d/90-cloud-init-users"))
                .unwrap()
                .contains("NOPASSWD:ALL")
        );
        assert!(
            fs::read_to_string(etc.join("os-release"))
                .unwrap()
                .contains("ec2lab")
        );
        // Our own shadow, never the host's; no host ssh keys or private TLS keys.
        assert!(
            !fs::read_to_string(etc.join("shadow"))
                .unwrap()
                .contains("$")
        );
        assert!(fs::read_dir(etc.join("ssh")).unwrap().next().is_none());
        assert!(!etc.join("ssl/private").exists());
        assert!(ami.rootfs.join("home/ec2-user").is_dir());
        assert_eq!(
            fs::metadata(ami.rootfs.join("tmp"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o1777
        );
        // A second call reuses the tree.
        let again = build_default(tmp.path()).unwrap();
        assert_eq!(again.rootfs, ami.rootfs);
    }
}
