//! The service manager as PID 1 runs it: its descriptors (control socket, notify socket, the
//! output pipes of services), the job queue, and the answers to requests.
//!
//! Each turn of PID 1's loop: `pollfds` → poll → `child_exited` for every reaped child →
//! `handle` (accept requests, read output into the journal, read notifications) → `tick`
//! (timeouts, restarts) → `run_jobs` (begin queued jobs whose `After=` peers settled, answer
//! the requests whose jobs finished). Nothing here blocks longer than a client's request line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ctl::{Power, Request, Response, SOCKET, Verb};
use super::journal::{Record, Writer, now_micros};
use super::spawn::{self, Ident, Prepared};
use super::supervisor::{Active, Phase, Run};
use super::units::{Cmd, Load, Registry, Type};
use super::{deps, install, notify};
use crate::sandbox::passwd;
use crate::sandbox::sys::WaitStatus;

struct Output {
    fd: OwnedFd,
    unit: String,
    ident: String,
    pid: i32,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    Start,
    Stop,
    Reload,
}

pub(crate) struct Job {
    id: u64,
    pub(crate) unit: String,
    pub(crate) kind: JobKind,
    running: bool,
    /// Finished: did it succeed, and the unit's result.
    done: Option<(bool, &'static str)>,
}

struct Waiter {
    stream: UnixStream,
    jobs: Vec<u64>,
    boot: bool,
    resp: Response,
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
    next_job: u64,
    waiters: Vec<Waiter>,
    listener: Option<UnixListener>,
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
            reg: Registry::load_all(root),
            runs: HashMap::new(),
            pids: HashMap::new(),
            outputs: Vec::new(),
            journal: Writer::new(root),
            jobs: Vec::new(),
            next_job: 1,
            waiters: Vec::new(),
            listener,
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
        self.next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Handles whatever is ready, then timers and jobs.
    pub fn handle(&mut self, ready: &[libc::pollfd]) {
        let is_ready = |fd: i32| ready.iter().any(|p| p.fd == fd && p.revents != 0);
        let lfd = self.listener.as_ref().map(|l| l.as_raw_fd());
        if lfd.is_some_and(is_ready) {
            self.accept();
        }
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

    fn accept(&mut self) {
        loop {
            let Some(l) = &self.listener else { return };
            let Ok((s, _)) = l.accept() else { return };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            let got = BufReader::new((&s).take(1 << 16)).read_line(&mut line);
            if got.is_err() || line.is_empty() {
                continue;
            }
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

    /// Queues a job (or returns the id of the same queued job).
    pub(crate) fn enqueue(&mut self, unit: &str, kind: JobKind) -> u64 {
        if let Some(j) = self
            .jobs
            .iter()
            .find(|j| j.unit == unit && j.kind == kind && !j.running && j.done.is_none())
        {
            return j.id;
        }
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.push(Job {
            id,
            unit: unit.to_string(),
            kind,
            running: false,
            done: None,
        });
        id
    }

    fn can_begin(&self, idx: usize) -> bool {
        let j = &self.jobs[idx];
        let earlier_same = self.jobs[..idx]
            .iter()
            .any(|o| o.unit == j.unit && o.done.is_none());
        if earlier_same {
            return false;
        }
        self.jobs.iter().enumerate().all(|(i, o)| {
            i == idx
                || o.done.is_some()
                || o.kind != j.kind
                || match j.kind {
                    JobKind::Start => !deps::after(&self.reg, &j.unit, &o.unit),
                    JobKind::Stop => !deps::after(&self.reg, &o.unit, &j.unit),
                    JobKind::Reload => true,
                }
        })
    }

    fn job_finished(&self, j: &Job) -> Option<(bool, &'static str)> {
        let r = self.runs.get(&j.unit)?;
        match j.kind {
            JobKind::Start => match (r.active, r.phase) {
                (_, Phase::AutoRestart) => Some((false, r.result)),
                (Active::Active, _) => Some((true, r.result)),
                (Active::Inactive, _) => Some((r.result == "success", r.result)),
                (Active::Failed, _) => Some((false, r.result)),
                _ => None,
            },
            JobKind::Stop => {
                matches!(r.active, Active::Inactive | Active::Failed).then_some((true, r.result))
            }
            JobKind::Reload => {
                (!matches!(r.phase, Phase::Reload(_))).then_some((r.result == "success", r.result))
            }
        }
    }

    /// Begins what can begin, marks what finished, answers waiters.
    pub fn run_jobs(&mut self) {
        for _ in 0..4 {
            let mut progressed = false;
            for i in 0..self.jobs.len() {
                if self.jobs[i].done.is_some() {
                    continue;
                }
                if !self.jobs[i].running {
                    if !self.can_begin(i) {
                        continue;
                    }
                    self.jobs[i].running = true;
                    let (unit, kind) = (self.jobs[i].unit.clone(), self.jobs[i].kind);
                    self.begin(&unit, kind);
                    progressed = true;
                }
                if let Some(d) = self.job_finished(&self.jobs[i]) {
                    self.jobs[i].done = Some(d);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        self.answer_waiters();
    }

    fn begin(&mut self, unit: &str, kind: JobKind) {
        match kind {
            JobKind::Start => {
                let failed_dep = self.reg.units.get(unit).is_some_and(|u| {
                    u.requires.iter().any(|d| {
                        self.reg.resolve(d).is_none_or(|n| {
                            self.runs.get(n).is_some_and(|r| r.active == Active::Failed)
                        })
                    })
                });
                if failed_dep {
                    self.log(unit, &format!("Dependency failed for {unit}."));
                    self.runs.entry(unit.to_string()).or_default().result = "dependency";
                    self.set_state(unit, Active::Inactive, "dead");
                    return;
                }
                if self
                    .runs
                    .get(unit)
                    .is_some_and(|r| r.active == Active::Failed)
                {
                    self.set_state(unit, Active::Inactive, "dead");
                }
                self.begin_start(unit);
            }
            JobKind::Stop => self.begin_stop(unit),
            JobKind::Reload => {
                self.begin_reload(unit);
            }
        }
    }

    fn answer_waiters(&mut self) {
        let mut i = 0;
        while i < self.waiters.len() {
            let all_done = self.waiters[i].jobs.iter().all(|id| {
                self.jobs
                    .iter()
                    .find(|j| j.id == *id)
                    .is_none_or(|j| j.done.is_some())
            });
            if !all_done {
                i += 1;
                continue;
            }
            let mut w = self.waiters.remove(i);
            let mut failed = Vec::new();
            for id in &w.jobs {
                if let Some(j) = self.jobs.iter().find(|j| j.id == *id)
                    && let Some((false, result)) = j.done
                {
                    failed.push((j.unit.clone(), j.kind, result));
                }
            }
            for (unit, kind, result) in &failed {
                if w.boot {
                    continue;
                }
                let why = match *result {
                    "timeout" => "a timeout was exceeded",
                    "signal" => "a fatal signal was delivered to the control process",
                    "start-limit-hit" => "start of the service was attempted too often",
                    "resources" => "of unavailable resources or another system error",
                    "dependency" => {
                        w.resp.err.push_str(&format!("A dependency job for {unit} failed. See 'journalctl -xe' for details.\n"));
                        continue;
                    }
                    _ => "the control process exited with error code",
                };
                let _ = kind;
                w.resp.err.push_str(&format!(
                    "Job for {unit} failed because {why}.\nSee \"systemctl status {unit}\" and \"journalctl -xeu {unit}\" for details.\n"
                ));
            }
            if w.boot {
                let started = w.jobs.len() - failed.len();
                w.resp.out = format!("ec2lab-init: {started} unit(s) started at boot");
                if !failed.is_empty() {
                    let names: Vec<&str> = failed.iter().map(|(u, _, _)| u.as_str()).collect();
                    w.resp
                        .out
                        .push_str(&format!(", failed: {}", names.join(" ")));
                }
            } else if !failed.is_empty() && w.resp.code == 0 {
                w.resp.code = 1;
            }
            reply(w.stream, &w.resp);
        }
        let referenced: Vec<u64> = self.waiters.iter().flat_map(|w| w.jobs.clone()).collect();
        self.jobs
            .retain(|j| j.done.is_none() || referenced.contains(&j.id));
    }

    /// Waits for `jobs` and answers on `stream` with `resp` then (no jobs: at once).
    fn wait_or_reply(&mut self, stream: UnixStream, jobs: Vec<u64>, resp: Response, boot: bool) {
        self.waiters.push(Waiter {
            stream,
            jobs,
            boot,
            resp,
        });
        self.run_jobs();
    }

    fn request(&mut self, s: UnixStream, req: Request, uid: Option<u32>) {
        let root = uid == Some(0);
        let mutating = matches!(
            req,
            Request::Job { .. }
                | Request::Boot
                | Request::DaemonReload
                | Request::ResetFailed { .. }
                | Request::Power(_)
        );
        if mutating && !root {
            return reply(
                s,
                &Response::fail(
                    4,
                    format!(
                        "Access denied: only root may change units in this instance (uid {})\n",
                        uid.unwrap_or(u32::MAX)
                    ),
                ),
            );
        }
        // A unit file written since the last load is loaded on first use, as systemd does.
        let named: &[String] = match &req {
            Request::Job { units, .. }
            | Request::Status { units }
            | Request::Show { units, .. } => units,
            _ => &[],
        };
        if named.iter().any(|n| self.reg.get(n).is_none()) {
            self.reg = Registry::load_all(&self.root);
        }
        match req {
            Request::Job {
                verb,
                units,
                no_block,
            } => {
                let (jobs, resp) = self.queue_verb(verb, &units);
                if no_block {
                    self.run_jobs();
                    reply(s, &resp);
                } else {
                    self.wait_or_reply(s, jobs, resp, false);
                }
            }
            Request::Boot => {
                let set = install::boot_set(&self.root, &self.reg);
                let order = deps::start_order(&self.reg, &set);
                let mut jobs = Vec::new();
                for u in order {
                    if self
                        .reg
                        .units
                        .get(&u)
                        .is_some_and(|x| *x.load_state() == Load::Loaded)
                    {
                        jobs.push(self.enqueue(&u, JobKind::Start));
                    } else if let Some(Load::Error(e)) =
                        self.reg.units.get(&u).map(|x| x.load_state().clone())
                    {
                        self.log(&u, &e);
                        self.log(&u, &format!("Failed to start {u}: bad unit file."));
                    }
                }
                self.wait_or_reply(s, jobs, Response::default(), true);
            }
            Request::DaemonReload => {
                self.reg = Registry::load_all(&self.root);
                for (n, u) in self.reg.units.clone() {
                    if let Load::Error(e) = u.load_state() {
                        self.log(&n, e);
                    }
                }
                reply(s, &Response::default());
            }
            Request::Power(p) => {
                self.power = Some(p);
                reply(s, &Response::default());
            }
            other => {
                let resp = self.query(other);
                reply(s, &resp);
            }
        }
    }

    /// Queues the jobs for a verb on names; the response carries the refusals.
    fn queue_verb(&mut self, verb: Verb, names: &[String]) -> (Vec<u64>, Response) {
        let mut resp = Response::default();
        let mut jobs = Vec::new();
        for asked in names {
            let n = super::units::canonical_name(asked);
            let Some(u) = self.reg.get(&n).cloned() else {
                let what = if verb == Verb::Stop {
                    "not loaded"
                } else {
                    "not found"
                };
                resp.err.push_str(&format!(
                    "Failed to {} {n}: Unit {n} {what}.\n",
                    verb.word()
                ));
                resp.code = 5;
                continue;
            };
            let name = u.name.clone();
            resp.units.push(name.clone());
            let active = self.runs.get(&name).map_or(Active::Inactive, |r| r.active);
            let up = matches!(
                active,
                Active::Active | Active::Activating | Active::Reloading
            );
            if verb != Verb::Stop {
                match u.load_state() {
                    Load::Masked => {
                        resp.err.push_str(&format!(
                            "Failed to {} {n}: Unit {name} is masked.\n",
                            verb.word()
                        ));
                        resp.code = resp.code.max(1);
                        continue;
                    }
                    Load::Error(_) => {
                        resp.err.push_str(&format!(
                            "Failed to {} {n}: Unit {name} has a bad unit file setting.\nSee system logs and 'systemctl status {name}' for details.\n",
                            verb.word()
                        ));
                        resp.code = resp.code.max(1);
                        continue;
                    }
                    Load::Loaded => {}
                }
            }
            let has_reload = !u.service.exec_reload.is_empty();
            match verb {
                Verb::Start => {
                    for d in u.requires.iter().chain(&u.wants) {
                        if let Some(dn) = self.reg.resolve(d).map(str::to_string)
                            && self
                                .reg
                                .units
                                .get(&dn)
                                .is_some_and(|x| *x.load_state() == Load::Loaded)
                        {
                            self.enqueue(&dn, JobKind::Start);
                        }
                    }
                    jobs.push(self.enqueue(&name, JobKind::Start));
                }
                Verb::Stop => jobs.push(self.enqueue(&name, JobKind::Stop)),
                Verb::Restart => {
                    self.enqueue(&name, JobKind::Stop);
                    jobs.push(self.enqueue(&name, JobKind::Start));
                }
                Verb::TryRestart if up => {
                    self.enqueue(&name, JobKind::Stop);
                    jobs.push(self.enqueue(&name, JobKind::Start));
                }
                Verb::TryRestart => {}
                Verb::Reload | Verb::ReloadOrRestart if up && has_reload => {
                    jobs.push(self.enqueue(&name, JobKind::Reload))
                }
                Verb::ReloadOrRestart => {
                    self.enqueue(&name, JobKind::Stop);
                    jobs.push(self.enqueue(&name, JobKind::Start));
                }
                Verb::Reload if !has_reload => {
                    resp.err.push_str(&format!(
                        "Failed to reload {name}: Job type reload is not applicable for unit {name}.\n"
                    ));
                    resp.code = resp.code.max(1);
                }
                Verb::Reload => {
                    resp.err
                        .push_str(&format!("{name} is not active, cannot reload.\n"));
                    resp.code = resp.code.max(1);
                }
            }
        }
        (jobs, resp)
    }

    /// At shutdown: stops every unit in reverse order, serving the loop until they stopped or
    /// `limit` passed. `wait` sleeps until something is ready (PID 1's poll) and reaps.
    pub fn stop_all(&mut self, limit: Duration, wait: &mut dyn FnMut(&mut Manager, Duration)) {
        self.shutting_down = true;
        self.stop_cap = limit;
        let deadline = Instant::now() + limit;
        let up: std::collections::BTreeSet<String> = self
            .runs
            .iter()
            .filter(|(_, r)| !matches!(r.active, Active::Inactive | Active::Failed))
            .map(|(n, _)| n.clone())
            .collect();
        let mut order = deps::start_order(&self.reg, &up);
        order.reverse();
        for u in &order {
            self.enqueue(u, JobKind::Stop);
        }
        self.run_jobs();
        while self.jobs.iter().any(|j| j.done.is_none()) && Instant::now() < deadline {
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(self.timeout().unwrap_or(Duration::from_millis(100)))
                .min(Duration::from_millis(100));
            wait(self, step);
            self.turn();
        }
    }
}

fn reply(mut s: UnixStream, r: &Response) {
    let mut line = serde_json::to_string(r).unwrap_or_default();
    line.push('\n');
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(line.as_bytes());
}
