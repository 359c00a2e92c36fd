//! One service's life: the state machine that starts, watches, restarts and stops it.
//!
//! Start: prepare (environment files, user, runtime directories) → `ExecStartPre` one by one →
//! `ExecStart` (simple/exec: the main process, active at once; forking: wait for it to exit 0,
//! then read `PIDFile`, or without one take the unit's one process left whose parent is PID 1,
//! as systemd guesses it; oneshot: each command to exit 0; notify: wait for `READY=1`) →
//! `ExecStartPost` → running. Any step failing, or the start timeout, ends in `failed`.
//! The main process exiting while running ends in `inactive`/`failed` and `Restart=` decides
//! whether it comes back after `RestartSec` (at most 5 starts in 10 s, as systemd's default
//! start limit). Stop: `ExecStop` with `$MAINPID` → SIGTERM to the main process, its process
//! group and every process carrying the unit's marker → SIGKILL after `TimeoutStopSec` →
//! `ExecStopPost` → inactive. What drives it (exits, timers, PID files) is in `watch`.

use std::time::{Duration, Instant};

use super::manager::Manager;
use super::units::{Cmd, Restart, Type};
use crate::sandbox::sys::{self, WaitStatus};

/// A unit's high-level state (systemctl's ACTIVE column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    Inactive,
    Activating,
    Active,
    Reloading,
    Deactivating,
    Failed,
}

impl Active {
    pub fn as_str(self) -> &'static str {
        match self {
            Active::Inactive => "inactive",
            Active::Activating => "activating",
            Active::Active => "active",
            Active::Reloading => "reloading",
            Active::Deactivating => "deactivating",
            Active::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    StartPre(usize),
    Start(usize),
    WaitReady,
    WaitPidFile,
    StartPost(usize),
    Running,
    Reload(usize),
    Stop(usize),
    StopSignal,
    StopPost(usize),
    AutoRestart,
}

/// Runtime state of one unit.
#[derive(Debug, Clone)]
pub struct Run {
    pub active: Active,
    pub sub: &'static str,
    pub main_pid: Option<i32>,
    pub control_pid: Option<i32>,
    pub(crate) phase: Phase,
    pub(crate) deadline: Option<Instant>,
    pub result: &'static str,
    /// When the state last changed (µs since the epoch).
    pub since: u64,
    /// The last process that exited: pid, the setting it ran for, how it ended.
    pub last_exit: Option<(i32, &'static str, String, WaitStatus)>,
    pub(crate) starts: Vec<Instant>,
    pub(crate) stopping: bool,
    pub(crate) killed: bool,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) ident: Option<super::spawn::Ident>,
    pub status_text: Option<String>,
    pub restarts: u32,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            active: Active::Inactive,
            sub: "dead",
            main_pid: None,
            control_pid: None,
            phase: Phase::Idle,
            deadline: None,
            result: "success",
            since: 0,
            last_exit: None,
            starts: Vec::new(),
            stopping: false,
            killed: false,
            env: Vec::new(),
            ident: None,
            status_text: None,
            restarts: 0,
        }
    }
}

/// Start limit: at most this many starts within [`START_LIMIT_INTERVAL`].
const START_LIMIT_BURST: usize = 5;
const START_LIMIT_INTERVAL: Duration = Duration::from_secs(10);

/// `status=1/FAILURE`, `signal=KILL` — as systemctl prints an exit.
pub fn describe_exit(st: WaitStatus) -> String {
    match st {
        WaitStatus::Exited(c) => {
            let name = match c {
                0 => "SUCCESS",
                1 => "FAILURE",
                2 => "INVALIDARGUMENT",
                3 => "NOTIMPLEMENTED",
                4 => "NOPERMISSION",
                5 => "NOTINSTALLED",
                6 => "NOTCONFIGURED",
                7 => "NOTRUNNING",
                200 => "CHDIR",
                203 => "EXEC",
                209 => "STDOUT",
                217 => "USER",
                _ => "",
            };
            if name.is_empty() {
                format!("code=exited, status={c}")
            } else {
                format!("code=exited, status={c}/{name}")
            }
        }
        WaitStatus::Signaled(s) => format!("code=killed, signal={}", signal_name(s)),
    }
}

