//! Shared test harness: starts a real `ec2lab serve` on free loopback ports with a temporary data
//! dir, and runs real clients (the aws CLI, ssh-keygen, puttygen, …) against it.
//!
//! Tests that need root or an external tool skip with a printed reason outside CI; with `CI=true`
//! a missing prerequisite fails the test instead, so CI can never pass by skipping.
#![allow(dead_code)]

pub mod xml;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ec2lab");

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips the test (returns false) or, in CI, fails it, when `ok` is false.
pub fn require(ok: bool, reason: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("prerequisite missing in CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `require` for root plus every named tool.
pub fn prerequisites(tools: &[&str]) -> bool {
    if !require(
        is_root(),
        "needs root (the daemon creates namespaces and cgroups)",
    ) {
        return false;
    }
    tools.iter().all(|t| {
        require(
            have_tool(t),
            &format!("needs `{t}` on PATH (scripts/test.sh installs it)"),
        )
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Takes a /16 public pool (`127.N.0.0/16`) that no other test process holds: an flock on a file
/// per pool, kept for the life of the daemon.
fn take_pool() -> (String, std::fs::File) {
    use std::os::fd::AsRawFd;
    let start = (std::process::id() % 150) as usize;
    for i in 0..150 {
        let octet = 101 + (start + i) % 150;
        let path = std::env::temp_dir().join(format!("ec2lab-test-pool-{octet}.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap();
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return (format!("127.{octet}.0.0/16"), f);
        }
    }
    panic!("no free test address pool");
}

/// A running daemon with its own data dir and ports.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub api_port: u16,
    pub ssh_port: u16,
    pub public_cidr: String,
    _pool_lock: std::fs::File,
    child: Option<Child>,
    pub log: PathBuf,
    /// More `serve` flags (limits, timeouts), given by `start_with`.
    extra_args: Vec<String>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts a daemon with more `serve` flags (`--max-vcpus 2`, `--api-body-timeout 3`, …).
    pub fn start_with(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        // A distinct public pool per daemon, so tests running in parallel never share addresses.
        let (public_cidr, pool_lock) = take_pool();
        let mut d = Daemon {
            log: dir.path().join("daemon.log"),
            dir,
            data_dir,
            api_port: free_port(),
            ssh_port: free_port(),
            public_cidr,
            _pool_lock: pool_lock,
            child: None,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
        };
        d.spawn();
        d
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--api-addr", &format!("127.0.0.1:{}", self.api_port)])
            .args(["--public-cidr", &self.public_cidr])
            .args(["--ssh-port", &self.ssh_port.to_string()])
            .args(&self.extra_args)
            .env("EC2LAB_LOG", "info,ec2lab=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited early ({status}): {}", self.log_text());
            }
            // daemon.json is published after start-up (reconciliation included); an old one
            // from the previous run must not count.
            let pid = self.child.as_ref().unwrap().id();
            let fresh = std::fs::read(self.data_dir.join("daemon.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["pid"] == pid);
            if fresh && std::net::TcpStream::connect(("127.0.0.1", self.api_port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not come up: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Stops the daemon with SIGTERM and waits for it; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill with a pid we own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL (a crash).
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts the daemon again on the same data dir and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    pub fn creds(&self) -> (String, String) {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.data_dir.join("credentials.json")).unwrap())
                .unwrap();
        (
            v["access_key_id"].as_str().unwrap().to_string(),
            v["secret_access_key"].as_str().unwrap().to_string(),
        )
    }

    /// The environment that `eval "$(ec2lab env)"` would set, plus isolation from ~/.aws.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        let (id, secret) = self.creds();
        vec![
            ("AWS_ACCESS_KEY_ID".into(), id),
            ("AWS_SECRET_ACCESS_KEY".into(), secret),
            ("AWS_DEFAULT_REGION".into(), "ap-northeast-2".into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_CONFIG_FILE".into(), "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/nonexistent".into()),
            ("AWS_PAGER".into(), String::new()),
            (
                "EC2LAB_DATA_DIR".into(),
                self.data_dir.display().to_string(),
            ),
        ]
    }

    /// Runs the real aws CLI with `args` against this daemon.
    pub fn aws(&self, args: &[&str]) -> Output {
        Command::new("aws")
            .args(args)
            .envs(self.aws_env())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs the aws CLI, asserts success, and parses its JSON output.
    pub fn aws_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.aws(&[args, &["--output", "json"]].concat());
        assert!(
            out.status.success(),
            "aws {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs aws, expects failure with this error code; returns stderr.
    pub fn aws_err(&self, args: &[&str], code: &str) -> String {
        let out = self.aws(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "aws {args:?} should have failed with {code}"
        );
        assert!(
            err.contains(&format!("({code})")),
            "aws {args:?}: expected {code}, got: {err}"
        );
        err
    }

    /// Runs our own CLI with the data dir of this daemon, from `cwd`.
    pub fn ec2lab(&self, cwd: &Path, args: &[&str]) -> Output {
        // `--data-dir` right after the subcommand: anything after `--` belongs to the command.
        Command::new(BIN)
            .args(&args[..1])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&args[1..])
            .current_dir(cwd)
            // Key records (`~/.local/state/ec2lab/keys`) go to the test's own home, not root's.
            .env("HOME", self.dir.path())
            .env_remove("SUDO_USER")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A signed raw request (the CLI's own signer) — returns (status, body).
    pub fn raw(&self, body: &str) -> (u16, String) {
        let (id, secret) = self.creds();
        self.raw_with(body, &id, &secret)
    }

    pub fn raw_with(&self, body: &str, id: &str, secret: &str) -> (u16, String) {
        let host = format!("127.0.0.1:{}", self.api_port);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let headers = ec2lab::api::sigv4::sign(
            &host,
            body.as_bytes(),
            id,
            secret,
            "ap-northeast-2",
            "ec2",
            &ec2lab::api::sigv4::format_amz_date(now),
        );
        let pairs: Vec<(String, String)> =
            headers.into_iter().filter(|(k, _)| k != "host").collect();
        http_post(&self.endpoint(), &pairs, body.as_bytes())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the daemon said last: the first thing to read when a test fails in CI.
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- last lines of the daemon log ---\n{}", tail.join("\n"));
        }
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill with a pid we own.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A plain HTTP POST; returns (status, body).
pub fn http_post(endpoint: &str, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut req = agent.post(format!("{endpoint}/"));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut resp = req.send(body).unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

/// Runs a command, asserts success, returns stdout.
/// Polls `f` every 100 ms until it holds; fails after 30 s naming `what`.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn fixtures() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in [
        std::env::var("EC2LAB_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_default(),
        manifest.join("tests/fixtures/keys"),
        manifest.join("../shared/fixtures/keys"),
    ] {
        if p.join("FINGERPRINTS.txt").exists() {
            return p;
        }
    }
    panic!("key fixtures not found (tests/fixtures/keys)");
}

impl Daemon {
    /// Opens SSH (tcp/22, which the gateway serves on `--ssh-port`) from anywhere in the default
    /// security group, which, as on EC2, admits no one from outside until told to.
    pub fn open_ssh(&self) {
        self.authorize_tcp(["--group-name", "default"], "22", "0.0.0.0/0");
    }

    /// `aws ec2 authorize-security-group-ingress` of tcp `port` from `cidr`; `group` is
    /// `["--group-id", ID]` or `["--group-name", NAME]`.
    pub fn authorize_tcp(&self, group: [&str; 2], port: &str, cidr: &str) {
        self.aws_json(&[
            "ec2",
            "authorize-security-group-ingress",
            group[0],
            group[1],
            "--protocol",
            "tcp",
            "--port",
            port,
            "--cidr",
            cidr,
        ]);
    }

    /// The id of the built-in AMI.
    pub fn lab_linux(&self) -> String {
        let v = self.aws_json(&[
            "ec2",
            "describe-images",
            "--filters",
            "Name=name,Values=lab-linux",
        ]);
        v["Images"][0]["ImageId"].as_str().unwrap().to_string()
    }

    /// `aws ec2 run-instances` with extra args; returns the instance ids.
    pub fn run_instances(&self, extra: &[&str]) -> Vec<String> {
        let ami = self.lab_linux();
        let v = self.aws_json(&[&["ec2", "run-instances", "--image-id", &ami], extra].concat());
        v["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["InstanceId"].as_str().unwrap().to_string())
            .collect()
    }

    /// One instance in security group `group` with the user data in file `user_data`, plus
    /// `extra` run-instances args; returns its id.
    pub fn run_with_user_data(&self, group: &str, user_data: &Path, extra: &[&str]) -> String {
        let ud = format!("file://{}", user_data.display());
        let args = [
            &["--security-group-ids", group, "--user-data", &ud][..],
            extra,
        ]
        .concat();
        self.run_instances(&args)[0].clone()
    }

    /// The instance's private IP, as DescribeInstances shows it.
    pub fn private_ip(&self, id: &str) -> String {
        let v = self.aws_json(&["ec2", "describe-instances", "--instance-ids", id]);
        v["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The instance's public IP (auto-assigned or Elastic), as DescribeInstances shows it.
    pub fn public_ip(&self, id: &str) -> Option<String> {
        let v = self.aws_json(&["ec2", "describe-instances", "--instance-ids", id]);
        v["Reservations"][0]["Instances"][0]["PublicIpAddress"]
            .as_str()
            .map(str::to_string)
    }

    pub fn state_of(&self, id: &str) -> String {
        let v = self.aws_json(&["ec2", "describe-instances", "--instance-ids", id]);
        v["Reservations"][0]["Instances"][0]["State"]["Name"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls until the instance is in `state` (at most 60 s).
    pub fn wait_state(&self, id: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.state_of(id);
            if s == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} stuck in {s}, wanted {state}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ec2lab exec [--user U] ID -- sh -c SCRIPT`.
    pub fn exec(&self, id: &str, user: Option<&str>, script: &str) -> Output {
        let mut args = vec!["exec"];
        if let Some(u) = user {
            args.extend(["--user", u]);
        }
        args.extend([id, "--", "sh", "-c", script]);
        self.ec2lab(self.dir.path(), &args)
    }

    /// Like `exec`, asserting success; returns stdout.
    pub fn exec_ok(&self, id: &str, user: Option<&str>, script: &str) -> String {
        let out = self.exec(id, user, script);
        assert!(
            out.status.success(),
            "exec {script:?} in {id} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Decoded console output.
    pub fn console(&self, id: &str) -> String {
        let out = self.aws(&[
            "ec2",
            "get-console-output",
            "--instance-id",
            id,
            "--output",
            "text",
            "--query",
            "Output",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the console shows `needle` (user data runs asynchronously after boot).
    pub fn wait_console(&self, id: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = self.console(id);
            if c.contains(needle) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "console of {id} never showed {needle:?}:\n{c}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `aws ec2 create-security-group` named (and described) `name`, as the CLI answered.
    pub fn create_group(&self, name: &str) -> Output {
        self.aws(&[
            "ec2",
            "create-security-group",
            "--group-name",
            name,
            "--description",
            name,
        ])
    }

    /// Creates a security group that lets `cidr` in on tcp `port`; returns its id.
    pub fn group_with_ingress(&self, name: &str, port: &str, cidr: &str) -> String {
        let out = self.create_group(name);
        assert!(
            out.status.success(),
            "create-security-group {name}: {out:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = v["GroupId"].as_str().unwrap().to_string();
        self.authorize_tcp(["--group-id", &id], port, cidr);
        id
    }

    /// Builds the busybox AMI with scripts/build-ami.sh and registers it; returns its id.
    pub fn busybox_ami(&self) -> String {
        let dir = self.dir.path().join("busybox-ami");
        run_ok(
            Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-ami.sh"))
                .arg("busybox")
                .arg(&dir),
        );
        let v = self.aws_json(&[
            "ec2",
            "register-image",
            "--name",
            "busybox",
            "--image-location",
            dir.to_str().unwrap(),
        ]);
        v["ImageId"].as_str().unwrap().to_string()
    }

    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

/// Host cgroup directories of ec2lab instances (v1 memory controller or v2).
pub fn instance_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    for base in [
        "/sys/fs/cgroup/memory/ec2lab",
        "/sys/fs/cgroup/pids/ec2lab",
        "/sys/fs/cgroup/ec2lab",
    ] {
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
