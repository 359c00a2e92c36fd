//! AMI directories: scripts/build-ami.sh builds a busybox image, `ec2lab image register` and
//! `aws ec2 register-image` register it, instances boot from it; in-guest poweroff.

mod common;

use std::process::Command;

use common::*;

#[test]
fn busybox_ami_from_build_script_boots() {
    if !prerequisites(&["aws", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let dir = d.dir.path().join("tiny");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-ami.sh");
    run_ok(Command::new(script).arg("busybox").arg(&dir));
    assert!(dir.join("manifest.json").exists());

    let out = d.ec2lab(
        d.dir.path(),
        &[
            "image",
            "register",
            dir.to_str().unwrap(),
            "--name",
            "tiny-bb",
            "--output",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ami = v[0]["ImageId"].as_str().unwrap().to_string();
    // The same directory again under another name, through the aws CLI.
    let v = d.aws_json(&[
        "ec2",
        "register-image",
        "--name",
        "tiny-bb-2",
        "--image-location",
        dir.to_str().unwrap(),
    ]);
    let ami2 = v["ImageId"].as_str().unwrap().to_string();
    let v = d.aws_json(&["ec2", "describe-images", "--owners", "self"]);
    assert_eq!(v["Images"].as_array().unwrap().len(), 2);
    d.aws_err(
        &[
            "ec2",
            "register-image",
            "--name",
            "tiny-bb",
            "--image-location",
            dir.to_str().unwrap(),
        ],
        "InvalidAMIName.Duplicate",
    );
    d.aws_err(
        &[
            "ec2",
            "register-image",
            "--name",
            "nowhere",
            "--image-location",
            "/nonexistent/ami",
        ],
        "InvalidParameterValue",
    );

    let v = d.aws_json(&[
        "ec2",
        "run-instances",
        "--image-id",
        &ami,
        "--instance-type",
        "t2.nano",
    ]);
    let id = v["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    d.wait_state(&id, "running");
    let out = d.exec_ok(
        &id,
        None,
        "id -un; cat /etc/os-release | head -1; ls /usr/lib/x86_64-linux-gnu 2>/dev/null | wc -l",
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "ec2-user");
    assert!(l[1].contains("busybox"), "{out}");
    assert_eq!(
        l[2].trim(),
        "0",
        "the busybox image does not see the host's /usr"
    );
    // IMDS works in any image (the daemon serves it).
    let id_inside = d.exec_ok(
        &id,
        None,
        "wget -qO- http://169.254.169.254/latest/meta-data/instance-id",
    );
    assert_eq!(id_inside, id);

    // Deregistering leaves the directory and the running instance alone.
    let out = d.ec2lab(d.dir.path(), &["image", "rm", &ami2]);
    assert!(out.status.success());
    assert!(dir.join("rootfs/bin/busybox").exists());
    assert_eq!(d.exec_ok(&id, None, "echo still"), "still\n");
}

#[test]
fn poweroff_inside_stops_or_terminates() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let a = &d.run_instances(&[])[0];
    let b = &d.run_instances(&["--instance-initiated-shutdown-behavior", "terminate"])[0];
    // busybox-style signal to PID 1 works in every image; lab-linux also has the real poweroff.
    let _ = d.exec(a, Some("root"), "poweroff || kill -USR2 1");
    let _ = d.exec(b, Some("root"), "kill -USR2 1");
    d.wait_state(a, "stopped");
    d.wait_state(b, "terminated");
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", a]);
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["StateReason"]["Code"],
        "Client.InstanceInitiatedShutdown"
    );
    // It starts again normally.
    d.aws_json(&["ec2", "start-instances", "--instance-ids", a]);
    d.wait_state(a, "running");
    assert_eq!(d.exec_ok(a, None, "echo back"), "back\n");
}

#[test]
fn a_failed_launch_leaves_nothing_behind() {
    if !prerequisites(&["aws", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let dir = d.dir.path().join("doomed");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-ami.sh");
    run_ok(Command::new(script).arg("busybox").arg(&dir));
    let v = d.aws_json(&[
        "ec2",
        "register-image",
        "--name",
        "doomed",
        "--image-location",
        dir.to_str().unwrap(),
    ]);
    let ami = v["ImageId"].as_str().unwrap().to_string();
    // The AMI's root filesystem disappears after registration: the sandbox cannot mount it.
    std::fs::remove_dir_all(dir.join("rootfs")).unwrap();
    let e = d.aws_err(
        &["ec2", "run-instances", "--image-id", &ami, "--count", "3"],
        "InsufficientInstanceCapacity",
    );
    assert!(e.contains("could not start"), "{e}");
    let v = d.aws_json(&["ec2", "describe-instances"]);
    assert!(
        v["Reservations"].as_array().unwrap().is_empty(),
        "no instance record: {v}"
    );
    for sub in ["volumes", "run"] {
        let left: Vec<_> = std::fs::read_dir(d.data_dir.join(sub))
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{sub}/ still has {left:?}");
    }
    let failed = e
        .split("instance ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap()
        .to_string();
    assert!(failed.starts_with("i-"), "{e}");
    assert!(
        !instance_cgroups().contains(&failed),
        "no cgroup left for {failed}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(
            &d.data_dir
                .display()
                .to_string()
                .replace("/data", "/data/run")
        ),
        "no mount left"
    );
    // The daemon still launches good instances.
    assert_eq!(d.run_instances(&[]).len(), 1);
}
