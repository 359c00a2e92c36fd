//! User data on the AMIs scripts/build-ami.sh builds, driven with the real aws CLI: the example
//! scripts in scripts/userdata/ run with the image's own /bin/sh and tools (the busybox AMI has
//! no bash and no curl), and a script whose `#!` interpreter the image lacks says so on the
//! console instead of a bare "No such file or directory".

mod common;

use std::time::{Duration, Instant};

use common::*;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");

/// `aws ec2 run-instances` of `ami` with the user data in `file`; returns the instance id.
fn launch(d: &Daemon, ami: &str, file: &str) -> String {
    let v = d.aws_json(&[
        "ec2",
        "run-instances",
        "--image-id",
        ami,
        "--instance-type",
        "t2.nano",
        "--user-data",
        &format!("file://{file}"),
    ]);
    v["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn example_scripts_run_on_the_busybox_ami() {
    if !prerequisites(&["aws", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let ami = d.busybox_ami();
    let hello = launch(&d, &ami, &format!("{SCRIPTS}/userdata/hello.sh"));
    let lamp = launch(&d, &ami, &format!("{SCRIPTS}/userdata/lamp.sh"));

    let console = d.wait_console(&hello, "Zone: ");
    assert!(console.contains(&format!("instance {hello}")), "{console}");
    assert!(console.contains("Zone: ap-northeast-2"), "{console}");
    assert!(!console.contains("not found"), "{console}");

    let deadline = Instant::now() + Duration::from_secs(90);
    let page = loop {
        let out = d.exec(&lamp, None, "wget -qO- http://localhost/");
        let page = String::from_utf8_lossy(&out.stdout).into_owned();
        if page.contains("Instance ID") {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "no page: {page}\n{}",
            d.console(&lamp)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.contains(&format!("Instance ID: {lamp}")), "{page}");
    assert!(page.contains("Private IP: 172.31."), "{page}");
    assert!(page.contains("Availability Zone: ap-northeast-2"), "{page}");
    let console = d.console(&lamp);
    assert!(console.contains("busybox httpd is serving"), "{console}");
}

#[test]
fn a_missing_interpreter_is_named_on_the_console() {
    if !prerequisites(&["aws", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let ami = d.busybox_ami();
    let bash = d.write_file("bash.sh", "#!/bin/bash\necho bash-ran\n");
    let env = d.write_file("env.sh", "#!/usr/bin/env python3\nprint('python-ran')\n");
    let a = launch(&d, &ami, bash.to_str().unwrap());
    let b = launch(&d, &ami, env.to_str().unwrap());

    let console = d.wait_console(&a, "is not in this image");
    assert!(
        console.contains("its #! interpreter /bin/bash is not in this image"),
        "{console}"
    );
    assert!(!console.contains("bash-ran"), "{console}");
    let console = d.wait_console(&b, "is not in this image");
    assert!(
        console.contains("runs python3 through /usr/bin/env"),
        "{console}"
    );
}
