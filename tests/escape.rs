//! The escape suite: a hostile root inside an instance against the host (issue 8).
//!
//! `attempts_from_inside_are_refused` pipes `tests/escape/attempts.py` (the framework) with the
//! groups in `tests/escape/attempts/` into `ec2lab exec --user root A -- python3 -` and gets one
//! `PASS`/`FAIL` line per attempt (≥ 60),
//! then checks from the host what only the host can see: its files, kernel log, hostname,
//! keyring, loopback listener and /usr. Order: prepare the host (marker files, a key in uid 0's
//! keyring, a listener, uid 1000's inotify instances held, the kernel-log cursor) → instance B
//! leaves traces (a file, a process, metadata traffic) → the script runs in A while the API is
//! asked again and again → host checks → A still answers.
//!
//! `tricks` plants symlinks and FIFOs on every path the daemon touches inside an instance (boot
//! context, its directory, host keys, hostname), reboots, and checks the host is untouched and
//! nothing hangs; `gateway` does the same with authorized_keys and /etc/passwd and SSH logins.
//!
//! Every attempt is reported by name; a test fails with the list of every attempt that got
//! through, not only the first.

mod common;
#[path = "escape/gateway.rs"]
mod gateway;
#[path = "escape/host.rs"]
mod host;
#[path = "escape/tricks.rs"]
mod tricks;

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use host::*;

const SCRIPT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/escape");
const MIN_ATTEMPTS: usize = 60;
const NAMESPACES: &[&str] = &["mnt", "pid", "net", "uts", "ipc", "user", "cgroup"];

fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{:x}{:x}", std::process::id(), t.subsec_nanos())
}

/// The one script the instance runs: the framework, every group of attempts, `main()`.
fn compose_script(out: &Path) {
    let dir = Path::new(SCRIPT_DIR);
    let mut text = std::fs::read_to_string(dir.join("attempts.py")).unwrap();
    let mut groups: Vec<_> = std::fs::read_dir(dir.join("attempts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    groups.sort();
    for g in groups {
        text.push_str("\n\n");
        text.push_str(&std::fs::read_to_string(g).unwrap());
    }
    text.push_str("\n\nmain()\n");
    std::fs::write(out, text).unwrap();
}

/// `ec2lab exec --user root ID -- python3 - CONFIG` with the attempts script on stdin, bounded.
fn run_attempts(d: &Daemon, id: &str, config: &str) -> Option<std::process::Output> {
    let script = d.dir.path().join("attempts-all.py");
    compose_script(&script);
    let mut cmd = Command::new(BIN);
    cmd.args(["exec", "--data-dir"])
        .arg(&d.data_dir)
        .args(["--user", "root", id, "--", "python3", "-", config]);
    run_bounded(
        &mut cmd,
        Some(File::open(&script).unwrap()),
        Duration::from_secs(150),
    )
}

fn sha256_hex(path: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        std::fs::read(path).unwrap_or_default(),
    ))
}

/// The instance's pids limit as its cgroup says (v1 or v2), or the daemon's formula.
fn pids_max(id: &str) -> u64 {
    for p in [
        format!("/sys/fs/cgroup/pids/ec2lab/{id}/pids.max"),
        format!("/sys/fs/cgroup/ec2lab/{id}/pids.max"),
    ] {
        if let Some(n) = std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return n;
        }
    }
    1024
}

