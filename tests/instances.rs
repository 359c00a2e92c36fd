//! Instances end to end with the real aws CLI and `ec2lab exec`: the lifecycle with EC2's state
//! names, user data once per instance, console output, IMDS from inside, bad input.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn lifecycle_user_data_console_and_keys() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let key = d.aws_json(&[
        "ec2",
        "create-key-pair",
        "--key-name",
        "lab",
        "--key-type",
        "ed25519",
    ]);
    let ud = d.write_file(
        "ud.sh",
        "#!/bin/sh\necho \"user-data ran as $(id -un)\"\necho run >> /var/tmp/boots\n",
    );
    let ids = d.run_instances(&[
        "--instance-type",
        "t2.micro",
        "--key-name",
        "lab",
        "--placement",
        "AvailabilityZone=ap-northeast-2c",
        "--user-data",
        &format!("file://{}", ud.display()),
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=lab-web-pub-2c}]",
    ]);
    assert_eq!(ids.len(), 1);
    let id = &ids[0];

    // The waiter returns at once: the instance is running after RunInstances.
    let t0 = Instant::now();
    let out = d.aws(&["ec2", "wait", "instance-running", "--instance-ids", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "wait took {:?}",
        t0.elapsed()
    );
    let v = d.aws_json(&[
        "ec2",
        "describe-instances",
        "--filters",
        "Name=tag:Name,Values=lab-web-pub-2c",
    ]);
    let i = &v["Reservations"][0]["Instances"][0];
    assert_eq!(i["InstanceId"], id.as_str());
    assert_eq!(i["State"]["Name"], "running");
    assert_eq!(i["State"]["Code"], 16);
    assert_eq!(i["Placement"]["AvailabilityZone"], "ap-northeast-2c");
    assert_eq!(i["InstanceType"], "t2.micro");
    assert_eq!(i["KeyName"], "lab");
    let ip = i["PrivateIpAddress"].as_str().unwrap();
    assert!(ip.starts_with("172.31.3"), "{ip}"); // zone c: 172.31.32.0/20
    let host = format!("ip-{}", ip.replace('.', "-"));

    // Console: the user data's output and the host key fingerprint block.
    let console = d.wait_console(id, "user-data ran as root");
    assert!(
        console.contains("-----BEGIN SSH HOST KEY FINGERPRINTS-----"),
        "{console}"
    );
    assert!(
        console.contains(&format!("root@{host} (ED25519)")),
        "{console}"
    );
    assert!(
        console.contains("-----END SSH HOST KEY KEYS-----"),
        "{console}"
    );

    // Inside: the default user, the key, the log, the hostname, sudo.
    let out = d.exec_ok(id, None, "id -un; hostname; cat ~/.ssh/authorized_keys; stat -c '%a %U' ~/.ssh ~/.ssh/authorized_keys");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ec2-user");
    assert_eq!(lines[1], host);
    let public = key["KeyMaterial"].as_str().map(|_| ()).and(Some(()));
    assert!(public.is_some());
    let described = d.aws_json(&[
        "ec2",
        "describe-key-pairs",
        "--key-names",
        "lab",
        "--include-public-key",
    ]);
    let pk = described["KeyPairs"][0]["PublicKey"].as_str().unwrap();
    let pk_blob = pk.split_whitespace().nth(1).unwrap();
    assert!(lines[2].contains(pk_blob), "{out}");
    assert!(
        out.contains("700 ec2-user") && out.contains("600 ec2-user"),
        "{out}"
    );
    let root_keys = d.exec_ok(id, Some("root"), "cat /root/.ssh/authorized_keys");
    assert!(
        root_keys.contains(
            "Please login as the user \\\"ec2-user\\\" rather than the user \\\"root\\\"."
        ),
        "{root_keys}"
    );
    assert!(
        d.exec_ok(id, Some("root"), "cat /var/log/cloud-init-output.log")
            .contains("user-data ran as root")
    );
    assert_eq!(d.exec_ok(id, None, "sudo -n id -u").trim(), "0");
    // Exit status is passed through.
    assert_eq!(d.exec(id, None, "exit 42").status.code(), Some(42));
    d.exec_ok(id, None, "echo kept > ~/notes.txt");

    // Stop: stopping → stopped; exec refuses; the root volume is kept.
    let v = d.aws_json(&["ec2", "stop-instances", "--instance-ids", id]);
    assert_eq!(
        v["StoppingInstances"][0]["CurrentState"]["Name"],
        "stopping"
    );
    assert_eq!(
        v["StoppingInstances"][0]["PreviousState"]["Name"],
        "running"
    );
    let out = d.aws(&["ec2", "wait", "instance-stopped", "--instance-ids", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.exec(id, None, "true");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
    // Stop again is fine; type change only while stopped.
    d.aws_json(&["ec2", "stop-instances", "--instance-ids", id]);
    d.aws_json(&[
        "ec2",
        "modify-instance-attribute",
        "--instance-id",
        id,
        "--instance-type",
        "Value=t2.small",
    ]);

    // Start: pending → running, user data NOT run again, files kept.
    let v = d.aws_json(&["ec2", "start-instances", "--instance-ids", id]);
    assert_eq!(v["StartingInstances"][0]["CurrentState"]["Name"], "pending");
    d.wait_state(id, "running");
    assert_eq!(d.exec_ok(id, None, "cat ~/notes.txt").trim(), "kept");
    assert_eq!(d.exec_ok(id, None, "cat /var/tmp/boots").lines().count(), 1);
    let v = d.aws_json(&["ec2", "describe-instances", "--instance-ids", id]);
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["InstanceType"],
        "t2.small"
    );
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["PrivateIpAddress"], ip,
        "private IP is kept"
    );

    // Reboot: still running, files kept, user data not re-run.
    d.aws_json(&["ec2", "reboot-instances", "--instance-ids", id]);
    std::thread::sleep(Duration::from_millis(500));
    d.wait_state(id, "running");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = d.exec(id, None, "cat ~/notes.txt /var/tmp/boots");
        if out.status.success() {
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(s, "kept\nrun\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance did not come back after reboot"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Terminate: shutting-down → terminated; the volume is gone; still described for a while.
    let v = d.aws_json(&["ec2", "terminate-instances", "--instance-ids", id]);
    assert_eq!(
        v["TerminatingInstances"][0]["CurrentState"]["Name"],
        "shutting-down"
    );
    let out = d.aws(&["ec2", "wait", "instance-terminated", "--instance-ids", id]);
    assert!(out.status.success());
    assert_eq!(d.state_of(id), "terminated");
    assert!(
        !d.data_dir.join("volumes").join(id).exists(),
        "root volume deleted"
    );
    assert!(!instance_cgroups().contains(id), "cgroup removed");
    d.aws_err(
        &["ec2", "start-instances", "--instance-ids", id],
        "IncorrectInstanceState",
    );
    d.aws_err(
        &["ec2", "stop-instances", "--instance-ids", id],
        "IncorrectInstanceState",
    );
    // Terminating again is fine.
    d.aws_json(&["ec2", "terminate-instances", "--instance-ids", id]);
}

#[test]
fn imds_v1_v2_from_inside() {
    if !prerequisites(&["aws", "curl"]) {
        return;
    }
    let d = Daemon::start();
    d.aws_json(&["ec2", "create-key-pair", "--key-name", "k"]);
    let open = &d.run_instances(&[
        "--key-name",
        "k",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=web}]",
        "--metadata-options",
        "InstanceMetadataTags=enabled",
    ])[0];
    let strict = &d.run_instances(&["--metadata-options", "HttpTokens=required"])[0];
    let base = "http://169.254.169.254/latest";
    let out = d.exec_ok(open, None, &format!(
        "curl -sf {base}/meta-data/instance-id; echo; curl -sf {base}/meta-data/placement/availability-zone; echo; \
         curl -sf {base}/meta-data/public-keys/; echo; curl -sf {base}/meta-data/tags/instance/Name; echo; \
         curl -sf {base}/meta-data/local-ipv4; echo; curl -s -o /dev/null -w '%{{http_code}}' {base}/meta-data/nope"
    ));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], open.as_str());
    assert!(l[1].starts_with("ap-northeast-2"), "{out}");
    assert_eq!(l[2], "0=k");
    assert_eq!(l[3], "web");
    assert!(l[4].starts_with("172.31."), "{out}");
    assert_eq!(l[5], "404");
    // Tags show at once.
    d.aws_json(&[
        "ec2",
        "create-tags",
        "--resources",
        open,
        "--tags",
        "Key=Name,Value=web2",
    ]);
    assert_eq!(
        d.exec_ok(
            open,
            None,
            &format!("curl -sf {base}/meta-data/tags/instance/Name")
        ),
        "web2"
    );

    // HttpTokens=required: v1 is refused, v2 works.
    let out = d.exec_ok(
        strict,
        None,
        &format!(
            "curl -s -o /dev/null -w '%{{http_code}}' {base}/meta-data/instance-id; echo; \
         T=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' {base}/api/token); \
         curl -sf -H \"X-aws-ec2-metadata-token: $T\" {base}/meta-data/instance-id"
        ),
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "401");
    assert_eq!(l[1], strict.as_str());
    // The identity document.
    let doc = d.exec_ok(
        open,
        None,
        "curl -sf http://169.254.169.254/latest/dynamic/instance-identity/document",
    );
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["instanceId"], open.as_str());
    assert_eq!(v["region"], "ap-northeast-2");
}

