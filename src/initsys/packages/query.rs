//! `yum list`, `info`, `makecache` and `clean`: what the image has, as dnf shows it.

use std::path::Path;

use super::super::dpkg::{self, Db};
use super::super::pkgmap::{self, Entry};
use super::{Opts, ROOT, offline_reason, online};

/// `list [installed] [NAME…]`: Debian's installed packages, as dnf lists them.
pub(super) fn list(db: &Db, words: &[String]) -> i32 {
    let names = match words.first().map(String::as_str) {
        Some("installed") | Some("all") => &words[1..],
        _ => words,
    };
    let mut rows: Vec<&dpkg::Pkg> = if names.is_empty() {
        db.pkgs.values().collect()
    } else {
        names
            .iter()
            .flat_map(|n| pkgmap::lookup(n).debian)
            .filter_map(|r| db.satisfies(&r))
            .collect()
    };
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows.dedup_by(|a, b| a.name == b.name);
    if rows.is_empty() {
        eprintln!("Error: No matching Packages to list");
        return 1;
    }
    println!("Installed Packages");
    for p in rows {
        let arch = if p.arch.is_empty() { "amd64" } else { &p.arch };
        println!(
            "{:<40} {:<30} @debian",
            format!("{}.{arch}", p.name),
            p.version
        );
    }
    0
}

pub(super) fn info(db: &Db, entries: &[Entry]) -> i32 {
    let mut code = 0;
    for e in entries {
        let have: Vec<&dpkg::Pkg> = e.debian.iter().filter_map(|r| db.satisfies(r)).collect();
        if have.is_empty() || have.len() < e.debian.len() {
            eprintln!(
                "Error: No matching Packages to list ({} is not installed; Debian: {})",
                e.name,
                e.debian
                    .iter()
                    .map(|r| pkgmap::apt_name(r))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            code = 1;
            continue;
        }
        println!("Installed Packages");
        for p in have {
            println!("Name         : {}", e.name);
            println!("Debian       : {}", p.name);
            println!("Version      : {}", p.version);
            println!(
                "Architecture : {}",
                if p.arch.is_empty() { "amd64" } else { &p.arch }
            );
            if !p.summary.is_empty() {
                println!("Summary      : {}", p.summary);
            }
            println!("Repository   : @System\n");
        }
    }
    code
}

pub(super) fn makecache(db: &Db, o: &Opts) -> i32 {
    if !online(db, o) {
        println!(
            "Offline: metadata cache not refreshed ({}).",
            offline_reason(db, o)
        );
        return 0;
    }
    let code = dpkg::apt_get(&["update"], o.quiet);
    if code == 0 {
        println!("Metadata cache created.");
    }
    i32::from(code != 0)
}

pub(super) fn clean(words: &[String]) -> i32 {
    let archives = Path::new(ROOT).join("var/cache/apt/archives");
    let debs: Vec<_> = std::fs::read_dir(&archives)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default();
    if words.is_empty() {
        eprintln!("Error: clean requires an argument: all, metadata, packages");
        return 1;
    }
    let removed = debs
        .iter()
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count();
    println!("{removed} files removed");
    0
}
