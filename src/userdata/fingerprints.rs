//! The SSH host key block cloud-init prints to the console (`write-ssh-key-fingerprints`).
//!
//! For each `ssh_host_*key.pub` in sorted order: one `ssh-keygen -l` style line
//! (`256 SHA256:<unpadded base64> <comment> (ED25519)`) between the `#####` and
//! `BEGIN/END SSH HOST KEY FINGERPRINTS` markers, every one of those lines carrying the syslog
//! prefix `logger -s -t ec2` adds on EC2 (`<14>Nov 22 03:14:00 ec2: `, which scrapers count
//! fields by); then the `.pub` lines between the unprefixed `BEGIN/END SSH HOST KEY KEYS`.
//! The fingerprint is computed here (SHA-256 of the key blob), not with `ssh-keygen`.

use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

const HASHES: &str = "#############################################################";

/// A parsed `.pub` line.
#[derive(Debug, Clone, PartialEq)]
pub struct PubKey {
    pub key_type: String,
    pub blob: Vec<u8>,
    pub comment: Option<String>,
}

/// Parses `type base64 [comment]`.
pub fn parse_pub(line: &str) -> Option<PubKey> {
    let mut it = line.split_whitespace();
    let key_type = it.next()?.to_string();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(it.next()?)
        .ok()?;
    let comment: Vec<&str> = it.collect();
    Some(PubKey {
        key_type,
        blob,
        comment: (!comment.is_empty()).then(|| comment.join(" ")),
    })
}

/// `SHA256:<unpadded base64>` of the key blob.
pub fn sha256_fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// Reads the SSH wire string at `pos`, advancing it.
fn wire_string<'a>(blob: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(blob.get(*pos..*pos + 4)?.try_into().ok()?) as usize;
    let s = blob.get(*pos + 4..*pos + 4 + len)?;
    *pos += 4 + len;
    Some(s)
}

fn mpint_bits(m: &[u8]) -> u32 {
    let m: &[u8] = &m[m.iter().position(|b| *b != 0).unwrap_or(m.len())..];
    match m.first() {
        Some(first) => (m.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
        None => 0,
    }
}

/// The key size and type label `ssh-keygen -l` prints.
pub fn bits_and_label(key: &PubKey) -> (u32, &'static str) {
    let t = key.key_type.as_str();
    let mut pos = 0;
    match t {
        "ssh-ed25519" => (256, "ED25519"),
        "sk-ssh-ed25519@openssh.com" => (256, "ED25519-SK"),
        "sk-ecdsa-sha2-nistp256@openssh.com" => (256, "ECDSA-SK"),
        "ecdsa-sha2-nistp256" => (256, "ECDSA"),
        "ecdsa-sha2-nistp384" => (384, "ECDSA"),
        "ecdsa-sha2-nistp521" => (521, "ECDSA"),
        "ssh-rsa" | "ssh-dss" => {
            // ssh-rsa: string type, mpint e, mpint n. ssh-dss: string type, mpint p, …
            let _ = wire_string(&key.blob, &mut pos);
            let first = wire_string(&key.blob, &mut pos).unwrap_or_default();
            if t == "ssh-dss" {
                return (mpint_bits(first), "DSA");
            }
            let n = wire_string(&key.blob, &mut pos).unwrap_or_default();
            (mpint_bits(n), "RSA")
        }
        _ => (0, "UNKNOWN"),
    }
}

/// One `ssh-keygen -l -f FILE` line.
pub fn fingerprint_line(key: &PubKey, default_comment: &str) -> String {
    let (bits, label) = bits_and_label(key);
    format!(
        "{bits} {} {} ({label})",
        sha256_fingerprint(&key.blob),
        key.comment.as_deref().unwrap_or(default_comment)
    )
}

/// The `logger` prefix, e.g. `<14>Nov  2 03:14:00 ec2: `.
pub fn logger_prefix(now: time::OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "<14>{} {:>2} {:02}:{:02}:{:02} ec2: ",
        MONTHS[usize::from(u8::from(now.month())) - 1],
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// The console block for the host keys in `dir`; blacklists hold key types to leave out.
pub fn console_block(
    dir: &Path,
    hostname: &str,
    now: time::OffsetDateTime,
    fp_blacklist: &[String],
    key_blacklist: &[String],
) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("ssh_host_") && n.ends_with("key.pub"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let keys: Vec<(String, PubKey)> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            let line = text.lines().next()?.trim().to_string();
            let key = parse_pub(&line)?;
            Some((line, key))
        })
        .collect();
    let prefix = logger_prefix(now);
    let default_comment = format!("root@{hostname}");
    let mut out = vec![
        format!("{prefix}{HASHES}"),
        format!("{prefix}-----BEGIN SSH HOST KEY FINGERPRINTS-----"),
    ];
    for (_, key) in keys
        .iter()
        .filter(|(_, k)| !fp_blacklist.contains(&k.key_type))
    {
        out.push(format!(
            "{prefix}{}",
            fingerprint_line(key, &default_comment)
        ));
    }
    out.push(format!("{prefix}-----END SSH HOST KEY FINGERPRINTS-----"));
    out.push(format!("{prefix}{HASHES}"));
    out.push("-----BEGIN SSH HOST KEY KEYS-----".into());
    for (line, _) in keys
        .iter()
        .filter(|(_, k)| !key_blacklist.contains(&k.key_type))
    {
        out.push(line.clone());
    }
    out.push("-----END SSH HOST KEY KEYS-----".into());
    out
}
