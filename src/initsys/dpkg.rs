//! The instance's Debian packaging as `yum` (`packages`) sees it, run inside the instance:
//!
//! 1. [`Db::load`]: the installed packages, from dpkg's database `/var/lib/dpkg/status`
//!    (`Package:`, `Status: … installed`, `Version:`, `Provides:`); an image whose `/usr` is the
//!    host's (`lab-linux`: no dpkg database of its own) is read from what Debian policy puts in
//!    every package, `/usr/share/doc/NAME/copyright`, with the version from its
//!    `changelog.Debian.gz`;
//! 2. [`Db::writable`]: whether apt could install here at all (a read-only `/usr` cannot);
//! 3. [`mirror_reachable`]: the hosts of `/etc/apt/sources.list(.d)` (and an apt or environment
//!    proxy), each tried with one TCP connect; the whole check, name lookups included, is
//!    bounded by [`MIRROR_TIMEOUT`], so an instance with no route out answers "offline" at once;
//! 4. [`apt_get`]: `apt-get` non-interactive, with its output passed through.

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// The longest a mirror check takes.
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(3);

/// One installed Debian package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pkg {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub summary: String,
    pub provides: Vec<String>,
}

/// The installed packages of the instance.
#[derive(Debug, Default)]
pub struct Db {
    pub pkgs: HashMap<String, Pkg>,
    /// Read from dpkg's own database (else from `/usr/share/doc`).
    pub from_status: bool,
}

impl Db {
    /// The packages under `root`; `None` when the image has no dpkg at all.
    pub fn load(root: &Path) -> Option<Db> {
        if let Ok(text) = std::fs::read_to_string(root.join("var/lib/dpkg/status")) {
            return Some(Db {
                pkgs: parse_status(&text),
                from_status: true,
            });
        }
        if !root.join("usr/bin/dpkg").exists() {
            return None;
        }
        let doc = root.join("usr/share/doc");
        let mut pkgs = HashMap::new();
        for e in std::fs::read_dir(&doc).ok()?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().join("copyright").exists() {
                let version = changelog_version(&e.path()).unwrap_or_default();
                pkgs.insert(
                    name.clone(),
                    Pkg {
                        name,
                        version,
                        ..Pkg::default()
                    },
                );
            }
        }
        Some(Db {
            pkgs,
            from_status: false,
        })
    }

    /// Whether apt could install into `root`: a dpkg database of its own and a writable `/usr`.
    pub fn writable(&self, root: &Path) -> bool {
        self.from_status && !read_only(&root.join("usr"))
    }

    /// The installed package satisfying `alt` (a name, a `*` pattern, or a name it provides).
    pub fn find(&self, alt: &str) -> Option<&Pkg> {
        if !alt.contains('*')
            && let Some(p) = self.pkgs.get(alt)
        {
            return Some(p);
        }
        let mut hits: Vec<&Pkg> = self
            .pkgs
            .values()
            .filter(|p| super::pkgmap::matches(alt, &p.name) || p.provides.iter().any(|v| v == alt))
            .collect();
        hits.sort_by(|a, b| a.name.cmp(&b.name));
        hits.into_iter().next()
    }

    /// The installed package meeting requirement `req` (`a|b|…`), first alternative first.
    pub fn satisfies(&self, req: &str) -> Option<&Pkg> {
        req.split('|').find_map(|alt| self.find(alt))
    }
}

/// Installed packages in dpkg's `status` file.
pub fn parse_status(text: &str) -> HashMap<String, Pkg> {
    let mut out = HashMap::new();
    for para in text.split("\n\n") {
        let mut p = Pkg::default();
        let mut installed = false;
        for line in para.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k {
                "Package" => p.name = v.to_string(),
                "Status" => installed = v.split_whitespace().nth(2) == Some("installed"),
                "Version" => p.version = v.to_string(),
                "Architecture" => p.arch = v.to_string(),
                "Description" => p.summary = v.to_string(),
                "Provides" => {
                    p.provides = v
                        .split(',')
                        .filter_map(|d| d.split_whitespace().next())
                        .map(str::to_string)
                        .collect()
                }
                _ => {}
            }
        }
        if installed && !p.name.is_empty() {
            out.insert(p.name.clone(), p);
        }
    }
    out
}

