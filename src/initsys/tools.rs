//! The instance's other tools: `journalctl` (reads the journal file itself: `-u`, `-f`, `-n`,
//! `--since`, `-o cat`, short option clusters like `-xeu`), `service NAME ACTION` (through
//! `systemctl`, or the SysV script for its own actions), `systemd-notify`, and `poweroff`,
//! `halt`, `reboot`, `shutdown` (a power request to PID 1; without the manager, the
//! `/run/initctl` request sysvinit's tools write).

use std::path::Path;

use super::client::systemctl;
use super::ctl::{self, Power, Request};
use super::journal::{self, Query};
use super::units::{Registry, canonical_name};

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub(crate) fn service(args: &[String]) -> i32 {
    let (Some(name), Some(action)) = (args.first(), args.get(1)) else {
        if args.first().is_some_and(|a| a == "--status-all") {
            return 0;
        }
        eprintln!(
            "Usage: service < option > | --status-all | [ service_name [ command | --full-restart ] ]"
        );
        return 1;
    };
    let script = format!("/etc/init.d/{name}");
    match action.as_str() {
        "start" | "stop" | "restart" | "reload" | "force-reload" | "try-restart" | "status" => {
            systemctl(&[action.clone(), name.clone()])
        }
        "--full-restart" => systemctl(&["restart".into(), name.clone()]),
        _ if Path::new(&script).exists() => {
            let st = std::process::Command::new(&script)
                .args(&args[1..])
                .status();
            st.map(|s| s.code().unwrap_or(1)).unwrap_or(1)
        }
        _ => {
            eprintln!("{name}: unrecognized service");
            1
        }
    }
}

pub(crate) fn journalctl(args: &[String]) -> i32 {
    let mut units = Vec::new();
    let mut follow = false;
    let mut lines: Option<usize> = None;
    let mut since = None;
    let mut cat_output = false;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let mut take = |inline: &str| -> Option<String> {
            if inline.is_empty() {
                it.next().cloned()
            } else {
                Some(inline.to_string())
            }
        };
        if let Some(long) = a.strip_prefix("--") {
            let (k, v) = long.split_once('=').map_or((long, ""), |(k, v)| (k, v));
            match k {
                "unit" => units.extend(take(v)),
                "follow" => follow = true,
                "lines" => {
                    lines = take(v).and_then(|n| {
                        if n == "all" {
                            Some(usize::MAX)
                        } else {
                            n.trim_start_matches('+').parse().ok()
                        }
                    })
                }
                "since" => since = take(v),
                "output" => cat_output = take(v).as_deref() == Some("cat"),
                "pager-end" => lines = lines.or(Some(1000)),
                _ => {}
            }
            continue;
        }
        if let Some(cluster) = a.strip_prefix('-') {
            for (i, c) in cluster.char_indices() {
                let rest = &cluster[i + c.len_utf8()..];
                match c {
                    'f' => follow = true,
                    'e' => lines = lines.or(Some(1000)),
                    'u' => {
                        units.extend(take(rest));
                        break;
                    }
                    'n' => {
                        lines = take(rest).and_then(|n| n.parse().ok());
                        break;
                    }
                    'S' => {
                        since = take(rest);
                        break;
                    }
                    'o' => {
                        cat_output = take(rest).as_deref() == Some("cat");
                        break;
                    }
                    'b' => break,
                    _ => {}
                }
            }
        }
    }
    let reg = Registry::load_all(Path::new("/"));
    let units: Vec<String> = units
        .iter()
        .map(|u| {
            let n = canonical_name(u);
            reg.resolve(&n).unwrap_or(&n).to_string()
        })
        .collect();
    let since_micros = match since
        .as_deref()
        .map(|s| journal::parse_since(s, journal::now_micros()))
    {
        Some(None) => {
            eprintln!("Failed to parse timestamp: {}", since.unwrap_or_default());
            return 1;
        }
        Some(s) => s,
        None => None,
    };
    let last = lines.or(if follow { Some(10) } else { None });
    let q = Query {
        units,
        since_micros,
        last,
    };
    let host = hostname();
    let show = |r: &journal::Record| {
        if cat_output {
            println!("{}", r.msg);
        } else {
            println!("{}", r.short(&host));
        }
    };
    let (recs, mut off) = journal::read(Path::new("/"), &q);
    if recs.is_empty() && !follow {
        println!("-- No entries --");
    }
    recs.iter().for_each(show);
    if !follow {
        return 0;
    }
    let q = Query { last: None, ..q };
    loop {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (recs, o) = journal::read_from(Path::new("/"), &q, off);
        off = o;
        recs.iter().for_each(show);
    }
}

pub(crate) fn systemd_notify(args: &[String]) -> i32 {
    let mut parts = Vec::new();
    for a in args {
        match a.as_str() {
            "--ready" => parts.push("READY=1".to_string()),
            "--booted" => return 0,
            s if s.starts_with("--status=") => parts.push(format!("STATUS={}", &s[9..])),
            s if s.starts_with("--pid=") => parts.push(format!("MAINPID={}", &s[6..])),
            s if s.starts_with("--") => {}
            s => parts.push(s.to_string()),
        }
    }
    match super::notify::send(&parts.join("\n")) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Failed to notify init system: {e}");
            1
        }
    }
}

pub(crate) fn shutdown(args: &[String]) -> i32 {
    let mut p = Power::Poweroff;
    for a in args {
        match a.as_str() {
            "-r" | "--reboot" => p = Power::Reboot,
            "-H" | "--halt" => p = Power::Halt,
            "-h" | "-P" | "--poweroff" => p = Power::Poweroff,
            "-c" => return 0,
            _ => {}
        }
    }
    power(p)
}

/// Asks PID 1 to power off / reboot; without the manager, through `/run/initctl` as
/// sysvinit's tools do.
pub(crate) fn power(p: Power) -> i32 {
    if ctl::call(&Request::Power(p)).is_ok_and(|r| r.code == 0) {
        return 0;
    }
    let lvl = if p == Power::Reboot { b'6' } else { b'0' };
    let mut req = [0u8; 384];
    req[0..4].copy_from_slice(&0x0309_1969i32.to_ne_bytes());
    req[4..8].copy_from_slice(&1i32.to_ne_bytes());
    req[8..12].copy_from_slice(&i32::from(lvl).to_ne_bytes());
    match std::fs::OpenOptions::new().write(true).open("/run/initctl") {
        Ok(mut f) => {
            let _ = std::io::Write::write_all(&mut f, &req);
            0
        }
        Err(e) => {
            eprintln!("Failed to talk to init: {e}");
            1
        }
    }
}
