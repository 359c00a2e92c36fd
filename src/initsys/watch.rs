//! What moves a service's state machine (`supervisor`) along: the exit of one of its
//! processes (control or main), the timers (start and stop timeouts, `RestartSec`), a
//! `PIDFile` appearing; and signalling everything a unit runs.

use std::time::{Duration, Instant};

use super::manager::Manager;
use super::supervisor::{Active, Phase, describe_exit, next};
use super::units::{Cmd, Type};
use crate::sandbox::sys::{self, WaitStatus};

fn ok(st: WaitStatus) -> bool {
    st == WaitStatus::Exited(0)
}

fn setting_of(p: Phase) -> &'static str {
    match p {
        Phase::StartPre(_) => "ExecStartPre",
        Phase::Start(_) => "ExecStart",
        Phase::StartPost(_) => "ExecStartPost",
        Phase::Reload(_) => "ExecReload",
        Phase::Stop(_) => "ExecStop",
        Phase::StopPost(_) => "ExecStopPost",
        _ => "ExecStart",
    }
}

fn cmd_at(s: &super::units::Service, p: Phase) -> Option<&Cmd> {
    match p {
        Phase::StartPre(i) => s.exec_start_pre.get(i),
        Phase::Start(i) => s.exec_start.get(i),
        Phase::StartPost(i) => s.exec_start_post.get(i),
        Phase::Reload(i) => s.exec_reload.get(i),
        Phase::Stop(i) => s.exec_stop.get(i),
        Phase::StopPost(i) => s.exec_stop_post.get(i),
        _ => None,
    }
}

impl Manager {
    /// A child of PID 1 exited. True if it belonged to a unit.
    pub fn child_exited(&mut self, pid: i32, st: WaitStatus) -> bool {
        let Some(name) = self.pids.remove(&pid) else {
            return false;
        };
        self.flush_output(&name);
        let Some(unit) = self.reg.units.get(&name).cloned() else {
            return true;
        };
        let r = self.run_mut(&name);
        let phase = r.phase;
        if r.control_pid == Some(pid) {
            r.control_pid = None;
            let setting = setting_of(phase);
            let line = cmd_at(&unit.service, phase).map_or_else(String::new, |c| c.argv.join(" "));
            r.last_exit = Some((pid, setting, line, st));
            let ignore = cmd_at(&unit.service, phase).is_some_and(|c| c.ignore_failure);
            if !ok(st) && !ignore {
                self.log(
                    &name,
                    &format!("Control process exited, {}", describe_exit(st)),
                );
                let res = if matches!(st, WaitStatus::Signaled(_)) {
                    "signal"
                } else {
                    "exit-code"
                };
                self.step_failed(&name, phase, res);
                return true;
            }
            if let Phase::Start(_) = phase
                && unit.service.ty == Type::Forking
                && unit.service.pid_file.is_some()
            {
                self.advance(&name, Phase::Start(usize::MAX));
            } else {
                self.advance(&name, next(phase));
            }
            return true;
        }
        if r.main_pid == Some(pid) {
            r.main_pid = None;
            r.last_exit = Some((pid, "ExecStart", String::new(), st));
            match phase {
                Phase::StopSignal => self.advance(&name, Phase::StopPost(0)),
                Phase::Stop(_) => {}
                Phase::WaitReady | Phase::StartPost(_) | Phase::WaitPidFile => {
                    self.log(
                        &name,
                        &format!("Main process exited, {}", describe_exit(st)),
                    );
                    self.fail(
                        &name,
                        if matches!(st, WaitStatus::Signaled(_)) {
                            "signal"
                        } else {
                            "exit-code"
                        },
                    );
                }
                Phase::Running | Phase::Reload(_) => {
                    self.log(
                        &name,
                        &format!("Main process exited, {}", describe_exit(st)),
                    );
                    let r = self.run_mut(&name);
                    r.result = match st {
                        WaitStatus::Exited(0) => "success",
                        WaitStatus::Exited(_) => "exit-code",
                        WaitStatus::Signaled(_) => "signal",
                    };
                    if r.result == "success" && unit.service.remain_after_exit {
                        self.set_state(&name, Active::Active, "exited");
                        return true;
                    }
                    if let Some(pid) = self.run_mut(&name).control_pid.take() {
                        let _ = sys::kill(pid, libc::SIGKILL);
                    }
                    self.signal_all(&name, libc::SIGTERM);
                    // Its process group too: a daemon's workers under another user cannot be
                    // read in /proc (not dumpable), so they carry no marker we can see.
                    if pid > 1 {
                        let _ = sys::kill(-pid, libc::SIGTERM);
                    }
                    self.advance(&name, Phase::StopPost(0));
                }
                _ => {}
            }
        }
        true
    }