/// The version on the first line of `DIR/changelog.Debian.gz` (`git (1:2.39.5-0+deb12u3) …`).
fn changelog_version(dir: &Path) -> Option<String> {
    let f = std::fs::File::open(dir.join("changelog.Debian.gz")).ok()?;
    let mut head = [0u8; 256];
    let n = flate2::read::GzDecoder::new(f).read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    let (_, rest) = text.lines().next()?.split_once('(')?;
    Some(rest.split_once(')')?.0.to_string())
}

fn read_only(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statvfs is a valid out-parameter; c is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
}

/// `host:port` of every http(s) URI in apt's sources (one-line and deb822 formats) and proxy.
pub fn mirror_hosts(root: &Path, env_proxy: Option<String>) -> Vec<String> {
    let mut texts = Vec::new();
    let apt = root.join("etc/apt");
    texts.extend(std::fs::read_to_string(apt.join("sources.list")));
    for d in ["sources.list.d", "apt.conf.d"] {
        let Ok(rd) = std::fs::read_dir(apt.join(d)) else {
            continue;
        };
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        texts.extend(files.iter().filter_map(|f| std::fs::read_to_string(f).ok()));
    }
    texts.extend(env_proxy);
    let mut hosts = Vec::new();
    for t in &texts {
        for line in t.lines() {
            let line = line.split('#').next().unwrap_or("");
            for word in line.split(|c: char| c.is_whitespace() || c == '"' || c == ';') {
                if let Some(h) = uri_host(word)
                    && !hosts.contains(&h)
                {
                    hosts.push(h);
                }
            }
        }
    }
    hosts
}

/// `host:port` of an `http://` or `https://` URI.
fn uri_host(uri: &str) -> Option<String> {
    let (rest, port) = if let Some(r) = uri.strip_prefix("http://") {
        (r, 80)
    } else {
        (uri.strip_prefix("https://")?, 443)
    };
    let auth = rest.split('/').next()?;
    let auth = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    if auth.is_empty() {
        return None;
    }
    let has_port = auth
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && (!auth.starts_with('[') || auth.contains("]:"));
    Some(if has_port {
        auth.to_string()
    } else {
        format!("{auth}:{port}")
    })
}

/// Whether any of `hosts` accepts a TCP connection within [`MIRROR_TIMEOUT`] (name lookups
/// included: each host is tried on its own thread, and the answer is the first success or the
/// deadline, whichever comes first).
pub fn mirror_reachable(hosts: &[String]) -> bool {
    if hosts.is_empty() {
        return false;
    }
    let (tx, rx) = mpsc::channel();
    for h in hosts {
        let (tx, h) = (tx.clone(), h.clone());
        std::thread::spawn(move || {
            let ok = h.to_socket_addrs().is_ok_and(|mut addrs| {
                addrs.any(|a| TcpStream::connect_timeout(&a, MIRROR_TIMEOUT).is_ok())
            });
            let _ = tx.send(ok);
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + MIRROR_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(true) => return true,
            Ok(false) => continue,
            Err(_) => return false,
        }
    }
}

/// Runs `apt-get ARGS` non-interactively (no retries, bounded network timeouts); its exit code.
pub fn apt_get(args: &[&str], quiet: bool) -> i32 {
    let mut cmd = std::process::Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
        "-o",
        "Acquire::Retries=0",
        "-o",
        "Acquire::http::Timeout=20",
    ]);
    if quiet {
        cmd.arg("-qq");
    }
    match cmd.args(args).status() {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("Error: cannot run apt-get: {e}");
            1
        }
    }
}

