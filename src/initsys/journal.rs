//! The journal: every line a service writes (stdout and stderr) and every message of the
//! manager about a unit, appended to one file inside the instance, and read back by
//! `journalctl` and `systemctl status`.
//!
//! A record is one line: `MICROS UNIT IDENT[PID]: MESSAGE` (microseconds since the epoch, the
//! unit name or `-`). Writing opens the file in append mode (created 0640 with its directory);
//! reading filters by unit and time, keeps the last N and, with follow, polls for more.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The journal file inside the instance.
pub const JOURNAL: &str = "/var/log/journal/ec2lab.journal";

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub micros: u64,
    pub unit: String,
    pub ident: String,
    pub pid: u32,
    pub msg: String,
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

impl Record {
    pub fn encode(&self) -> String {
        let msg = self.msg.replace('\n', " ");
        let ident: String = self.ident.chars().filter(|c| !c.is_whitespace()).collect();
        format!(
            "{} {} {}[{}]: {}\n",
            self.micros,
            if self.unit.is_empty() {
                "-"
            } else {
                &self.unit
            },
            if ident.is_empty() { "-" } else { &ident },
            self.pid,
            msg
        )
    }

    pub fn decode(line: &str) -> Option<Record> {
        let (micros, rest) = line.split_once(' ')?;
        let (unit, rest) = rest.split_once(' ')?;
        let (head, msg) = rest.split_once("]: ")?;
        let (ident, pid) = head.rsplit_once('[')?;
        Some(Record {
            micros: micros.parse().ok()?,
            unit: if unit == "-" {
                String::new()
            } else {
                unit.to_string()
            },
            ident: ident.to_string(),
            pid: pid.parse().ok()?,
            msg: msg.trim_end_matches('\n').to_string(),
        })
    }

    /// journalctl's `short` format: `Dec 03 17:20:01 host ident[pid]: message`.
    pub fn short(&self, host: &str) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp((self.micros / 1_000_000) as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let fmt =
            time::macros::format_description!("[month repr:short] [day] [hour]:[minute]:[second]");
        format!(
            "{} {host} {}[{}]: {}",
            t.format(&fmt).unwrap_or_default(),
            self.ident,
            self.pid,
            self.msg
        )
    }
}

/// Appends records to the journal under `root`.
pub struct Writer {
    path: PathBuf,
}

impl Writer {
    pub fn new(root: &Path) -> Writer {
        Writer {
            path: root.join(JOURNAL.trim_start_matches('/')),
        }
    }

    pub fn write(&self, rec: &Record) {
        if let Some(d) = self.path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path);
        if let Ok(mut f) = f {
            let _ = f.write_all(rec.encode().as_bytes());
        }
    }
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Unit names (empty: all).
    pub units: Vec<String>,
    pub since_micros: Option<u64>,
    pub last: Option<usize>,
}

impl Query {
    fn matches(&self, r: &Record) -> bool {
        (self.units.is_empty() || self.units.contains(&r.unit))
            && self.since_micros.is_none_or(|s| r.micros >= s)
    }
}

/// The matching records and the file offset read up to.
pub fn read(root: &Path, q: &Query) -> (Vec<Record>, u64) {
    read_from(root, q, 0)
}

pub fn read_from(root: &Path, q: &Query, offset: u64) -> (Vec<Record>, u64) {
    let path = root.join(JOURNAL.trim_start_matches('/'));
    let Ok(mut f) = std::fs::File::open(&path) else {
        return (Vec::new(), offset);
    };
    let _ = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset));
    let mut r = std::io::BufReader::new(f);
    let mut out = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    while let Ok(n) = r.read_line(&mut line) {
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Some(rec) = Record::decode(&line)
            && q.matches(&rec)
        {
            out.push(rec);
        }
        line.clear();
    }
    if let Some(n) = q.last
        && out.len() > n
    {
        out.drain(..out.len() - n);
    }
    (out, pos)
}

/// `--since`: `YYYY-MM-DD[ HH:MM[:SS]]`, `HH:MM[:SS]` (today), `today`, `yesterday`, `now`,
/// `-N{s,min,h,d}` or `N {sec,min,hour,day}s ago`. UTC, as the instance's clock is.
pub fn parse_since(s: &str, now_us: u64) -> Option<u64> {
    let s = s.trim();
    let now = now_us / 1_000_000;
    let day = now - now % 86400;
    let rel = |v: &str| {
        super::units::parse_timespan(v).map(|d| now_us.saturating_sub(d.as_micros() as u64))
    };
    match s {
        "now" => return Some(now_us),
        "today" => return Some(day * 1_000_000),
        "yesterday" => return Some((day - 86400) * 1_000_000),
        _ => {}
    }
    if let Some(v) = s.strip_prefix('-') {
        return rel(v);
    }
    if let Some(v) = s.strip_suffix(" ago") {
        return rel(v);
    }
    let (date, clock) = match s.split_once(' ') {
        Some((d, c)) => (Some(d), Some(c)),
        None if s.contains('-') => (Some(s), None),
        None => (None, Some(s)),
    };
    let base = match date {
        Some(d) => {
            let f = time::macros::format_description!("[year]-[month]-[day]");
            let d = time::Date::parse(d, &f).ok()?;
            d.midnight().assume_utc().unix_timestamp() as u64
        }
        None => day,
    };
    let secs = match clock {
        Some(c) => {
            let p: Vec<u64> = c
                .split(':')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            match p.as_slice() {
                [h, m] => h * 3600 + m * 60,
                [h, m, s] => h * 3600 + m * 60 + s,
                _ => return None,
            }
        }
        None => 0,
    };
    Some((base + secs) * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_since_forms_parse() {
        let r = Record {
            micros: 1_700_000_000_000_000,
            unit: "web.service".into(),
            ident: "python3".into(),
            pid: 42,
            msg: "GET / 200".into(),
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        let now = 1_700_000_000_000_000;
        assert_eq!(parse_since("-5min", now), Some(now - 300_000_000));
        assert_eq!(parse_since("10 s ago", now), Some(now - 10_000_000));
        assert_eq!(parse_since("2023-11-14", now), Some(1_699_920_000_000_000));
        assert_eq!(
            parse_since("2023-11-14 22:13:20", now),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(parse_since("bogus", now), None);
    }
}
