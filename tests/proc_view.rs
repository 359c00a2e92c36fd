//! An instance looks like its type from inside (LXCFS, see `sandbox::procview`): `free` shows
//! its memory, `nproc` and /proc/cpuinfo its vCPUs (as many as the host has, at most), and
//! /proc/uptime the time since its own boot, again after a stop/start; its root cannot unmount
//! the view; nothing of LXCFS is left after the daemon stops.

mod common;

use common::*;

/// The host's CPUs (what an instance with more vCPUs gets at most).
fn host_cpus() -> usize {
    std::thread::available_parallelism().unwrap().get()
}

fn lxcfs_mounts(d: &Daemon) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&*d.data_dir.join("lxcfs").to_string_lossy()))
        .map(str::to_string)
        .collect()
}

/// The test's prerequisites: the aws CLI and Debian's lxcfs.
fn ready() -> bool {
    prerequisites(&["aws"])
        && require(
            std::path::Path::new("/usr/bin/lxcfs").exists(),
            "needs lxcfs (scripts/test.sh installs it)",
        )
}

fn uptime_secs(d: &Daemon, id: &str) -> f64 {
    d.exec_ok(id, Some("root"), "cat /proc/uptime")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn free_nproc_and_uptime_show_the_instance_type_and_its_boot() {
    if !ready() {
        return;
    }
    let mut d = Daemon::start();
    // t2.micro: 1 vCPU, 1 GiB; m5.large: 2 vCPUs, 8 GiB.
    for (ty, vcpus, mib) in [("t2.micro", 1, 1024), ("m5.large", 2, 8192)] {
        let id = d.run_instances(&["--instance-type", ty]).remove(0);
        d.wait_state(&id, "running");
        let out = d.exec_ok(
            &id,
            Some("ec2-user"),
            "free -m | awk '/^Mem:/ {print $2}'; nproc; grep -c ^processor /proc/cpuinfo",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], mib.to_string(), "{ty}: free -m total ({out})");
        let want = vcpus.min(host_cpus()).to_string();
        assert_eq!(lines[1], want, "{ty}: nproc ({out})");
        assert_eq!(lines[2], want, "{ty}: processors in /proc/cpuinfo ({out})");
        let up = uptime_secs(&d, &id);
        let host_up: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            up < 120.0 && up < host_up,
            "{ty}: uptime {up} s is the host's ({host_up} s)"
        );
        // The instance's root cannot take the view away to read the host's figures.
        let r = d.exec(&id, Some("root"), "umount /proc/meminfo");
        assert!(!r.status.success(), "{ty}: root unmounted /proc/meminfo");
        if ty == "t2.micro" {
            // After a stop/start the instance's uptime starts again.
            std::thread::sleep(std::time::Duration::from_secs(2));
            let before = uptime_secs(&d, &id);
            d.aws_json(&["ec2", "stop-instances", "--instance-ids", &id]);
            d.wait_state(&id, "stopped");
            let asked = std::time::Instant::now();
            d.aws_json(&["ec2", "start-instances", "--instance-ids", &id]);
            d.wait_state(&id, "running");
            let after = uptime_secs(&d, &id);
            // Since the new boot: no more than the time since StartInstances was asked (on a
            // loaded machine that can exceed the 2 s the first boot had counted).
            let since = asked.elapsed().as_secs_f64();
            assert!(
                before >= 2.0 && after <= since + 0.5,
                "uptime after a restart {after} s ({since:.2} s since the start), before {before} s"
            );
        }
    }
    assert!(
        !lxcfs_mounts(&d).is_empty(),
        "no LXCFS mount while the daemon runs"
    );
    assert!(d.stop().success());
    assert!(lxcfs_mounts(&d).is_empty(), "LXCFS mount left after stop");
    let pid_file = d.data_dir.join("lxcfs.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        assert!(
            !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "lxcfs still runs after stop"
        );
    }
}

#[test]
fn a_daemon_killed_with_sigkill_takes_its_lxcfs_with_it() {
    if !ready() {
        return;
    }
    let mut d = Daemon::start();
    let pid: String = std::fs::read_to_string(d.data_dir.join("lxcfs.pid")).unwrap();
    let pid = pid.trim().to_string();
    d.kill9();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() || !lxcfs_mounts(&d).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "lxcfs {pid} or its mount outlived the daemon"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The next start serves the view again.
    d.restart();
    let id = d.run_instances(&["--instance-type", "t2.micro"]).remove(0);
    d.wait_state(&id, "running");
    let total = d.exec_ok(&id, Some("root"), "free -m | awk '/^Mem:/ {print $2}'");
    assert_eq!(total.trim(), "1024");
}
