//! `yum`, `dnf` and `amazon-linux-extras` on the lab's Debian-based images: the package
//! commands of the AWS tutorials, with Amazon Linux's names mapped to the image's Debian
//! packages (the table is `pkgmap`; the image's packaging is `dpkg`). Runs inside the instance.
//!
//! Order of an `install`: parse the options (unknown ones refused by name, as dnf does) → the
//! image's package database (none: "this image has no package manager") → each name through
//! the table → installed ones said in one line each, with their Debian name and version →
//! the rest, when apt can install here and a mirror answers within `dpkg::MIRROR_TIMEOUT`,
//! through `apt-get install -y`; else one "offline" error per package and exit 1 → for every
//! installed package whose service Amazon Linux names otherwise (`httpd`), the alias link
//! `/etc/systemd/system/httpd.service` to Debian's unit, and a reload of PID 1.
//! `update` offline says so in one line and succeeds: the image's packages stay.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use super::dpkg::{self, Db};
use super::pkgmap::{self, Entry};
use super::units::{ADMIN_DIR, UNIT_DIRS};

const ROOT: &str = "/";

#[derive(Debug, Default, PartialEq)]
struct Opts {
    yes: bool,
    quiet: bool,
    cache_only: bool,
    words: Vec<String>,
}

/// Options as dnf takes them (short ones may be grouped: `-yq`).
fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    for a in args {
        match a.as_str() {
            "--assumeyes" => o.yes = true,
            "--quiet" => o.quiet = true,
            "--cacheonly" => o.cache_only = true,
            s if s.starts_with("--") => return Err(s.to_string()),
            s if s.starts_with('-') && s.len() > 1 => {
                for c in s[1..].chars() {
                    match c {
                        'y' => o.yes = true,
                        'q' => o.quiet = true,
                        'C' => o.cache_only = true,
                        _ => return Err(s.to_string()),
                    }
                }
            }
            _ => o.words.push(a.clone()),
        }
    }
    Ok(o)
}

/// `yum` / `dnf` with argv[1..].
pub fn yum(tool: &str, args: &[String]) -> i32 {
    if args.iter().any(|a| a == "--version") {
        println!("4.14.0 (ec2lab: Amazon Linux package names on Debian's packages)");
        return 0;
    }
    if args.iter().any(|a| a == "-h" || a == "--help") || args.is_empty() {
        println!(
            "usage: {tool} [options] COMMAND\n\ncommands: install, update, upgrade, remove, \
             list installed, info, makecache, clean all\noptions: -y/--assumeyes, -q/--quiet, \
             -C/--cacheonly"
        );
        return if args.is_empty() { 1 } else { 0 };
    }
    let o = match parse(args) {
        Ok(o) => o,
        Err(bad) => {
            eprintln!("Command line error: unrecognized arguments: {bad}");
            return 1;
        }
    };
    let Some((verb, names)) = o.words.split_first() else {
        eprintln!("Error: no command given");
        return 1;
    };
    let needs_root = matches!(
        verb.as_str(),
        "install" | "update" | "upgrade" | "remove" | "erase" | "makecache" | "clean"
    );
    // SAFETY: geteuid has no preconditions.
    if needs_root && unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "Error: This command has to be run with superuser privileges (under the root user on most systems)."
        );
        return 1;
    }
    let Some(db) = Db::load(Path::new(ROOT)) else {
        eprintln!(
            "Error: this image has no package manager (no dpkg): {tool} maps Amazon Linux's \
             packages to Debian's on Debian-based images only."
        );
        return 1;
    };
    let mut entries: Vec<Entry> = Vec::new();
    for n in names {
        if !entries.iter().any(|e| e.name == *n) {
            entries.push(pkgmap::lookup(n));
        }
    }
    match verb.as_str() {
        "install" => install(&db, &entries, &o),
        "update" | "upgrade" => update(&db, &entries, &o),
        "remove" | "erase" => remove(&db, &entries, &o),
        "list" => list(&db, names),
        "info" => info(&db, &entries),
        "makecache" => makecache(&db, &o),
        "clean" => clean(names),
        other => {
            eprintln!("No such command: {other}. Please use /usr/bin/{tool} --help");
            1
        }
    }
}

