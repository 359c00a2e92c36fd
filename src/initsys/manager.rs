//! The service manager as PID 1 runs it: its descriptors (control socket, notify socket, the
//! output pipes of services), the environment and processes of a start (the job queue and the
//! requests are in `jobs`).
//!
//! Each turn of PID 1's loop: `pollfds` → poll → `child_exited` for every reaped child →
//! `handle` (accept requests, read output into the journal, read notifications) → `tick`
//! (timeouts, restarts) → `run_jobs` (begin queued jobs whose `After=` peers settled, answer
//! the requests whose jobs finished). Nothing here blocks longer than a client's request line.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ctl::{Power, Request, Response, SOCKET};
use super::jobs::{Job, Waiter};
use super::journal::{Record, Writer, now_micros};
use super::notify;
use super::pending::PendingRequests;
use super::spawn::{self, Ident, Prepared};
use super::supervisor::{Phase, Run};
use super::units::{Cmd, Registry, Type};
use crate::sandbox::passwd;
use crate::sandbox::sys::WaitStatus;

struct Output {
    fd: OwnedFd,
    unit: String,
    ident: String,
    pid: i32,
    buf: Vec<u8>,
}

/// The service manager.
pub struct Manager {
    pub(crate) root: PathBuf,
    pub(crate) reg: Registry,
    pub(crate) runs: HashMap<String, Run>,
    pub(crate) pids: HashMap<i32, String>,
    outputs: Vec<Output>,
    journal: Writer,
    pub(crate) jobs: Vec<Job>,
    pub(crate) next_job: u64,
    pub(crate) waiters: Vec<Waiter>,
    listener: Option<UnixListener>,
    /// Connections whose request line has not arrived yet (never read blocking).
    pending: PendingRequests,
    notify: Option<OwnedFd>,
    /// Upper bound of any stop timeout (the shutdown grace).
    pub(crate) stop_cap: Duration,
    pub(crate) shutting_down: bool,
    /// A power request from the instance, for PID 1 to act on.
    pub power: Option<Power>,
}

/// Pids of processes whose environment carries `EC2LAB_UNIT=name`.
pub(crate) fn marked_processes(name: &str) -> Vec<i32> {
    let marker = format!("EC2LAB_UNIT={name}\0");
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(marker.len()).any(|w| w == marker.as_bytes()))
        })
        .collect()
}

fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    // SAFETY: zeroed ucred is a valid out-parameter of the stated size.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: valid socket, buffer and length.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.uid)
}

fn random_hex() -> String {
    let b: [u8; 16] = rand::random();
    hex::encode(b)
}

