//! The LAMP lab on the real Debian 12 image (scripts/build-ami.sh debian, built once and cached
//! by scripts/lib/lamp-image.sh; scripts/test.sh gives its directory as `EC2LAB_LAMP_AMI`):
//! user data starts Apache and MariaDB the systemd way, makes a database, a user and a row with
//! `mysql`, and writes an index.php that reads the row with mysqli. `curl` on the public IP gets
//! the row; `ssh` as the image's `admin` sees the services active; after Apache's master is
//! killed (Restart=on-abort), after stop/start and after a daemon restart the page is still
//! served, by the enabled units, without the user data running again.
//!
//! The Amazon Linux tutorial's user data (`yum install -y httpd php php-mysqlnd mariadb105-server`,
//! `systemctl start httpd mariadb`) serves the same kind of page through the lab's `yum` and the
//! `httpd` alias. Helpers (`Lamp::start`, `Lamp::run`, `Lamp::page`, `Lamp::ssh`): another
//! tutorial's user data is one more test function.

mod ssh_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ssh_common::*;

/// A daemon with the LAMP image registered, a key pair, and a security group open on 80 and 22.
struct Lamp {
    d: Daemon,
    ami: String,
    group: String,
    key: PathBuf,
}

impl Lamp {
    /// None (skip) outside CI when root, a tool or the image is missing; in CI, a failure.
    fn start() -> Option<Lamp> {
        if !prerequisites(&["aws", "curl", "ssh"]) {
            return None;
        }
        let dir = std::env::var("EC2LAB_LAMP_AMI").unwrap_or_default();
        if !require(
            !dir.is_empty() && Path::new(&dir).join("manifest.json").exists(),
            "needs the LAMP image: EC2LAB_LAMP_AMI=$(sudo scripts/lib/lamp-image.sh) \
             (scripts/test.sh sets it)",
        ) {
            return None;
        }
        let d = Daemon::start();
        let v = d.aws_json(&[
            "ec2",
            "register-image",
            "--name",
            "debian-12-lamp",
            "--image-location",
            &dir,
        ]);
        let ami = v["ImageId"].as_str().unwrap().to_string();
        let group = d.group_with_ingress("web", "80", "0.0.0.0/0");
        d.authorize_tcp(["--group-id", &group], "22", "0.0.0.0/0");
        let out = d.aws(&[
            "ec2",
            "create-key-pair",
            "--key-name",
            "lamp",
            "--query",
            "KeyMaterial",
            "--output",
            "text",
        ]);
        assert!(out.status.success(), "{out:?}");
        let key = d.write_file("lamp.pem", &String::from_utf8(out.stdout).unwrap());
        chmod600(&key);
        Some(Lamp { d, ami, group, key })
    }