pub fn signal_name(s: i32) -> String {
    let n = match s {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGABRT => "ABRT",
        libc::SIGKILL => "KILL",
        libc::SIGSEGV => "SEGV",
        libc::SIGPIPE => "PIPE",
        libc::SIGTERM => "TERM",
        libc::SIGUSR1 => "USR1",
        libc::SIGUSR2 => "USR2",
        _ => return s.to_string(),
    };
    n.to_string()
}

impl Manager {
    pub(crate) fn run_mut(&mut self, name: &str) -> &mut Run {
        self.runs.entry(name.to_string()).or_default()
    }

    pub(crate) fn set_state(&mut self, name: &str, active: Active, sub: &'static str) {
        let r = self.run_mut(name);
        if r.active != active || r.sub != sub {
            r.since = super::journal::now_micros();
        }
        r.active = active;
        r.sub = sub;
    }

    /// Begins starting `name` (a loaded service or a target); nothing if it is already up.
    pub(crate) fn begin_start(&mut self, name: &str) {
        // Never a silent drop: what the unit file sets and this manager does not do, said once
        // per load, in the unit's journal (as systemd logs keys it does not know).
        let ignored = self
            .reg
            .units
            .get_mut(name)
            .map(|u| std::mem::take(&mut u.ignored))
            .unwrap_or_default();
        for line in ignored {
            self.log(name, &line);
        }
        let Some(unit) = self.reg.units.get(name).cloned() else {
            return;
        };
        let r = self.run_mut(name);
        if matches!(
            r.active,
            Active::Active | Active::Activating | Active::Reloading
        ) && r.phase != Phase::AutoRestart
        {
            return;
        }
        if !unit.is_service() {
            self.set_state(name, Active::Active, "active");
            self.log(name, &format!("Reached target {}.", unit.description()));
            return;
        }
        let now = Instant::now();
        let r = self.run_mut(name);
        r.starts
            .retain(|t| now.duration_since(*t) < START_LIMIT_INTERVAL);
        if r.starts.len() >= START_LIMIT_BURST {
            self.log(name, "Start request repeated too quickly.");
            self.fail(name, "start-limit-hit");
            return;
        }
        r.starts.push(now);
        r.stopping = false;
        r.killed = false;
        r.status_text = None;
        r.result = "success";
        r.deadline = Some(now + unit.service.timeout_start);
        self.set_state(name, Active::Activating, "start-pre");
        self.log(name, &format!("Starting {}...", unit.description()));
        if let Err(e) = self.prepare(name) {
            self.log(name, &e);
            self.fail(name, "resources");
            return;
        }
        self.advance(name, Phase::StartPre(0));
    }