impl Manager {
    /// Loads the units under `root` and binds the sockets (a failure to bind is logged; the
    /// manager still runs what it can).
    pub fn new(root: &Path, grace: Duration) -> Manager {
        let in_root = |p: &str| root.join(p.trim_start_matches('/'));
        // sd_booted(): tools (deb helpers, `service`) then talk to systemctl.
        let _ = std::fs::create_dir_all(in_root("/run/systemd/system"));
        let _ = std::fs::create_dir_all(in_root("/run/ec2lab"));
        // What systemd-tmpfiles-setup makes before any unit starts (`/run/mysqld`, …).
        super::tmpfiles::apply(root);
        let sock = in_root(SOCKET);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).ok();
        if let Some(l) = &listener {
            let _ = l.set_nonblocking(true);
            let _ = std::fs::set_permissions(
                &sock,
                std::os::unix::fs::PermissionsExt::from_mode(0o666),
            );
        }
        let notify = notify::bind(&in_root(notify::NOTIFY_SOCKET).to_string_lossy()).ok();
        if let Some(n) = &notify {
            let _ = std::fs::set_permissions(
                in_root(notify::NOTIFY_SOCKET),
                std::os::unix::fs::PermissionsExt::from_mode(0o666),
            );
            let _ = n;
        }
        Manager {
            root: root.to_path_buf(),
            reg: Registry::scan(root),
            runs: HashMap::new(),
            pids: HashMap::new(),
            outputs: Vec::new(),
            journal: Writer::new(root),
            jobs: Vec::new(),
            next_job: 1,
            waiters: Vec::new(),
            listener,
            pending: PendingRequests::default(),
            notify,
            stop_cap: grace,
            shutting_down: false,
            power: None,
        }
    }

    pub(crate) fn in_root(&self, p: &Path) -> PathBuf {
        self.root.join(p.to_string_lossy().trim_start_matches('/'))
    }

    /// A message of the manager about `unit`, in the journal (and on the console for what a
    /// boot shows).
    pub(crate) fn log(&mut self, unit: &str, msg: &str) {
        const LIFECYCLE: &[&str] = &[
            "Starting ",
            "Started ",
            "Stopping ",
            "Stopped ",
            "Failed to start ",
            "Reached ",
            "Finished ",
            "Reloading ",
            "Reloaded ",
        ];
        let text = if LIFECYCLE.iter().any(|p| msg.starts_with(p)) {
            msg.to_string()
        } else {
            format!("{unit}: {msg}")
        };
        self.journal.write(&Record {
            micros: now_micros(),
            unit: unit.to_string(),
            ident: "systemd".into(),
            pid: 1,
            msg: text.clone(),
        });
        let tag = if msg.starts_with("Started ")
            || msg.starts_with("Reached ")
            || msg.starts_with("Finished ")
        {
            Some("[  OK  ]")
        } else if msg.starts_with("Failed to start ") {
            Some("[FAILED]")
        } else {
            None
        };
        if let Some(tag) = tag {
            let _ = crate::sandbox::sys::write_all_fd(1, format!("{tag} {text}\n").as_bytes());
        }
    }

    /// Environment, user and runtime directories for a start.
    pub(crate) fn prepare(&mut self, name: &str) -> Result<(), String> {
        let unit = self.reg.units.get(name).cloned().ok_or("unit vanished")?;
        let s = &unit.service;
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), spawn::PATH.into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("INVOCATION_ID".into(), random_hex()),
            ("EC2LAB_UNIT".into(), name.to_string()),
        ];
        if s.ty == Type::Notify {
            env.push(("NOTIFY_SOCKET".into(), notify::NOTIFY_SOCKET.into()));
        }
        let mut ident = None;
        if s.user.is_some() || s.group.is_some() {
            let pw =
                std::fs::read_to_string(self.in_root(Path::new("/etc/passwd"))).unwrap_or_default();
            let gr =
                std::fs::read_to_string(self.in_root(Path::new("/etc/group"))).unwrap_or_default();
            let user = s.user.clone().unwrap_or_else(|| "root".into());
            let u = passwd::lookup(&user, &pw, &gr).ok_or_else(|| {
                format!("Failed to determine user credentials: No such process (User={user})")
            })?;
            let mut id = Ident {
                uid: u.uid,
                gid: u.gid,
                groups: u.groups.clone(),
            };
            if let Some(g) = &s.group {
                id.gid = passwd::group_id(g, &gr)
                    .or_else(|| g.parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "Failed to determine group credentials: No such process (Group={g})"
                        )
                    })?;
                id.groups.insert(0, id.gid);
            }
            env.push(("HOME".into(), u.home.clone()));
            env.push(("USER".into(), u.name.clone()));
            env.push(("LOGNAME".into(), u.name.clone()));
            env.push(("SHELL".into(), u.shell.clone()));
            ident = Some(id);
        }
        env.extend(s.environment.iter().cloned());
        for (f, optional) in &s.environment_files {
            match std::fs::read_to_string(self.in_root(f)) {
                Ok(t) => env.extend(spawn::parse_env_file(&t)),
                Err(_) if *optional => {}
                Err(e) => {
                    return Err(format!(
                        "Failed to load environment files: {} ({})",
                        strerror(&e),
                        f.display()
                    ));
                }
            }
        }
        let mut rdirs = Vec::new();
        for d in &s.runtime_directories {
            let p = self.in_root(&Path::new("/run").join(d));
            std::fs::create_dir_all(&p).map_err(|e| {
                format!(
                    "Failed to set up runtime directory /run/{d}: {}",
                    strerror(&e)
                )
            })?;
            if let Some(id) = &ident {
                let _ = std::os::unix::fs::chown(&p, Some(id.uid), Some(id.gid));
            }
            rdirs.push(format!("/run/{d}"));
        }
        if !rdirs.is_empty() {
            env.push(("RUNTIME_DIRECTORY".into(), rdirs.join(":")));
        }
        let r = self.runs.entry(name.to_string()).or_default();
        r.env = env;
        r.ident = ident;
        Ok(())
    }

    pub(crate) fn runtime_cleanup(&mut self, name: &str) {
        let Some(u) = self.reg.units.get(name) else {
            return;
        };
        for d in u.service.runtime_directories.clone() {
            let _ = std::fs::remove_dir_all(self.in_root(&Path::new("/run").join(d)));
        }
    }

    /// Spawns one command of a unit; a command that cannot be started is logged as systemd
    /// logs it (status 203/EXEC) and is `Err`.
    pub(crate) fn spawn_cmd(
        &mut self,
        name: &str,
        cmd: &Cmd,
        setting: &'static str,
        main: bool,
    ) -> Result<i32, ()> {
        let unit = self.reg.units.get(name).cloned().ok_or(())?;
        let r = self.runs.entry(name.to_string()).or_default();
        let mut env = r.env.clone();
        if let Some(p) = r.main_pid {
            env.push(("MAINPID".into(), p.to_string()));
        }
        let ident = if cmd.privileged {
            None
        } else {
            r.ident.clone()
        };
        let argv = spawn::expand(&cmd.argv, &env);
        let cwd = unit.service.working_directory.as_deref().map(|d| {
            let d = d.strip_prefix('-').unwrap_or(d);
            if d == "~" {
                env.iter()
                    .find(|(k, _)| k == "HOME")
                    .map_or("/root".to_string(), |(_, v)| v.clone())
            } else {
                d.to_string()
            }
        });
        let exe = argv.first().cloned().unwrap_or_default();
        let fail = |m: &mut Manager, what: String| {
            m.log(name, &what);
            m.log(
                name,
                &format!(
                    "Failed at step EXEC spawning {exe}: {}",
                    what.rsplit(": ").next().unwrap_or("")
                ),
            );
            let r = m.runs.entry(name.to_string()).or_default();
            r.last_exit = Some((
                0,
                setting,
                exe.clone(),
                WaitStatus::Exited(spawn::EXIT_EXEC),
            ));
            m.log(
                name,
                &format!(
                    "{} process exited, code=exited, status=203/EXEC",
                    if main { "Main" } else { "Control" }
                ),
            );
            Err(())
        };
        let prepared = match Prepared::new(&argv, &env, cwd.as_deref(), ident) {
            Ok(p) => p,
            Err(e) => {
                return fail(
                    self,
                    format!("Failed to locate executable {exe}: {}", strerror(&e)),
                );
            }
        };
        let (rd, wr) = match spawn::output_pipe() {
            Ok(p) => p,
            Err(e) => {
                return fail(
                    self,
                    format!("Failed to set up standard output: {}", strerror(&e)),
                );
            }
        };
        let pid = match prepared.spawn(&wr) {
            Ok(pid) => pid,
            Err(e) => return fail(self, format!("Failed to fork: {}", strerror(&e))),
        };
        drop(wr);
        let ident = unit.service.syslog_identifier.clone().unwrap_or_else(|| {
            Path::new(&exe)
                .file_name()
                .map_or(exe.clone(), |f| f.to_string_lossy().into_owned())
        });
        self.outputs.push(Output {
            fd: rd,
            unit: name.to_string(),
            ident,
            pid,
            buf: Vec::new(),
        });
        self.pids.insert(pid, name.to_string());
        let r = self.runs.entry(name.to_string()).or_default();
        r.last_exit = r.last_exit.take().filter(|_| !main);
        let _ = setting;
        Ok(pid)
    }

    /// Descriptors to poll (all for reading).
    pub fn pollfds(&self) -> Vec<libc::pollfd> {
        let mut fds: Vec<i32> = Vec::new();
        fds.extend(self.listener.as_ref().map(|l| l.as_raw_fd()));
        fds.extend(self.pending.fds());
        fds.extend(self.notify.as_ref().map(|n| n.as_raw_fd()));
        fds.extend(self.outputs.iter().map(|o| o.fd.as_raw_fd()));
        fds.into_iter()
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect()
    }

    /// How long PID 1 may sleep.
    pub fn timeout(&self) -> Option<Duration> {
        [self.next_deadline(), self.pending.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Handles whatever is ready, then timers and jobs.
    pub fn handle(&mut self, ready: &[libc::pollfd]) {
        let is_ready = |fd: i32| ready.iter().any(|p| p.fd == fd && p.revents != 0);
        let lfd = self.listener.as_ref().map(|l| l.as_raw_fd());
        if lfd.is_some_and(is_ready)
            && let Some(l) = &self.listener
        {
            self.pending.accept(l);
        }
        self.take_requests();
        if self
            .notify
            .as_ref()
            .is_some_and(|n| is_ready(n.as_raw_fd()))
        {
            self.read_notify();
        }
        let mut i = 0;
        while i < self.outputs.len() {
            if is_ready(self.outputs[i].fd.as_raw_fd()) && !self.drain_output(i) {
                let o = self.outputs.remove(i);
                if !o.buf.is_empty() {
                    self.record(&o.unit, &o.ident, o.pid, &String::from_utf8_lossy(&o.buf));
                }
                continue;
            }
            i += 1;
        }
        self.turn();
    }

    /// Timers and jobs (also after children were reaped).
    pub fn turn(&mut self) {
        self.tick();
        self.run_jobs();
    }

    fn record(&self, unit: &str, ident: &str, pid: i32, msg: &str) {
        self.journal.write(&Record {
            micros: now_micros(),
            unit: unit.to_string(),
            ident: ident.to_string(),
            pid: pid as u32,
            msg: msg.to_string(),
        });
    }

    /// Reads what a unit's processes wrote so far (before the manager logs their exit).
    pub(crate) fn flush_output(&mut self, unit: &str) {
        let mut i = 0;
        while i < self.outputs.len() {
            if self.outputs[i].unit == unit && !self.drain_output(i) {
                let o = self.outputs.remove(i);
                if !o.buf.is_empty() {
                    self.record(&o.unit, &o.ident, o.pid, &String::from_utf8_lossy(&o.buf));
                }
                continue;
            }
            i += 1;
        }
    }

    /// Reads an output pipe; false at end of file.
    fn drain_output(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 8192];
        loop {
            let o = &mut self.outputs[i];
            // SAFETY: reading into our buffer from a descriptor we own.
            let n = unsafe { libc::read(o.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                return false;
            }
            if n < 0 {
                return std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock;
            }
            o.buf.extend_from_slice(&buf[..n as usize]);
            let mut done = Vec::new();
            while let Some(pos) = o.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = o.buf.drain(..=pos).collect();
                done.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            }
            let (u, id, pid) = (o.unit.clone(), o.ident.clone(), o.pid);
            for text in done {
                self.record(&u, &id, pid, &text);
            }
            let o = &mut self.outputs[i];
            if o.buf.len() > 16384 {
                let text = String::from_utf8_lossy(&o.buf).into_owned();
                o.buf.clear();
                let (u, id, pid) = (o.unit.clone(), o.ident.clone(), o.pid);
                self.record(&u, &id, pid, &text);
            }
        }
    }

    fn read_notify(&mut self) {
        let Some(fd) = &self.notify else { return };
        let mut msgs = Vec::new();
        while let Some(m) = notify::recv(fd) {
            msgs.push(m);
            if msgs.len() > 64 {
                break;
            }
        }
        for (pid, text) in msgs {
            let unit = self.pids.get(&pid).cloned().or_else(|| {
                let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
                env.split(|b| *b == 0)
                    .find_map(|kv| kv.strip_prefix(b"EC2LAB_UNIT="))
                    .map(|u| String::from_utf8_lossy(u).into_owned())
            });
            let Some(unit) = unit else { continue };
            for kv in text.lines() {
                if kv == "READY=1" {
                    if self
                        .runs
                        .get(&unit)
                        .is_some_and(|r| r.phase == Phase::WaitReady)
                    {
                        self.advance(&unit, Phase::StartPost(0));
                    }
                } else if let Some(p) = kv
                    .strip_prefix("MAINPID=")
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if let Some(r) = self.runs.get_mut(&unit) {
                        r.main_pid = Some(p);
                        self.pids.insert(p, unit.clone());
                    }
                } else if let Some(s) = kv.strip_prefix("STATUS=")
                    && let Some(r) = self.runs.get_mut(&unit)
                {
                    r.status_text = Some(s.to_string());
                }
            }
        }
    }

    /// Handles the requests whose line arrived (see `pending`).
    fn take_requests(&mut self) {
        for (s, line) in self.pending.take_ready() {
            let req: Request = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => {
                    reply(s, &Response::fail(1, format!("bad request: {e}\n")));
                    continue;
                }
            };
            let uid = peer_uid(&s);
            self.request(s, req, uid);
        }
    }
}

pub(crate) fn reply(mut s: UnixStream, r: &Response) {
    let mut line = serde_json::to_string(r).unwrap_or_default();
    line.push('\n');
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(line.as_bytes());
}
