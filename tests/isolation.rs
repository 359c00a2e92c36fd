//! Each test tries, from inside an instance as root, something a sandbox must not allow, and
//! expects it to fail; limits from the instance type hold and the host stays responsive.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn root_inside_cannot_reach_the_host() {
    // ps, curl and ip run inside the instance from the host's /usr (lab-linux).
    if !prerequisites(&["aws", "curl", "ps", "ip"]) {
        return;
    }
    let d = Daemon::start();
    let a = &d.run_instances(&["--instance-type", "t2.nano"])[0];
    // b's group lets nothing in (the default group lets its own members reach each other,
    // as on AWS, so a is in that one and b is not).
    let closed = d.create_group("closed");
    assert!(closed.status.success(), "{closed:?}");
    let closed: serde_json::Value = serde_json::from_slice(&closed.stdout).unwrap();
    let b = &d.run_instances(&["--security-group-ids", closed["GroupId"].as_str().unwrap()])[0];
    d.exec_ok(
        b,
        Some("root"),
        "echo secret-of-b > /tmp/secret-b; (sleep 1000 marker-of-b &) ",
    );
    let host_marker = d.write_file("host-marker", "host secret");
    let api = d.api_port;
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", b]);
    let bip = v["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let script = format!(
        "n=$(ls /proc | grep -c '^[0-9]'); echo procs=$n; \
         test -e {hm} && echo SEE-HOST-FILE; \
         test -e {dd}/credentials.json && echo SEE-DATA-DIR; \
         test -e /tmp/secret-b && echo SEE-OTHER-INSTANCE; \
         ps -eo args | grep -q '[m]arker-of-b' && echo SEE-OTHER-PROCESS; \
         curl -s -m 2 http://127.0.0.1:{api}/ >/dev/null && echo REACH-API; \
         curl -s -m 2 http://169.254.169.254:{api}/ >/dev/null && echo REACH-API-VIA-ROUTER; \
         ping -c1 -W1 {bip} >/dev/null 2>&1 && echo REACH-OTHER-INSTANCE; \
         mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED; \
         date -s '2001-01-01' >/dev/null 2>&1 && echo SET-TIME; \
         (modprobe dummy || insmod /nonexistent.ko) >/dev/null 2>&1 && echo MODULE; \
         ip link add x type dummy >/dev/null 2>&1 && echo NET-ADMIN; \
         ls /sys/class/net; \
         mknod /tmp/sda b 8 0 2>/dev/null && head -c1 /tmp/sda >/dev/null 2>&1 && echo READ-DISK; \
         echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo PROC-SYS-WRITABLE; \
         echo end",
        hm = host_marker.display(),
        bip = bip,
        dd = d.data_dir.display()
    );
    let out = d.exec_ok(a, Some("root"), &script);
    let procs: usize = out
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("procs=")
        .parse()
        .unwrap();
    assert!(procs < 10, "the instance sees {procs} processes: {out}");
    for bad in [
        "SEE-HOST-FILE",
        "SEE-DATA-DIR",
        "SEE-OTHER-INSTANCE",
        "SEE-OTHER-PROCESS",
        "REACH-API",
        "MOUNTED",
        "SET-TIME",
        "MODULE",
        "NET-ADMIN",
        "READ-DISK",
        "PROC-SYS-WRITABLE",
    ] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    let nets: Vec<&str> = out.lines().skip(1).take_while(|l| *l != "end").collect();
    assert_eq!(
        nets,
        ["eth0", "lo"],
        "only loopback and the veth to the lab's router: {out}"
    );
    assert!(out.ends_with("end\n"), "{out}");
}

#[test]
fn memory_and_pids_limits_hold_and_the_host_stays_responsive() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let id = &d.run_instances(&["--instance-type", "t2.nano"])[0]; // 512 MiB
    // Allocating 700 MiB (tail keeps the whole newline-free stream in memory) is OOM-killed.
    let out = d.exec(
        id,
        Some("root"),
        "head -c 700M /dev/zero | tail > /dev/null; echo status=$?",
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        !s.contains("status=0"),
        "700 MiB fitted in a 512 MiB instance: {s}"
    );
    // The instance itself survives its OOM kill.
    assert_eq!(d.exec_ok(id, None, "echo alive"), "alive\n");
    let limit = d.exec_ok(
        id,
        Some("root"),
        "cat /proc/meminfo | head -1; ls /sys/fs/cgroup >/dev/null 2>&1; echo ok",
    );
    assert!(limit.contains("ok"));

    // A fork bomb is contained by pids.max; the host keeps answering.
    let bomb = std::process::Command::new(BIN)
        .args(["exec", "--data-dir"])
        .arg(&d.data_dir)
        .args([
            "--user",
            "root",
            id,
            "--",
            "sh",
            "-c",
            "b() { b | b & }; b; sleep 3",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    run_ok(&mut std::process::Command::new("true"));
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", id]);
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["State"]["Name"],
        "running"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "host slow during the fork bomb: {:?}",
        t0.elapsed()
    );
    let pids: usize = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .count();
    assert!(
        pids < 20000,
        "{pids} processes on the host: the bomb escaped"
    );
    // Stopping the instance ends the bomb.
    d.aws_json(&["ec2", "stop-instances", "--instance-ids", id]);
    d.wait_state(id, "stopped");
    let mut bomb = bomb;
    let _ = bomb.kill();
    let _ = bomb.wait();
    assert!(
        !instance_cgroups().contains(id),
        "cgroup of the stopped instance is gone"
    );
}

#[test]
fn instance_root_is_an_unprivileged_host_uid_range() {
    // The instance's root is root inside (files owned by root look root-owned, sudo works) but
    // an unprivileged uid range on the host: what it creates lands on the host as that range.
    if !prerequisites(&["aws", "sudo"]) {
        return;
    }
    let d = Daemon::start();
    let a = &d.run_instances(&[])[0];
    let out = d.exec_ok(
        a,
        Some("root"),
        "cat /proc/self/uid_map; id -u; stat -c %u /etc/passwd /usr/bin/sudo; \
         touch /root/made-inside; stat -c %u /root/made-inside",
    );
    let lines: Vec<&str> = out.lines().collect();
    let map: Vec<u64> = lines[0]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(map[0], 0, "{out}");
    assert!(
        map[1] >= 1 << 20,
        "root inside is host uid {}: {out}",
        map[1]
    );
    assert_eq!(map[2], 65536, "{out}");
    assert_eq!(&lines[1..], ["0", "0", "0", "0"], "{out}");
    // On the host, the file belongs to the instance's range, not to root.
    // (Seen through the instance's init: its volume is mounted only inside.)
    let init: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.data_dir.join(format!("run/{a}/init.json"))).unwrap(),
    )
    .unwrap();
    let made = format!("/proc/{}/root/root/made-inside", init["init_pid"]);
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&made).unwrap());
    assert_eq!(u64::from(uid), map[1], "{made}");
    // The root volume has its size (8 GiB), not the host disk's.
    let df = d.exec_ok(a, None, "df -k / | tail -1");
    let kib: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(kib <= 8 << 20 && kib > 7 << 20, "df /: {df}");
    // sudo (setuid root through the idmapped /usr) still works for the default user.
    assert_eq!(d.exec_ok(a, None, "sudo -n id -u").trim(), "0");
    // The instance's processes run as that uid on the host.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "uid=,args="])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let init = ps
        .lines()
        .find(|l| l.contains(&format!(" __init {a}")))
        .unwrap_or_else(|| panic!("no init of {a} on the host:\n{ps}"));
    let init_uid: u64 = init.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(init_uid, map[1], "the instance's init runs as {init}");
}
