//! The unit file syntax: `[Section]`, `Key=Value`, `\\` continuation lines, `#`/`;` comments;
//! the values (time spans, booleans, command lines with `-@+!:` prefixes and quotes) and how
//! each known key of `[Unit]`, `[Service]` and `[Install]` sets a `Unit`. A key this manager
//! does not honour is recorded in `Unit::ignored` (with its file and line), which the manager
//! logs to the unit's journal when it first starts it — as systemd warns of keys it does not
//! know; a line that is not an assignment is an error.

use std::time::Duration;

use super::units::{Cmd, Restart, Type, Unit, canonical_name};

/// A parse failure: the line (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {what}")]
pub struct ParseError {
    pub path: String,
    pub line: usize,
    pub what: String,
}

/// `(section, key, value, line)` in file order.
pub type Entries = Vec<(String, String, String, usize)>;

/// Splits a unit file into entries; continuation lines (`\` at the end) are joined.
pub fn parse_ini(path: &str, text: &str) -> Result<Entries, ParseError> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() {
            start = i + 1;
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
        } else if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let err = |what: String| ParseError {
            path: path.to_string(),
            line: start,
            what,
        };
        if full.starts_with('[') {
            let Some(name) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
                return Err(err(format!("invalid section header '{full}'")));
            };
            section = Some(name.to_string());
            continue;
        }
        let Some((k, v)) = full.split_once('=') else {
            return Err(err(format!("invalid line '{full}' (expected Key=Value)")));
        };
        let Some(sec) = &section else {
            return Err(err(format!("assignment outside of any section: '{full}'")));
        };
        out.push((
            sec.clone(),
            k.trim().to_string(),
            v.trim().to_string(),
            start,
        ));
    }
    Ok(out)
}

