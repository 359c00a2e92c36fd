//! `packages`, `package_update` and `package_upgrade` with whatever package manager the AMI has.
//!
//! Order as cloud-init: refresh the index (when anything is asked), upgrade, install. ec2lab
//! instances are offline, so a refresh usually fails: that is one warning, and the install is
//! still tried (packages the AMI already has install fine offline). No package manager, or a
//! failed install, is one clear line naming the packages; the boot goes on.

use std::path::Path;

use crate::userdata::cloud_config::{CloudConfig, Package};
use crate::userdata::run::{Out, command};

const OFFLINE: &str = "no package mirror reachable (ec2lab instances are offline)";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Manager {
    Apt,
    Dnf,
    Yum,
    Apk,
}

impl Manager {
    fn detect(root: &Path) -> Option<(Manager, String)> {
        let candidates = [
            (Manager::Apt, "apt-get"),
            (Manager::Dnf, "dnf"),
            (Manager::Yum, "yum"),
            (Manager::Apk, "apk"),
        ];
        for (m, name) in candidates {
            for dir in ["usr/bin", "usr/sbin", "bin", "sbin"] {
                let p = root.join(dir).join(name);
                if p.is_file() {
                    return Some((m, format!("/{dir}/{name}")));
                }
            }
        }
        None
    }

    fn spec(self, p: &Package) -> String {
        match (&p.version, self) {
            (None, _) => p.name.clone(),
            (Some(v), Manager::Apt | Manager::Apk) => format!("{}={v}", p.name),
            (Some(v), _) => format!("{}-{v}", p.name),
        }
    }

    fn args(self, action: &str) -> Vec<&'static str> {
        match (self, action) {
            (Manager::Apt, "update") => vec!["--assume-yes", "--quiet", "update"],
            (Manager::Apt, "upgrade") => vec!["--assume-yes", "--quiet", "dist-upgrade"],
            (Manager::Apt, _) => vec![
                "--option=Dpkg::Options::=--force-confold",
                "--assume-yes",
                "--quiet",
                "install",
            ],
            (Manager::Dnf | Manager::Yum, "update") => vec!["-y", "makecache"],
            (Manager::Dnf | Manager::Yum, "upgrade") => vec!["-y", "upgrade"],
            (Manager::Dnf | Manager::Yum, _) => vec!["-y", "install"],
            (Manager::Apk, "update") => vec!["update"],
            (Manager::Apk, "upgrade") => vec!["upgrade"],
            (Manager::Apk, _) => vec!["add"],
        }
    }
}

/// Whether this network namespace has a default route (IPv4 or IPv6, not via `lo`). Unknown
/// counts as yes.
pub fn has_default_route() -> bool {
    let v4 = match std::fs::read_to_string("/proc/net/route") {
        Ok(t) => t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" && f[0] != "lo"
        }),
        Err(_) => return true,
    };
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route")
        .map(|t| {
            t.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 9 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo"
            })
        })
        .unwrap_or(false);
    v4 || v6
}

/// Runs the package stage.
pub fn run(out: &mut Out<'_>, cfg: &CloudConfig) {
    if cfg.packages.is_empty() && !cfg.package_update && !cfg.package_upgrade {
        return;
    }
    let names: Vec<&str> = cfg.packages.iter().map(|p| p.name.as_str()).collect();
    let wanted = format!("[{}]", names.join(", "));
    let root = out.root.clone();
    let Some((manager, path)) = Manager::detect(&root) else {
        let what = if names.is_empty() {
            "packages: cannot update packages".to_string()
        } else {
            format!("packages: cannot install {wanted}")
        };
        out.warn(
            "package_update_upgrade_install",
            &format!("{what}: no package manager in this image and {OFFLINE}"),
        );
        return;
    };
    let exe = root.join(path.trim_start_matches('/'));
    let step = |out: &mut Out<'_>, action: &str, pkgs: &[String]| {
        let mut cmd = command(&exe);
        cmd.args(manager.args(action)).args(pkgs);
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        match out.run(&format!("{path} {action}"), cmd) {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(s.code().map_or_else(
                || format!("failed with {s}"),
                |c| format!("failed with exit status {c}"),
            )),
            None => Err("could not start".to_string()),
        }
    };
    if !has_default_route() {
        // Without a route no mirror answers; apt would spend seconds on DNS failures.
        out.warn(
            "package_update_upgrade_install",
            &format!("packages: skipping package index update and upgrade: {OFFLINE}"),
        );
    } else {
        if let Err(e) = step(out, "update", &[]) {
            out.warn(
                "package_update_upgrade_install",
                &format!("packages: package index update: {path} {e}; {OFFLINE}"),
            );
        }
        if cfg.package_upgrade
            && let Err(e) = step(out, "upgrade", &[])
        {
            out.warn(
                "package_update_upgrade_install",
                &format!("packages: upgrade: {path} {e}; {OFFLINE}"),
            );
        }
    }
    if !cfg.packages.is_empty() {
        let specs: Vec<String> = cfg.packages.iter().map(|p| manager.spec(p)).collect();
        match step(out, "install", &specs) {
            Ok(()) => out.info(
                "package_update_upgrade_install",
                &format!("installed {wanted}"),
            ),
            Err(e) => out.warn(
                "package_update_upgrade_install",
                &format!("packages: cannot install {wanted}: {path} {e}; {OFFLINE}"),
            ),
        }
    }
}
