//! Users, groups and sudo rules, edited directly in the instance's files.
//!
//! The AMI may have no `useradd`, so this module edits `/etc/passwd`, `/etc/shadow`,
//! `/etc/group` (and `/etc/gshadow` when present) itself, each rewritten atomically with its
//! mode and owner kept; it creates the home from `/etc/skel` and writes sudo rules to
//! `/etc/sudoers.d/90-cloud-init-users`. Keys are in [`crate::userdata::keys`].

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::userdata::UserDataError;
use crate::userdata::cloud_config::UserSpec;

/// A `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PwEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// The instance's account database, rooted at `root`.
pub struct Accounts {
    pub(crate) root: PathBuf,
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UserDataError + '_ {
    move |e| UserDataError::io(path, e)
}

/// Reads a colon-separated database; a missing file is empty.
fn read_db(path: &Path) -> Result<Vec<Vec<String>>, UserDataError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(UserDataError::io(path, e)),
    };
    Ok(text
        .lines()
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect())
}

/// Writes a file atomically, keeping an existing file's mode and owner (else `mode`, root).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), UserDataError> {
    let (mode, owner) = match std::fs::metadata(path) {
        Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(_) => (mode, None),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("ec2lab-tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn write_db(path: &Path, rows: &[Vec<String>], mode: u32) -> Result<(), UserDataError> {
    let mut text = String::new();
    for row in rows {
        text.push_str(&row.join(":"));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes(), mode)
}

fn days_since_epoch() -> String {
    (time::OffsetDateTime::now_utc().unix_timestamp() / 86_400).to_string()
}

impl Accounts {
    pub fn new(root: &Path) -> Accounts {
        Accounts {
            root: root.to_path_buf(),
        }
    }

    fn etc(&self, name: &str) -> PathBuf {
        self.root.join("etc").join(name)
    }

    /// Looks a user up by name.
    pub fn user(&self, name: &str) -> Result<Option<PwEntry>, UserDataError> {
        Ok(read_db(&self.etc("passwd"))?
            .into_iter()
            .find(|r| r.len() >= 7 && r[0] == name)
            .map(|r| PwEntry {
                name: r[0].clone(),
                uid: r[2].parse().unwrap_or(0),
                gid: r[3].parse().unwrap_or(0),
                home: r[5].clone(),
                shell: r[6].clone(),
            }))
    }

    /// Looks a group's gid up by name.
    pub fn group(&self, name: &str) -> Result<Option<u32>, UserDataError> {
        Ok(read_db(&self.etc("group"))?
            .into_iter()
            .find(|r| r.len() >= 3 && r[0] == name)
            .and_then(|r| r[2].parse().ok()))
    }

    /// Resolves `user[:group]` (names or numbers) against the instance's files.
    pub fn owner(&self, spec: &str) -> Result<(u32, u32), String> {
        let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
        let (uid, user_gid) = match user.parse::<u32>() {
            Ok(uid) => (uid, uid),
            Err(_) => match self.user(user).map_err(|e| e.to_string())? {
                Some(pw) => (pw.uid, pw.gid),
                None => return Err(format!("unknown user {user:?}")),
            },
        };
        let gid = if group.is_empty() {
            user_gid
        } else if let Ok(gid) = group.parse::<u32>() {
            gid
        } else {
            self.group(group)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("unknown group {group:?}"))?
        };
        Ok((uid, gid))
    }

    /// Creates a group if missing (gid from 1000, or 100..999 for system groups).
    pub fn ensure_group(&self, name: &str, system: bool) -> Result<u32, UserDataError> {
        let path = self.etc("group");
        let mut rows = read_db(&path)?;
        if let Some(gid) = rows
            .iter()
            .find(|r| r.len() >= 3 && r[0] == name)
            .and_then(|r| r[2].parse().ok())
        {
            return Ok(gid);
        }
        let used: Vec<u32> = rows.iter().filter_map(|r| r.get(2)?.parse().ok()).collect();
        let gid = free_id(&used, system, None);
        rows.push(vec![
            name.into(),
            "x".into(),
            gid.to_string(),
            String::new(),
        ]);
        write_db(&path, &rows, 0o644)?;
        self.gshadow_add_group(name)?;
        Ok(gid)
    }

    fn gshadow_add_group(&self, name: &str) -> Result<(), UserDataError> {
        let path = self.etc("gshadow");
        if !path.exists() {
            return Ok(());
        }
        let mut rows = read_db(&path)?;
        if !rows.iter().any(|r| r[0] == name) {
            rows.push(vec![name.into(), "!".into(), String::new(), String::new()]);
            write_db(&path, &rows, 0o640)?;
        }
        Ok(())
    }

    /// Adds `user` to the member list of each group (in `group` and `gshadow`).
    pub fn add_members(&self, user: &str, groups: &[String]) -> Result<(), UserDataError> {
        for (file, field) in [("group", 3), ("gshadow", 3)] {
            let path = self.etc(file);
            if file == "gshadow" && !path.exists() {
                continue;
            }
            let mut rows = read_db(&path)?;
            let mut changed = false;
            for row in rows.iter_mut().filter(|r| groups.contains(&r[0])) {
                row.resize(row.len().max(field + 1), String::new());
                let mut members: Vec<&str> =
                    row[field].split(',').filter(|m| !m.is_empty()).collect();
                if !members.contains(&user) {
                    members.push(user);
                    row[field] = members.join(",");
                    changed = true;
                }
            }
            if changed {
                write_db(&path, &rows, 0o644)?;
            }
        }
        Ok(())
    }

    /// Creates (or updates) a user as cloud-init's `create_user` does. Returns the entry and
    /// whether it was new.
    pub fn ensure_user(&self, spec: &UserSpec) -> Result<(PwEntry, bool), UserDataError> {
        let existing = self.user(&spec.name)?;
        let created = existing.is_none();
        let entry = match existing {
            Some(pw) => pw,
            None => self.create_user(spec)?,
        };
        let mut groups = Vec::new();
        for g in &spec.groups {
            if spec.groups_if_exist {
                if self.group(g)?.is_some() {
                    groups.push(g.clone());
                }
            } else {
                self.ensure_group(g, false)?;
                groups.push(g.clone());
            }
        }
        self.add_members(&spec.name, &groups)?;
        self.set_password(&spec.name, spec.hashed_passwd.as_deref(), spec.lock_passwd)?;
        Ok((entry, created))
    }

    fn create_user(&self, spec: &UserSpec) -> Result<PwEntry, UserDataError> {
        let passwd_path = self.etc("passwd");
        let mut rows = read_db(&passwd_path)?;
        let used: Vec<u32> = rows.iter().filter_map(|r| r.get(2)?.parse().ok()).collect();
        let uid = spec
            .uid
            .unwrap_or_else(|| free_id(&used, spec.system, None));
        let gid = match &spec.primary_group {
            Some(g) => self.ensure_group(g, spec.system)?,
            None => match self.group(&spec.name)? {
                Some(gid) => gid,
                None => {
                    let group_rows = read_db(&self.etc("group"))?;
                    let used: Vec<u32> = group_rows
                        .iter()
                        .filter_map(|r| r.get(2)?.parse().ok())
                        .collect();
                    let gid = free_id(&used, spec.system, Some(uid));
                    let mut group_rows = group_rows;
                    group_rows.push(vec![
                        spec.name.clone(),
                        "x".into(),
                        gid.to_string(),
                        String::new(),
                    ]);
                    write_db(&self.etc("group"), &group_rows, 0o644)?;
                    self.gshadow_add_group(&spec.name)?;
                    gid
                }
            },
        };
        let home = spec
            .homedir
            .clone()
            .unwrap_or_else(|| format!("/home/{}", spec.name));
        let shell = spec.shell.clone().unwrap_or_else(|| {
            if self.root.join("bin/bash").exists() {
                "/bin/bash".into()
            } else {
                "/bin/sh".into()
            }
        });
        let entry = PwEntry {
            name: spec.name.clone(),
            uid,
            gid,
            home: home.clone(),
            shell: shell.clone(),
        };
        rows.push(vec![
            spec.name.clone(),
            "x".into(),
            uid.to_string(),
            gid.to_string(),
            spec.gecos.clone().unwrap_or_default(),
            home,
            shell,
        ]);
        write_db(&passwd_path, &rows, 0o644)?;
        let shadow_path = self.etc("shadow");
        let mut shadow = read_db(&shadow_path)?;
        if !shadow.iter().any(|r| r[0] == spec.name) {
            shadow.push(
                [
                    &spec.name,
                    "!",
                    &days_since_epoch(),
                    "0",
                    "99999",
                    "7",
                    "",
                    "",
                    "",
                ]
                .map(str::to_string)
                .to_vec(),
            );
            write_db(&shadow_path, &shadow, 0o640)?;
        }
        if !spec.no_create_home {
            self.make_home(&entry)?;
        }
        Ok(entry)
    }

    /// Creates the home directory (0700) from `/etc/skel` unless it exists.
    fn make_home(&self, pw: &PwEntry) -> Result<(), UserDataError> {
        let home = self.root.join(pw.home.trim_start_matches('/'));
        if home.exists() {
            return Ok(());
        }
        if let Some(parent) = home.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::create_dir(&home).map_err(io(&home))?;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&home))?;
        copy_skel(&self.etc("skel"), &home, pw.uid, pw.gid)?;
        chown(&home, pw.uid, pw.gid)
    }

    /// Sets the shadow password field; `lock` prefixes `!` as `passwd -l` does.
    fn set_password(
        &self,
        name: &str,
        hash: Option<&str>,
        lock: bool,
    ) -> Result<(), UserDataError> {
        let path = self.etc("shadow");
        let mut rows = read_db(&path)?;
        let Some(row) = rows.iter_mut().find(|r| r[0] == name && r.len() >= 2) else {
            return Ok(());
        };
        let before = row[1].clone();
        if let Some(hash) = hash {
            row[1] = hash.to_string();
        }
        if lock && !row[1].starts_with('!') {
            row[1] = format!("!{}", row[1]);
        }
        if row[1] != before {
            write_db(&path, &rows, 0o640)?;
        }
        Ok(())
    }

    /// Appends sudo rules to `/etc/sudoers.d/90-cloud-init-users` (0440), skipping rules
    /// already there, and makes sure `/etc/sudoers` includes the directory.
    pub fn add_sudo_rules(
        &self,
        user: &str,
        rules: &[String],
        header: &str,
    ) -> Result<(), UserDataError> {
        if rules.is_empty() {
            return Ok(());
        }
        self.ensure_sudoers_includedir()?;
        let path = self.etc("sudoers.d/90-cloud-init-users");
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let new: Vec<String> = rules
            .iter()
            .map(|r| format!("{user} {r}"))
            .filter(|l| !existing.lines().any(|e| e.trim() == l))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut text = if existing.is_empty() {
            format!("{header}\n")
        } else {
            existing
        };
        text.push_str(&format!("\n# User rules for {user}\n{}\n", new.join("\n")));
        write_atomic(&path, text.as_bytes(), 0o440)
    }

    fn ensure_sudoers_includedir(&self) -> Result<(), UserDataError> {
        let path = self.etc("sudoers");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let has = text.lines().any(|l| {
            let l = l.trim();
            l.starts_with("#includedir /etc/sudoers.d")
                || l.starts_with("@includedir /etc/sudoers.d")
        });
        if has {
            return Ok(());
        }
        let mut text = text;
        text.push_str(
            "\n# See sudoers(5) for more information on \"#include\" directives:\n\n#includedir /etc/sudoers.d\n",
        );
        write_atomic(&path, text.as_bytes(), 0o440)
    }
}

