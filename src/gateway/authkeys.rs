//! `~/.ssh/authorized_keys` as sshd reads it: optional options, key type, base64 key blob,
//! comment. Pure parsing, unit-tested; reading the file safely is `instance_fs`'s job.
//!
//! Options the gateway honours: `command="…"` (forced command), `no-port-forwarding`,
//! `no-pty`, `restrict` (all of those off, like sshd), `from="…"` (address patterns with `*`,
//! `?` and `!`). Unknown options are ignored, as sshd ignores ones it does not know.

use std::net::IpAddr;

use base64::Engine;

/// Options of one authorized key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// `command="…"`: run this instead of what the client asked for.
    pub command: Option<String>,
    /// `no-port-forwarding` (or `restrict`): refuse `-L`/`-R`.
    pub no_port_forwarding: bool,
    /// `no-pty` (or `restrict`): refuse pty-req.
    pub no_pty: bool,
    /// `from="…"`: comma-separated address patterns the client must match.
    pub from: Option<String>,
}

/// One usable line: its options and the key blob (SSH wire encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    pub options: KeyOptions,
    pub key_type: String,
    pub blob: Vec<u8>,
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Every parseable key line of an authorized_keys file (bad lines are skipped, as sshd does).
pub fn parse(text: &str) -> Vec<AuthorizedKey> {
    text.lines().filter_map(parse_line).collect()
}

/// The entry whose blob equals `blob`, if the client address is allowed by its `from=`.
pub fn find<'a>(keys: &'a [AuthorizedKey], blob: &[u8], peer: IpAddr) -> Option<&'a AuthorizedKey> {
    keys.iter().find(|k| {
        k.blob == blob
            && k.options
                .from
                .as_deref()
                .is_none_or(|pats| from_allows(pats, peer))
    })
}

fn parse_line(line: &str) -> Option<AuthorizedKey> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let first = line.split_whitespace().next()?;
    let (options, rest) = if KEY_TYPES.contains(&first) {
        (KeyOptions::default(), line)
    } else {
        let end = options_end(line)?;
        (parse_options(&line[..end]), line[end..].trim_start())
    };
    let mut parts = rest.split_whitespace();
    let key_type = parts.next()?.to_string();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()?;
    // The blob starts with its own type name; it must agree with the line's.
    let name_len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    if blob.get(4..4 + name_len)? != key_type.as_bytes() {
        return None;
    }
    Some(AuthorizedKey {
        options,
        key_type,
        blob,
    })
}

/// Byte offset of the first unquoted whitespace (the end of the options field).
fn options_end(line: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c.is_whitespace() {
            return Some(i);
        }
    }
    None
}

fn parse_options(s: &str) -> KeyOptions {
    let mut o = KeyOptions::default();
    let mut items = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in s.chars() {
        if escaped {
            // sshd only unescapes \" inside quotes; keep other backslashes as they are.
            if c != '"' {
                cur.push('\\');
            }
            cur.push(c);
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ',' && !quoted {
            items.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    for item in items {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(v.to_string())),
            None => (item.to_ascii_lowercase(), None),
        };
        match (name.as_str(), value) {
            ("command", Some(v)) => o.command = Some(v),
            ("from", Some(v)) => o.from = Some(v),
            ("no-port-forwarding", None) => o.no_port_forwarding = true,
            ("no-pty", None) => o.no_pty = true,
            ("restrict", None) => {
                o.no_port_forwarding = true;
                o.no_pty = true;
            }
            ("port-forwarding", None) => o.no_port_forwarding = false,
            ("pty", None) => o.no_pty = false,
            _ => {}
        }
    }
    o
}

/// sshd's `from=` semantics for addresses: any negated match denies, else any match allows.
fn from_allows(patterns: &str, peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    }
    .to_string();
    let mut allowed = false;
    for p in patterns.split(',').map(str::trim) {
        let (neg, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        if glob(p.as_bytes(), peer.as_bytes()) {
            if neg {
                return false;
            }
            allowed = true;
        }
    }
    allowed
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIE3Ss6ZlJp1Ne8/aeqsUxQxdoEXsR+Ev9V+DqQwEAL6Q";

    #[test]
    fn plain_and_commented_lines() {
        let text = format!("# comment\n\nssh-ed25519 {ED} me@host\nssh-ed25519 notbase64!!\n");
        let keys = parse(&text);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_type, "ssh-ed25519");
        assert_eq!(keys[0].options, KeyOptions::default());
    }

    #[test]
    fn root_prefix_of_ec2_images() {
        let line = format!(
            r#"no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo 'Please login as the user \"ec2-user\" rather than the user \"root\".';echo;sleep 10;exit 142" ssh-ed25519 {ED} k"#
        );
        let k = &parse(&line)[0];
        assert!(k.options.no_port_forwarding);
        assert_eq!(
            k.options.command.as_deref(),
            Some(
                r#"echo 'Please login as the user "ec2-user" rather than the user "root".';echo;sleep 10;exit 142"#
            )
        );
    }

    #[test]
    fn type_mismatch_is_skipped() {
        assert!(parse(&format!("ssh-rsa {ED}")).is_empty());
    }

    #[test]
    fn restrict_and_from() {
        let k = &parse(&format!(
            r#"restrict,from="10.*,!10.0.0.9" ssh-ed25519 {ED}"#
        ))[0];
        assert!(k.options.no_pty && k.options.no_port_forwarding);
        let blob = k.blob.clone();
        let keys = vec![k.clone()];
        assert!(find(&keys, &blob, "10.1.2.3".parse().unwrap()).is_some());
        assert!(find(&keys, &blob, "10.0.0.9".parse().unwrap()).is_none());
        assert!(find(&keys, &blob, "127.0.0.1".parse().unwrap()).is_none());
        assert!(find(&keys, &blob, "::ffff:10.1.1.1".parse().unwrap()).is_some());
    }
}