    /// Runs `phase`, skipping steps without commands, until a process is running or the
    /// unit settled.
    pub(crate) fn advance(&mut self, name: &str, mut phase: Phase) {
        let Some(unit) = self.reg.units.get(name).cloned() else {
            return;
        };
        let s = &unit.service;
        loop {
            self.run_mut(name).phase = phase;
            let cmd: Option<(&Cmd, &'static str, bool)> = match phase {
                Phase::StartPre(i) => s.exec_start_pre.get(i).map(|c| (c, "ExecStartPre", false)),
                Phase::Start(i) => s.exec_start.get(i).map(|c| {
                    let main = matches!(s.ty, Type::Simple | Type::Exec | Type::Notify);
                    (c, "ExecStart", main)
                }),
                Phase::StartPost(i) => s
                    .exec_start_post
                    .get(i)
                    .map(|c| (c, "ExecStartPost", false)),
                Phase::Reload(i) => s.exec_reload.get(i).map(|c| (c, "ExecReload", false)),
                Phase::Stop(i) => s.exec_stop.get(i).map(|c| (c, "ExecStop", false)),
                Phase::StopPost(i) => s.exec_stop_post.get(i).map(|c| (c, "ExecStopPost", false)),
                _ => None,
            };
            if let Some((cmd, setting, main)) = cmd {
                let sub = match phase {
                    Phase::StartPre(_) => "start-pre",
                    Phase::Start(_) => "start",
                    Phase::StartPost(_) => "start-post",
                    Phase::Reload(_) => "reload",
                    Phase::Stop(_) => "stop",
                    _ => "stop-post",
                };
                let active = self.run_mut(name).active;
                self.set_state(name, active, sub);
                match self.spawn_cmd(name, cmd, setting, main) {
                    Ok(pid) if main => {
                        self.run_mut(name).main_pid = Some(pid);
                        phase = if s.ty == Type::Notify {
                            self.run_mut(name).phase = Phase::WaitReady;
                            return;
                        } else {
                            Phase::StartPost(0)
                        };
                        continue;
                    }
                    Ok(pid) => {
                        self.run_mut(name).control_pid = Some(pid);
                        return;
                    }
                    Err(()) if cmd.ignore_failure => {
                        phase = next(phase);
                        continue;
                    }
                    Err(()) => {
                        self.step_failed(name, phase, "exit-code");
                        return;
                    }
                }
            }
            // No command at this step.
            match phase {
                Phase::StartPre(_) => phase = Phase::Start(0),
                Phase::Start(_) => {
                    if s.ty == Type::Forking
                        && s.pid_file.is_some()
                        && self.run_mut(name).main_pid.is_none()
                    {
                        self.run_mut(name).phase = Phase::WaitPidFile;
                        if !self.check_pid_file(name) {
                            return;
                        }
                    } else if s.ty == Type::Forking && self.run_mut(name).main_pid.is_none() {
                        self.guess_main_pid(name);
                    }
                    phase = Phase::StartPost(0);
                }
                Phase::StartPost(_) => {
                    self.started(name);
                    return;
                }
                Phase::Reload(_) => {
                    self.run_mut(name).phase = Phase::Running;
                    let sub = self.running_sub(name);
                    self.set_state(name, Active::Active, sub);
                    self.log(name, &format!("Reloaded {}.", unit.description()));
                    return;
                }
                Phase::Stop(_) => {
                    self.signal_all(name, libc::SIGTERM);
                    let cap = self.stop_cap;
                    let r = self.run_mut(name);
                    r.phase = Phase::StopSignal;
                    r.deadline = Some(Instant::now() + s.timeout_stop.min(cap));
                    if r.main_pid.is_some() {
                        self.set_state(name, Active::Deactivating, "stop-sigterm");
                        return;
                    }
                    phase = Phase::StopPost(0);
                }
                Phase::StopPost(_) => {
                    self.dead(name);
                    return;
                }
                _ => return,
            }
        }
    }