#[test]
fn user_data_formats_run_once() {
    if !prerequisites(&["aws", "gzip"]) {
        return;
    }
    let d = Daemon::start();
    let cloud_config = d.write_file(
        "cc.yaml",
        "#cloud-config\nbootcmd:\n  - echo boot >> /var/tmp/bootcmd\nwrite_files:\n  - path: /etc/motd-lab\n    content: hello lab\n    permissions: '0640'\nusers:\n  - default\n  - name: alice\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4 alice\nruncmd:\n  - echo runcmd >> /var/tmp/runcmd\npackages:\n  - apache2\nfinal_message: lab finished\n",
    );
    let mime = d.write_file(
        "mime.txt",
        "Content-Type: multipart/mixed; boundary=\"XX\"\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/cloud-config\n\nruncmd:\n  - echo from-mime-config >> /var/tmp/mime\n--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho from-mime-script >> /var/tmp/mime\n--XX--\n",
    );
    let script = d.write_file("gz.sh", "#!/bin/sh\necho gzipped >> /var/tmp/gz\n");
    run_ok(Command::new("gzip").arg("-k").arg(&script));
    let gz = format!("fileb://{}.gz", script.display());
    let a = &d.run_instances(&["--user-data", &format!("file://{}", cloud_config.display())])[0];
    let b = &d.run_instances(&["--user-data", &format!("file://{}", mime.display())])[0];
    let c = &d.run_instances(&["--user-data", &gz])[0];
    for id in [a, b, c] {
        d.wait_console(id, "SSH HOST KEY KEYS");
    }
    let check = |id: &str, expect: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = d.exec(id, Some("root"), "cat /var/tmp/bootcmd /var/tmp/runcmd /etc/motd-lab /var/tmp/mime /var/tmp/gz 2>/dev/null; stat -c %a /etc/motd-lab 2>/dev/null; id -un alice 2>/dev/null");
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            if s == expect {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: got {s:?}, want {expect:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    check(a, "boot\nruncmd\nhello lab640\nalice\n");
    check(b, "from-mime-script\nfrom-mime-config\n"); // cloud-init runs part scripts before runcmd
    check(c, "gzipped\n");
    let console = d.console(a);
    assert!(console.contains("lab finished"), "{console}");
    assert!(
        console.contains("packages: cannot install [apache2]"),
        "{console}"
    );
    // alice's key and sudo
    assert!(
        d.exec_ok(
            a,
            Some("alice"),
            "cat ~/.ssh/authorized_keys; sudo -n id -u"
        )
        .contains("0\n")
    );

    // Stop/start: bootcmd runs every boot, runcmd and scripts only once.
    for id in [a, b, c] {
        d.aws_json(&["ec2", "stop-instances", "--instance-ids", id]);
    }
    for id in [a, b, c] {
        d.wait_state(id, "stopped");
        d.aws_json(&["ec2", "start-instances", "--instance-ids", id]);
    }
    for id in [a, b, c] {
        d.wait_state(id, "running");
    }
    check(a, "boot\nboot\nruncmd\nhello lab640\nalice\n");
    check(b, "from-mime-script\nfrom-mime-config\n"); // cloud-init runs part scripts before runcmd
    check(c, "gzipped\n");
}

#[test]
fn bad_input_is_refused_with_aws_codes() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let ami = d.lab_linux();
    d.aws_err(
        &[
            "ec2",
            "run-instances",
            "--image-id",
            "ami-0123456789abcdef0",
        ],
        "InvalidAMIID.NotFound",
    );
    d.aws_err(
        &["ec2", "run-instances", "--image-id", "ami-xyz"],
        "InvalidAMIID.Malformed",
    );
    d.aws_err(
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            "t9.huge",
        ],
        "InvalidParameterValue",
    );
    d.aws_err(
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--key-name",
            "nope",
        ],
        "InvalidKeyPair.NotFound",
    );
    d.aws_err(
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--placement",
            "AvailabilityZone=us-east-1a",
        ],
        "InvalidParameterValue",
    );
    let big = d.write_file(
        "big.sh",
        &format!("#!/bin/sh\n#{}\n", "x".repeat(17 * 1024)),
    );
    let e = d.aws_err(
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--user-data",
            &format!("file://{}", big.display()),
        ],
        "InvalidParameterValue",
    );
    assert!(e.contains("16384"), "{e}");
    let (s, b) = d.raw(&format!("Action=RunInstances&Version=2016-11-15&ImageId={ami}&MinCount=1&MaxCount=1&UserData=%%%not-base64"));
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("Invalid BASE64 encoding of user data"), "{b}");
    d.aws_err(
        &[
            "ec2",
            "describe-instances",
            "--instance-ids",
            "i-0123456789abcdef0",
        ],
        "InvalidInstanceID.NotFound",
    );
    d.aws_err(
        &["ec2", "describe-instances", "--instance-ids", "i-nothex"],
        "InvalidInstanceID.Malformed",
    );
    d.aws_err(
        &[
            "ec2",
            "stop-instances",
            "--instance-ids",
            "i-0123456789abcdef0",
        ],
        "InvalidInstanceID.NotFound",
    );
    let id = &d.run_instances(&[])[0];
    d.aws_err(
        &[
            "ec2",
            "modify-instance-attribute",
            "--instance-id",
            id,
            "--instance-type",
            "Value=t2.small",
        ],
        "IncorrectInstanceState",
    );
    // One bad id fails the whole call, with no effect on the good one.
    d.aws_err(
        &[
            "ec2",
            "stop-instances",
            "--instance-ids",
            id,
            "i-0123456789abcdef0",
        ],
        "InvalidInstanceID.NotFound",
    );
    assert_eq!(d.state_of(id), "running");
    // Nothing half-made: only the one instance exists, and it is running.
    let v = d.aws_json(&["ec2", "describe-instances"]);
    assert_eq!(v["Reservations"].as_array().unwrap().len(), 1);
    // The daemon answered everything with 4xx: no retries happened (no InternalError in its log).
    assert!(!d.log_text().contains("internal error"), "{}", d.log_text());
}

