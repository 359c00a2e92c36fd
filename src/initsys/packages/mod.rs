//! `yum`, `dnf` and `amazon-linux-extras` on the lab's Debian-based images: the package
//! commands of the AWS tutorials, with Amazon Linux's names mapped to the image's Debian
//! packages (the table is `pkgmap`; the image's packaging is `dpkg`). Runs inside the instance.
//! Here: the options and the verbs' dispatch; `install` (`install`, `update`, `remove` and the
//! service alias links), `query` (`list`, `info`, `makecache`, `clean`), `extras`
//! (`amazon-linux-extras`).
//!
//! Order of an `install`: parse the options (unknown ones refused by name, as dnf does) → the
//! image's package database (none: "this image has no package manager") → each name through
//! the table → installed ones said in one line each, with their Debian name and version →
//! the rest, when apt can install here and a mirror answers within `dpkg::MIRROR_TIMEOUT`,
//! through `apt-get install -y`; else one "offline" error per package and exit 1 → for every
//! installed package whose service Amazon Linux names otherwise (`httpd`), the alias link
//! `/etc/systemd/system/httpd.service` to Debian's unit, and a reload of PID 1.
//! `update` offline says so in one line and succeeds: the image's packages stay.

mod extras;
mod install;
mod query;

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use super::dpkg::{self, Db};
use super::pkgmap::{self, Entry};

pub use extras::extras;

/// The instance's root (the tools run inside it).
const ROOT: &str = "/";

#[derive(Debug, Default, PartialEq)]
pub(super) struct Opts {
    pub(super) yes: bool,
    pub(super) quiet: bool,
    pub(super) cache_only: bool,
    pub(super) words: Vec<String>,
}

/// Options as dnf takes them (short ones may be grouped: `-yq`).
pub(super) fn parse(args: &[String]) -> Result<Opts, String> {
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
        "install" => install::install(&db, &entries, &o),
        "update" | "upgrade" => install::update(&db, &entries, &o),
        "remove" | "erase" => install::remove(&db, &entries, &o),
        "list" => query::list(&db, names),
        "info" => query::info(&db, &entries),
        "makecache" => query::makecache(&db, &o),
        "clean" => query::clean(names),
        other => {
            eprintln!("No such command: {other}. Please use /usr/bin/{tool} --help");
            1
        }
    }
}

/// Whether apt can fetch: writable here, not `-C`, and a mirror answers (bounded).
pub(super) fn online(db: &Db, o: &Opts) -> bool {
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
pub(super) fn offline_reason(db: &Db, o: &Opts) -> &'static str {
    if !db.writable(Path::new(ROOT)) {
        "this image's /usr is the host's, read-only: apt cannot install into it"
    } else if o.cache_only {
        "-C/--cacheonly forbids fetching"
    } else {
        "no package mirror is reachable"
    }
}

pub(super) fn confirm(pkgs: &[&str]) -> bool {
    print!("Install (Debian) {}\nIs this ok [y/N]: ", pkgs.join(" "));
    let _ = std::io::stdout().flush();
    if !std::io::stdin().is_terminal() {
        return false;
    }
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
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
}
