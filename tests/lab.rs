//! The classic EC2 web-server lab end to end with the aws CLI, ssh and curl: key pair, security
//! group, two instances in two zones running lamp.sh, pages on their public IPs, an Elastic IP
//! moved from A to B (B's page, B's host key: ssh warns), stop/start and addresses.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn page(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-m", "3", url])
        .output()
        .unwrap();
    (out.status.success() && !out.stdout.is_empty())
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_page(url: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(p) = page(url).filter(|p| p.contains(needle)) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never showed {needle:?}: {:?}",
            page(url)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn web_server_lab_with_elastic_ip() {
    if !prerequisites(&["aws", "ssh", "curl"]) {
        return;
    }
    let d = Daemon::start();
    let key = d.dir.path().join("lab.pem");
    let out = d.aws(&[
        "ec2",
        "create-key-pair",
        "--key-name",
        "lab",
        "--query",
        "KeyMaterial",
        "--output",
        "text",
    ]);
    std::fs::write(&key, &out.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.aws_json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "lab-web-sg",
        "--description",
        "web lab",
    ]);
    d.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-name",
        "lab-web-sg",
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "127.0.0.1/32",
    ]);
    d.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-name",
        "lab-web-sg",
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--cidr",
        "0.0.0.0/0",
    ]);
    let lamp = format!(
        "file://{}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/userdata/lamp.sh")
    );
    let run = |zone: &str| {
        d.run_instances(&[
            "--key-name",
            "lab",
            "--security-groups",
            "lab-web-sg",
            "--user-data",
            &lamp,
            "--placement",
            &format!("AvailabilityZone={zone}"),
        ])[0]
            .clone()
    };
    let (a, b) = (run("ap-northeast-2a"), run("ap-northeast-2c"));
    let ip = |id: &str| d.public_ip(id);
    let (ip_a, ip_b) = (ip(&a).unwrap(), ip(&b).unwrap());
    let pa = wait_page(&format!("http://{ip_a}/"), &a);
    assert!(pa.contains("ap-northeast-2a"), "{pa}");
    let pb = wait_page(&format!("http://{ip_b}/"), &b);
    assert!(pb.contains("ap-northeast-2c"), "{pb}");

    // ssh to the Elastic IP reaches A; after the move, B — and ssh notices the new host key.
    let known = d.dir.path().join("known_hosts");
    let ssh = |host: &str, strict: &str| {
        Command::new("ssh")
            .args([
                "-i",
                key.to_str().unwrap(),
                "-p",
                &d.ssh_port.to_string(),
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
            ])
            .args([
                "-o",
                &format!("StrictHostKeyChecking={strict}"),
                "-o",
                &format!("UserKnownHostsFile={}", known.display()),
            ])
            .arg(format!("ec2-user@{host}"))
            .arg("curl -s http://169.254.169.254/latest/meta-data/instance-id")
            .output()
            .unwrap()
    };
    let alloc = d.aws_json(&["ec2", "allocate-address"]);
    let (alloc_id, eip) = (
        alloc["AllocationId"].as_str().unwrap().to_string(),
        alloc["PublicIp"].as_str().unwrap().to_string(),
    );
    d.aws_json(&[
        "ec2",
        "associate-address",
        "--allocation-id",
        &alloc_id,
        "--instance-id",
        &a,
    ]);
    wait_page(&format!("http://{eip}/"), &a);
    let out = ssh(&eip, "accept-new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), a);
    d.aws_json(&[
        "ec2",
        "associate-address",
        "--allocation-id",
        &alloc_id,
        "--instance-id",
        &b,
    ]);
    wait_page(&format!("http://{eip}/"), &b);
    let out = ssh(&eip, "yes");
    assert!(
        !out.status.success(),
        "ssh must refuse the changed host key"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Command::new("ssh-keygen")
        .arg("-f")
        .arg(&known)
        .arg("-R")
        .arg(format!("[{eip}]:{}", d.ssh_port))
        .output();
    let out = ssh(&eip, "accept-new");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        b,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Stop/start: A's auto public IP changes; B keeps the Elastic IP.
    let new_a = ip(&a).unwrap();
    d.aws_json(&["ec2", "stop-instances", "--instance-ids", &a, &b]);
    d.wait_state(&a, "stopped");
    d.wait_state(&b, "stopped");
    d.aws_json(&["ec2", "start-instances", "--instance-ids", &a, &b]);
    d.wait_state(&a, "running");
    d.wait_state(&b, "running");
    assert_ne!(
        ip(&a).unwrap(),
        new_a,
        "a new auto public IP after stop/start"
    );
    assert_eq!(ip(&b).unwrap(), eip, "the Elastic IP stays");
    assert_ne!(ip_a, eip);
}
