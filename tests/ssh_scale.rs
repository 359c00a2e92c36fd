//! The gateway under load and across instance lifecycles: 200 concurrent OpenSSH sessions over
//! 20 instances, an in-process russh client for latency, a stopping instance ending its
//! sessions with a clear message, and `ec2lab ssh`.

mod ssh_common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::ChannelMsg;
use russh::keys::{PrivateKeyWithHashAlg, load_secret_key};
use ssh_common::*;

#[test]
fn two_hundred_sessions_across_twenty_instances() {
    let Some(lab) = Lab::start(&["ssh"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let targets = lab.launch("k", 20);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let t = targets[i % targets.len()].clone();
            let mut cmd = lab.ssh(&t, &key, "ec2-user", &[&format!(
                "echo {i} $(cat /sys/class/dmi/id/board_asset_tag 2>/dev/null || curl -s 169.254.169.254/latest/meta-data/instance-id 2>/dev/null || hostname); head -c 100000 /dev/zero | wc -c"
            )]);
            std::thread::spawn(move || (i, t, run_with_input(&mut cmd, b"")))
        })
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        let (i, t, out) = h.join().unwrap();
        let s = text(&out.stdout);
        if !(out.status.success() && s.starts_with(&format!("{i} ")) && s.ends_with("100000\n")) {
            failures.push(format!(
                "#{i} on {}: {:?} {s:?} {}",
                t.id,
                out.status,
                text(&out.stderr)
            ));
        }
    }
    let took = t0.elapsed();
    assert!(
        failures.is_empty(),
        "{} failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!("200 sessions across 20 instances in {took:?}");
    assert!(took < Duration::from_secs(120), "took {took:?}");
}

/// connect + auth + `exec true` + exit status with russh as the client.
async fn russh_exec(t: &Target, key: Arc<russh::keys::PrivateKey>, cmd: &str) -> (u32, Vec<u8>) {
    let config = Arc::new(russh::client::Config {
        nodelay: true,
        ..Default::default()
    });
    let mut h = russh::client::connect(config, t.addr(), AnyHostKey)
        .await
        .unwrap();
    let auth = h
        .authenticate_publickey("ec2-user", PrivateKeyWithHashAlg::new(key, None))
        .await
        .unwrap();
    assert!(auth.success());
    let mut ch = h.channel_open_session().await.unwrap();
    ch.exec(true, cmd).await.unwrap();
    let (mut status, mut out) = (None, Vec::new());
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    let _ = h
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    (status.expect("exit status before close"), out)
}

#[test]
fn russh_client_latency_and_output_before_status() {
    let Some(lab) = Lab::start(&[]) else {
        return;
    };
    let key_path = lab.key("k", "ed25519");
    let t = lab.launch("k", 1).remove(0);
    let key = Arc::new(load_secret_key(&key_path, None).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Output is complete before the exit status, every time.
        for _ in 0..5 {
            let (st, out) = russh_exec(&t, key.clone(), "seq 1 20000; exit 4").await;
            assert_eq!(st, 4);
            assert!(out.ends_with(b"19999\n20000\n"), "{} bytes", out.len());
        }
        let mut times = Vec::new();
        for _ in 0..21 {
            let t0 = Instant::now();
            let (st, _) = russh_exec(&t, key.clone(), "true").await;
            times.push(t0.elapsed());
            assert_eq!(st, 0);
        }
        times.sort();
        eprintln!("russh connect+auth+exec true: p50 {:?}", times[10]);
        assert!(
            times[10] < Duration::from_millis(500),
            "p50 {:?}",
            times[10]
        );
    });
}

#[test]
fn stopping_instance_ends_sessions_with_a_message() {
    let Some(lab) = Lab::start(&["ssh"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = lab.launch("k", 1).remove(0);
    let mut cmd = lab.ssh(&t, &key, "ec2-user", &["echo started; sleep 120"]);
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    let in_process = lab.gw.addrs().contains(&t.addr());
    if in_process {
        let gw = lab.gw.clone();
        lab.rt.block_on(gw.remove(t.addr()));
    } else {
        lab.d
            .aws_json(&["ec2", "stop-instances", "--instance-ids", &t.id]);
    }
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(text(&out.stdout), "started\n");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("instance {} is stopping", t.id)),
        "stderr: {err}"
    );
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn ec2lab_ssh_finds_ip_user_and_key() {
    let Some(lab) = Lab::start(&["ssh"]) else {
        return;
    };
    let _ = lab.key("web", "ed25519");
    let ids = lab.d.run_instances(&[
        "--key-name",
        "web",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=lab-web}]",
    ]);
    let t = lab.serve(&ids[0]);
    // keys/web.pem relative to the working directory, as `ec2lab key create` saves it.
    let cwd = lab.d.dir.path();
    std::fs::create_dir_all(cwd.join("keys")).unwrap();
    std::fs::copy(lab.path("web.pem"), cwd.join("keys/web.pem")).unwrap();
    chmod600(&cwd.join("keys/web.pem"));

    let out = lab.d.ec2lab(cwd, &["ssh", "lab-web", "--print"]);
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        printed.trim(),
        format!("ssh -i keys/web.pem -p {} ec2-user@{}", t.port, t.ip)
    );
    let out = run_with_input(
        Command::new(BIN)
            .args(["ssh", "--data-dir"])
            .arg(&lab.d.data_dir)
            .args([
                "lab-web",
                "--",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "echo via-ec2lab; id -un",
            ])
            .current_dir(cwd),
        b"",
    );
    assert_eq!(
        text(&out.stdout),
        "via-ec2lab\nec2-user\n",
        "{}",
        text(&out.stderr)
    );

    // Only a .ppk: explained. (`ec2lab ssh` also looks in the current directory, so the
    // lab's own copy goes too.)
    std::fs::rename(cwd.join("keys/web.pem"), cwd.join("keys/web.ppk")).unwrap();
    std::fs::remove_file(lab.path("web.pem")).unwrap();
    let out = lab.d.ec2lab(cwd, &["ssh", "lab-web", "--print"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("PuTTY key"),
        "{}",
        text(&out.stderr)
    );
}