#[test]
fn count_client_token_images_and_tags() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let ami = d.lab_linux();
    let v = d.aws_json(&[
        "ec2",
        "run-instances",
        "--image-id",
        &ami,
        "--count",
        "3",
        "--client-token",
        "tok-1",
    ]);
    let first: Vec<&str> = v["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap())
        .collect();
    assert_eq!(first.len(), 3);
    let zones: std::collections::HashSet<&str> = v["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Placement"]["AvailabilityZone"].as_str().unwrap())
        .collect();
    assert_eq!(zones.len(), 1, "one reservation lands in one zone");
    let again = d.aws_json(&[
        "ec2",
        "run-instances",
        "--image-id",
        &ami,
        "--count",
        "3",
        "--client-token",
        "tok-1",
    ]);
    let second: Vec<&str> = again["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap())
        .collect();
    assert_eq!(first, second, "same ClientToken, same instances");
    let v = d.aws_json(&[
        "ec2",
        "describe-instances",
        "--filters",
        "Name=instance-state-name,Values=running",
    ]);
    assert_eq!(
        v["Reservations"][0]["Instances"].as_array().unwrap().len(),
        3
    );
    d.aws_json(&[
        "ec2",
        "create-tags",
        "--resources",
        first[0],
        &ami,
        "--tags",
        "Key=team,Value=blue",
    ]);
    let v = d.aws_json(&["ec2", "describe-tags", "--filters", "Name=key,Values=team"]);
    assert_eq!(v["Tags"].as_array().unwrap().len(), 2);
    let v = d.aws_json(&[
        "ec2",
        "describe-instances",
        "--filters",
        "Name=tag:team,Values=blue",
    ]);
    assert_eq!(v["Reservations"][0]["Instances"][0]["InstanceId"], first[0]);
    d.aws_json(&[
        "ec2",
        "delete-tags",
        "--resources",
        first[0],
        "--tags",
        "Key=team",
    ]);
    let v = d.aws_json(&[
        "ec2",
        "describe-tags",
        "--filters",
        "Name=resource-type,Values=instance",
    ]);
    assert!(v["Tags"].as_array().unwrap().is_empty());
    let v = d.aws_json(&[
        "ec2",
        "describe-instance-status",
        "--instance-ids",
        first[1],
    ]);
    assert_eq!(v["InstanceStatuses"][0]["InstanceStatus"]["Status"], "ok");
    let v = d.aws_json(&["ec2", "describe-images", "--owners", "amazon"]);
    assert_eq!(v["Images"][0]["Name"], "lab-linux");
    assert_eq!(v["Images"][0]["State"], "available");
    d.aws_err(
        &["ec2", "deregister-image", "--image-id", &ami],
        "UnsupportedOperation",
    );
}

