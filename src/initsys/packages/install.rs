//! `yum install`, `update`, `remove` (see the parent module for the order of an install), and
//! the alias links that give Debian's services Amazon Linux's names (`httpd` → `apache2`).

use std::path::Path;

use super::super::dpkg::{self, Db};
use super::super::pkgmap::{self, Entry};
use super::super::units::{ADMIN_DIR, UNIT_DIRS};
use super::{Opts, ROOT, confirm, offline_reason, online};

pub(super) fn install(db: &Db, entries: &[Entry], o: &Opts) -> i32 {
    if entries.is_empty() {
        eprintln!("Error: Need to pass a list of pkgs to install");
        return 1;
    }
    let mut missing: Vec<(&Entry, Vec<&str>)> = Vec::new();
    for e in entries {
        if e.name.ends_with(".rpm") {
            eprintln!(
                "Error: {} is an RPM: this image installs Debian's .deb packages",
                e.name
            );
            return 1;
        }
        let need: Vec<&str> = e
            .debian
            .iter()
            .filter(|r| db.satisfies(r).is_none())
            .map(|r| pkgmap::apt_name(r))
            .collect();
        if need.is_empty() {
            println!("{}", installed_line(db, e));
        } else {
            missing.push((e, need));
        }
    }
    if missing.is_empty() {
        link_services(Path::new(ROOT), db, entries);
        return 0;
    }
    if !online(db, o) {
        for (e, need) in &missing {
            eprintln!(
                "Error: offline: {} is not in this image (Debian: {}) and {}.",
                e.name,
                need.join(" "),
                offline_reason(db, o)
            );
        }
        link_services(Path::new(ROOT), db, entries);
        return 1;
    }
    let mut pkgs: Vec<&str> = missing
        .iter()
        .flat_map(|(_, n)| n.iter().copied())
        .collect();
    pkgs.dedup();
    if !o.yes && !confirm(&pkgs) {
        println!("Operation aborted.");
        return 1;
    }
    let root = Path::new(ROOT);
    if !dpkg::have_lists(root) && dpkg::apt_get(&["update"], o.quiet) != 0 {
        eprintln!("Error: apt-get update failed: no package lists");
        return 1;
    }
    let code = dpkg::apt_get(&[&["install", "-y"][..], &pkgs].concat(), o.quiet);
    let db = Db::load(root).unwrap_or_default();
    link_services(root, &db, entries);
    if code != 0 {
        eprintln!("Error: apt-get install {} failed", pkgs.join(" "));
        return 1;
    }
    println!("\nInstalled:\n  {}\n\nComplete!", pkgs.join(" "));
    0
}

/// `Package httpd is already installed (Debian's apache2 2.4.62-1~deb12u2).`
fn installed_line(db: &Db, e: &Entry) -> String {
    let have: Vec<String> = e
        .debian
        .iter()
        .filter_map(|r| db.satisfies(r))
        .map(|p| format!("{} {}", p.name, p.version).trim_end().to_string())
        .collect();
    let note = e.note.map(|n| format!(" {n}.")).unwrap_or_default();
    if have.is_empty() {
        format!("Package {}: nothing to install on Debian.{note}", e.name)
    } else {
        format!(
            "Package {} is already installed (Debian's {}).{note}",
            e.name,
            have.join(", ")
        )
    }
}

pub(super) fn update(db: &Db, entries: &[Entry], o: &Opts) -> i32 {
    if !online(db, o) {
        println!(
            "Offline: nothing updated ({}); the image's packages stay as they are.",
            offline_reason(db, o)
        );
        return 0;
    }
    let pkgs: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.debian.iter().map(|r| pkgmap::apt_name(r)))
        .collect();
    if dpkg::apt_get(&["update"], o.quiet) != 0 {
        return 1;
    }
    let code = if pkgs.is_empty() {
        dpkg::apt_get(&["upgrade", "-y"], o.quiet)
    } else {
        dpkg::apt_get(
            &[&["install", "-y", "--only-upgrade"][..], &pkgs].concat(),
            o.quiet,
        )
    };
    if code == 0 {
        println!("Complete!");
    }
    i32::from(code != 0)
}

