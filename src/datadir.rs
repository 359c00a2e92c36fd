//! The daemon's data directory: its layout, the lab credentials, the AWS CLI profile files and
//! the `daemon.json` that tells clients where the API listens. Secrets are written 0600 through a
//! temporary file and a rename, so a crash never leaves a half-written file.
//!
//! ```text
//! DIR/                 0700
//!   credentials.json   0600  lab access key id and secret (made on first start, kept)
//!   daemon.json        0600  api endpoint, region, public cidr, ssh port (rewritten each start)
//!   aws/credentials    0600  [default] profile for the aws CLI
//!   aws/config         0600  [default] region + endpoint_url
//!   ec2lab.db                SQLite state (see `store`)
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};

pub const DEFAULT_DIR: &str = "/var/lib/ec2lab";

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

impl Credentials {
    fn generate() -> Credentials {
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = rand::rng();
        let id: String = (0..16)
            .map(|_| UPPER[rng.random_range(0..UPPER.len())] as char)
            .collect();
        let secret: String = (0..40)
            .map(|_| SECRET[rng.random_range(0..SECRET.len())] as char)
            .collect();
        Credentials {
            access_key_id: format!("AKIA{id}"),
            secret_access_key: secret,
        }
    }
}

/// What a running daemon tells its clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub endpoint: String,
    pub region: String,
    pub public_cidr: String,
    pub ssh_port: u16,
    pub pid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data dir {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
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
    #[error("{path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("ec2lab.db")
    }

    /// Creates the directory tree (0700) if it does not exist and tightens its mode if it does.
    pub fn create(&self) -> Result<(), DataDirError> {
        for dir in [self.root.clone(), self.path("aws")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .and_then(|_| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
                .map_err(|source| DataDirError::Create {
                    path: dir.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The lab credentials, made on first use and kept.
    pub fn credentials_or_create(&self) -> Result<Credentials, DataDirError> {
        match self.credentials() {
            Ok(c) => Ok(c),
            Err(DataDirError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let c = Credentials::generate();
                write_json(&self.path("credentials.json"), &c)?;
                Ok(c)
            }
            Err(e) => Err(e),
        }
    }

    pub fn credentials(&self) -> Result<Credentials, DataDirError> {
        read_json(&self.path("credentials.json"))
    }

    pub fn daemon_info(&self) -> Result<DaemonInfo, DataDirError> {
        read_json(&self.path("daemon.json"))
    }

    /// Writes `daemon.json` and the AWS CLI profile files for this start.
    pub fn publish(&self, info: &DaemonInfo, creds: &Credentials) -> Result<(), DataDirError> {
        write_json(&self.path("daemon.json"), info)?;
        write_secret(
            &self.path("aws/credentials"),
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                creds.access_key_id, creds.secret_access_key
            )
            .as_bytes(),
        )?;
        write_secret(
            &self.path("aws/config"),
            format!(
                "[default]\nregion = {}\nendpoint_url = {}\n",
                info.region, info.endpoint
            )
            .as_bytes(),
        )
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, DataDirError> {
    let text = fs::read(path).map_err(|source| DataDirError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| DataDirError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DataDirError> {
    let mut text = serde_json::to_vec_pretty(value).expect("serializable");
    text.push(b'\n');
    write_secret(path, &text)
}

/// Writes a file with mode 0600: temp file in the same directory, fsync, rename.
pub fn write_secret(path: &Path, content: &[u8]) -> Result<(), DataDirError> {
    let err = |source| DataDirError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_kept_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::new(tmp.path().join("lab"));
        dd.create().unwrap();
        let a = dd.credentials_or_create().unwrap();
        let b = dd.credentials_or_create().unwrap();
        assert_eq!(a, b);
        assert!(a.access_key_id.starts_with("AKIA") && a.access_key_id.len() == 20);
        assert!(!format!("{a:?}").contains(&a.secret_access_key));
        let info = DaemonInfo {
            endpoint: "http://127.0.0.1:1".into(),
            region: "ap-northeast-2".into(),
            public_cidr: "127.100.0.0/16".into(),
            ssh_port: 22,
            pid: 1,
        };
        dd.publish(&info, &a).unwrap();
        for f in [
            "credentials.json",
            "daemon.json",
            "aws/credentials",
            "aws/config",
        ] {
            let mode = fs::metadata(dd.path(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let mode = fs::metadata(&dd.root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let config = fs::read_to_string(dd.path("aws/config")).unwrap();
        assert!(config.contains("endpoint_url = http://127.0.0.1:1"));
    }
}
