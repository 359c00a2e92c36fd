//! `[Install]` state: what `enable`/`disable`/`mask`/`unmask` write under `/etc/systemd/system`
//! (symlinks, exactly as systemctl makes them), `is-enabled`, and the set of units a boot starts.
//!
//! Enabled = a link `T.wants/NAME` or `T.requires/NAME` in [`ENABLE_DIRS`], or for a SysV
//! script a `S??NAME` link in `/etc/rc[2-5].d`. The boot set is what `multi-user.target` and
//! `default.target` want there, closed over `Wants=`/`Requires=`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::units::{ADMIN_DIR, ENABLE_DIRS, Load, Registry, Unit, in_root, inside};

/// Targets a boot reaches (their wants are started).
pub const BOOT_TARGETS: &[&str] = &["multi-user.target", "default.target", "graphical.target"];

/// What `enable`/`disable`/`mask` printed, and whether they failed.
#[derive(Debug, Default)]
pub struct Changes {
    pub out: String,
    pub err: String,
    pub failed: bool,
}

fn rc_links(root: &Path, script: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lvl in ["2", "3", "4", "5"] {
        let d = in_root(root, &format!("/etc/rc{lvl}.d"));
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('S') && n.len() > 3 && n[3..] == *script {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

/// Every `*.wants`/`*.requires` link to `name` in the enable dirs.
fn want_links(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ENABLE_DIRS {
        let Ok(rd) = std::fs::read_dir(in_root(root, dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".wants") || n.ends_with(".requires") {
                let l = e.path().join(name);
                if l.symlink_metadata().is_ok() {
                    out.push(l);
                }
            }
        }
    }
    out
}

/// `systemctl is-enabled` for a unit of the registry (or an alias name).
pub fn state(root: &Path, reg: &Registry, asked: &str) -> &'static str {
    let Some(u) = reg.get(asked) else {
        return "not-found";
    };
    if *u.load_state() == Load::Masked {
        return "masked";
    }
    if asked != u.name && reg.aliases.contains_key(asked) {
        return "alias";
    }
    if let Some(script) = &u.sysv {
        let s = script.file_name().unwrap_or_default().to_string_lossy();
        return if rc_links(root, &s).is_empty() {
            "disabled"
        } else {
            "enabled"
        };
    }
    if !want_links(root, &u.name).is_empty() {
        return "enabled";
    }
    if !u.has_install {
        return "static";
    }
    "disabled"
}

fn symlink(root: &Path, link: &str, target: &str, ch: &mut Changes) {
    let l = in_root(root, link);
    if let Some(p) = l.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    if std::fs::read_link(&l).is_ok_and(|t| t == Path::new(target)) {
        return;
    }
    let _ = std::fs::remove_file(&l);
    match std::os::unix::fs::symlink(target, &l) {
        Ok(()) => ch
            .out
            .push_str(&format!("Created symlink {link} \u{2192} {target}.\n")),
        Err(e) => {
            ch.err
                .push_str(&format!("Failed to enable unit: {link}: {e}\n"));
            ch.failed = true;
        }
    }
}

fn remove(root: &Path, l: &Path, ch: &mut Changes) {
    if std::fs::remove_file(l).is_ok() {
        ch.out
            .push_str(&format!("Removed \"{}\".\n", inside(root, l)));
    }
}

/// `systemctl enable` for one unit.
pub fn enable(root: &Path, reg: &Registry, u: &Unit, ch: &mut Changes) {
    if *u.load_state() == Load::Masked {
        ch.err.push_str(&format!(
            "Failed to enable unit: Unit file {} is masked.\n",
            u.name
        ));
        ch.failed = true;
        return;
    }
    if let Some(script) = &u.sysv {
        let s = script.file_name().unwrap_or_default().to_string_lossy();
        ch.out.push_str(&format!(
            "Synchronizing state of {} with SysV service script.\n",
            u.name
        ));
        for lvl in ["2", "3", "4", "5"] {
            if rc_links(root, &s)
                .iter()
                .all(|p| !p.starts_with(in_root(root, &format!("/etc/rc{lvl}.d"))))
            {
                let link = format!("/etc/rc{lvl}.d/S01{s}");
                symlink(
                    root,
                    &link,
                    &format!("../init.d/{s}"),
                    &mut Changes::default(),
                );
            }
        }
        return;
    }
    let Some(frag) = &u.fragment else { return };
    let target = inside(root, frag);
    if !u.has_install {
        ch.out.push_str(
            "The unit files have no installation config (WantedBy=, RequiredBy=, Also=,\nAlias= settings in the [Install] section, and DefaultInstance= for template\nunits). This means they are not meant to be enabled or disabled using systemctl.\n",
        );
        return;
    }
    for t in &u.wanted_by {
        symlink(
            root,
            &format!("{ADMIN_DIR}/{t}.wants/{}", u.name),
            &target,
            ch,
        );
    }
    for t in &u.required_by {
        symlink(
            root,
            &format!("{ADMIN_DIR}/{t}.requires/{}", u.name),
            &target,
            ch,
        );
    }
    for a in &u.aliases {
        if a != &u.name && reg.units.get(a).is_none_or(|x| x.name == u.name) {
            symlink(root, &format!("{ADMIN_DIR}/{a}"), &target, ch);
        }
    }
}

/// `systemctl disable` for one unit.
pub fn disable(root: &Path, u: &Unit, ch: &mut Changes) {
    if let Some(script) = &u.sysv {
        let s = script.file_name().unwrap_or_default().to_string_lossy();
        ch.out.push_str(&format!(
            "Synchronizing state of {} with SysV service script.\n",
            u.name
        ));
        for l in rc_links(root, &s) {
            let _ = std::fs::remove_file(l);
        }
        return;
    }
    for l in want_links(root, &u.name) {
        remove(root, &l, ch);
    }
    for a in &u.aliases {
        let l = in_root(root, &format!("{ADMIN_DIR}/{a}"));
        if std::fs::read_link(&l).is_ok() {
            remove(root, &l, ch);
        }
    }
}

/// `systemctl mask` for one name.
pub fn mask(root: &Path, name: &str, ch: &mut Changes) {
    let link = format!("{ADMIN_DIR}/{name}");
    let l = in_root(root, &link);
    if l.symlink_metadata()
        .is_ok_and(|m| !m.file_type().is_symlink())
    {
        ch.err.push_str(&format!(
            "Failed to mask unit: File {link} already exists.\n"
        ));
        ch.failed = true;
        return;
    }
    symlink(root, &link, "/dev/null", ch);
}

/// `systemctl unmask` for one name.
pub fn unmask(root: &Path, name: &str, ch: &mut Changes) {
    let l = in_root(root, &format!("{ADMIN_DIR}/{name}"));
    if std::fs::read_link(&l).is_ok_and(|t| t == Path::new("/dev/null")) {
        remove(root, &l, ch);
    }
}

/// The units a boot starts: what the boot targets want in the enable dirs (and enabled SysV
/// scripts), closed over `Wants=`/`Requires=`. Names, sorted; unknown names are left out.
pub fn boot_set(root: &Path, reg: &mut Registry) -> BTreeSet<String> {
    let mut todo: Vec<String> = Vec::new();
    for dir in ENABLE_DIRS {
        for t in BOOT_TARGETS {
            for kind in ["wants", "requires"] {
                let d = in_root(root, &format!("{dir}/{t}.{kind}"));
                if let Ok(rd) = std::fs::read_dir(&d) {
                    todo.extend(
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned()),
                    );
                }
            }
        }
    }
    for u in reg.units.values() {
        if let Some(script) = &u.sysv
            && !rc_links(
                root,
                &script.file_name().unwrap_or_default().to_string_lossy(),
            )
            .is_empty()
        {
            todo.push(u.name.clone());
        }
    }
    let mut set = BTreeSet::new();
    while let Some(n) = todo.pop() {
        reg.ensure(&n);
        let Some(u) = reg.get(&n) else { continue };
        if set.insert(u.name.clone()) {
            todo.extend(u.wants.iter().chain(&u.requires).cloned());
        }
    }
    set
}
