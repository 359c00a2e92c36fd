//! `tmpfiles.d` at boot, as `systemd-tmpfiles --create --boot` does before any service starts:
//! the directories a package expects under the fresh `/run` (MariaDB's `/run/mysqld`, owned by
//! `mysql`; sudo's `/run/sudo`) exist when its unit's commands run.
//!
//! Order: list `*.conf` in [`DIRS`] (a name in an earlier directory hides the same name in a
//! later one) → read them in file-name order → each line `Type Path Mode User Group Age
//! Argument` (`-` = default; the first line for a path wins) → act: `d`/`D`/`v`/`q`/`Q` make a
//! directory (and set a given mode or owner on one that exists), `f` makes a file with the
//! argument as its content, `L` makes a symlink; only where nothing is yet. Every other type
//! (removal, ACLs, attributes, copies, devices) and every line with a `%` specifier or that needs
//! credentials (`^`) is skipped, as are lines for users or groups the instance does not have.
//! Nothing here fails the boot: a line that cannot be applied is left out.
//!
//! This runs inside the instance (PID 1), on paths under `root`.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};

use crate::sandbox::passwd;

/// Where `tmpfiles.d` snippets live, the one that wins first (systemd's order).
pub const DIRS: &[&str] = &[
    "/etc/tmpfiles.d",
    "/run/tmpfiles.d",
    "/usr/local/lib/tmpfiles.d",
    "/usr/lib/tmpfiles.d",
    "/lib/tmpfiles.d",
];

/// One line we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: char,
    pub path: String,
    pub mode: Option<u32>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub arg: Option<String>,
}

/// Parses one line; `None` for comments and for what we do not act on (see the module docs).
pub fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.contains('%') {
        return None;
    }
    let mut f = line
        .splitn(7, char::is_whitespace)
        .filter(|w| !w.is_empty());
    let ty = f.next()?;
    let kind = ty.chars().next()?;
    let modifiers = &ty[kind.len_utf8()..];
    // `+` changes what L, f and d do to what exists (replace, truncate): we never replace.
    if !modifiers.chars().all(|c| "!-=~+".contains(c)) {
        return None;
    }
    let kind = match kind {
        'd' | 'D' | 'v' | 'q' | 'Q' => 'd',
        'f' | 'L' => kind,
        _ => return None,
    };
    let path = f.next()?.to_string();
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return None;
    }
    let field = |v: Option<&str>| v.filter(|v| *v != "-").map(str::to_string);
    let mode = match field(f.next()) {
        Some(m) => Some(u32::from_str_radix(m.trim_start_matches(['~', ':']), 8).ok()?),
        None => None,
    };
    let user = field(f.next());
    let group = field(f.next());
    let _age = f.next();
    let arg = f
        .next()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    Some(Entry {
        kind,
        path,
        mode,
        user,
        group,
        arg,
    })
}

/// The snippets under `root`, in the order systemd reads them (by file name).
pub fn snippets(root: &Path) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in DIRS {
        let Ok(rd) = std::fs::read_dir(root.join(dir.trim_start_matches('/'))) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                by_name.entry(name).or_insert_with(|| e.path());
            }
        }
    }
    by_name.into_values().collect()
}

/// Every entry under `root`, the first line for a path winning.
pub fn entries(root: &Path) -> Vec<Entry> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for file in snippets(root) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for e in text.lines().filter_map(parse_line) {
            if seen.insert(e.path.clone()) {
                out.push(e);
            }
        }
    }
    out
}

/// Applies every entry under `root` (best effort; see the module docs).
pub fn apply(root: &Path) {
    let entries = entries(root);
    if entries.is_empty() {
        return;
    }
    let pw = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let gr = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    for e in entries {
        let _ = apply_one(root, &e, &pw, &gr);
    }
}

fn apply_one(root: &Path, e: &Entry, pw: &str, gr: &str) -> Option<()> {
    let uid = match &e.user {
        Some(u) => Some(
            u.parse()
                .ok()
                .or_else(|| passwd::lookup(u, pw, gr).map(|x| x.uid))?,
        ),
        None => None,
    };
    let gid = match &e.group {
        Some(g) => Some(g.parse().ok().or_else(|| passwd::group_id(g, gr))?),
        None => None,
    };
    let p = root.join(e.path.trim_start_matches('/'));
    let exists = std::fs::symlink_metadata(&p).is_ok();
    match e.kind {
        'L' => {
            if !exists {
                symlink(e.arg.as_deref()?, &p).ok()?;
            }
            return Some(());
        }
        'f' if !exists => std::fs::write(&p, e.arg.as_deref().unwrap_or("")).ok()?,
        'f' => {}
        _ if !exists => std::fs::create_dir_all(&p).ok()?,
        _ => {}
    }
    let meta = std::fs::symlink_metadata(&p).ok()?;
    if meta.file_type().is_symlink() {
        return Some(());
    }
    let default = if e.kind == 'd' { 0o755 } else { 0o644 };
    let mode = e.mode.or((!exists).then_some(default));
    if let Some(m) = mode
        && meta.permissions().mode() & 0o7777 != m
    {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).ok()?;
    }
    if uid.is_some() || gid.is_some() {
        chown(&p, uid, gid).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_we_act_on_and_lines_we_skip() {
        let e = parse_line("d /run/mysqld 0755 mysql mysql -").unwrap();
        assert_eq!(
            (e.kind, e.path.as_str(), e.mode),
            ('d', "/run/mysqld", Some(0o755))
        );
        assert_eq!(e.user.as_deref(), Some("mysql"));
        assert_eq!(parse_line("D! /run/sudo 0711 root root").unwrap().kind, 'd');
        let l = parse_line("L /var/log/README - - - - ../../usr/share/doc/README").unwrap();
        assert_eq!(l.arg.as_deref(), Some("../../usr/share/doc/README"));
        assert_eq!(l.mode, None);
        for skip in [
            "# d /run/x",
            "",
            "r! /etc/passwd.lock",
            "a+ /var/log/journal - - - - group:adm:r-x",
            "d /run/user/%U 0700",
            "f^ /etc/motd.d/x - - - - login.motd",
            "d relative 0755",
            "d /run/../etc 0755",
        ] {
            assert_eq!(parse_line(skip), None, "{skip}");
        }
    }

    #[test]
    fn etc_hides_usr_and_the_first_line_for_a_path_wins() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["etc/tmpfiles.d", "usr/lib/tmpfiles.d", "run", "etc"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(r.join("etc/group"), "root:x:0:\n").unwrap();
        std::fs::write(
            r.join("usr/lib/tmpfiles.d/a.conf"),
            "d /run/a 0700 root root\n",
        )
        .unwrap();
        std::fs::write(r.join("etc/tmpfiles.d/a.conf"), "d /run/b 0711 - -\n").unwrap();
        std::fs::write(
            r.join("usr/lib/tmpfiles.d/b.conf"),
            "d /run/b 0700\nf /run/b/f 0600 - - - hello\nd /run/c 0755 nobody\n",
        )
        .unwrap();
        apply(r);
        assert!(!r.join("run/a").exists(), "etc/tmpfiles.d/a.conf hides it");
        let m = |p: &str| std::fs::metadata(r.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m("run/b"), 0o711);
        assert_eq!(std::fs::read_to_string(r.join("run/b/f")).unwrap(), "hello");
        assert_eq!(m("run/b/f"), 0o600);
        assert!(!r.join("run/c").exists(), "no user nobody here");
    }
}