    /// Timers: start/stop timeouts, PID files being waited for, restarts that are due.
    pub(crate) fn tick(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.runs.keys().cloned().collect();
        for name in names {
            let r = self.run_mut(&name);
            let phase = r.phase;
            if phase == Phase::WaitPidFile && self.check_pid_file(&name) {
                self.advance(&name, Phase::StartPost(0));
                continue;
            }
            let r = self.run_mut(&name);
            let Some(d) = r.deadline else { continue };
            if now < d {
                continue;
            }
            match phase {
                Phase::AutoRestart => {
                    // What the old main process left (a forking daemon's workers, which may
                    // hold its port) goes first, as systemd's final SIGKILL does.
                    let group = r.last_exit.as_ref().map(|x| -x.0).filter(|&g| g < -1);
                    let mut left = super::manager::marked_processes(&name);
                    left.extend(group.filter(|&g| sys::kill(g, 0).is_ok()));
                    if !left.is_empty() {
                        left.iter().for_each(|&p| drop(sys::kill(p, libc::SIGKILL)));
                        self.run_mut(&name).deadline = Some(now + Duration::from_millis(20));
                        continue;
                    }
                    self.run_mut(&name).deadline = None;
                    self.begin_start(&name);
                }
                Phase::StopSignal | Phase::Stop(_) | Phase::StopPost(_) => {
                    if r.killed {
                        self.advance(&name, Phase::StopPost(usize::MAX));
                        continue;
                    }
                    r.killed = true;
                    r.deadline = Some(now + Duration::from_secs(2));
                    self.log(&name, "State 'stop-sigterm' timed out. Killing.");
                    self.signal_all(&name, libc::SIGKILL);
                }
                Phase::Running | Phase::Idle => r.deadline = None,
                _ => {
                    let what = if phase == Phase::WaitPidFile {
                        "start operation timed out (no PID file written). Terminating."
                    } else {
                        "start operation timed out. Terminating."
                    };
                    self.log(&name, what);
                    self.fail(&name, "timeout");
                }
            }
        }
    }

    /// The earliest deadline of any unit.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut d = self.runs.values().filter_map(|r| r.deadline).min();
        if self.runs.values().any(|r| r.phase == Phase::WaitPidFile) {
            let soon = Instant::now() + Duration::from_millis(50);
            d = Some(d.map_or(soon, |x| x.min(soon)));
        }
        d
    }

    /// Reads the PID file; true once it names a live process (then the main PID).
    pub(crate) fn check_pid_file(&mut self, name: &str) -> bool {
        let Some(path) = self
            .reg
            .units
            .get(name)
            .and_then(|u| u.service.pid_file.clone())
        else {
            return true;
        };
        let Some(pid) = std::fs::read_to_string(self.in_root(&path))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
        else {
            return false;
        };
        if sys::kill(pid, 0).is_err() {
            return false;
        }
        self.run_mut(name).main_pid = Some(pid);
        self.pids.insert(pid, name.to_string());
        true
    }

    /// `Type=forking` without `PIDFile=`: the main process is the unit's one process whose
    /// parent is PID 1 (the daemon that forked away from the start command), as systemd guesses
    /// it; with none or several, the unit has no main process (`active (exited)`).
    pub(crate) fn guess_main_pid(&mut self, name: &str) {
        let parent = |pid: i32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().nth(1)?.parse::<i32>().ok()
        };
        let daemons: Vec<i32> = super::manager::marked_processes(name)
            .into_iter()
            .filter(|&p| parent(p) == Some(1))
            .collect();
        if let [pid] = daemons[..] {
            self.run_mut(name).main_pid = Some(pid);
            self.pids.insert(pid, name.to_string());
        }
    }

    /// Sends `sig` to the unit's main process, its process group, and every process that
    /// carries the unit's marker in its environment.
    pub(crate) fn signal_all(&mut self, name: &str, sig: i32) {
        let r = self.run_mut(name);
        for pid in [r.main_pid, r.control_pid].into_iter().flatten() {
            let _ = sys::kill(pid, sig);
            let _ = sys::kill(-pid, sig);
        }
        for pid in super::manager::marked_processes(name) {
            let _ = sys::kill(pid, sig);
        }
    }
}
