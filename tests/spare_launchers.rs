//! Launchers made ahead (cgroup v1): a launch takes one that already sits in a cgroup, and the
//! instance still gets exactly its own limits and devices; nothing of a spare is left after a
//! graceful stop, or after `kill -9` of the daemon and a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

/// `spare-<tag>-`, the prefix of this daemon's spare cgroups (see `sandbox::spare`).
fn prefix(data_dir: &Path) -> String {
    let dir = data_dir.canonicalize().unwrap();
    let tag = hex::encode(&Sha256::digest(dir.as_os_str().as_encoded_bytes())[..4]);
    format!("spare-{tag}-")
}

/// This daemon's spare cgroups (in the pids hierarchy) and spare launcher processes.
fn spares(prefix: &str) -> (Vec<String>, Vec<String>) {
    let cgroups = std::fs::read_dir("/sys/fs/cgroup/pids/ec2lab")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("__launch --spare") && cmd.contains(prefix) {
            procs.push(cmd);
        }
    }
    (cgroups, procs)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cgroup_v1() -> bool {
    Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
        && Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

#[test]
fn launches_take_spare_launchers_and_nothing_of_them_is_left() {
    if !prerequisites(&["aws"])
        || !require(
            cgroup_v1(),
            "spare launchers are made on cgroup v1 hosts only",
        )
    {
        return;
    }
    let mut d = Daemon::start();
    let prefix = prefix(&d.data_dir);
    wait_for("two spare launchers", || {
        let (c, p) = spares(&prefix);
        c.len() == 2 && p.len() == 2
    });

    // Three launches, one after the other: each takes a spare (the pool refills behind them).
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.extend(d.run_instances(&["--instance-type", "t2.nano"]));
        wait_for("the pool to refill", || spares(&prefix).0.len() == 2);
    }
    let log = d.log_text();
    assert_eq!(
        log.matches("spare=true").count(),
        3,
        "every launch used a spare launcher: {log}"
    );
    for id in &ids {
        assert_eq!(d.exec_ok(id, None, "echo up").trim(), "up");
        // The instance's own limits (t2.nano: 512 MiB, 1 vCPU) were written when the spare's
        // cgroup became the instance's.
        let cg = |h: &str, f: &str| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/{h}/ec2lab/{id}/{f}"))
                .unwrap_or_else(|e| panic!("{h}/{f} of {id}: {e}"))
        };
        assert_eq!(cg("memory", "memory.limit_in_bytes").trim(), "536870912");
        assert_eq!(cg("cpu", "cpu.cfs_quota_us").trim(), "100000");
        // The loop rules a spare holds until its launch attached the volume are gone: only the
        // instance's one volume is allowed.
        let devices = cg("devices", "devices.list");
        assert!(
            !devices.contains("b 7:*") && !devices.contains("c 10:237"),
            "{id}: {devices}"
        );
        assert_eq!(devices.matches("b 7:").count(), 1, "{id}: {devices}");
        // The instance's processes live in the cgroup named after it.
        assert!(
            !cg("pids", "cgroup.procs").trim().is_empty(),
            "{id}: no process in its cgroup"
        );
    }

    // A crash: the spares see their stdin close and remove themselves.
    d.kill9();
    wait_for("the killed daemon's spares to go", || {
        spares(&prefix) == (vec![], vec![])
    });
    d.restart();
    wait_for("new spares", || spares(&prefix).0.len() == 2);
    for id in &ids {
        d.wait_state(id, "running");
    }
    // A graceful stop leaves no spare cgroup and no spare process.
    assert!(d.stop().success());
    assert_eq!(spares(&prefix), (vec![], vec![]), "left after stop");
}

#[test]
fn no_spares_when_the_pool_is_off() {
    if !prerequisites(&["aws"])
        || !require(
            cgroup_v1(),
            "spare launchers are made on cgroup v1 hosts only",
        )
    {
        return;
    }
    let d = Daemon::start_with(&["--spare-launchers", "0"]);
    let prefix = prefix(&d.data_dir);
    let id = d.run_instances(&[]).remove(0);
    assert_eq!(d.exec_ok(&id, None, "echo up").trim(), "up");
    assert!(d.log_text().contains("spare=false"), "{}", d.log_text());
    assert_eq!(spares(&prefix), (vec![], vec![]));
}