    /// `aws ec2 run-instances` of the LAMP image with `user_data`; returns the instance id.
    fn run(&self, user_data: &str) -> String {
        let ud = self.d.write_file("user-data.sh", user_data);
        let v = self.d.aws_json(&[
            "ec2",
            "run-instances",
            "--image-id",
            &self.ami,
            "--instance-type",
            "t2.micro",
            "--key-name",
            "lamp",
            "--security-group-ids",
            &self.group,
            "--user-data",
            &format!("file://{}", ud.display()),
        ]);
        v["Instances"][0]["InstanceId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls `curl http://PUBLIC_IP/` until it answers 200 with `needle` in the page (at most
    /// 3 min: the first boot runs the user data); returns the page.
    fn page(&self, id: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut last = String::new();
        loop {
            if let Some(ip) = self.d.public_ip(id) {
                let out = Command::new("curl")
                    .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
                    .arg(format!("http://{ip}/"))
                    .output()
                    .unwrap();
                last = String::from_utf8_lossy(&out.stdout).into_owned();
                if let Some((body, "200")) = last.rsplit_once('\n')
                    && body.contains(needle)
                {
                    return body.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{id} never served {needle:?}; last answer: {last:?}\nconsole:\n{}",
                self.d.console(id)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `aws ec2 stop-instances`, then `start-instances`, each waited for.
    fn stop_start(&self, id: &str) {
        self.d
            .aws_json(&["ec2", "stop-instances", "--instance-ids", id]);
        self.d.wait_state(id, "stopped");
        self.d
            .aws_json(&["ec2", "start-instances", "--instance-ids", id]);
        self.d.wait_state(id, "running");
    }

    /// `ssh -i lamp.pem admin@PUBLIC_IP SCRIPT`, asserting success; returns stdout.
    fn ssh(&self, id: &str, script: &str) -> String {
        let ip = self.d.public_ip(id).expect("a public IP");
        run_ok(
            Command::new("ssh")
                .args(SSH_OPTS)
                .arg("-i")
                .arg(&self.key)
                .args(["-p", &self.d.ssh_port.to_string()])
                .arg(format!("admin@{ip}"))
                .arg(script),
        )
    }
}

/// The database part of the user data: a database, a user for the page, a table and one row.
fn db_with_row(text: &str) -> String {
    format!(
        "mysql -u root <<'SQL'
CREATE DATABASE lab;
CREATE USER 'web'@'localhost' IDENTIFIED BY 'web-secret';
GRANT ALL PRIVILEGES ON lab.* TO 'web'@'localhost';
CREATE TABLE lab.greetings (id INT PRIMARY KEY, text VARCHAR(100));
INSERT INTO lab.greetings VALUES (1, '{text}');
SQL
"
    )
}

/// The tutorial's steps on Debian, the systemd way: the row's text is what `/` serves.
fn user_data() -> String {
    let db = db_with_row(ROW);
    format!(
        r#"#!/bin/bash
set -eux
echo ran >> /var/tmp/user-data-runs
systemctl start mariadb apache2
systemctl enable mariadb apache2
{db}cat > /var/www/html/index.php <<'PHP'
<?php
$db = new mysqli('localhost', 'web', 'web-secret', 'lab');
$row = $db->query('SELECT text FROM greetings WHERE id = 1')->fetch_row();
echo htmlspecialchars($row[0]), " (PHP ", PHP_MAJOR_VERSION, ")\n";
PHP
echo lamp-user-data-done
"#
    )
}

const ROW: &str = "Hello from MariaDB through PHP";

#[test]
fn apache_serves_php_reading_mariadb_across_stop_start_and_daemon_restart() {
    let Some(mut lamp) = Lamp::start() else {
        return;
    };
    let id = lamp.run(&user_data());
    let page = lamp.page(&id, ROW);
    assert_eq!(page, format!("{ROW} (PHP 8)\n"));
    assert!(
        lamp.d.console(&id).contains("lamp-user-data-done"),
        "{}",
        lamp.d.console(&id)
    );
    // As a user would check: log in as the image's admin and look at the services.
    let out = lamp.ssh(
        &id,
        "id -un; systemctl is-active apache2 mariadb; systemctl is-enabled apache2 mariadb; \
         sudo mysql -N -e 'SELECT text FROM lab.greetings'",
    );
    assert_eq!(
        out,
        format!("admin\nactive\nactive\nenabled\nenabled\n{ROW}\n")
    );

    // Apache's master dies: the unit knew it as its main process (Type=forking, no PIDFile)
    // and Restart=on-abort brings the page back from a new one.
    let main = lamp.ssh(&id, "systemctl show apache2 -p MainPID --value");
    assert_ne!(main.trim(), "0", "apache2.service has a main process");
    lamp.ssh(&id, &format!("sudo kill -KILL {}", main.trim()));
    eventually("a new main process for apache2.service", || {
        let now = lamp.ssh(&id, "systemctl show apache2 -p MainPID --value");
        now.trim() != "0" && now != main
    });
    assert_eq!(lamp.page(&id, ROW), page);

    // Stop and start: the enabled units serve the page again; the user data does not rerun.
    lamp.stop_start(&id);
    assert_eq!(lamp.page(&id, ROW), page);
    let runs = lamp
        .d
        .exec_ok(&id, Some("root"), "cat /var/tmp/user-data-runs");
    assert_eq!(runs, "ran\n", "the user data ran once");

    // The daemon restarts: the instance is booted again by it and still serves.
    assert!(lamp.d.stop().success());
    lamp.d.restart();
    assert_eq!(lamp.page(&id, ROW), page);
    let out = lamp.ssh(
        &id,
        "cat /var/tmp/user-data-runs; systemctl is-active apache2 mariadb",
    );
    assert_eq!(out, "ran\nactive\nactive\n");
}

/// The AWS tutorial's user data as written for Amazon Linux (`yum`, `httpd`, `mariadb105-server`),
/// through the lab's `yum` (Amazon Linux's names to the image's Debian packages, offline) and the
/// `httpd` alias of apache2; then the same database and page.
fn tutorial_user_data() -> String {
    let db = db_with_row("Hello from the tutorial");
    format!(
        r#"#!/bin/bash
yum update -y
yum install -y httpd php php-mysqlnd mariadb105-server
systemctl start httpd mariadb
systemctl enable httpd mariadb
{db}echo '<?php $db = new mysqli("localhost", "web", "web-secret", "lab"); echo $db->query("SELECT text FROM greetings")->fetch_row()[0], "\n";' > /var/www/html/index.php
"#
    )
}

#[test]
fn the_amazon_linux_tutorial_user_data_serves_the_page_on_debian() {
    let Some(lamp) = Lamp::start() else {
        return;
    };
    let id = lamp.run(&tutorial_user_data());
    assert_eq!(lamp.page(&id, "tutorial"), "Hello from the tutorial\n");
    let out = lamp.ssh(
        &id,
        "systemctl is-active httpd mariadb; systemctl is-enabled apache2 httpd",
    );
    // `httpd` is an alias name of apache2.service, which systemd's is-enabled says as such.
    assert_eq!(out, "active\nactive\nenabled\nalias\n");
    let console = lamp.d.console(&id);
    assert!(
        console.contains("Package httpd is already installed"),
        "{console}"
    );
}

/// The issue's user data, byte for byte as AWS's tutorial prints it: the page is the instance's
/// host name, and it comes back after a stop/start from the enabled units.
const TUTORIAL_VERBATIM: &str = r#"#!/bin/bash
yum update -y
yum install -y httpd php php-mysqlnd mariadb105-server
systemctl start httpd mariadb
systemctl enable httpd mariadb
echo "<?php echo gethostname(); ?>" > /var/www/html/index.php
"#;

#[test]
fn the_tutorial_user_data_verbatim_serves_the_host_name() {
    let Some(lamp) = Lamp::start() else {
        return;
    };
    let id = lamp.run(TUTORIAL_VERBATIM);
    let name = format!("ip-{}", lamp.d.private_ip(&id).replace('.', "-"));
    assert_eq!(lamp.page(&id, &name), name);
    assert_eq!(
        lamp.ssh(&id, "systemctl is-active httpd mariadb"),
        "active\nactive\n"
    );
    lamp.stop_start(&id);
    assert_eq!(lamp.page(&id, &name), name);
}
