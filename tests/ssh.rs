//! The SSH gateway with real OpenSSH clients: exec and exit codes, stdin, host keys, refusals,
//! keys added inside the instance, interactive sessions through a PTY.

mod ssh_common;

use std::process::Command;
use std::time::{Duration, Instant};

use ssh_common::*;

#[test]
fn exec_exit_codes_stdin_and_stderr() {
    let Some(lab) = Lab::start(&["ssh"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = &lab.launch("k", 1)[0];

    let out = lab.ssh_run(t, &key, "ec2-user", "id -un; echo err >&2; pwd", b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ec2-user\n/home/ec2-user\n");
    assert_eq!(text(&out.stderr), "err\n");

    for code in [0, 3, 255] {
        let out = lab.ssh_run(t, &key, "ec2-user", &format!("exit {code}"), b"");
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    }
    // A signal death: the gateway sends exit-signal, which OpenSSH reports as 255.
    let out = lab.ssh_run(t, &key, "ec2-user", "kill -TERM $$", b"");
    assert!(
        matches!(out.status.code(), Some(255)),
        "{:?} {}",
        out.status,
        text(&out.stderr)
    );

    // stdin piping, EOF, and output larger than the window.
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = lab.ssh_run(t, &key, "ec2-user", "cat", &input);
    assert!(out.status.success());
    assert!(
        out.stdout == input,
        "cat returned {} bytes",
        out.stdout.len()
    );
    let out = lab.ssh_run(t, &key, "ec2-user", "wc -c", b"hello");
    assert_eq!(text(&out.stdout).trim(), "5");

    // Login environment and LANG passing.
    let out = run_with_input(
        &mut lab.ssh(
            t,
            &key,
            "ec2-user",
            &[
                "-o",
                "SetEnv=LANG=C.UTF-8 FOO=bar",
                "echo $HOME $USER $SHELL $LANG ${FOO:-unset}; echo $SSH_CONNECTION",
            ],
        ),
        b"",
    );
    let s = text(&out.stdout);
    assert!(
        s.starts_with("/home/ec2-user ec2-user /bin/bash C.UTF-8 unset\n"),
        "{s}"
    );
    assert!(s.contains(&format!(" {} {}", t.ip, t.port)), "{s}");
}

#[test]
fn host_key_matches_console_and_root_is_refused() {
    let Some(lab) = Lab::start(&["ssh", "ssh-keyscan", "ssh-keygen"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = &lab.launch("k", 1)[0];

    // The host keys the gateway presents are the instance's, as printed on its console.
    let console = lab.d.wait_console(&t.id, "END SSH HOST KEY KEYS");
    let mut presented = Vec::new();
    for kind in ["ed25519", "ecdsa"] {
        let scan = run_ok(Command::new("ssh-keyscan").args([
            "-t",
            kind,
            "-p",
            &t.port.to_string(),
            &t.ip,
        ]));
        let f = lab.path(&format!("scan-{kind}"));
        std::fs::write(&f, &scan).unwrap();
        let fp = run_ok(Command::new("ssh-keygen").arg("-lf").arg(&f));
        presented.push(fp.split_whitespace().nth(1).unwrap().to_string());
    }
    assert_eq!(presented, lab.host_fingerprints(&t.id));
    for fp in &presented {
        assert!(
            console.contains(fp.as_str()),
            "console lacks {fp}:\n{console}"
        );
    }

    // root: the key's forced command prints the EC2 message and ends (after its sleep 10).
    let t0 = Instant::now();
    let out = lab.ssh_run(t, &key, "root", "id", b"");
    let s = text(&out.stdout);
    assert!(
        s.contains(r#"Please login as the user "ec2-user" rather than the user "root"."#),
        "{s} {}",
        text(&out.stderr)
    );
    assert!(!s.contains("uid=0"), "{s}");
    assert_eq!(out.status.code(), Some(142));
    assert!(t0.elapsed() < Duration::from_secs(30));

    // No port forwarding for root's key.
    let out = run_with_input(
        &mut lab.ssh(
            t,
            &key,
            "root",
            &["-o", "ExitOnForwardFailure=yes", "-N", "-W", "127.0.0.1:22"],
        ),
        b"",
    );
    assert!(!out.status.success());
}

#[test]
fn unknown_key_refused_then_authorized_inside_instance() {
    let Some(lab) = Lab::start(&["ssh", "ssh-keygen"]) else {
        return;
    };
    let _key = lab.key("k", "ed25519");
    let t = &lab.launch("k", 1)[0];
    let other = lab.path("other");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
            .arg(&other),
    );

    let t0 = Instant::now();
    let out = lab.ssh_run(t, &other, "ec2-user", "true", b"");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "rejection took {:?}",
        t0.elapsed()
    );

    // Unknown user with a valid key.
    let out = lab.ssh_run(t, &_key, "nobody-here", "true", b"");
    assert_eq!(out.status.code(), Some(255));

    // Append the RSA key inside the instance: it works (rsa-sha2-512), then remove it again.
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    lab.d.exec_ok(
        &t.id,
        None,
        &format!("echo '{}' >> ~/.ssh/authorized_keys", pubkey.trim()),
    );
    let out = lab.ssh_run(t, &other, "ec2-user", "echo in", b"");
    assert_eq!(text(&out.stdout), "in\n", "{}", text(&out.stderr));
    // The same RSA key with a SHA-1 `ssh-rsa` signature is refused (as OpenSSH >= 8.8 does).
    let out = run_with_input(
        &mut lab.ssh(
            t,
            &other,
            "ec2-user",
            &["-o", "PubkeyAcceptedAlgorithms=ssh-rsa", "echo in"],
        ),
        b"",
    );
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    lab.d
        .exec_ok(&t.id, None, "sed -i '$d' ~/.ssh/authorized_keys");
    let out = lab.ssh_run(t, &other, "ec2-user", "echo in", b"");
    assert_eq!(out.status.code(), Some(255));

    // A symlink planted inside the instance resolves inside it, never on the host: point
    // authorized_keys at a host file that authorizes `other`; it must stay refused.
    let host_file = lab.path("host-authorized");
    std::fs::write(&host_file, &pubkey).unwrap();
    lab.d.exec_ok(
        &t.id,
        None,
        &format!(
            "ln -sf ../../../..{} ~/.ssh/authorized_keys",
            host_file.display()
        ),
    );
    let out = lab.ssh_run(t, &other, "ec2-user", "echo in", b"");
    assert_eq!(out.status.code(), Some(255), "symlink escaped the instance");
}

#[test]
fn interactive_pty_session_with_resize() {
    let Some(lab) = Lab::start(&["ssh", "python3"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = &lab.launch("k", 1)[0];
    // python drives `ssh -tt` through a real PTY: stty size, resize, stty size again, exit 7.
    let script = r#"
import os, pty, sys, time, fcntl, termios, struct, select
argv = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
def setsize(rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
    os.kill(pid, 28)
setsize(30, 100)
out = b''
def read_until(needle, t=20):
    global out
    end = time.time() + t
    while needle not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return needle in out
assert read_until(b'$ '), out
os.write(fd, b'stty size; tty\r')
assert read_until(b'30 100'), out
setsize(40, 132)
time.sleep(0.5)
os.write(fd, b'stty size\r')
assert read_until(b'40 132'), out
os.write(fd, b'exit 7\r')
read_until(b'__never__', 5)
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode('utf-8', 'replace'))
sys.exit(os.waitstatus_to_exitcode(st))
"#;
    let py = lab.path("drive.py");
    std::fs::write(&py, script).unwrap();
    let ssh = lab.ssh(t, &key, "ec2-user", &["-tt"]);
    let mut cmd = Command::new("python3");
    cmd.arg(&py).arg("ssh").args(ssh.get_args());
    let out = run_with_input(&mut cmd, b"");
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{s}{}", text(&out.stderr));
    assert!(s.contains(&t.id), "banner with the instance id: {s}");
    assert!(s.contains("/dev/pts/"), "{s}");
}

#[test]
fn hammering_source_is_cut_off() {
    let Some(lab) = Lab::start(&["ssh", "ssh-keygen"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = &lab.launch("k", 1)[0];
    let other = lab.path("other");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other),
    );
    // Each refused key counts against the source; past the limit its connections are dropped
    // before the SSH handshake, even with a good key.
    let t0 = Instant::now();
    for _ in 0..32 {
        let out = lab.ssh_run(t, &other, "ec2-user", "true", b"");
        assert_eq!(out.status.code(), Some(255));
    }
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    let out = lab.ssh_run(t, &key, "ec2-user", "echo in", b"");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    assert!(
        !text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
}

/// Host pids of the session helpers (`ec2lab __sessiond`) serving the instance whose PID 1 is
/// `init_pid`.
fn session_helpers(init_pid: i32) -> Vec<i32> {
    let needle = format!("\"init_pid\":{init_pid},");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) == Some("__sessiond")
            && args.get(2).is_some_and(|a| a.contains(&needle))
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn session_helper_hidden_inside_restarted_when_killed_and_statuses_exact() {
    let Some(lab) = Lab::start(&["ssh"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = &lab.launch("k", 1)[0];
    let (init_pid, _) = lab.init_state(&t.id);

    // Exit codes and a signal death pass through the helper unchanged.
    let out = lab.ssh_run(t, &key, "ec2-user", "exit 7", b"");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let out = lab.ssh_run(t, &key, "ec2-user", "echo before; kill -9 $$", b"");
    assert_eq!(text(&out.stdout), "before\n");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    let out = lab.ssh_run(t, &key, "ec2-user", "no-such-command-here", b"");
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    // A terminal is the user's, group tty, mode 0620 (chowned by the daemon in host ids).
    let out = run_with_input(
        &mut lab.ssh(t, &key, "ec2-user", &["-tt", "stat -c '%U %G %a' $(tty)"]),
        b"",
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "ec2-user tty 620",
        "{}",
        text(&out.stderr)
    );

    // One helper, outside the instance's PID namespace: nothing inside sees it.
    let helpers = session_helpers(init_pid);
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", helpers[0])).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().count(), 2, "{nspid}");
    let out = lab.ssh_run(
        t,
        &key,
        "ec2-user",
        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("__sessiond"),
        "{}",
        text(&out.stdout)
    );

    // Killed: the next login starts another one and works.
    // SAFETY: SIGKILL to the helper's host pid found above.
    assert_eq!(unsafe { libc::kill(helpers[0], libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while session_helpers(init_pid).contains(&helpers[0]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = lab.ssh_run(t, &key, "ec2-user", "id -un; exit 3", b"");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ec2-user\n");
    let again = session_helpers(init_pid);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again[0], helpers[0]);

    // It ends with its instance.
    let out = lab
        .d
        .aws(&["ec2", "terminate-instances", "--instance-ids", &t.id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !session_helpers(init_pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        session_helpers(init_pid).is_empty(),
        "helper outlived its instance"
    );
}
