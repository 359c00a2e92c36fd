//! Jobs and requests: what `systemctl` asks for becomes start/stop/reload jobs, queued and
//! begun in `After=`/`Before=` order (a start waits for the starts it is ordered after, a stop
//! for the stops of the units ordered after it), finished when the unit settles; a request
//! that waits is answered when all its jobs finished, with systemd's messages and exit codes.
//! Also the boot (every enabled unit) and the shutdown (every unit, in reverse).

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::ctl::{Request, Response, Verb};
use super::manager::{Manager, reply};
use super::supervisor::{Active, Phase};
use super::units::Load;
use super::{deps, install};

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

pub(crate) struct Waiter {
    stream: UnixStream,
    jobs: Vec<u64>,
    boot: bool,
    resp: Response,
}

impl Manager {
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

    pub(crate) fn request(&mut self, s: UnixStream, req: Request, uid: Option<u32>) {
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
        // Units are loaded on first use, as systemd does; a unit file written since the last
        // scan is found by a new one (the loaded units stay as they were).
        let named: &[String] = match &req {
            Request::Job { units, .. }
            | Request::Status { units }
            | Request::Show { units, .. } => units,
            _ => &[],
        };
        let missing: Vec<String> = named
            .iter()
            .filter(|n| !self.reg.ensure(n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            self.reg.rescan();
            for n in &missing {
                self.reg.ensure(n);
            }
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
                let set = install::boot_set(&self.root, &mut self.reg);
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
                self.reg.reload();
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