    pub(crate) fn running_sub(&mut self, name: &str) -> &'static str {
        if self.run_mut(name).main_pid.is_some() {
            "running"
        } else {
            "exited"
        }
    }

    pub(crate) fn started(&mut self, name: &str) {
        let Some(unit) = self.reg.units.get(name).cloned() else {
            return;
        };
        let r = self.run_mut(name);
        r.phase = Phase::Running;
        r.deadline = None;
        let has_main = r.main_pid.is_some();
        if unit.service.ty == Type::Oneshot && !unit.service.remain_after_exit {
            self.log(name, &format!("Finished {}.", unit.description()));
            self.dead(name);
            return;
        }
        if !has_main && !unit.service.remain_after_exit && unit.service.ty != Type::Forking {
            self.dead(name);
            return;
        }
        let sub = if has_main { "running" } else { "exited" };
        self.set_state(name, Active::Active, sub);
        let word = if unit.service.ty == Type::Oneshot {
            "Finished"
        } else {
            "Started"
        };
        self.log(name, &format!("{word} {}.", unit.description()));
    }

    /// A control or start step failed (exit status, exec failure, timeout).
    pub(crate) fn step_failed(&mut self, name: &str, phase: Phase, result: &'static str) {
        let stopping = matches!(phase, Phase::Stop(_) | Phase::StopPost(_));
        if stopping {
            self.advance(
                name,
                if matches!(phase, Phase::Stop(_)) {
                    Phase::StopPost(0)
                } else {
                    next(phase)
                },
            );
            return;
        }
        if let Phase::Reload(_) = phase {
            let r = self.run_mut(name);
            r.phase = Phase::Running;
            r.result = result;
            let sub = self.running_sub(name);
            self.set_state(name, Active::Active, sub);
            self.log(name, "Reload failed.");
            return;
        }
        self.fail(name, result);
    }

    /// Ends the unit as failed with `result`: everything it runs is killed, then `Restart=`.
    pub(crate) fn fail(&mut self, name: &str, result: &'static str) {
        self.signal_all(name, libc::SIGKILL);
        let r = self.run_mut(name);
        r.result = result;
        r.main_pid = None;
        r.control_pid = None;
        r.deadline = None;
        r.phase = Phase::Idle;
        self.set_state(name, Active::Failed, "failed");
        self.log(name, &format!("Failed with result '{result}'."));
        if let Some(u) = self.reg.units.get(name) {
            let d = u.description().to_string();
            self.log(name, &format!("Failed to start {d}."));
        }
        self.maybe_restart(name);
    }

    pub(crate) fn dead(&mut self, name: &str) {
        let r = self.run_mut(name);
        r.main_pid = None;
        r.control_pid = None;
        r.deadline = None;
        r.phase = Phase::Idle;
        let failed = r.result != "success";
        let stopping = r.stopping;
        if failed {
            let res = r.result;
            self.set_state(name, Active::Failed, "failed");
            self.log(name, &format!("Failed with result '{res}'."));
        } else {
            self.set_state(name, Active::Inactive, "dead");
            if stopping && let Some(u) = self.reg.units.get(name) {
                let d = u.description().to_string();
                self.log(name, &format!("Stopped {d}."));
            }
        }
        self.runtime_cleanup(name);
        if !stopping {
            self.maybe_restart(name);
        }
    }

    pub(crate) fn maybe_restart(&mut self, name: &str) {
        let Some(unit) = self.reg.units.get(name).cloned() else {
            return;
        };
        let shutting_down = self.shutting_down;
        let r = self.run_mut(name);
        if r.stopping || r.result == "start-limit-hit" || shutting_down {
            return;
        }
        let success = r.result == "success";
        let signal = matches!(r.last_exit, Some((_, _, _, WaitStatus::Signaled(_))));
        let yes = match unit.service.restart {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnSuccess => success,
            Restart::OnFailure => !success,
            Restart::OnAbnormal => signal || r.result == "timeout",
            Restart::OnAbort => signal,
        };
        if !yes {
            return;
        }
        r.restarts += 1;
        r.phase = Phase::AutoRestart;
        r.deadline = Some(Instant::now() + unit.service.restart_sec);
        let n = r.restarts;
        self.set_state(name, Active::Activating, "auto-restart");
        self.log(
            name,
            &format!("Scheduled restart job, restart counter is at {n}."),
        );
    }

    /// Begins stopping `name`.
    pub(crate) fn begin_stop(&mut self, name: &str) {
        let Some(unit) = self.reg.units.get(name).cloned() else {
            return;
        };
        let r = self.run_mut(name);
        r.stopping = true;
        match r.active {
            Active::Inactive | Active::Failed => {
                r.phase = Phase::Idle;
                r.deadline = None;
                return;
            }
            _ if r.phase == Phase::AutoRestart => {
                r.phase = Phase::Idle;
                r.deadline = None;
                r.result = "success";
                self.set_state(name, Active::Inactive, "dead");
                return;
            }
            Active::Deactivating => return,
            _ => {}
        }
        if !unit.is_service() {
            self.set_state(name, Active::Inactive, "dead");
            self.log(name, &format!("Stopped target {}.", unit.description()));
            return;
        }
        if let Some(pid) = r.control_pid.take() {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        let was_running = r.phase == Phase::Running;
        r.result = "success";
        self.set_state(name, Active::Deactivating, "stop");
        self.log(name, &format!("Stopping {}...", unit.description()));
        self.run_mut(name).deadline =
            Some(Instant::now() + unit.service.timeout_stop.min(self.stop_cap));
        self.advance(
            name,
            if was_running {
                Phase::Stop(0)
            } else {
                Phase::Stop(usize::MAX)
            },
        );
    }

    /// Reload: `ExecReload` with `$MAINPID`. False when the unit has none.
    pub(crate) fn begin_reload(&mut self, name: &str) -> bool {
        let Some(unit) = self.reg.units.get(name) else {
            return false;
        };
        if unit.service.exec_reload.is_empty() {
            return false;
        }
        let d = unit.description().to_string();
        self.set_state(name, Active::Reloading, "reload");
        self.log(name, &format!("Reloading {d}..."));
        self.advance(name, Phase::Reload(0));
        true
    }
}

pub(crate) fn next(p: Phase) -> Phase {
    match p {
        Phase::StartPre(i) => Phase::StartPre(i.saturating_add(1)),
        Phase::Start(i) => Phase::Start(i.saturating_add(1)),
        Phase::StartPost(i) => Phase::StartPost(i.saturating_add(1)),
        Phase::Reload(i) => Phase::Reload(i.saturating_add(1)),
        Phase::Stop(i) => Phase::Stop(i.saturating_add(1)),
        Phase::StopPost(i) => Phase::StopPost(i.saturating_add(1)),
        other => other,
    }
}
