//! Front connections through the instance's long-lived connector, as a user sees them: a web
//! server inside an instance answers thousands of connections through its public IP without
//! the daemon growing threads, keeps answering after a reboot and after a stop/start (a new
//! network namespace each time), and an idle or stopped instance costs the daemon no thread.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// The connector's thread name (`sandbox::connector::THREAD_NAME`).
const CONNECTOR_THREAD: &str = "ec2lab-netconn";

/// A server started at every boot (per-boot scripts run before the user script, so the first
/// boot starts it from the user script); its page counts the boots.
const WWW: &str = r#"#!/bin/sh
d=/var/lib/cloud/scripts/per-boot
mkdir -p $d /srv
printf '%s\n' '#!/bin/sh' 'echo boot >> /var/tmp/boots' \
  'echo "boot $(wc -l < /var/tmp/boots)" > /srv/index.html' 'busybox httpd -p 80 -h /srv' > $d/www
chmod +x $d/www
$d/www
"#;

/// One HTTP request on its own connection: the body, or the error.
fn get(ip: &str) -> Result<String, String> {
    let mut s = TcpStream::connect((ip, 80)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.trim().to_string()),
        _ => Err(format!("unexpected answer: {out:?}")),
    }
}

/// `n` sequential connections, each answered with `page`.
fn all_answer(ip: &str, n: usize, page: &str) {
    for i in 0..n {
        assert_eq!(
            get(ip).as_deref(),
            Ok(page),
            "connection {i} of {n} to {ip}"
        );
    }
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn connector_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == CONNECTOR_THREAD)
        })
        .count()
}

#[test]
fn connections_follow_the_instance_across_reboot_and_stop_start() {
    if !prerequisites(&["aws", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let web = d.group_with_ingress("web", "80", "127.0.0.0/8");
    let ud = d.write_file("www.sh", WWW);
    let id = d.run_with_user_data(&web, &ud, &[]);
    let ip = d.public_ip(&id).unwrap();
    eventually("the first boot's page", || {
        get(&ip).is_ok_and(|p| p == "boot 1")
    });

    // 2000 connections, 20 at a time: all answered, and the daemon has no more threads after
    // them than before (one connector thread serves them all).
    let pid = d.pid();
    let before = threads(pid);
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| all_answer(&ip, 100, "boot 1"));
        }
    });
    let after = threads(pid);
    assert!(
        after <= before,
        "the daemon grew from {before} to {after} threads over 2000 connections"
    );
    assert_eq!(connector_threads(pid), 1, "one connector for the instance");

    // An idle instance costs no thread.
    eventually("the idle connector's thread ends", || {
        connector_threads(pid) == 0
    });
    all_answer(&ip, 10, "boot 1");

    // Reboot: a new PID 1 in a new network namespace; the front follows it.
    d.aws_json(&["ec2", "reboot-instances", "--instance-ids", &id]);
    eventually("the second boot's page", || {
        get(&ip).is_ok_and(|p| p == "boot 2")
    });
    all_answer(&ip, 200, "boot 2");
    assert_eq!(connector_threads(pid), 1, "the old boot's connector ended");

    // Stop: no listener, no connector thread; start: answered again on its (new) public IP.
    d.aws_json(&["ec2", "stop-instances", "--instance-ids", &id]);
    d.wait_state(&id, "stopped");
    assert!(get(&ip).is_err(), "a stopped instance answers nothing");
    eventually("no connector thread for a stopped instance", || {
        connector_threads(pid) == 0
    });
    d.aws_json(&["ec2", "start-instances", "--instance-ids", &id]);
    d.wait_state(&id, "running");
    let ip = d.public_ip(&id).unwrap();
    eventually("the third boot's page", || {
        get(&ip).is_ok_and(|p| p == "boot 3")
    });
    all_answer(&ip, 200, "boot 3");
    assert_eq!(connector_threads(pid), 1);
}
