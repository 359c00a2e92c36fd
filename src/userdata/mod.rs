//! User data: validation for the API, and the cloud-init work an instance does at each boot.
//!
//! The API calls [`validate`] on the base64-decoded bytes (at most [`MAX_RAW`], counted before
//! any gunzip). The daemon writes a [`BootContext`] into the instance; the instance's PID 1
//! calls [`boot`] once per boot, inside the instance (root is `/`, stdout is the console).
//! [`boot`] decodes the user data ([`decode`]: gzip, MIME, `#include`, …), reads the merged
//! `#cloud-config` ([`cloud_config`]) and runs the cloud-init stages in order ([`stages`]):
//! boothooks and `bootcmd` every boot; `write_files`, `users`/`groups` and SSH keys
//! ([`users`], [`keys`]) once per instance; `runcmd`, packages, deferred files and user scripts once per
//! instance; then the host key block ([`fingerprints`]) and `final_message` every boot.
//! Output goes to `/var/log/cloud-init-output.log` and the console ([`run`]).

pub mod cloud_config;
pub mod decode;
pub mod files;
pub mod fingerprints;
pub mod keys;
pub mod packages;
pub mod run;
mod stages;
pub mod users;
pub mod yaml;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest user data EC2 accepts: 16 KB of raw bytes (before base64, before gunzip).
pub const MAX_RAW: usize = 16 * 1024;

/// The version string in banners and `final_message` (`{{version}}`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-ec2lab");

/// Errors of this module. Problems inside the user data itself are logged, not returned.
#[derive(Debug, thiserror::Error)]
pub enum UserDataError {
    #[error("user data is {size} bytes, more than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("invalid instance id {0:?}")]
    InvalidInstanceId(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("boot context {}: {message}", path.display())]
    Context { path: PathBuf, message: String },
}

impl UserDataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        UserDataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Checks user data as RunInstances/ModifyInstanceAttribute receive it (already base64-decoded).
pub fn validate(raw: &[u8]) -> Result<(), UserDataError> {
    if raw.len() > MAX_RAW {
        return Err(UserDataError::TooLarge {
            size: raw.len(),
            max: MAX_RAW,
        });
    }
    Ok(())
}

/// What an instance needs to know at boot. The daemon hands it to the instance's PID 1 in
/// memory (as JSON, never through a file the instance can reach) before PID 1 calls [`boot`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct BootContext {
    pub instance_id: String,
    /// The AMI's default user, e.g. `ec2-user`.
    pub default_user: String,
    /// The launch key pair's authorized_keys line(s).
    pub public_keys: Vec<String>,
    /// Raw decoded user data (may be gzip); base64 in JSON.
    #[serde(with = "b64_opt", default)]
    pub user_data: Option<Vec<u8>>,
    /// `/etc/ssh` as seen inside the instance (host keys already written).
    pub host_key_dir: PathBuf,
    pub hostname: String,
    /// `ec2lab`; shown in `final_message` as the datasource (`DataSourceEc2lab`).
    pub cloud_name: String,
}

impl std::fmt::Debug for BootContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootContext")
            .field("instance_id", &self.instance_id)
            .field("default_user", &self.default_user)
            .field("public_keys", &self.public_keys.len())
            .field("user_data", &self.user_data.as_ref().map(|_| "***"))
            .field("host_key_dir", &self.host_key_dir)
            .field("hostname", &self.hostname)
            .field("cloud_name", &self.cloud_name)
            .finish()
    }
}

impl BootContext {
    /// Reads a context written by [`BootContext::save`].
    pub fn load(path: &Path) -> Result<Self, UserDataError> {
        let text = std::fs::read(path).map_err(|e| UserDataError::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| UserDataError::Context {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the context as JSON (mode 0600, atomically), creating parent directories.
    pub fn save(&self, path: &Path) -> Result<(), UserDataError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| UserDataError::Context {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        users::write_atomic(path, &json, 0o600)
    }
}

mod b64_opt {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// Runs the boot-time cloud-init work inside the instance (`/` is the instance root, stdout
/// is the console). Call once per boot.
///
/// `services` runs between the config and final stages (where cloud-init's `cloud-final`
/// waits for `multi-user.target`): the instance's PID 1 starts the enabled units there.
pub fn boot(
    ctx: &BootContext,
    services: &mut dyn FnMut() -> Vec<String>,
) -> Result<(), UserDataError> {
    // SAFETY: setting a signal disposition to SIG_DFL has no memory-safety preconditions. An
    // inherited SIG_IGN for SIGCHLD would make the kernel reap our scripts before we can
    // read their exit status (and scripts would inherit it through exec).
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    let mut stdout = std::io::stdout();
    stages::Boot::new(Path::new("/"), ctx, &mut stdout)?
        .before_final(services)
        .run()
}

/// [`boot`] with the instance root at `root` (tests use a temp directory).
pub fn boot_at(root: &Path, ctx: &BootContext) -> Result<(), UserDataError> {
    let mut stdout = std::io::stdout();
    boot_with(root, ctx, &mut stdout)
}

/// [`boot_at`] with an explicit console sink.
pub fn boot_with(
    root: &Path,
    ctx: &BootContext,
    console: &mut dyn std::io::Write,
) -> Result<(), UserDataError> {
    stages::Boot::new(root, ctx, console)?.run()
}