/// Whether apt can fetch: writable here, not `-C`, and a mirror answers (bounded).
fn online(db: &Db, o: &Opts) -> bool {
    let root = Path::new(ROOT);
    if o.cache_only || !db.writable(root) {
        return false;
    }
    let proxy = std::env::var("http_proxy")
        .or_else(|_| std::env::var("https_proxy"))
        .ok();
    dpkg::mirror_reachable(&dpkg::mirror_hosts(root, proxy))
}

/// Why a missing package cannot be installed here.
fn offline_reason(db: &Db, o: &Opts) -> &'static str {
    if !db.writable(Path::new(ROOT)) {
        "this image's /usr is the host's, read-only: apt cannot install into it"
    } else if o.cache_only {
        "-C/--cacheonly forbids fetching"
    } else {
        "no package mirror is reachable"
    }
}

fn install(db: &Db, entries: &[Entry], o: &Opts) -> i32 {
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

fn confirm(pkgs: &[&str]) -> bool {
    print!("Install (Debian) {}\nIs this ok [y/N]: ", pkgs.join(" "));
    let _ = std::io::stdout().flush();
    if !std::io::stdin().is_terminal() {
        return false;
    }
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

fn update(db: &Db, entries: &[Entry], o: &Opts) -> i32 {
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

fn remove(db: &Db, entries: &[Entry], o: &Opts) -> i32 {
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

/// `list [installed] [NAME…]`: Debian's installed packages, as dnf lists them.
fn list(db: &Db, words: &[String]) -> i32 {
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

fn info(db: &Db, entries: &[Entry]) -> i32 {
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

fn makecache(db: &Db, o: &Opts) -> i32 {
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

fn clean(words: &[String]) -> i32 {
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

/// `amazon-linux-extras [install [-y] TOPIC…|enable TOPIC…|list]`.
pub fn extras(args: &[String]) -> i32 {
    let o = match parse(args) {
        Ok(o) => o,
        Err(bad) => {
            eprintln!("amazon-linux-extras: error: no such option: {bad}");
            return 1;
        }
    };
    let (verb, topics) = o
        .words
        .split_first()
        .map_or(("list", &[][..]), |(v, t)| (v.as_str(), t));
    if verb == "list" {
        for (i, (t, _)) in pkgmap::TOPICS.iter().enumerate() {
            println!("{i:3}  {t:<28} available    [ =latest ]");
        }
        return 0;
    }
    if !matches!(verb, "install" | "enable") {
        eprintln!("amazon-linux-extras: unknown command {verb:?} (install, enable, list)");
        return 1;
    }
    if topics.is_empty() {
        eprintln!("amazon-linux-extras: {verb} needs a topic");
        return 1;
    }
    let mut names = Vec::new();
    for t in topics {
        let Some(p) = pkgmap::topic(t) else {
            eprintln!("Topic {t} is not found.");
            return 1;
        };
        for n in p.iter() {
            if !names.iter().any(|x: &String| x == n) {
                names.push(n.to_string());
            }
        }
    }
    if verb == "enable" {
        for t in topics {
            println!("  {t:<28} enabled (Debian's packages)");
        }
        println!(
            "\nNow you can install:\n # yum clean metadata\n # yum install {}",
            names.join(" ")
        );
        return 0;
    }
    let mut argv = vec!["install".to_string()];
    if o.yes {
        argv.push("-y".into());
    }
    if o.quiet {
        argv.push("-q".into());
    }
    argv.extend(names);
    yum("yum", &argv)
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
        let _ = super::ctl::call(&super::ctl::Request::DaemonReload);
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

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_as_dnf_takes_them_and_unknown_ones_by_name() {
        let o = parse(&args("install -yq httpd --assumeyes php")).unwrap();
        assert!(o.yes && o.quiet && !o.cache_only);
        assert_eq!(o.words, ["install", "httpd", "php"]);
        assert_eq!(
            parse(&args("install --nogpgcheck x")),
            Err("--nogpgcheck".into())
        );
        assert_eq!(parse(&args("install -yx x")), Err("-yx".into()));
        assert!(parse(&args("-C list installed")).unwrap().cache_only);
    }

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
