//! Harness for the SSH gateway tests: a real daemon with instances, and the gateway serving
//! them. When the daemon serves SSH itself (public IP in DescribeInstances and its ssh port
//! answers), tests use that; otherwise the harness runs `ec2lab::gateway::Gateway` in the test
//! process on addresses of the daemon's own public pool, with routes built from the data dir
//! (run/<id>/init.json, volumes/<id>/host_keys or the instance's /etc/ssh).
#![allow(dead_code)]

#[path = "common/mod.rs"]
pub mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use common::*;
use ec2lab::gateway::{Gateway, Route};

pub struct Lab {
    pub d: Daemon,
    pub rt: tokio::runtime::Runtime,
    pub gw: Arc<Gateway>,
    next_ip: AtomicU32,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub ip: String,
    pub port: u16,
}

impl Target {
    pub fn addr(&self) -> SocketAddr {
        format!("{}:{}", self.ip, self.port).parse().unwrap()
    }
}

/// Options that make OpenSSH non-interactive and independent of ~/.ssh.
pub const SSH_OPTS: &[&str] = &[
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "IdentityAgent=none",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=20",
    "-F",
    "/dev/null",
];

impl Lab {
    /// A lab, or None (skip) when root or a tool is missing outside CI.
    pub fn start(tools: &[&str]) -> Option<Lab> {
        if !prerequisites(&[&["aws"], tools].concat()) {
            return None;
        }
        let d = Daemon::start();
        d.open_ssh();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let gw = Gateway::new(PathBuf::from(BIN));
        Some(Lab {
            d,
            rt,
            gw,
            next_ip: AtomicU32::new(1),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.d.dir.path().join(name)
    }

    /// Creates a key pair through the API and saves its .pem (0600); returns the path.
    pub fn key(&self, name: &str, kind: &str) -> PathBuf {
        let out = self.d.aws(&[
            "ec2",
            "create-key-pair",
            "--key-name",
            name,
            "--key-type",
            kind,
            "--query",
            "KeyMaterial",
            "--output",
            "text",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = self.path(&format!("{name}.pem"));
        let mut text = String::from_utf8(out.stdout).unwrap();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        std::fs::write(&p, text).unwrap();
        chmod600(&p);
        p
    }

    /// Launches `count` instances with `key` and serves them; waits until they can log in.
    pub fn launch(&self, key: &str, count: usize) -> Vec<Target> {
        let n = count.to_string();
        let ids = self.d.run_instances(&["--key-name", key, "--count", &n]);
        ids.iter().map(|id| self.serve(id)).collect()
    }

    fn volume(&self, id: &str) -> PathBuf {
        self.d.data_dir.join("volumes").join(id)
    }

    /// Waits for the instance to run and its keys to be in place, then returns where its
    /// SSH is served.
    pub fn serve(&self, id: &str) -> Target {
        self.d.wait_state(id, "running");
        let deadline = Instant::now() + Duration::from_secs(60);
        // The root volume is an image mounted only inside the instance: look through its init.
        let (pid, _) = self.init_state(id);
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        while !(root.join("home/ec2-user/.ssh/authorized_keys").exists()
            && root.join("root/.ssh/authorized_keys").exists())
        {
            assert!(Instant::now() < deadline, "{id}: keys never written");
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = self.daemon_target(id) {
            return t;
        }
        let (init_pid, start_time) = self.init_state(id);
        let host_key_dir = self.volume(id).join("host_keys");
        // An address of the daemon's pool that the daemon itself does not hand out early.
        let octet = self.d.public_cidr.split('.').nth(1).unwrap().to_string();
        let k = self.next_ip.fetch_add(1, Ordering::Relaxed);
        let ip = format!("127.{octet}.{}.{}", 250 - k / 250, 1 + k % 250);
        let port = self.d.ssh_port;
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let route = Route {
            instance_id: id.to_string(),
            init_pid,
            start_time,
            host_key_dir,
            banner: format!("ec2lab instance {id} (test banner)\n"),
            admit: None,
        };
        let gw = self.gw.clone();
        self.rt.block_on(gw.add(addr, route)).unwrap();
        Target {
            id: id.to_string(),
            ip,
            port,
        }
    }

    /// The daemon's own gateway, if it serves this instance.
    fn daemon_target(&self, id: &str) -> Option<Target> {
        let v = self
            .d
            .aws_json(&["ec2", "describe-instances", "--instance-ids", id]);
        let ip = v["Reservations"][0]["Instances"][0]["PublicIpAddress"]
            .as_str()?
            .to_string();
        let addr: SocketAddr = format!("{ip}:{}", self.d.ssh_port).parse().ok()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Some(Target {
                    id: id.to_string(),
                    ip,
                    port: self.d.ssh_port,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn init_state(&self, id: &str) -> (i32, u64) {
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.d.data_dir.join("run").join(id).join("init.json")).unwrap(),
        )
        .unwrap();
        (
            v["init_pid"].as_i64().unwrap() as i32,
            v["start_time"].as_u64().unwrap(),
        )
    }

    /// `ssh -i key -p port user@ip ARGS…` with non-interactive options.
    pub fn ssh(&self, t: &Target, key: &Path, user: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(SSH_OPTS)
            .arg("-i")
            .arg(key)
            .args(["-p", &t.port.to_string()])
            .arg(format!("{user}@{}", t.ip))
            .args(args);
        c
    }

    /// Runs `ssh … user@ip SCRIPT` with stdin from `input`.
    pub fn ssh_run(
        &self,
        t: &Target,
        key: &Path,
        user: &str,
        script: &str,
        input: &[u8],
    ) -> Output {
        run_with_input(&mut self.ssh(t, key, user, &[script]), input)
    }

    /// The instance's host key fingerprints (`SHA256:…`) as `ssh-keygen -l` prints them.
    pub fn host_fingerprints(&self, id: &str) -> Vec<String> {
        let dir = self.volume(id).join("host_keys");
        let mut fps = Vec::new();
        for name in ["ssh_host_ed25519_key.pub", "ssh_host_ecdsa_key.pub"] {
            let out = run_ok(Command::new("ssh-keygen").arg("-lf").arg(dir.join(name)));
            fps.push(out.split_whitespace().nth(1).unwrap().to_string());
        }
        fps
    }
}

pub fn chmod600(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Runs a command with `input` on stdin (written from a thread).
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A russh client handler that accepts any host key (tests check host keys elsewhere).
pub struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}
