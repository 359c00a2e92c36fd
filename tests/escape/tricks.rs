//! Symlink, FIFO and huge-file tricks on the paths the daemon and the gateway touch inside an
//! instance. Each test: plant the trick as the instance's root → make the host act on the path
//! (reboot through the API or from inside, an SSH login, `ec2lab exec`) → check from the host
//! that host files kept their content and mode, that every call returned within its bound, and
//! that the instance came back or failed cleanly (stopped), never "running" but dead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::host::*;

/// The instance's init record on the host (changes when it boots again).
fn init_record(d: &Daemon, id: &str) -> Option<String> {
    std::fs::read_to_string(d.data_dir.join("run").join(id).join("init.json")).ok()
}

/// `ec2lab exec` bounded to `secs`: Some(stdout) when it returned successfully.
fn exec_bounded(
    d: &Daemon,
    id: &str,
    user: &str,
    script: &str,
    secs: u64,
) -> Result<String, String> {
    let mut cmd = Command::new(BIN);
    cmd.args(["exec", "--data-dir"])
        .arg(&d.data_dir)
        .args(["--user", user, id, "--", "sh", "-c", script]);
    match run_bounded(&mut cmd, None, Duration::from_secs(secs)) {
        None => Err(format!("exec hung ({secs} s)")),
        Some(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Some(o) => Err(format!(
            "exec failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )),
    }
}

/// The aws CLI bounded: Ok(stdout) or why not.
fn aws_bounded(d: &Daemon, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("aws");
    cmd.args(args)
        .args(["--cli-read-timeout", "20", "--output", "json"])
        .envs(d.aws_env());
    match run_bounded(&mut cmd, None, Duration::from_secs(30)) {
        None => Err(format!("aws {args:?} hung")),
        Some(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Some(o) => Err(format!(
            "aws {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
    }
}

fn state_bounded(d: &Daemon, id: &str) -> Result<String, String> {
    let out = aws_bounded(d, &["ec2", "describe-instances", "--instance-ids", id])?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    Ok(v["Reservations"][0]["Instances"][0]["State"]["Name"]
        .as_str()
        .unwrap_or("?")
        .to_string())
}

/// After a reboot: the instance booted again (a new init that answers exec) or stopped cleanly
/// within 30 s; Err says what happened instead.
fn came_back_or_stopped(d: &Daemon, id: &str, before: &Option<String>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match state_bounded(d, id)?.as_str() {
            "stopped" | "terminated" => return Ok(()),
            s => last = s.to_string(),
        }
        let rec = init_record(d, id);
        if rec.is_some() && rec != *before {
            return exec_bounded(d, id, "root", "echo back", 20).and_then(|o| {
                (o == "back\n")
                    .then_some(())
                    .ok_or(format!("exec said {o:?}"))
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "no new boot and not stopped after 30 s (state {last})"
    ))
}

fn host_file(d: &Daemon, name: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = d.write_file(name, &format!("host data of {name}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn check_unchanged(v: &mut Verdicts, name: &str, path: &Path, before: &(u32, String)) {
    let now = snapshot(path);
    v.check(name, now == *before, || {
        format!(
            "{} changed: mode {:o} → {:o}, content {:?} → {:?}",
            path.display(),
            before.0,
            now.0,
            before.1,
            now.1
        )
    });
}

#[test]
fn daemon_never_follows_symlinks_planted_in_the_instance() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let ids = d.run_instances(&["--count", "4"]);
    for id in &ids {
        d.wait_state(id, "running");
    }
    let files: Vec<PathBuf> = (0..4)
        .map(|i| host_file(&d, &format!("host-target-{i}"), 0o644))
        .collect();
    let dir = d.dir.path().join("host-target-dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), "kept\n").unwrap();
    let before: Vec<(u32, String)> = files.iter().chain([&dir]).map(|p| snapshot(p)).collect();
    let f = |i: usize| files[i].display().to_string();
    // 0: boot.json → a host file, rebooted by the API; 1: /var/lib/ec2lab → a host directory;
    // 2: every file the daemon writes at first boot → a host file; 3: boot.json, reboot inside.
    let plants = [
        format!("ln -sf {} /var/lib/ec2lab/boot.json", f(0)),
        format!(
            "rm -rf /var/lib/ec2lab && ln -s {} /var/lib/ec2lab",
            dir.display()
        ),
        format!(
            "for p in /etc/ssh/ssh_host_* /etc/hostname /etc/hosts /etc/machine-id; do ln -sf {} $p; done",
            f(2)
        ),
        format!("ln -sf {} /var/lib/ec2lab/boot.json", f(3)),
    ];
    for (id, plant) in ids.iter().zip(&plants) {
        d.exec_ok(id, Some("root"), plant);
    }
    let records: Vec<Option<String>> = ids.iter().map(|id| init_record(&d, id)).collect();
    let api_reboot = aws_bounded(
        &d,
        &[
            "ec2",
            "reboot-instances",
            "--instance-ids",
            &ids[0],
            &ids[1],
            &ids[2],
        ],
    );
    // The instance's own reboot: SIGTERM to its init (what busybox `reboot` sends).
    let _ = exec_bounded(&d, &ids[3], "root", "kill -TERM 1", 20);

    let mut v = Verdicts::default();
    v.check("reboot-instances answered", api_reboot.is_ok(), || {
        format!("{api_reboot:?}")
    });
    let names = [
        "boot.json symlink + RebootInstances",
        "/var/lib/ec2lab symlink + RebootInstances",
        "host keys, hostname, hosts, machine-id symlinks + RebootInstances",
        "boot.json symlink + reboot from inside",
    ];
    for (i, name) in names.iter().enumerate() {
        let back = came_back_or_stopped(&d, &ids[i], &records[i]);
        v.check(
            &format!("{name}: instance came back or stopped"),
            back.is_ok(),
            || format!("{back:?}"),
        );
    }
    for (i, name) in names.iter().enumerate() {
        let path = if i == 1 {
            dir.clone()
        } else {
            files[i].clone()
        };
        let snap = if i == 1 { &before[4] } else { &before[i] };
        check_unchanged(
            &mut v,
            &format!("{name}: host target untouched"),
            &path,
            snap,
        );
    }
    let stray = dir.join("boot.json").exists();
    v.check(
        "/var/lib/ec2lab symlink: nothing written into the host dir",
        !stray,
        || format!("{} exists", dir.join("boot.json").display()),
    );
    v.finish("symlink tricks");
}

#[test]
fn fifos_in_instance_paths_do_not_hang_the_daemon() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let mut d = Daemon::start();
    let ids = d.run_instances(&["--count", "2"]);
    for id in &ids {
        d.wait_state(id, "running");
    }
    d.exec_ok(
        &ids[0],
        Some("root"),
        "rm -f /var/lib/ec2lab/boot.json && mkfifo /var/lib/ec2lab/boot.json",
    );
    d.exec_ok(
        &ids[1],
        Some("root"),
        "for p in /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub /etc/hostname; \
         do rm -f $p && mkfifo $p; done",
    );
    let records: Vec<Option<String>> = ids.iter().map(|id| init_record(&d, id)).collect();
    let mut v = Verdicts::default();
    let r = aws_bounded(
        &d,
        &[
            "ec2",
            "reboot-instances",
            "--instance-ids",
            &ids[0],
            &ids[1],
        ],
    );
    v.check("reboot-instances answered", r.is_ok(), || format!("{r:?}"));
    for (i, name) in ["boot.json FIFO", "host key and hostname FIFOs"]
        .iter()
        .enumerate()
    {
        let back = came_back_or_stopped(&d, &ids[i], &records[i]);
        v.check(
            &format!("{name}: instance came back or stopped"),
            back.is_ok(),
            || format!("{back:?}"),
        );
        let console = aws_bounded(&d, &["ec2", "get-console-output", "--instance-id", &ids[i]]);
        v.check(
            &format!("{name}: console output answers"),
            console.is_ok(),
            || format!("{console:?}"),
        );
    }
    let api = aws_bounded(&d, &["ec2", "describe-instances"]);
    v.check("API answers after the FIFO reboots", api.is_ok(), || {
        format!("{api:?}")
    });
    // A crash and a restart: start-up reconciliation must not hang on the FIFOs either.
    d.kill9();
    d.restart();
    let api = aws_bounded(&d, &["ec2", "describe-instances"]);
    v.check("API answers after a restart", api.is_ok(), || {
        format!("{api:?}")
    });
    for (i, id) in ids.iter().enumerate() {
        let state = state_bounded(&d, id);
        let ok = match state.as_deref() {
            Ok("running") => exec_bounded(&d, id, "root", "true", 20).is_ok(),
            Ok(s) => s == "stopped",
            Err(_) => false,
        };
        v.check(
            &format!("FIFO instance {i} after restart: running and answering, or stopped"),
            ok,
            || format!("state {state:?}"),
        );
    }
    v.finish("FIFO tricks");
}

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
