//! The AWS tutorials' package commands (`yum`, `dnf`, `amazon-linux-extras`) inside instances,
//! driven as a user would: the tutorial's user data through the real aws CLI, then the same
//! commands over `ec2lab exec`. On `lab-linux` (the host's `/usr`, read-only) packages the host
//! has are "already installed" and the others are offline; the busybox AMI has no package
//! manager at all. Expectations come from the host's own `/usr/share/doc`, so they hold on any
//! Debian host.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TUTORIAL: &str = "#!/bin/bash
yum update -y
yum install -y httpd php php-mysqlnd mariadb105-server
systemctl start httpd mariadb
systemctl enable httpd mariadb
echo \"<?php echo gethostname(); ?>\" > /var/www/html/index.php
echo TUTORIAL-DONE
";

/// Whether the host (and so lab-linux) has Debian package `name`.
fn host_has(name: &str) -> bool {
    Path::new("/usr/share/doc")
        .join(name)
        .join("copyright")
        .exists()
}

fn debian_host() -> bool {
    require(
        Path::new("/usr/bin/dpkg").exists(),
        "needs a Debian-based host (lab-linux's /usr is the host's)",
    )
}

/// A daemon and a running lab-linux instance; `None` (skipped) without the prerequisites.
fn lab_linux_instance() -> Option<(Daemon, String)> {
    if !prerequisites(&["aws"]) || !debian_host() {
        return None;
    }
    let d = Daemon::start();
    let id = d.run_instances(&[])[0].clone();
    d.wait_state(&id, "running");
    Some((d, id))
}

/// `exec` as `user` returning (exit code, stdout, stderr).
fn sh(d: &Daemon, id: &str, user: &str, script: &str) -> (i32, String, String) {
    let o = d.exec(id, Some(user), script);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn tutorial_user_data_says_what_is_installed_and_what_is_offline() {
    if !prerequisites(&["aws"]) || !debian_host() {
        return;
    }
    let d = Daemon::start();
    let ud = d.write_file("tutorial.sh", TUTORIAL);
    let id = d.run_instances(&["--user-data", &format!("file://{}", ud.display())])[0].clone();
    let console = d.wait_console(&id, "TUTORIAL-DONE");
    assert!(
        console.contains("Offline: nothing updated (this image's /usr is the host's, read-only"),
        "{console}"
    );
    for (al, deb) in [
        ("httpd", "apache2"),
        ("mariadb105-server", "mariadb-server"),
    ] {
        let line = if host_has(deb) {
            format!("Package {al} is already installed (Debian's {deb} ")
        } else {
            format!("Error: offline: {al} is not in this image (Debian: {deb}) ")
        };
        assert!(console.contains(&line), "{line:?} not in:\n{console}");
    }
    if !host_has("apache2") {
        assert!(
            console.contains("Unit httpd.service not found."),
            "{console}"
        );
    }

    // The same commands by hand, for a package the host has and one nobody has.
    let (code, out, err) = sh(&d, &id, "root", "yum install -y bash git");
    assert!(
        out.contains("Package bash is already installed (Debian's bash "),
        "{out}{err}"
    );
    if host_has("git") {
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("Package git is already installed (Debian's git "),
            "{out}"
        );
    }
    let (code, out, err) = sh(&d, &id, "root", "dnf -q install ec2lab-no-such-package");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "Error: offline: ec2lab-no-such-package is not in this image (Debian: \
             ec2lab-no-such-package) and this image's /usr is the host's, read-only"
        ),
        "{err}"
    );
    let (code, out, _) = sh(&d, &id, "ec2-user", "yum list installed bash");
    assert_eq!(code, 0);
    assert!(out.starts_with("Installed Packages\nbash."), "{out}");
    let (code, _, err) = sh(&d, &id, "ec2-user", "yum install -y git");
    assert_eq!(code, 1);
    assert!(
        err.contains("has to be run with superuser privileges"),
        "{err}"
    );
    let (code, out, _) = sh(&d, &id, "ec2-user", "sudo yum update -y");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn unknown_options_verbs_and_topics_are_refused_by_name() {
    let Some((d, id)) = lab_linux_instance() else {
        return;
    };
    let (code, _, err) = sh(&d, &id, "root", "yum install --nogpgcheck -y httpd");
    assert_eq!(code, 1);
    assert!(
        err.contains("Command line error: unrecognized arguments: --nogpgcheck"),
        "{err}"
    );
    let (code, _, err) = sh(&d, &id, "root", "dnf frobnicate");
    assert_eq!(code, 1);
    assert!(err.contains("No such command: frobnicate."), "{err}");
    let (code, out, err) = sh(&d, &id, "root", "amazon-linux-extras enable php8.0");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("yum install php php-cli php-pdo php-mysqlnd"),
        "{out}"
    );
    let (code, _, err) = sh(&d, &id, "root", "amazon-linux-extras install -y nope1.0");
    assert_eq!(code, 1);
    assert!(err.contains("Topic nope1.0 is not found."), "{err}");
    let (code, _, err) = sh(
        &d,
        &id,
        "root",
        "amazon-linux-extras install -y lamp-mariadb10.2-php7.2",
    );
    if !host_has("mariadb-client") {
        assert_eq!(code, 1);
        assert!(
            err.contains("Error: offline: mariadb is not in this image (Debian: mariadb-client)"),
            "{err}"
        );
    }
}

#[test]
fn an_offline_install_ends_instead_of_hanging() {
    let Some((d, id)) = lab_linux_instance() else {
        return;
    };
    // A guard against a hang, not a measure of speed: the command must end by itself.
    let mut child = Command::new(BIN)
        .args(["exec", "--data-dir"])
        .arg(&d.data_dir)
        .args([
            "--user", "root", &id, "--", "yum", "install", "-y", "php-foo",
        ])
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("yum install of a missing package never ended");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Error: offline: php-foo is not in this image (Debian: php-foo)"),
        "{err}"
    );
}

#[test]
fn the_busybox_ami_has_no_package_manager() {
    if !prerequisites(&["aws", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let ami = d.busybox_ami();
    let v = d.aws_json(&["ec2", "run-instances", "--image-id", &ami]);
    let id = v["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    d.wait_state(&id, "running");
    for cmd in [
        "yum install -y httpd",
        "amazon-linux-extras install -y php8.0",
    ] {
        let (code, out, err) = sh(&d, &id, "root", cmd);
        assert_eq!(code, 1, "{cmd}: {out}{err}");
        assert!(
            err.contains("this image has no package manager"),
            "{cmd}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{cmd}: one line: {err}");
    }
}
