//! Naming a process safely: pid + start time (field 22 of `/proc/<pid>/stat`), and pidfds
//! verified against that pair, so a recycled pid is never mistaken for an instance's init.

use std::io;
use std::os::fd::OwnedFd;

use super::sys;

/// (state, start time) from a `/proc/<pid>/stat` text. The command name may contain spaces and
/// parentheses, so parse after the last ')'.
pub(crate) fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start = f.nth(18)?.parse().ok()?;
    Some((state, start))
}

pub(crate) fn stat(pid: i32) -> io::Result<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&s).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unparsable /proc/{pid}/stat"),
        )
    })
}

pub(crate) fn start_time(pid: i32) -> io::Result<u64> {
    stat(pid).map(|(_, t)| t)
}

/// Same process (pid + start time) and not a zombie.
pub(crate) fn is_same_live_process(pid: i32, start: u64) -> bool {
    matches!(stat(pid), Ok((state, t)) if t == start && state != 'Z' && state != 'X')
}

/// A pidfd for `pid` if it is still the process that started at `start` (zombies included:
/// a zombie's pid cannot be reused until it is reaped). `start == 0` skips the check.
pub(crate) fn open_verified_pidfd(pid: i32, start: u64) -> io::Result<Option<OwnedFd>> {
    if pid <= 0 {
        return Ok(None);
    }
    let fd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(e),
    };
    // Checked after opening: if the pid was recycled before pidfd_open, the start time differs;
    // if our process died after it, the pidfd still refers to it (and reports it exited).
    if start != 0 {
        match start_time(pid) {
            Ok(t) if t == start => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        assert_eq!(parse_stat(s), Some(('S', 987654)));
    }

    #[test]
    fn own_process() {
        let me = sys::getpid();
        let t = start_time(me).unwrap();
        assert!(is_same_live_process(me, t));
        assert!(!is_same_live_process(me, t + 1));
        assert!(open_verified_pidfd(me, t).unwrap().is_some());
        assert!(open_verified_pidfd(me, t + 1).unwrap().is_none());
    }
}