/// The AMI's root volume size (GiB) as DescribeImages states it.
fn volume_gib(d: &Daemon) -> u64 {
    let ami = d.lab_linux();
    let v = d.aws_json(&["ec2", "describe-images", "--image-ids", &ami]);
    v["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
        .as_u64()
        .unwrap_or(8)
}

/// Parses the script's output into verdicts: every announced attempt must have its line.
fn script_verdicts(v: &mut Verdicts, stdout: &str) -> usize {
    let announced: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ATTEMPTS "))
        .map(|l| l.split(',').collect())
        .unwrap_or_default();
    for name in &announced {
        let pass = format!("PASS {name}");
        let fail = format!("FAIL {name}:");
        let line = stdout.lines().find(|l| *l == pass || l.starts_with(&fail));
        v.check(name, line == Some(pass.as_str()), || match line {
            Some(l) => l.trim_start_matches(&fail).trim().to_string(),
            None => "no result: the script died before this attempt".into(),
        });
    }
    v.check(
        "script_completed",
        stdout.lines().any(|l| l == "DONE"),
        || "the script did not reach its end".into(),
    );
    announced.len()
}

#[test]
fn attempts_from_inside_are_refused() {
    // The instance runs the host's /usr, so the script needs the system's python3 there.
    if !prerequisites(&["aws"])
        || !require(
            Path::new("/usr/bin/python3").exists(),
            "needs /usr/bin/python3 (instances run the host's /usr; scripts/test.sh: python3)",
        )
    {
        return;
    }
    let d = Daemon::start();
    let nonce = nonce();
    let ids = d.run_instances(&["--instance-type", "t2.nano", "--count", "2"]);
    let (a, b) = (&ids[0], &ids[1]);
    d.wait_state(a, "running");
    d.wait_state(b, "running");

    // The host: files the instance must not see or change, a key, a listener, the log cursor.
    let host_marker = d.write_file("host-marker", &format!("host secret {nonce}\n"));
    let marker_before = snapshot(&host_marker);
    let root_marker = format!("/root/.ec2lab-escape-{nonce}");
    std::fs::write(&root_marker, "host root's file\n").unwrap();
    let hostname_before = hostname();
    let etc_hostname_before = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let key_desc = format!("ec2lab-escape-host-{nonce}");
    let key_id = add_host_key(&key_desc, &format!("host-secret-{nonce}"));
    let listener = Listener::start();
    let inotify = InotifyHolder::start(1000).expect("hold uid 1000's inotify instances");
    assert!(
        inotify.held > 0,
        "uid 1000 got no inotify instance on the host"
    );
    let kmsg = Kmsg::open();
    let host_ns: serde_json::Map<String, serde_json::Value> = NAMESPACES
        .iter()
        .map(|ns| {
            let id = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            (ns.to_string(), id.display().to_string().into())
        })
        .collect();
    let pid1 = std::fs::read("/proc/1/cmdline").unwrap_or_default();

    // Instance B: a file, a process and metadata traffic that A must not see.
    let b_ip = d.private_ip(b);
    d.exec_ok(
        b,
        Some("root"),
        &format!(
            "echo secret > /tmp/secret-b-{nonce}; nohup python3 -c 'import time,urllib.request\n\
             for i in range(300):\n  \
               try: urllib.request.urlopen(\"http://169.254.169.254/latest/meta-data/\", timeout=1).read()\n  \
               except Exception: pass\n  \
               time.sleep(0.1)' marker-of-b-{nonce} >/dev/null 2>&1 &"
        ),
    );

    let config = serde_json::json!({
        "nonce": nonce,
        "host_marker": host_marker.display().to_string(),
        "data_dir": d.data_dir.display().to_string(),
        "tmp_dir": d.dir.path().display().to_string(),
        "host_root_marker": root_marker,
        "host_pid1_cmdline": String::from_utf8_lossy(&pid1).replace('\0', " "),
        "host_shadow_sha256": sha256_hex("/etc/shadow"),
        "host_ns": host_ns,
        "a_id": a, "b_id": b, "b_ip": b_ip,
        "host_listener_port": listener.port,
        "api_port": d.api_port,
        "ssh_port": d.ssh_port,
        "host_key_desc": key_desc,
        "host_key_id": key_id,
        "pids_max": pids_max(a),
        "memory_mib": 512,
        "volume_bytes": volume_gib(&d) << 30,
    })
    .to_string();

    let watch = ApiWatch::start(d.aws_env());
    let out = run_attempts(&d, a, &config);
    let (api_ok, api_errors) = watch.finish();

    let mut v = Verdicts::default();
    let stdout = out
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    v.check("script_returned", out.is_some(), || {
        "exec of the attempts script hung (killed after 150 s)".into()
    });
    let count = script_verdicts(&mut v, &stdout);
    if let Some(o) = &out {
        eprintln!("script stderr: {}", String::from_utf8_lossy(&o.stderr));
    }

    // What only the host sees.
    let log = kmsg.read_new();
    let in_log: Vec<&String> = log
        .iter()
        .filter(|r| r.contains(&nonce) || r.contains("sysrq"))
        .collect();
    v.check("host: kernel log untouched", in_log.is_empty(), || {
        format!("the instance wrote into the host's kernel log: {in_log:?}")
    });
    v.check(
        "host: marker file unchanged",
        snapshot(&host_marker) == marker_before,
        || "the host marker changed".into(),
    );
    v.check(
        "host: hostname unchanged",
        hostname() == hostname_before,
        || format!("host hostname is now {:?}", hostname()),
    );
    let etc_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    v.check(
        "host: /etc/hostname unchanged",
        etc_hostname == etc_hostname_before,
        || format!("host /etc/hostname is now {etc_hostname:?}"),
    );
    let probes: Vec<String> = std::fs::read_dir("/usr")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&nonce))
        .collect();
    for p in &probes {
        let _ = std::fs::remove_file(Path::new("/usr").join(p));
    }
    v.check("host: /usr unchanged", probes.is_empty(), || {
        format!("the instance wrote into the host's /usr: {probes:?}")
    });
    let inst_key = find_host_key(&format!("ec2lab-escape-inst-{nonce}"));
    if let Some(k) = inst_key {
        remove_host_key(k);
    }
    v.check("host: keyring untouched", inst_key.is_none(), || {
        "a key the instance added is in the host root's keyring".into()
    });
    remove_host_key(key_id);
    let accepted = listener.finish();
    v.check("host: loopback listener not reached", accepted == 0, || {
        format!("{accepted} connections reached the host's 127.0.0.1 listener")
    });
    v.check(
        "host: API answered throughout",
        api_ok > 0 && api_errors.is_empty(),
        || format!("{api_ok} answers, failures: {api_errors:?}"),
    );
    drop(inotify);
    let _ = std::fs::remove_file(&root_marker);
    let back = run_bounded(
        Command::new(BIN)
            .args(["exec", "--data-dir"])
            .arg(&d.data_dir)
            .args([a.as_str(), "--", "echo", "alive"]),
        None,
        Duration::from_secs(30),
    );
    v.check(
        "host: instance recovered",
        back.as_ref().is_some_and(|o| o.stdout == b"alive\n"),
        || format!("exec after the attempts: {back:?}"),
    );
    v.check(
        "host: instance still running",
        d.state_of(a) == "running",
        || format!("{a} is {}", d.state_of(a)),
    );

    assert!(
        count >= MIN_ATTEMPTS,
        "only {count} attempts announced (want ≥ {MIN_ATTEMPTS}): {stdout}"
    );
    v.finish("escape attempts");
}
