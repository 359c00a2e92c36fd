//! The daemon stopped or crashed: the next start brings back what was running, from its root
//! volume, without running user data again, and leaves nothing orphaned.

mod common;

use std::time::Duration;

use common::*;

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn init_pid(d: &Daemon, id: &str) -> i32 {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.data_dir.join("run").join(id).join("init.json")).unwrap(),
    )
    .unwrap();
    v["init_pid"].as_i64().unwrap() as i32
}

#[test]
fn instances_come_back_after_graceful_stop_and_kill_9() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let mut d = Daemon::start();
    let ud = d.write_file("ud.sh", "#!/bin/sh\necho boot >> /var/tmp/userdata-runs\n");
    let ids = d.run_instances(&[
        "--count",
        "2",
        "--user-data",
        &format!("file://{}", ud.display()),
    ]);
    let stopped = &d.run_instances(&[])[0];
    d.aws_json(&["ec2", "stop-instances", "--instance-ids", stopped]);
    d.wait_state(stopped, "stopped");
    for id in &ids {
        d.wait_console(id, "SSH HOST KEY KEYS");
        d.exec_ok(id, None, "echo work > ~/work.txt");
    }

    // Graceful stop: the instances are shut down with the daemon, and boot again with it.
    let old: Vec<i32> = ids.iter().map(|id| init_pid(&d, id)).collect();
    assert!(d.stop().success());
    for p in &old {
        assert!(
            !alive(*p),
            "instance init {p} outlived the daemon's graceful stop"
        );
    }
    d.restart();
    for id in &ids {
        assert_eq!(d.state_of(id), "running");
        assert_eq!(
            d.exec_ok(id, None, "cat ~/work.txt /var/tmp/userdata-runs"),
            "work\nboot\n"
        );
    }
    assert_eq!(d.state_of(stopped), "stopped");

    // kill -9: the old instances are still there until the new daemon cleans them up and boots
    // them again; nothing is left over.
    let old: Vec<i32> = ids.iter().map(|id| init_pid(&d, id)).collect();
    d.kill9();
    d.restart();
    for p in &old {
        assert!(
            !alive(*p),
            "orphaned instance init {p} survived the restart"
        );
    }
    for id in &ids {
        assert_eq!(d.state_of(id), "running");
        assert_eq!(
            d.exec_ok(id, None, "cat ~/work.txt /var/tmp/userdata-runs"),
            "work\nboot\n"
        );
        let console = d.console(id);
        assert!(
            console.contains("SSH HOST KEY FINGERPRINTS"),
            "console kept across restarts"
        );
    }
    let cg = instance_cgroups();
    assert!(!cg.contains(stopped), "a stopped instance has no cgroup");
}

#[test]
fn kill_9_during_a_launch_leaves_everything_consistent() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let mut d = Daemon::start();
    let ami = d.lab_linux();
    let mut launch = std::process::Command::new("aws")
        .args(["ec2", "run-instances", "--image-id", &ami, "--count", "8"])
        .envs(d.aws_env())
        .env("AWS_MAX_ATTEMPTS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the daemon while the call is in flight (the CLI itself takes ~0.3 s to send it).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !d.log_text().contains("instance booted") {
        assert!(std::time::Instant::now() < deadline, "no launch started");
        std::thread::sleep(Duration::from_millis(2));
    }
    d.kill9();
    let _ = launch.wait();
    d.restart();
    let v = d.aws_json(&["ec2", "describe-instances"]);
    let mut seen = Vec::new();
    for r in v["Reservations"].as_array().unwrap() {
        for i in r["Instances"].as_array().unwrap() {
            let id = i["InstanceId"].as_str().unwrap().to_string();
            // Everything recorded is running and usable.
            assert_eq!(i["State"]["Name"], "running", "{id}");
            assert_eq!(d.exec_ok(&id, None, "echo ok"), "ok\n");
            seen.push(id);
        }
    }
    // No runtime dir, volume or cgroup for an instance without a record.
    for dir in ["run", "volumes"] {
        for e in std::fs::read_dir(d.data_dir.join(dir)).unwrap().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            assert!(seen.contains(&id), "{dir}/{id} has no instance record");
        }
    }
}

#[test]
fn shutdown_during_terminations_leaves_no_cgroups() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let mut d = Daemon::start();
    let ids = d.run_instances(&["--count", "10"]);
    // Terminations run in the background; stop the daemon right after asking for them.
    d.aws_json(
        &[
            &["ec2", "terminate-instances", "--instance-ids"][..],
            &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    assert!(d.stop().success());
    let left: Vec<String> = instance_cgroups()
        .into_iter()
        .filter(|c| ids.contains(c))
        .collect();
    assert!(left.is_empty(), "cgroups left after shutdown: {left:?}");
}
