//! `~/.ssh/authorized_keys`, merged the way cloud-init's `cc_ssh` does it.
//!
//! `~/.ssh` is created 0700 and the file written 0600, both owned by the user; comments and
//! other keys stay; a new key whose blob is already present replaces that line (so options
//! such as root's "Please login as the user …" command are updated, never duplicated).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::userdata::UserDataError;
use crate::userdata::users::{Accounts, PwEntry, chown, io};

impl Accounts {
    /// Merges keys into the user's `~/.ssh/authorized_keys`. An existing line with the same
    /// key blob is replaced (so options are updated), other lines are kept.
    pub fn authorize_keys(
        &self,
        pw: &PwEntry,
        keys: &[String],
        options: Option<&str>,
    ) -> Result<(), UserDataError> {
        if keys.is_empty() {
            return Ok(());
        }
        let home = self.root.join(pw.home.trim_start_matches('/'));
        let ssh_dir = home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).map_err(io(&ssh_dir))?;
        std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&ssh_dir))?;
        chown(&ssh_dir, pw.uid, pw.gid)?;
        let path = ssh_dir.join("authorized_keys");
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<String> = existing.lines().map(str::to_string).collect();
        for key in keys {
            let key = key.trim();
            let Some(blob) = key_blob(key) else { continue };
            let line = match options {
                Some(opts) if !opts.is_empty() => format!("{opts} {}", strip_options(key)),
                _ => key.to_string(),
            };
            match lines.iter_mut().find(|l| key_blob(l) == Some(blob)) {
                Some(old) => *old = line,
                None => lines.push(line),
            }
        }
        let mut text = lines.join("\n");
        text.push('\n');
        write_atomic_fresh(&path, text.as_bytes(), 0o600)?;
        chown(&path, pw.uid, pw.gid)
    }
}

/// Like [`write_atomic`] but always with `mode` (authorized_keys must be 0600).
fn write_atomic_fresh(path: &Path, data: &[u8], mode: u32) -> Result<(), UserDataError> {
    let tmp = path.with_extension("ec2lab-tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Splits an authorized_keys line into whitespace-separated fields, keeping quoted strings.
fn fields(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (None, false, false);
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-")
        || field.starts_with("ecdsa-sha2-")
        || field.starts_with("sk-")
        || field.starts_with("rsa-sha2-")
}

/// The base64 key blob of an authorized_keys line (with or without options).
pub fn key_blob(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let f = fields(line);
    let at = f.iter().position(|x| is_key_type(x))?;
    f.get(at + 1).copied()
}

/// The line from its key type on (options dropped).
fn strip_options(line: &str) -> &str {
    let f = fields(line);
    match f.iter().position(|x| is_key_type(x)) {
        Some(at) => {
            let start = f[at].as_ptr() as usize - line.as_ptr() as usize;
            &line[start..]
        }
        None => line,
    }
}