#[test]
fn web_server_on_port_80_inside_and_imds_together() {
    if !prerequisites(&["aws", "curl", "busybox"]) {
        return;
    }
    let d = Daemon::start();
    let id = &d.run_instances(&[])[0];
    // A server on 0.0.0.0:80 inside (Apache's and python's default) must not clash with IMDS.
    let out = d.exec_ok(
        id,
        Some("root"),
        "mkdir -p /srv/www && echo hello-web > /srv/www/index.html && busybox httpd -p 80 -h /srv/www && \
         curl -s -m 3 http://localhost/ && curl -s -m 3 http://169.254.169.254/latest/meta-data/instance-id",
    );
    assert_eq!(out, format!("hello-web\n{id}"));
}

#[test]
fn lamp_user_data_serves_the_instance_page() {
    if !prerequisites(&["aws", "curl"]) {
        return;
    }
    let d = Daemon::start();
    let lamp = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/userdata/lamp.sh");
    let id = &d.run_instances(&[
        "--placement",
        "AvailabilityZone=ap-northeast-2b",
        "--user-data",
        &format!("file://{lamp}"),
    ])[0];
    d.wait_console(id, "SSH HOST KEY KEYS");
    let deadline = Instant::now() + Duration::from_secs(90);
    let page = loop {
        let out = d.exec(id, None, "curl -s -m 2 http://localhost/");
        let page = String::from_utf8_lossy(&out.stdout).into_owned();
        if page.contains("Instance ID") {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "no page: {page}\n{}",
            d.console(id)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.contains(&format!("Instance ID: {id}")), "{page}");
    assert!(
        page.contains("Availability Zone: ap-northeast-2b"),
        "{page}"
    );
    assert!(page.contains("Private IP: 172.31.16."), "{page}");
}
