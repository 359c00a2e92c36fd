//! What `systemctl status`, `is-active`, `is-failed`, `list-units` and `show` print, from the
//! manager's state, in systemd's words and with its exit codes (status: 0 active, 3 not active,
//! 4 no such unit; is-active: 0 if any is active, else 3; is-failed: 0 if any failed, else 1).

use super::ctl::{Request, Response};
use super::install;
use super::manager::Manager;
use super::supervisor::{Active, Run, describe_exit};
use super::units::{Load, canonical_name, inside};

fn when(micros: u64) -> (String, String) {
    let secs = (micros / 1_000_000) as i64;
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[weekday repr:short] [year]-[month]-[day] [hour]:[minute]:[second] UTC"
    );
    let ago = super::journal::now_micros().saturating_sub(micros) / 1_000_000;
    let ago = if ago < 60 {
        format!("{ago}s ago")
    } else if ago < 3600 {
        format!("{}min {}s ago", ago / 60, ago % 60)
    } else {
        format!("{}h {}min ago", ago / 3600, (ago % 3600) / 60)
    };
    (t.format(&f).unwrap_or_default(), ago)
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Manager {
    fn run_of(&self, name: &str) -> Run {
        self.runs.get(name).cloned().unwrap_or_default()
    }

    fn load_word(&self, name: &str) -> &'static str {
        match self.reg.get(name).map(|u| u.load_state()) {
            None => "not-found",
            Some(Load::Loaded) => "loaded",
            Some(Load::Masked) => "masked",
            Some(Load::Error(_)) => "error",
        }
    }

    fn status_one(&self, asked: &str) -> Option<(String, bool)> {
        let u = self.reg.get(asked)?;
        let r = self.run_of(&u.name);
        let mut s = String::new();
        let dot = match r.active {
            Active::Active | Active::Reloading => "\u{25cf}",
            Active::Failed => "\u{00d7}",
            _ => "\u{25cb}",
        };
        s.push_str(&format!("{dot} {} - {}\n", u.name, u.description()));
        let state = install::state(&self.root, &self.reg, &u.name);
        match u.load_state() {
            Load::Loaded => {
                let path = u
                    .sysv
                    .as_ref()
                    .or(u.fragment.as_ref())
                    .map(|p| inside(&self.root, p))
                    .unwrap_or_default();
                s.push_str(&format!(
                    "     Loaded: loaded ({path}; {state}; preset: enabled)\n"
                ));
            }
            Load::Masked => s.push_str("     Loaded: masked (Reason: Unit is masked.)\n"),
            Load::Error(e) => s.push_str(&format!("     Loaded: error (Reason: {e})\n")),
        }
        if !u.dropins.is_empty() {
            s.push_str("    Drop-In: ");
            let shown: Vec<String> = u.dropins.iter().map(|p| inside(&self.root, p)).collect();
            s.push_str(&shown.join("\n             "));
            s.push('\n');
        }
        let mut line = format!("     Active: {} ({})", r.active.as_str(), r.sub);
        if r.active == Active::Failed {
            line = format!("     Active: failed (Result: {})", r.result);
        }
        if r.since > 0 {
            let (t, ago) = when(r.since);
            line.push_str(&format!(" since {t}; {ago}"));
        }
        s.push_str(&line);
        s.push('\n');
        if let Some((pid, setting, exe, st)) = &r.last_exit
            && (r.active != Active::Active || *setting != "ExecStart")
        {
            // The command that exited (a control process's own line), else ExecStart's.
            let cmd = Some(exe.clone())
                .filter(|e| !e.is_empty())
                .or_else(|| u.service.exec_start.first().map(|c| c.argv.join(" ")))
                .unwrap_or_default();
            s.push_str(&format!(
                "    Process: {pid} {setting}={cmd} ({})\n",
                describe_exit(*st)
            ));
            if r.main_pid.is_none() && *setting == "ExecStart" {
                s.push_str(&format!("   Main PID: {pid} ({})\n", describe_exit(*st)));
            }
        }
        if let Some(pid) = r.main_pid {
            s.push_str(&format!("   Main PID: {pid} ({})\n", comm(pid)));
        }
        if let Some(t) = &r.status_text {
            s.push_str(&format!("     Status: \"{t}\"\n"));
        }
        Some((s, matches!(r.active, Active::Active | Active::Reloading)))
    }

    /// Answers the read-only requests.
    pub(crate) fn query(&mut self, req: Request) -> Response {
        let mut resp = Response::default();
        match req {
            Request::Status { units } => {
                let names: Vec<String> = if units.is_empty() {
                    self.runs
                        .iter()
                        .filter(|(_, r)| r.active != Active::Inactive)
                        .map(|(n, _)| n.clone())
                        .collect()
                } else {
                    units
                };
                let mut all_active = true;
                for (i, n) in names.iter().enumerate() {
                    let n = canonical_name(n);
                    match self.status_one(&n) {
                        Some((text, active)) => {
                            if i > 0 {
                                resp.out.push('\n');
                            }
                            resp.out.push_str(&text);
                            resp.units
                                .push(self.reg.resolve(&n).unwrap_or(&n).to_string());
                            all_active &= active;
                        }
                        None => {
                            resp.err
                                .push_str(&format!("Unit {n} could not be found.\n"));
                            resp.code = 4;
                        }
                    }
                }
                if resp.code == 0 && !all_active {
                    resp.code = 3;
                }
            }
            Request::IsActive { units } => {
                resp = self.states_of(&units, 3, |a| {
                    matches!(a, Active::Active | Active::Reloading)
                })
            }
            Request::IsFailed { units } => {
                resp = self.states_of(&units, 1, |a| a == Active::Failed)
            }
            Request::ListUnits {
                all,
                types,
                states,
                legend,
            } => {
                let mut rows = Vec::new();
                for (name, u) in &self.reg.units {
                    let r = self.run_of(name);
                    let load = self.load_word(name);
                    let shown = all || r.active != Active::Inactive || load == "error";
                    let ty = name.rsplit('.').next().unwrap_or("");
                    if !shown
                        || (!types.is_empty() && !types.iter().any(|t| t == ty))
                        || (!states.is_empty()
                            && !states
                                .iter()
                                .any(|s| s == r.active.as_str() || s == r.sub || s == load))
                    {
                        continue;
                    }
                    rows.push((
                        name.clone(),
                        load,
                        r.active.as_str(),
                        r.sub,
                        u.description().to_string(),
                    ));
                }
                let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
                if legend {
                    resp.out.push_str(&format!(
                        "  {:w$} LOAD   ACTIVE   SUB     DESCRIPTION\n",
                        "UNIT"
                    ));
                }
                for (n, l, a, sub, d) in &rows {
                    let mark = if *a == "failed" { "\u{25cf}" } else { " " };
                    resp.out
                        .push_str(&format!("{mark} {n:w$} {l:6} {a:8} {sub:7} {d}\n"));
                }
                if legend {
                    resp.out.push_str(&format!(
                        "\nLOAD   = Reflects whether the unit definition was properly loaded.\nACTIVE = The high-level unit activation state, i.e. generalization of SUB.\nSUB    = The low-level unit activation state, values depend on unit type.\n{} loaded units listed.\n",
                        rows.len()
                    ));
                }
            }
            Request::Show { units, props } => {
                for (i, n) in units.iter().enumerate() {
                    if i > 0 {
                        resp.out.push('\n');
                    }
                    let n = canonical_name(n);
                    let name = self.reg.resolve(&n).unwrap_or(&n).to_string();
                    let r = self.run_of(&name);
                    let u = self.reg.get(&n);
                    let all: Vec<(&str, String)> = vec![
                        ("Id", name.clone()),
                        (
                            "Description",
                            u.map(|u| u.description().to_string()).unwrap_or_default(),
                        ),
                        ("LoadState", self.load_word(&n).to_string()),
                        ("ActiveState", r.active.as_str().to_string()),
                        ("SubState", r.sub.to_string()),
                        ("Result", r.result.to_string()),
                        ("MainPID", r.main_pid.unwrap_or(0).to_string()),
                        ("NRestarts", r.restarts.to_string()),
                        (
                            "UnitFileState",
                            if u.is_some() {
                                install::state(&self.root, &self.reg, &n).to_string()
                            } else {
                                String::new()
                            },
                        ),
                        (
                            "ExecMainStatus",
                            match r.last_exit {
                                Some((_, _, _, st)) => st.code().to_string(),
                                None => "0".into(),
                            },
                        ),
                        ("StatusText", r.status_text.clone().unwrap_or_default()),
                    ];
                    for (k, v) in all {
                        if props.is_empty() || props.iter().any(|p| p == k) {
                            resp.out.push_str(&format!("{k}={v}\n"));
                        }
                    }
                }
            }
            Request::ResetFailed { units } => {
                let names: Vec<String> = if units.is_empty() {
                    self.runs.keys().cloned().collect()
                } else {
                    units
                        .iter()
                        .filter_map(|n| self.reg.resolve(n).map(str::to_string))
                        .collect()
                };
                for n in names {
                    if self
                        .runs
                        .get(&n)
                        .is_some_and(|r| r.active == Active::Failed)
                    {
                        self.set_state(&n, Active::Inactive, "dead");
                        if let Some(r) = self.runs.get_mut(&n) {
                            r.result = "success";
                        }
                    }
                }
            }
            _ => {}
        }
        resp
    }

    /// One state per line; exit 0 if any matches `hit`, else `miss`.
    fn states_of(&self, units: &[String], miss: i32, hit: impl Fn(Active) -> bool) -> Response {
        let mut resp = Response {
            code: miss,
            ..Response::default()
        };
        for n in units {
            let a = self.active_of(n);
            resp.out.push_str(a.as_str());
            resp.out.push('\n');
            if hit(a) {
                resp.code = 0;
            }
        }
        resp
    }

    fn active_of(&self, n: &str) -> Active {
        self.reg
            .resolve(n)
            .and_then(|n| self.runs.get(n))
            .map_or(Active::Inactive, |r| r.active)
    }
}
