//! The instance's tools, as one multi-call program (the daemon's own binary, bound read-only
//! over `/usr/bin/systemctl` and friends by `sandbox::mounts`): `systemctl`, `service`,
//! `journalctl`, `systemd-notify`, `poweroff`, `halt`, `reboot`, `shutdown`; and `yum`, `dnf`,
//! `amazon-linux-extras` (in `packages`).
//!
//! File verbs (`enable`, `disable`, `mask`, `unmask`, `is-enabled`, `list-unit-files`, `cat`)
//! work on the unit files here and then ask PID 1 to reload; everything else is one request
//! over the control socket (`ctl`). The other tools are in `tools`.

use std::path::Path;

use super::ctl::{self, Power, Request, Response, Verb};
use super::install::{self, Changes};
use super::journal::{self, Query};
use super::tools::{hostname, journalctl, power, service, shutdown, systemd_notify};
use super::units::{Load, Registry, canonical_name};

/// argv[0] names this binary answers to.
pub const TOOLS: &[&str] = &[
    "systemctl",
    "journalctl",
    "service",
    "systemd-notify",
    "poweroff",
    "halt",
    "reboot",
    "shutdown",
    "yum",
    "dnf",
    "amazon-linux-extras",
];

/// Runs tool `name` with `args` (argv[1..]) and exits.
pub fn main(name: &str, args: Vec<String>) -> ! {
    // As a C tool: output into a closed pipe (`systemctl status | head`) ends the tool quietly
    // (Rust ignores SIGPIPE, and `println!` would panic on EPIPE). The control socket is written
    // with MSG_NOSIGNAL (`ctl::call`).
    // SAFETY: setting a signal's disposition to its default, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let code = match name {
        "systemctl" => systemctl(&args),
        "journalctl" => journalctl(&args),
        "service" => service(&args),
        "systemd-notify" => systemd_notify(&args),
        "shutdown" => shutdown(&args),
        "poweroff" => power(Power::Poweroff),
        "reboot" => power(Power::Reboot),
        "halt" if args.iter().any(|a| a == "-p" || a == "--poweroff") => power(Power::Poweroff),
        "halt" => power(Power::Halt),
        "yum" | "dnf" => super::packages::yum(name, &args),
        "amazon-linux-extras" => super::packages::extras(&args),
        _ => 1,
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(code)
}

fn print(r: &Response, quiet: bool) -> i32 {
    if !quiet {
        print!("{}", r.out);
    }
    eprint!("{}", r.err);
    r.code
}

fn call(req: Request) -> Response {
    match ctl::call(&req) {
        Ok(r) => r,
        Err(e) => Response::fail(
            1,
            format!("System has not been booted with ec2lab's service manager: {e}\n"),
        ),
    }
}

#[derive(Default)]
struct Opts {
    now: bool,
    no_block: bool,
    all: bool,
    quiet: bool,
    legend: bool,
    value: bool,
    lines: Option<usize>,
    types: Vec<String>,
    states: Vec<String>,
    props: Vec<String>,
    words: Vec<String>,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        legend: true,
        ..Opts::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |flag: &str| -> Result<String, String> {
            match a.split_once('=') {
                Some((_, v)) => Ok(v.to_string()),
                None => it
                    .next()
                    .cloned()
                    .ok_or(format!("option '{flag}' requires an argument")),
            }
        };
        match a.as_str() {
            "--now" => o.now = true,
            "--no-block" => o.no_block = true,
            "-a" | "--all" => o.all = true,
            "-q" | "--quiet" => o.quiet = true,
            "--no-legend" => o.legend = false,
            "--value" => o.value = true,
            "--failed" => o.states.push("failed".into()),
            "--no-pager" | "--plain" | "--full" | "-l" | "--system" | "--force" | "-f"
            | "--no-ask-password" | "--no-reload" => {}
            s if s.starts_with("--type") || s == "-t" => {
                o.types.extend(val("--type")?.split(',').map(String::from))
            }
            s if s.starts_with("--state") => o
                .states
                .extend(val("--state")?.split(',').map(String::from)),
            s if s.starts_with("--property") || s == "-p" => o
                .props
                .extend(val("--property")?.split(',').map(String::from)),
            s if s.starts_with("--lines") || s == "-n" => o.lines = val("--lines")?.parse().ok(),
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unrecognized option '{s}'"));
            }
            _ => o.words.push(a.clone()),
        }
    }
    Ok(o)
}

