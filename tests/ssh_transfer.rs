//! File transfer and port forwarding through the gateway: OpenSSH sftp/scp (both modes),
//! PuTTY plink/pscp/psftp with .ppk v3 and v2 (RSA, Ed25519, passphrase), ssh -L/-W/-R.

mod ssh_common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use ssh_common::*;

fn payload(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn sftp_and_scp_both_modes() {
    let Some(lab) = Lab::start(&["ssh", "sftp", "scp"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = &lab.launch("k", 1)[0];
    let data = payload(5_000_000, 1);
    let src = lab.path("up.bin");
    std::fs::write(&src, &data).unwrap();

    // sftp: put, ls, rename, get, rm.
    let batch = lab.path("batch");
    let back = lab.path("back.bin");
    std::fs::write(
        &batch,
        format!(
            "put {} a.bin\nls -l\nrename a.bin b.bin\nget b.bin {}\nrm b.bin\nls\n",
            src.display(),
            back.display()
        ),
    )
    .unwrap();
    let mut c = Command::new("sftp");
    c.args(SSH_OPTS)
        .arg("-i")
        .arg(&key)
        .args(["-P", &t.port.to_string(), "-b"])
        .arg(&batch)
        .arg(format!("ec2-user@{}", t.ip));
    let out = run_with_input(&mut c, b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("a.bin"));
    assert!(std::fs::read(&back).unwrap() == data, "sftp get differs");
    let ls = lab.d.exec_ok(&t.id, None, "ls ~");
    assert!(!ls.contains("b.bin"), "{ls}");

    // scp, SFTP mode (default) and legacy mode (-O), up and down; files owned by the user.
    for (mode, name) in [(None, "s.bin"), (Some("-O"), "o.bin")] {
        let mut up = Command::new("scp");
        up.args(SSH_OPTS)
            .arg("-i")
            .arg(&key)
            .args(["-P", &t.port.to_string()]);
        up.args(mode)
            .arg(&src)
            .arg(format!("ec2-user@{}:{name}", t.ip));
        let out = run_with_input(&mut up, b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "scp {mode:?} up: {}",
            text(&out.stderr)
        );
        let down = lab.path(&format!("down-{name}"));
        let mut dn = Command::new("scp");
        dn.args(SSH_OPTS)
            .arg("-i")
            .arg(&key)
            .args(["-P", &t.port.to_string()]);
        dn.args(mode)
            .arg(format!("ec2-user@{}:{name}", t.ip))
            .arg(&down);
        let out = run_with_input(&mut dn, b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "scp {mode:?} down: {}",
            text(&out.stderr)
        );
        assert!(
            std::fs::read(&down).unwrap() == data,
            "scp {mode:?} differs"
        );
    }
    let owners = lab.d.exec_ok(&t.id, None, "stat -c %U ~/s.bin ~/o.bin");
    assert_eq!(owners, "ec2-user\nec2-user\n");
    // The user's permissions apply: root's home is not writable.
    let mut up = Command::new("scp");
    up.args(SSH_OPTS)
        .arg("-i")
        .arg(&key)
        .args(["-P", &t.port.to_string()]);
    up.arg(&src).arg(format!("ec2-user@{}:/root/x.bin", t.ip));
    let out = run_with_input(&mut up, b"");
    assert_ne!(out.status.code(), Some(0));
}

/// A PuTTY key made with puttygen from the .pem (version 2 or 3, optional passphrase).
fn ppk(lab: &Lab, pem: &Path, version: u32, passphrase: Option<&str>) -> std::path::PathBuf {
    let name = format!(
        "{}-v{version}{}.ppk",
        pem.file_stem().unwrap().to_string_lossy(),
        if passphrase.is_some() { "-enc" } else { "" }
    );
    let out_path = lab.path(&name);
    let mut c = Command::new("puttygen");
    c.arg(pem)
        .args([
            "-O",
            "private",
            "--ppk-param",
            &format!("version={version}"),
        ])
        .arg("-o")
        .arg(&out_path);
    let pw = lab.path("pw");
    match passphrase {
        Some(p) => std::fs::write(&pw, format!("{p}\n")).unwrap(),
        None => std::fs::write(&pw, "").unwrap(),
    }
    c.arg("--new-passphrase").arg(&pw);
    run_ok(&mut c);
    out_path
}

fn plink(t: &Target, ppk: &Path, fp: &str, cmd: &str) -> Command {
    let mut c = Command::new("plink");
    c.args([
        "-batch",
        "-noagent",
        "-ssh",
        "-P",
        &t.port.to_string(),
        "-hostkey",
        fp,
        "-i",
    ])
    .arg(ppk)
    .arg(format!("ec2-user@{}", t.ip))
    .arg(cmd);
    c
}

#[test]
fn putty_plink_pscp_psftp() {
    let Some(lab) = Lab::start(&[
        "plink",
        "pscp",
        "psftp",
        "puttygen",
        "ssh-keygen",
        "python3",
    ]) else {
        return;
    };
    let ed = lab.key("ked", "ed25519");
    let rsa = lab.key("krsa", "rsa");
    let t = &lab.launch("ked", 1)[0];
    // Authorize the RSA key too (inside the instance, as a user would).
    let rsa_pub = run_ok(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&rsa));
    lab.d.exec_ok(
        &t.id,
        None,
        &format!("echo '{}' >> ~/.ssh/authorized_keys", rsa_pub.trim()),
    );
    let fp = lab.host_fingerprints(&t.id)[0].clone();

    // The .ppk the API returns (v3 by default) …
    let out = lab.d.aws(&[
        "ec2",
        "create-key-pair",
        "--key-name",
        "kp",
        "--key-format",
        "ppk",
        "--query",
        "KeyMaterial",
        "--output",
        "text",
    ]);
    assert!(out.status.success());
    let api_ppk = lab.path("kp.ppk");
    std::fs::write(&api_ppk, &out.stdout).unwrap();
    let kp_pub = run_ok(
        Command::new("puttygen")
            .arg(&api_ppk)
            .args(["-O", "public-openssh"]),
    );
    lab.d.exec_ok(
        &t.id,
        None,
        &format!("echo '{}' >> ~/.ssh/authorized_keys", kp_pub.trim()),
    );

    // … and v2/v3 of RSA and Ed25519 made by puttygen: exec with exit codes.
    let mut keys = vec![api_ppk.clone()];
    for pem in [&ed, &rsa] {
        for v in [2, 3] {
            keys.push(ppk(&lab, pem, v, None));
        }
    }
    for k in &keys {
        let out = run_with_input(&mut plink(t, k, &fp, "id -un; exit 3"), b"");
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}: {}",
            k.display(),
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "ec2-user\n", "{}", k.display());
    }
    // A wrong host key is refused by plink.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = run_with_input(&mut plink(t, &keys[1], wrong, "true"), b"");
    assert_ne!(out.status.code(), Some(0));

    // Passphrase-protected .ppk (v3 and v2): plink asks on its terminal; answer through a PTY.
    let drive = lab.path("answer.py");
    std::fs::write(
        &drive,
        r#"
import os, pty, sys, time, select, signal
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out = b''
end = time.time() + 30
answered = 0
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if out.count(b'assphrase') > answered:
            answered += 1
            time.sleep(0.1)
            os.write(fd, sys.argv[1].encode() + b'\n')
else:
    os.kill(pid, signal.SIGKILL)
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode('utf-8', 'replace'))
sys.exit(os.waitstatus_to_exitcode(st))
"#,
    )
    .unwrap();
    for v in [3, 2] {
        let enc = ppk(&lab, &ed, v, Some("s3cret pass"));
        let mut c = Command::new("python3");
        c.arg(&drive)
            .arg("s3cret pass")
            .arg("plink")
            .arg("-no-antispoof")
            .args(
                plink(t, &enc, &fp, "echo unlocked; exit 5")
                    .get_args()
                    .filter(|a| *a != "-batch"),
            );
        let out = run_with_input(&mut c, b"");
        assert_eq!(out.status.code(), Some(5), "v{v}: {}", text(&out.stdout));
        assert!(text(&out.stdout).contains("unlocked"));
    }

    // pscp (SFTP and legacy SCP) and psftp: bytes match.
    let data = payload(3_000_000, 7);
    let src = lab.path("p.bin");
    std::fs::write(&src, &data).unwrap();
    let k = &keys[2]; // ed25519 v3
    for proto in ["-sftp", "-scp"] {
        let remote = format!("ec2-user@{}:p{proto}.bin", t.ip);
        let mut up = Command::new("pscp");
        up.args([
            "-batch",
            "-noagent",
            proto,
            "-P",
            &t.port.to_string(),
            "-hostkey",
            &fp,
            "-i",
        ])
        .arg(k)
        .arg(&src)
        .arg(&remote);
        let out = run_with_input(&mut up, b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "pscp {proto} up: {}",
            text(&out.stderr)
        );
        let back = lab.path(&format!("back{proto}.bin"));
        let mut dn = Command::new("pscp");
        dn.args([
            "-batch",
            "-noagent",
            proto,
            "-P",
            &t.port.to_string(),
            "-hostkey",
            &fp,
            "-i",
        ])
        .arg(k)
        .arg(&remote)
        .arg(&back);
        let out = run_with_input(&mut dn, b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "pscp {proto} down: {}",
            text(&out.stderr)
        );
        assert!(
            std::fs::read(&back).unwrap() == data,
            "pscp {proto} differs"
        );
    }
    let script = lab.path("psftp.txt");
    let back = lab.path("psftp-back.bin");
    std::fs::write(
        &script,
        format!(
            "put {} q.bin\nren q.bin r.bin\nls\nget r.bin {}\nrm r.bin\nquit\n",
            src.display(),
            back.display()
        ),
    )
    .unwrap();
    let mut c = Command::new("psftp");
    c.args([
        "-batch",
        "-noagent",
        "-P",
        &t.port.to_string(),
        "-hostkey",
        &fp,
        "-i",
    ])
    .arg(k)
    .arg("-b")
    .arg(&script)
    .arg(format!("ec2-user@{}", t.ip));
    let out = run_with_input(&mut c, b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "psftp: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(std::fs::read(&back).unwrap() == data, "psftp differs");
}

