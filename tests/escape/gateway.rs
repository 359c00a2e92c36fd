//! The gateway against files the instance's root controls: `~/.ssh/authorized_keys` as a
//! symlink to a host file (that holds the right key), as a FIFO and as a 4 GiB sparse file, and
//! `/etc/passwd` as a FIFO. Order: a baseline login works → for each trick: plant it, log in with
//! OpenSSH (bounded), ask the API → the host file is untouched and `ec2lab exec` returns.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::host::*;
use crate::tricks::{aws_bounded, check_unchanged, exec_bounded};

/// `ssh -i KEY ec2-user@IP true` through the daemon's gateway, bounded: Some(success) when it
/// returned, None when it hung.
fn ssh_login(d: &Daemon, key: &Path, ip: &str) -> Option<bool> {
    let mut cmd = Command::new("ssh");
    for o in [
        "BatchMode=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "LogLevel=ERROR",
        "ConnectTimeout=10",
    ] {
        cmd.args(["-o", o]);
    }
    cmd.args(["-F", "/dev/null", "-i"]).arg(key).args([
        "-p",
        &d.ssh_port.to_string(),
        &format!("ec2-user@{ip}"),
        "true",
    ]);
    run_bounded(&mut cmd, None, Duration::from_secs(40)).map(|o| o.status.success())
}

#[test]
fn gateway_reads_instance_files_safely() {
    if !prerequisites(&["aws", "ssh"]) {
        return;
    }
    let d = Daemon::start();
    d.open_ssh();
    let pem = d.aws_json(&[
        "ec2",
        "create-key-pair",
        "--key-name",
        "esc",
        "--key-type",
        "ed25519",
    ]);
    let key = d.write_file(
        "esc.pem",
        &format!("{}\n", pem["KeyMaterial"].as_str().unwrap().trim_end()),
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let id = &d.run_instances(&["--key-name", "esc"])[0];
    d.wait_state(id, "running");
    let ip = d.public_ip(id).expect("a public IP");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut baseline = ssh_login(&d, &key, &ip);
    while baseline != Some(true) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        baseline = ssh_login(&d, &key, &ip);
    }
    assert_eq!(
        baseline,
        Some(true),
        "ssh login before any trick: {}",
        d.log_text()
    );
    // A host file that holds the instance's real authorized_keys (the right key): if the
    // gateway followed the symlink on the host, the login would succeed.
    let host_keys = d.write_file(
        "host-authorized-keys",
        &d.exec_ok(id, None, "cat ~/.ssh/authorized_keys"),
    );
    let keys_before = snapshot(&host_keys);
    let ak = "/home/ec2-user/.ssh/authorized_keys";
    let mut v = Verdicts::default();
    // (trick, plant, must the login be refused?) — a FIFO or a huge file must only not hang it.
    let tricks = [
        (
            "authorized_keys symlink to a host file",
            format!(
                "cp {ak} /root/ak.bak && ln -sf {} {ak}",
                host_keys.display()
            ),
            true,
        ),
        (
            "authorized_keys FIFO",
            format!("rm -f {ak} && mkfifo {ak}"),
            false,
        ),
        (
            "authorized_keys 4 GiB sparse file",
            format!("rm -f {ak} && truncate -s 4G {ak} && cat /root/ak.bak >> {ak}"),
            false,
        ),
        (
            "/etc/passwd FIFO",
            format!(
                "cp /root/ak.bak {ak} && cp /etc/passwd /root/passwd.bak && rm /etc/passwd && mkfifo /etc/passwd"
            ),
            false,
        ),
    ];
    for (name, plant, refuse) in &tricks {
        let planted = exec_bounded(&d, id, "root", plant, 20);
        v.check(&format!("{name}: planted"), planted.is_ok(), || {
            format!("{planted:?}")
        });
        let login = ssh_login(&d, &key, &ip);
        let ok = if *refuse {
            login == Some(false)
        } else {
            login.is_some()
        };
        v.check(
            &format!(
                "{name}: ssh login returned{}",
                if *refuse { " refused" } else { "" }
            ),
            ok,
            || match login {
                Some(true) => "the login succeeded".into(),
                _ => "the login hung".into(),
            },
        );
        let api = aws_bounded(&d, &["ec2", "describe-instances", "--instance-ids", id]);
        v.check(&format!("{name}: API still answers"), api.is_ok(), || {
            format!("{api:?}")
        });
    }
    check_unchanged(
        &mut v,
        "host authorized_keys target untouched",
        &host_keys,
        &keys_before,
    );
    // exec resolves the user in the instance's /etc/passwd (now a FIFO): it must return.
    let exec = exec_bounded(&d, id, "root", "true", 20);
    v.check(
        "/etc/passwd FIFO: exec returns",
        exec.as_ref().err().is_none_or(|e| !e.contains("hung")),
        || format!("{exec:?}"),
    );
    v.finish("gateway tricks");
}