pub(crate) fn systemctl(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "--version") {
        println!("systemd 252 (ec2lab service manager)");
        return 0;
    }
    let o = match parse_opts(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("systemctl: {e}");
            return 1;
        }
    };
    let verb = o.words.first().map(String::as_str).unwrap_or("list-units");
    let units: Vec<String> = o.words.iter().skip(1).cloned().collect();
    let need_units = |units: &[String]| {
        if units.is_empty() {
            eprintln!("Too few arguments.");
            false
        } else {
            true
        }
    };
    let job = |v: Verb, units: Vec<String>| {
        print(
            &call(Request::Job {
                verb: v,
                units,
                no_block: o.no_block,
            }),
            false,
        )
    };
    match verb {
        "start"
        | "stop"
        | "restart"
        | "try-restart"
        | "condrestart"
        | "reload"
        | "reload-or-restart"
        | "force-reload"
        | "try-reload-or-restart" => {
            if !need_units(&units) {
                return 1;
            }
            let v = match verb {
                "start" => Verb::Start,
                "stop" => Verb::Stop,
                "restart" => Verb::Restart,
                "reload" => Verb::Reload,
                "reload-or-restart" | "force-reload" | "try-reload-or-restart" => {
                    Verb::ReloadOrRestart
                }
                _ => Verb::TryRestart,
            };
            job(v, units)
        }
        "enable" | "disable" | "reenable" | "mask" | "unmask" => {
            if !need_units(&units) {
                return 1;
            }
            file_verb(verb, &units, &o)
        }
        "is-enabled" => is_enabled(&units, o.quiet),
        "list-unit-files" => list_unit_files(&o),
        "cat" => cat(&units),
        "status" => {
            let r = call(Request::Status {
                units: units.clone(),
            });
            print!("{}", r.out.trim_end_matches('\n'));
            if !r.out.is_empty() {
                println!();
            }
            let n = o.lines.unwrap_or(10);
            if r.units.len() == 1 && n > 0 {
                let host = hostname();
                let (recs, _) = journal::read(
                    Path::new("/"),
                    &Query {
                        units: r.units.clone(),
                        since_micros: None,
                        last: Some(n),
                    },
                );
                if !recs.is_empty() {
                    println!();
                    for rec in recs {
                        println!("{}", rec.short(&host));
                    }
                }
            }
            eprint!("{}", r.err);
            r.code
        }
        "is-active" => print(&call(Request::IsActive { units }), o.quiet),
        "is-failed" => print(&call(Request::IsFailed { units }), o.quiet),
        "list-units" => print(
            &call(Request::ListUnits {
                all: o.all,
                types: o.types.clone(),
                states: o.states.clone(),
                legend: o.legend,
            }),
            false,
        ),
        "show" => {
            let r = call(Request::Show {
                units,
                props: o.props.clone(),
            });
            if o.value {
                for l in r.out.lines() {
                    println!("{}", l.split_once('=').map_or(l, |(_, v)| v));
                }
                return r.code;
            }
            print(&r, false)
        }
        "reset-failed" => print(&call(Request::ResetFailed { units }), false),
        "daemon-reload" | "daemon-reexec" => print(&call(Request::DaemonReload), false),
        "poweroff" => power(Power::Poweroff),
        "halt" => power(Power::Halt),
        "reboot" => power(Power::Reboot),
        "is-system-running" => {
            println!("running");
            0
        }
        other => {
            eprintln!("Unknown command verb '{other}'.");
            1
        }
    }
}

