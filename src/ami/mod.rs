//! AMI directory images: a directory holding `manifest.json` (name, description, architecture,
//! default user, root device, optional read-only host binds) and a root filesystem tree `rootfs/`
//! (or the directory itself when it has no `rootfs/`). This module reads and checks such
//! directories and builds the built-in default AMI, `lab-linux`, at first start without any
//! download: the host's userland (`/usr`, `/bin`, `/lib*`, `/sbin`) bound read-only, plus an `/etc`
//! of its own that carries no host secret.

mod default;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use default::{DEFAULT_AMI_NAME, build_default};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    pub architecture: String,
    pub default_user: String,
    pub root_device_name: String,
    pub root_size_gib: u32,
    /// Host directories bound read-only at the same path inside instances (the default AMI's
    /// userland). Other AMIs carry their whole tree and leave this empty.
    pub host_binds: Vec<PathBuf>,
}

impl Default for Manifest {
    fn default() -> Manifest {
        Manifest {
            name: String::new(),
            description: String::new(),
            architecture: std::env::consts::ARCH.to_string(),
            default_user: "ec2-user".into(),
            root_device_name: "/dev/xvda".into(),
            root_size_gib: 8,
            host_binds: Vec::new(),
        }
    }
}

/// An AMI directory that passed inspection.
#[derive(Debug, Clone)]
pub struct AmiDir {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub manifest: Manifest,
}

#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error("AMI directory {0} does not exist or is not a directory")]
    NotADir(PathBuf),
    #[error("AMI directory paths must be absolute: {0}")]
    Relative(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid manifest: {source}")]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the root filesystem {0} has no etc/passwd")]
    NoPasswd(PathBuf),
    #[error("the default user '{user}' is not in {passwd}")]
    NoUser { user: String, passwd: PathBuf },
    #[error("the root filesystem {0} has no shell (bin/sh)")]
    NoShell(PathBuf),
    #[error("architecture '{0}' cannot run on this host ({host})", host = std::env::consts::ARCH)]
    Architecture(String),
}

/// Reads and checks an AMI directory. `name`/`description` override the manifest's.
pub fn inspect(dir: &Path) -> Result<AmiDir, AmiError> {
    if !dir.is_absolute() {
        return Err(AmiError::Relative(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(AmiError::NotADir(dir.to_path_buf()));
    }
    let manifest_path = dir.join("manifest.json");
    let manifest: Manifest = match fs::read(&manifest_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| AmiError::Manifest {
            path: manifest_path.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(source) => {
            return Err(AmiError::Read {
                path: manifest_path,
                source,
            });
        }
    };
    let rootfs = if dir.join("rootfs").is_dir() {
        dir.join("rootfs")
    } else {
        dir.to_path_buf()
    };
    let arch = normalize_arch(&manifest.architecture);
    if arch != normalize_arch(std::env::consts::ARCH) {
        return Err(AmiError::Architecture(manifest.architecture.clone()));
    }
    let passwd = rootfs.join("etc/passwd");
    let text = fs::read_to_string(&passwd).map_err(|_| AmiError::NoPasswd(rootfs.clone()))?;
    if !text
        .lines()
        .any(|l| l.split(':').next() == Some(manifest.default_user.as_str()))
    {
        return Err(AmiError::NoUser {
            user: manifest.default_user.clone(),
            passwd,
        });
    }
    let has_shell = rootfs.join("bin/sh").exists()
        || fs::symlink_metadata(rootfs.join("bin/sh")).is_ok()
        || manifest
            .host_binds
            .iter()
            .any(|b| b.join("sh").exists() || b.join("bin/sh").exists());
    if !has_shell {
        return Err(AmiError::NoShell(rootfs));
    }
    Ok(AmiDir {
        dir: dir.to_path_buf(),
        rootfs,
        manifest,
    })
}

/// `x86_64` and AWS's `x86_64`; `aarch64` is AWS's `arm64`.
pub fn normalize_arch(a: &str) -> &str {
    match a {
        "aarch64" | "arm64" => "arm64",
        "x86_64" | "amd64" => "x86_64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_checks_user_shell_and_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ami");
        fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
        fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
        fs::write(dir.join("rootfs/etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert!(matches!(inspect(&dir), Err(AmiError::NoUser { .. })));
        fs::write(
            dir.join("manifest.json"),
            r#"{"name":"tiny","default_user":"root","description":"busybox"}"#,
        )
        .unwrap();
        assert!(matches!(inspect(&dir), Err(AmiError::NoShell(_))));
        fs::write(dir.join("rootfs/bin/sh"), "").unwrap();
        let a = inspect(&dir).unwrap();
        assert_eq!(a.manifest.name, "tiny");
        assert_eq!(a.manifest.root_device_name, "/dev/xvda");
        assert_eq!(a.rootfs, dir.join("rootfs"));
        fs::write(dir.join("manifest.json"), "{not json").unwrap();
        assert!(matches!(inspect(&dir), Err(AmiError::Manifest { .. })));
        assert!(matches!(
            inspect(Path::new("relative")),
            Err(AmiError::Relative(_))
        ));
    }
}