/// Whether apt has package lists (else `apt-get update` must come first).
pub fn have_lists(root: &Path) -> bool {
    std::fs::read_dir(root.join("var/lib/apt/lists")).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: apache2
Status: install ok installed
Architecture: amd64
Version: 2.4.62-1~deb12u2
Description: Apache HTTP Server
 more text

Package: php8.2-mysql
Status: install ok installed
Provides: php-mysqli, php-mysqlnd (= 8.2), php-pdo-mysql
Version: 8.2.26-1~deb12u1
Architecture: amd64

Package: nginx
Status: deinstall ok config-files
Version: 1.22.1-9
";

    #[test]
    fn status_keeps_installed_packages_with_versions_and_provides() {
        let pkgs = parse_status(STATUS);
        assert_eq!(pkgs.len(), 2, "{pkgs:?}");
        assert_eq!(pkgs["apache2"].version, "2.4.62-1~deb12u2");
        assert_eq!(pkgs["apache2"].summary, "Apache HTTP Server");
        assert!(!pkgs.contains_key("nginx"), "config-files is not installed");
        let db = Db {
            pkgs,
            from_status: true,
        };
        assert_eq!(
            db.satisfies("php-mysql|php-mysqlnd").unwrap().name,
            "php8.2-mysql"
        );
        assert_eq!(
            db.satisfies("php-foo|php*-mysql").unwrap().name,
            "php8.2-mysql"
        );
        assert!(db.satisfies("nginx").is_none());
    }

    #[test]
    fn doc_dirs_stand_in_for_a_missing_status_file() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/dpkg"), "").unwrap();
        let doc = r.join("usr/share/doc/git");
        std::fs::create_dir_all(&doc).unwrap();
        std::fs::write(doc.join("copyright"), "").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gz,
            b"git (1:2.39.5-0+deb12u3) bookworm; urgency=medium\n",
        )
        .unwrap();
        std::fs::write(doc.join("changelog.Debian.gz"), gz.finish().unwrap()).unwrap();
        std::fs::create_dir_all(r.join("usr/share/doc/no-copyright")).unwrap();
        let db = Db::load(r).unwrap();
        assert!(!db.from_status);
        assert_eq!(db.pkgs["git"].version, "1:2.39.5-0+deb12u3");
        assert!(!db.pkgs.contains_key("no-copyright"));
        assert!(!db.writable(r));
        std::fs::remove_file(r.join("usr/bin/dpkg")).unwrap();
        assert!(Db::load(r).is_none(), "no dpkg: no package manager");
    }

    #[test]
    fn mirror_hosts_from_both_source_formats_and_proxies() {
        let t = tempfile::tempdir().unwrap();
        let apt = t.path().join("etc/apt");
        std::fs::create_dir_all(apt.join("sources.list.d")).unwrap();
        std::fs::create_dir_all(apt.join("apt.conf.d")).unwrap();
        std::fs::write(
            apt.join("sources.list"),
            "deb http://deb.debian.org/debian bookworm main\n# deb http://commented.example/ x\n\
             deb [arch=amd64] https://user@mirror.example:8443/debian bookworm main\n",
        )
        .unwrap();
        std::fs::write(
            apt.join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm\n",
        )
        .unwrap();
        std::fs::write(
            apt.join("apt.conf.d/01proxy"),
            "Acquire::http::Proxy \"http://10.0.0.1:3128/\";\n",
        )
        .unwrap();
        let hosts = mirror_hosts(t.path(), Some("http://proxy.example:8080".into()));
        assert_eq!(
            hosts,
            [
                "deb.debian.org:80",
                "mirror.example:8443",
                "security.debian.org:80",
                "10.0.0.1:3128",
                "proxy.example:8080"
            ]
        );
        assert!(!mirror_reachable(&[]));
    }

    #[test]
    fn a_mirror_is_reachable_when_it_accepts() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap().to_string();
        assert!(mirror_reachable(std::slice::from_ref(&open)));
        drop(l);
        assert!(!mirror_reachable(&[open, "no-such-host.invalid:80".into()]));
    }
}