/// A time span: `5`, `5s`, `100ms`, `1min 30s`, `2h`, `infinity`.
pub fn parse_timespan(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v == "infinity" {
        return Some(Duration::from_secs(365 * 24 * 3600));
    }
    // "10 s" is "10s": a bare number takes the unit word after it.
    let mut words: Vec<String> = Vec::new();
    for w in v.split_whitespace() {
        match words.last_mut() {
            Some(last)
                if last.chars().all(|c| c.is_ascii_digit() || c == '.')
                    && w.starts_with(|c: char| c.is_ascii_alphabetic()) =>
            {
                last.push_str(w)
            }
            _ => words.push(w.to_string()),
        }
    }
    let mut total = Duration::ZERO;
    for word in &words {
        let split = word
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(word.len());
        let (num, unit) = word.split_at(split);
        let n: f64 = num.parse().ok()?;
        let mult = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 0.001,
            "us" | "usec" => 0.000_001,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(n * mult);
    }
    Some(total)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Splits a command line as systemd does: whitespace, `"…"` and `'…'` quotes, `\` escapes.
pub fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        o => o,
                    });
                    in_word = true;
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// One `Exec*=` value (with its `-@+!:` prefixes).
pub fn parse_cmd(v: &str) -> Option<Cmd> {
    let mut rest = v.trim();
    let mut cmd = Cmd {
        argv: Vec::new(),
        ignore_failure: false,
        privileged: false,
    };
    while let Some(c) = rest.chars().next() {
        match c {
            '-' => cmd.ignore_failure = true,
            '+' | '!' => cmd.privileged = true,
            '@' | ':' => {}
            _ => break,
        }
        rest = &rest[1..];
    }
    cmd.argv = split_words(rest);
    (!cmd.argv.is_empty()).then_some(cmd)
}

/// Applies entries (fragment, then drop-ins) to `unit`. Keys not honoured here are recorded in
/// `unit.ignored`; a value that cannot work is an error.
pub fn apply(unit: &mut Unit, path: &str, entries: &Entries) -> Result<(), ParseError> {
    for (sec, key, val, line) in entries {
        let err = |what: String| ParseError {
            path: path.to_string(),
            line: *line,
            what,
        };
        let list = |l: &mut Vec<String>| {
            if val.is_empty() {
                l.clear();
            } else {
                l.extend(val.split_whitespace().map(canonical_name));
            }
        };
        let s = &mut unit.service;
        let cmds = |l: &mut Vec<Cmd>| {
            if val.is_empty() {
                l.clear();
            } else if let Some(c) = parse_cmd(val) {
                l.push(c);
            }
        };
        match (sec.as_str(), key.as_str()) {
            ("Unit", "Description") => unit.description = val.clone(),
            ("Unit", "After") => list(&mut unit.after),
            ("Unit", "Before") => list(&mut unit.before),
            ("Unit", "Wants") => list(&mut unit.wants),
            ("Unit", "Requires" | "BindsTo" | "Requisite") => list(&mut unit.requires),
            ("Install", "WantedBy") => list(&mut unit.wanted_by),
            ("Install", "RequiredBy") => list(&mut unit.required_by),
            ("Install", "Alias") => list(&mut unit.aliases),
            ("Service", "Type") => {
                s.ty = match val.as_str() {
                    "simple" | "" => Type::Simple,
                    "exec" => Type::Exec,
                    "forking" => Type::Forking,
                    "oneshot" => Type::Oneshot,
                    "notify" | "notify-reload" | "dbus" | "idle" => Type::Notify,
                    other => return Err(err(format!("unknown Type={other}"))),
                };
                if val == "dbus" || val == "idle" {
                    s.ty = Type::Simple;
                }
            }
            ("Service", "ExecStartPre") => cmds(&mut s.exec_start_pre),
            ("Service", "ExecStart") => cmds(&mut s.exec_start),
            ("Service", "ExecStartPost") => cmds(&mut s.exec_start_post),
            ("Service", "ExecReload") => cmds(&mut s.exec_reload),
            ("Service", "ExecStop") => cmds(&mut s.exec_stop),
            ("Service", "ExecStopPost") => cmds(&mut s.exec_stop_post),
            ("Service", "PIDFile") => s.pid_file = (!val.is_empty()).then(|| val.into()),
            ("Service", "Restart") => {
                s.restart = match val.as_str() {
                    "no" | "" => Restart::No,
                    "always" => Restart::Always,
                    "on-success" => Restart::OnSuccess,
                    "on-failure" | "on-watchdog" => Restart::OnFailure,
                    "on-abnormal" => Restart::OnAbnormal,
                    "on-abort" => Restart::OnAbort,
                    other => return Err(err(format!("unknown Restart={other}"))),
                }
            }
            ("Service", "RestartSec" | "TimeoutStartSec" | "TimeoutStopSec" | "TimeoutSec") => {
                let d = parse_timespan(val)
                    .ok_or_else(|| err(format!("invalid time span {key}={val}")))?;
                match key.as_str() {
                    "RestartSec" => s.restart_sec = d,
                    "TimeoutStartSec" => s.timeout_start = d,
                    "TimeoutStopSec" => s.timeout_stop = d,
                    _ => (s.timeout_start, s.timeout_stop) = (d, d),
                }
            }
            ("Service", "RemainAfterExit") => {
                s.remain_after_exit = parse_bool(val)
                    .ok_or_else(|| err(format!("invalid boolean RemainAfterExit={val}")))?
            }
            ("Service", "User") => s.user = (!val.is_empty()).then(|| val.clone()),
            ("Service", "Group") => s.group = (!val.is_empty()).then(|| val.clone()),
            ("Service", "WorkingDirectory") => {
                s.working_directory = (!val.is_empty()).then(|| val.clone())
            }
            ("Service", "SyslogIdentifier") => s.syslog_identifier = Some(val.clone()),
            ("Service", "Environment") => {
                if val.is_empty() {
                    s.environment.clear();
                }
                for w in split_words(val) {
                    match w.split_once('=') {
                        Some((k, v)) => s.environment.push((k.to_string(), v.to_string())),
                        None => return Err(err(format!("invalid Environment= item '{w}'"))),
                    }
                }
            }
            ("Service", "EnvironmentFile") => match val.strip_prefix('-') {
                Some(p) => s.environment_files.push((p.into(), true)),
                None if val.is_empty() => s.environment_files.clear(),
                None => s.environment_files.push((val.into(), false)),
            },
            ("Service", "RuntimeDirectory") => {
                for d in val.split_whitespace() {
                    if d.starts_with('/') || d.split('/').any(|c| c == "..") {
                        return Err(err(format!("invalid RuntimeDirectory={d}")));
                    }
                    s.runtime_directories.push(d.to_string());
                }
            }
            // Pointers for people, and defaults this manager has anyway: nothing to do.
            ("Unit", "Documentation" | "DefaultDependencies") | ("Install", "Also") => {}
            _ => unit.ignored.push(format!(
                "{path}:{line}: {key}= in [{sec}] is not supported by the lab's service manager, ignoring."
            )),
        }
        if sec == "Install" {
            unit.has_install = true;
        }
    }
    Ok(())
}

/// Checks that a service can run at all (systemd's "Refusing" messages).
pub(crate) fn validate(unit: &Unit) -> Result<(), String> {
    if !unit.is_service() {
        return Ok(());
    }
    let s = &unit.service;
    if s.exec_start.is_empty() && s.exec_stop.is_empty() {
        return Err("Service has no ExecStart=, ExecStop=, or SuccessAction=. Refusing.".into());
    }
    if s.exec_start.is_empty() && s.ty != Type::Oneshot {
        return Err("Service has no ExecStart= setting, which is only allowed for Type=oneshot services. Refusing.".into());
    }
    if s.exec_start.len() > 1 && s.ty != Type::Oneshot {
        return Err("Service has more than one ExecStart= setting, which is only allowed for Type=oneshot services. Refusing.".into());
    }
    for c in s.exec_start.iter().chain(&s.exec_start_pre) {
        let exe = &c.argv[0];
        if !exe.starts_with('/') && exe.contains('/') {
            return Err(format!(
                "Executable path is not absolute, ignoring: {}",
                c.argv.join(" ")
            ));
        }
    }
    Ok(())
}