pub(super) fn remove(db: &Db, entries: &[Entry], o: &Opts) -> i32 {
    let mut pkgs = Vec::new();
    for e in entries {
        let have: Vec<&str> = e
            .debian
            .iter()
            .filter_map(|r| db.satisfies(r))
            .map(|p| p.name.as_str())
            .collect();
        if have.is_empty() {
            println!("No match for argument: {}", e.name);
        }
        pkgs.extend(have);
    }
    if pkgs.is_empty() {
        println!("No packages marked for removal.");
        return 0;
    }
    if !db.writable(Path::new(ROOT)) {
        eprintln!(
            "Error: cannot remove {}: this image's /usr is the host's, read-only.",
            pkgs.join(" ")
        );
        return 1;
    }
    if !o.yes && !confirm(&pkgs) {
        println!("Operation aborted.");
        return 1;
    }
    i32::from(dpkg::apt_get(&[&["remove", "-y"][..], &pkgs].concat(), o.quiet) != 0)
}

/// For installed packages whose service Amazon Linux names otherwise: the alias link, so
/// `systemctl start httpd` starts Debian's apache2 (as systemd honours alias links).
fn link_services(root: &Path, db: &Db, entries: &[Entry]) {
    let mut linked = false;
    for e in entries {
        let Some((al, deb)) = e.service else { continue };
        if e.debian.iter().any(|r| db.satisfies(r).is_none()) {
            continue;
        }
        let al_unit = format!("{al}.service");
        if UNIT_DIRS
            .iter()
            .any(|d| root.join(&d[1..]).join(&al_unit).symlink_metadata().is_ok())
        {
            continue;
        }
        let Some(target) = find_unit(root, deb) else {
            continue;
        };
        let dir = root.join(&ADMIN_DIR[1..]);
        let _ = std::fs::create_dir_all(&dir);
        if std::os::unix::fs::symlink(&target, dir.join(&al_unit)).is_ok() {
            linked = true;
        }
    }
    if linked {
        let _ = super::super::ctl::call(&super::super::ctl::Request::DaemonReload);
    }
}

/// `/lib/systemd/system/NAME.service` (or the first match of a `php*-fpm` pattern).
fn find_unit(root: &Path, pattern: &str) -> Option<String> {
    for d in UNIT_DIRS.iter().skip(1) {
        let Ok(rd) = std::fs::read_dir(root.join(&d[1..])) else {
            continue;
        };
        let mut hits: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_suffix(".service")
                    .is_some_and(|b| pkgmap::matches(pattern, b))
            })
            .collect();
        hits.sort();
        if let Some(h) = hits.first() {
            return Some(format!("{d}/{h}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_apache2_answers_to_httpd() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let lib = r.join("lib/systemd/system");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(
            lib.join("apache2.service"),
            "[Service]\nExecStart=/usr/sbin/apachectl start\n",
        )
        .unwrap();
        let mut db = Db {
            pkgs: Default::default(),
            from_status: true,
        };
        link_services(r, &db, &[pkgmap::lookup("httpd")]);
        assert!(
            !r.join("etc/systemd/system/httpd.service").exists(),
            "not installed"
        );
        db.pkgs = dpkg::parse_status("Package: apache2\nStatus: install ok installed\n");
        link_services(r, &db, &[pkgmap::lookup("httpd")]);
        let link = std::fs::read_link(r.join("etc/systemd/system/httpd.service")).unwrap();
        assert_eq!(link, Path::new("/lib/systemd/system/apache2.service"));
        let reg = crate::initsys::units::Registry::scan(r);
        assert_eq!(reg.resolve("httpd"), Some("apache2.service"));
    }

    #[test]
    fn installed_lines_name_the_debian_package_and_version() {
        let db = Db {
            pkgs: dpkg::parse_status(
                "Package: apache2\nStatus: install ok installed\nVersion: 2.4.62-1~deb12u2\n",
            ),
            from_status: true,
        };
        assert_eq!(
            installed_line(&db, &pkgmap::lookup("httpd")),
            "Package httpd is already installed (Debian's apache2 2.4.62-1~deb12u2)."
        );
        assert!(
            installed_line(&db, &pkgmap::lookup("epel-release"))
                .starts_with("Package epel-release: nothing to install on Debian.")
        );
    }
}