/// A free id as `useradd`/`groupadd` pick one: `want` when free and in range, else one above
/// the highest used normal id (1000..60000), or for system accounts the highest free id
/// below 1000 (they are allocated downwards).
fn free_id(used: &[u32], system: bool, want: Option<u32>) -> u32 {
    let (lo, hi) = if system { (100, 999) } else { (1000, 59_999) };
    if let Some(w) = want.filter(|w| !used.contains(w) && (lo..=hi).contains(w)) {
        return w;
    }
    if system {
        return (lo..=hi).rev().find(|id| !used.contains(id)).unwrap_or(hi);
    }
    let max = used.iter().copied().filter(|u| (lo..=hi).contains(u)).max();
    max.map_or(lo, |m| m + 1)
}

pub fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), UserDataError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io(path))
}

fn copy_skel(skel: &Path, dest: &Path, uid: u32, gid: u32) -> Result<(), UserDataError> {
    let Ok(entries) = std::fs::read_dir(skel) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let ft = entry.file_type().map_err(io(&from))?;
        if ft.is_dir() {
            std::fs::create_dir_all(&to).map_err(io(&to))?;
            copy_skel(&from, &to, uid, gid)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(io(&from))?;
            std::os::unix::fs::symlink(target, &to).map_err(io(&to))?;
        } else {
            std::fs::copy(&from, &to).map_err(io(&to))?;
        }
        chown(&to, uid, gid)?;
    }
    Ok(())
}