fn file_verb(verb: &str, units: &[String], o: &Opts) -> i32 {
    let root = Path::new("/");
    let reg = Registry::load_all(root);
    let mut ch = Changes::default();
    let mut code = 0;
    let mut names = Vec::new();
    for asked in units {
        let n = canonical_name(asked);
        match verb {
            "mask" => install::mask(root, &n, &mut ch),
            "unmask" => install::unmask(root, &n, &mut ch),
            _ => {
                let Some(u) = reg
                    .get(&n)
                    .filter(|u| u.fragment.is_some() || u.sysv.is_some())
                else {
                    let what = if verb == "disable" {
                        "disable"
                    } else {
                        "enable"
                    };
                    eprintln!("Failed to {what} unit: Unit file {n} does not exist.");
                    code = 1;
                    continue;
                };
                if verb != "enable" {
                    install::disable(root, u, &mut ch);
                }
                if verb != "disable" {
                    install::enable(root, &reg, u, &mut ch);
                }
                names.push(u.name.clone());
            }
        }
    }
    if !o.quiet {
        print!("{}", ch.out);
    }
    eprint!("{}", ch.err);
    if ch.failed {
        code = 1;
    }
    let r = call(Request::DaemonReload);
    if r.code != 0 && code == 0 && std::path::Path::new(ctl::SOCKET).exists() {
        eprint!("{}", r.err);
    }
    if o.now && code == 0 && !names.is_empty() {
        let v = if verb == "disable" {
            Verb::Stop
        } else if verb == "reenable" {
            Verb::Restart
        } else {
            Verb::Start
        };
        code = print(
            &call(Request::Job {
                verb: v,
                units: names,
                no_block: o.no_block,
            }),
            false,
        );
    }
    if o.now && verb == "mask" && code == 0 {
        let names: Vec<String> = units.iter().map(|u| canonical_name(u)).collect();
        code = print(
            &call(Request::Job {
                verb: Verb::Stop,
                units: names,
                no_block: o.no_block,
            }),
            false,
        );
    }
    code
}

fn is_enabled(units: &[String], quiet: bool) -> i32 {
    let root = Path::new("/");
    let reg = Registry::load_all(root);
    let mut code = 1;
    for asked in units {
        let n = canonical_name(asked);
        let s = install::state(root, &reg, &n);
        if s == "not-found" {
            eprintln!("Failed to get unit file state for {n}: No such file or directory");
            continue;
        }
        if !quiet {
            println!("{s}");
        }
        if matches!(s, "enabled" | "static" | "alias" | "generated" | "indirect") {
            code = 0;
        }
    }
    code
}

fn list_unit_files(o: &Opts) -> i32 {
    let root = Path::new("/");
    let reg = Registry::load_all(root);
    let mut rows: Vec<(String, &str)> = Vec::new();
    for (n, _) in reg.units.iter() {
        let ty = n.rsplit('.').next().unwrap_or("");
        if !o.types.is_empty() && !o.types.iter().any(|t| t == ty) {
            continue;
        }
        let s = install::state(root, &reg, n);
        if !o.states.is_empty() && !o.states.iter().any(|x| x == s) {
            continue;
        }
        rows.push((n.clone(), s));
    }
    for a in reg.aliases.keys() {
        if o.types.is_empty() || o.types.iter().any(|t| a.ends_with(&format!(".{t}"))) {
            rows.push((a.clone(), "alias"));
        }
    }
    rows.sort();
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(9).max(9);
    if o.legend {
        println!("{:w$} STATE    PRESET", "UNIT FILE");
    }
    for (n, s) in &rows {
        println!("{n:w$} {s:8} enabled");
    }
    if o.legend {
        println!("\n{} unit files listed.", rows.len());
    }
    0
}

fn cat(units: &[String]) -> i32 {
    let reg = Registry::load_all(Path::new("/"));
    let mut code = 0;
    for asked in units {
        let n = canonical_name(asked);
        let Some(u) = reg.get(&n) else {
            eprintln!("No files found for {n}.");
            code = 1;
            continue;
        };
        for f in u.fragment.iter().chain(&u.dropins) {
            println!("# {}", f.display());
            print!("{}", std::fs::read_to_string(f).unwrap_or_default());
        }
        if let Load::Error(e) = u.load_state() {
            eprintln!("{e}");
        }
    }
    code
}