#[test]
fn port_forwarding_local_stdio_and_remote() {
    let Some(lab) = Lab::start(&["ssh", "busybox"]) else {
        return;
    };
    let key = lab.key("k", "ed25519");
    let t = &lab.launch("k", 1)[0];
    lab.d.exec_ok(
        &t.id,
        None,
        "mkdir -p /tmp/www && echo hello-from-instance > /tmp/www/index.html && busybox httpd -p 127.0.0.1:8080 -h /tmp/www",
    );

    // ssh -W: a direct-tcpip channel to the instance's own loopback.
    let out = run_with_input(
        &mut lab.ssh(t, &key, "ec2-user", &["-W", "localhost:8080"]),
        b"GET / HTTP/1.0\r\n\r\n",
    );
    assert!(
        text(&out.stdout).contains("hello-from-instance"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // ssh -L with a real local listener.
    let lport = free_port();
    let mut fwd = lab
        .ssh(
            t,
            &key,
            "ec2-user",
            &[
                "-o",
                "ExitOnForwardFailure=yes",
                "-N",
                "-L",
                &format!("{lport}:127.0.0.1:8080"),
            ],
        )
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", lport)) {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            s.read_to_string(&mut body).unwrap();
            if !body.is_empty() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = fwd.kill();
    let _ = fwd.wait();
    assert!(body.contains("hello-from-instance"), "{body}");

    // A port nobody listens on: the channel is refused, ssh -W fails.
    let out = run_with_input(
        &mut lab.ssh(t, &key, "ec2-user", &["-W", "127.0.0.1:1"]),
        b"",
    );
    assert_ne!(out.status.code(), Some(0));

    // ssh -R: listen inside the instance, connect back to a server on the host.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hport = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in host.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 14\r\n\r\nhello-from-host");
        }
    });
    let out = run_with_input(
        &mut lab.ssh(
            t,
            &key,
            "ec2-user",
            &[
                "-o",
                "ExitOnForwardFailure=yes",
                "-R",
                &format!("9090:127.0.0.1:{hport}"),
                "busybox wget -qO- http://127.0.0.1:9090/",
            ],
        ),
        b"",
    );
    assert!(
        text(&out.stdout).contains("hello-from-hos"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
