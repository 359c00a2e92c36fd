//! Symlink and FIFO tricks on the paths the daemon touches inside an instance (boot context and
//! its directory, host keys, hostname, hosts, machine-id). Each test: plant the trick as the
//! instance's root → make the host act on the path (reboot through the API or from inside, a
//! daemon crash and restart, `ec2lab exec`) → check from the host
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
pub(crate) fn exec_bounded(
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
pub(crate) fn aws_bounded(d: &Daemon, args: &[&str]) -> Result<String, String> {
    aws_within(d, args, 20)
}

/// The aws CLI, killed after `secs` + 10 s (its own read timeout is `secs`).
fn aws_within(d: &Daemon, args: &[&str], secs: u64) -> Result<String, String> {
    let mut cmd = Command::new("aws");
    cmd.args(args)
        .args(["--cli-read-timeout", &secs.to_string(), "--output", "json"])
        .envs(d.aws_env());
    match run_bounded(&mut cmd, None, Duration::from_secs(secs + 10)) {
        None => Err(format!("aws {args:?} hung")),
        Some(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Some(o) => Err(format!(
            "aws {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
    }
}

/// RebootInstances through the aws CLI, bounded.
fn reboot_bounded(d: &Daemon, ids: &[String]) -> Result<String, String> {
    let mut args = vec!["ec2", "reboot-instances", "--instance-ids"];
    args.extend(ids.iter().map(String::as_str));
    aws_bounded(d, &args)
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

/// A daemon with `n` running lab-linux instances, or None (skip) without root or the aws CLI.
fn lab(n: usize) -> Option<(Daemon, Vec<String>)> {
    if !prerequisites(&["aws"]) {
        return None;
    }
    let d = Daemon::start();
    let ids = d.run_instances(&["--count", &n.to_string()]);
    for id in &ids {
        d.wait_state(id, "running");
    }
    Some((d, ids))
}

fn host_file(d: &Daemon, name: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = d.write_file(name, &format!("host data of {name}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

pub(crate) fn check_unchanged(v: &mut Verdicts, name: &str, path: &Path, before: &(u32, String)) {
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
    let Some((d, ids)) = lab(4) else { return };
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
        format!(
            "mkdir -p /var/lib/ec2lab && ln -sf {} /var/lib/ec2lab/boot.json",
            f(0)
        ),
        format!(
            "rm -rf /var/lib/ec2lab && ln -s {} /var/lib/ec2lab",
            dir.display()
        ),
        format!(
            "for p in /etc/ssh/ssh_host_* /etc/hostname /etc/hosts /etc/machine-id; do ln -sf {} $p; done",
            f(2)
        ),
        format!(
            "mkdir -p /var/lib/ec2lab && ln -sf {} /var/lib/ec2lab/boot.json",
            f(3)
        ),
    ];
    for (id, plant) in ids.iter().zip(&plants) {
        d.exec_ok(id, Some("root"), plant);
    }
    let records: Vec<Option<String>> = ids.iter().map(|id| init_record(&d, id)).collect();
    let api_reboot = reboot_bounded(&d, &ids[..3]);
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
    let Some((d, ids)) = lab(2) else { return };
    d.exec_ok(
        &ids[0],
        Some("root"),
        "mkdir -p /var/lib/ec2lab && rm -f /var/lib/ec2lab/boot.json && mkfifo /var/lib/ec2lab/boot.json",
    );
    d.exec_ok(
        &ids[1],
        Some("root"),
        "for p in /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub /etc/hostname; \
         do rm -f $p && mkfifo $p; done",
    );
    let records: Vec<Option<String>> = ids.iter().map(|id| init_record(&d, id)).collect();
    let mut v = Verdicts::default();
    let r = reboot_bounded(&d, &ids);
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
    for (i, id) in ids.iter().enumerate() {
        let exec = exec_bounded(&d, id, "root", "true", 20);
        v.check(
            &format!("FIFO instance {i}: ec2lab exec returns"),
            exec.as_ref().err().is_none_or(|e| !e.contains("hung")),
            || format!("{exec:?}"),
        );
    }
    v.finish("FIFO tricks");
}

#[test]
fn a_fifo_boot_context_does_not_hang_a_restarted_daemon() {
    let Some((mut d, mut ids)) = lab(1) else {
        return;
    };
    let id = ids.remove(0);
    d.exec_ok(
        &id,
        Some("root"),
        "mkdir -p /var/lib/ec2lab && rm -f /var/lib/ec2lab/boot.json && mkfifo /var/lib/ec2lab/boot.json",
    );
    // A crash and a restart: start-up reconciliation boots the instance again and must not
    // hang on the FIFO (the issue saw the API port bound but never answering).
    d.kill9();
    let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.restart()));
    let mut v = Verdicts::default();
    v.check(
        "daemon came up after the restart",
        restarted.is_ok(),
        || "start-up did not finish (daemon.json never published)".into(),
    );
    let api = aws_within(&d, &["ec2", "describe-instances"], 5);
    v.check("API answers after the restart", api.is_ok(), || {
        format!("{api:?}")
    });
    if api.is_ok() {
        let state = state_bounded(&d, &id);
        let ok = match state.as_deref() {
            Ok("running") => exec_bounded(&d, &id, "root", "true", 20).is_ok(),
            Ok(s) => s == "stopped",
            Err(_) => false,
        };
        v.check("the instance runs and answers, or is stopped", ok, || {
            format!("state {state:?}")
        });
    }
    v.finish("FIFO boot context across a restart");
}
