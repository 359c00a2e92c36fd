//! `write_files` and URL fetching (`#include`, `write_files` `source`).
//!
//! A file item is decoded by its `encoding` (text, b64/base64, gz/gzip, gz+b64 …), written under
//! the instance root (parents created 0755, truncate or `append`), then given its permissions
//! (default 0644) and `owner` (names resolved in the instance's own `/etc/passwd`/`group`).
//! URLs: `file://` and plain paths read inside the instance; `http://` via ureq with a timeout.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;

use crate::userdata::cloud_config::WriteFile;
use crate::userdata::decode::gunzip;
use crate::userdata::users::{Accounts, chown};

/// Largest document fetched from a URL.
const MAX_FETCH: u64 = 16 * 1024 * 1024;

/// Fetches `url` as seen from inside the instance rooted at `root`.
pub fn fetch(root: &Path, url: &str) -> Result<Vec<u8>, String> {
    let path = if let Some(p) = url.strip_prefix("file://") {
        Some(p)
    } else if url.starts_with('/') {
        Some(url)
    } else {
        None
    };
    if let Some(p) = path {
        let local = root.join(p.trim_start_matches('/'));
        return std::fs::read(&local).map_err(|e| e.to_string());
    }
    if !url.starts_with("http://") {
        return Err("unsupported url (ec2lab instances fetch file:// and http:// only)".into());
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    resp.body_mut()
        .with_config()
        .limit(MAX_FETCH)
        .read_to_vec()
        .map_err(|e| e.to_string())
}

/// Decodes an item's content by its `encoding`.
pub fn decode_content(item: &WriteFile) -> Result<Vec<u8>, String> {
    let b64 = |data: &[u8]| {
        let compact: Vec<u8> = data
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| format!("invalid base64 content: {e}"))
    };
    let gz = |data: &[u8]| gunzip(data).map_err(|e| format!("invalid gzip content: {e}"));
    match item.encoding.as_str() {
        "" | "text/plain" | "text" => Ok(item.content.clone()),
        "b64" | "base64" => b64(&item.content),
        "gz" | "gzip" => gz(&item.content),
        "gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64" => gz(&b64(&item.content)?),
        other => Err(format!("unknown encoding {other:?}")),
    }
}

/// Writes one item under `root`. Errors are short reasons for the log.
pub fn write_one(root: &Path, item: &WriteFile, content: &[u8]) -> Result<(), String> {
    if !item.path.starts_with('/') || item.path.split('/').any(|c| c == "..") {
        return Err(format!("path {:?} is not absolute", item.path));
    }
    let path = root.join(item.path.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(item.append)
        .truncate(!item.append)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", item.path))?;
    f.write_all(content)
        .map_err(|e| format!("cannot write {}: {e}", item.path))?;
    let mode = item.permissions.unwrap_or(0o644);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", item.path))?;
    let (uid, gid) = Accounts::new(root)
        .owner(&item.owner)
        .map_err(|e| format!("owner {:?} of {}: {e}", item.owner, item.path))?;
    chown(&path, uid, gid).map_err(|e| e.to_string())
}
