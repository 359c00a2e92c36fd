//! Starting one service process from PID 1: everything is prepared before `fork` (argv, the
//! environment, the user from the instance's passwd, the working directory), so the child
//! only does async-signal-safe calls.
//!
//! Child order: reset signal mask and dispositions → own session → stdin `/dev/null`,
//! stdout/stderr the journal pipe → oom_score_adj 0 → working directory → groups, gid, uid →
//! close every other descriptor → execve. A failure at any step writes one line to the journal
//! pipe and exits 203 (systemd's `EXEC` status), so the manager sees it as the process's exit.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sandbox::sys::{self, Fork};

/// systemd's exit status for "failed at step EXEC".
pub const EXIT_EXEC: i32 = 203;

/// The search path for services, as systemd's.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The user a process runs as.
#[derive(Debug, Clone)]
pub struct Ident {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A prepared process.
pub struct Prepared {
    exe: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: Option<CString>,
    ident: Option<Ident>,
}

/// Finds `exe` (absolute, or on [`PATH`]) as an executable file.
pub fn locate(exe: &str) -> Result<String, io::Error> {
    let ok = |p: &str| {
        let c = CString::new(p).ok()?;
        // SAFETY: valid C string.
        let r = unsafe { libc::access(c.as_ptr(), libc::X_OK) };
        (r == 0 && std::fs::metadata(p).is_ok_and(|m| m.is_file())).then(|| p.to_string())
    };
    if exe.starts_with('/') {
        return match std::fs::metadata(exe) {
            Err(e) => Err(e),
            Ok(_) => ok(exe).ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES)),
        };
    }
    PATH.split(':')
        .find_map(|d| ok(&format!("{d}/{exe}")))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

impl Prepared {
    pub fn new(
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
        ident: Option<Ident>,
    ) -> io::Result<Prepared> {
        let exe = locate(&argv[0])?;
        let c = |s: &str| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
        Ok(Prepared {
            exe: c(&exe)?,
            argv: argv.iter().map(|a| c(a)).collect::<io::Result<_>>()?,
            env: env
                .iter()
                .map(|(k, v)| c(&format!("{k}={v}")))
                .collect::<io::Result<_>>()?,
            cwd: cwd.map(c).transpose()?,
            ident,
        })
    }

    /// Forks and execs; `out` becomes stdout and stderr. Returns the child's pid.
    pub fn spawn(&self, out: &OwnedFd) -> io::Result<libc::pid_t> {
        let devnull = sys::open(c"/dev/null", libc::O_RDONLY, 0)?;
        match sys::fork()? {
            Fork::Parent { pid, .. } => Ok(pid),
            Fork::Child => {
                sys::reset_signals();
                let _ = sys::setsid();
                let outfd = out.as_raw_fd();
                let fail = |msg: &[u8]| -> ! {
                    let _ = sys::write_all_fd(outfd, msg);
                    sys::exit_now(EXIT_EXEC)
                };
                if sys::dup2(devnull.as_raw_fd(), 0).is_err()
                    || sys::dup2(outfd, 1).is_err()
                    || sys::dup2(outfd, 2).is_err()
                {
                    fail(b"Failed at step STDOUT\n");
                }
                if let Ok(f) = sys::open(c"/proc/self/oom_score_adj", libc::O_WRONLY, 0) {
                    let _ = sys::write_all_fd(f.as_raw_fd(), b"0");
                }
                if let Some(d) = &self.cwd
                    && sys::chdir(d).is_err()
                {
                    fail(b"Failed at step CHDIR spawning the process: No such file or directory\n");
                }
                if let Some(id) = &self.ident
                    && (sys::setgroups(&id.groups).is_err()
                        || sys::setresgid(id.gid).is_err()
                        || sys::setresuid(id.uid).is_err())
                {
                    fail(b"Failed at step USER spawning the process: Operation not permitted\n");
                }
                let _ = sys::close_range(3, u32::MAX);
                let e = sys::execve(&self.exe, &self.argv, &self.env);
                let msg = format!(
                    "Failed at step EXEC spawning {}: {e}\n",
                    self.exe.to_string_lossy()
                );
                fail(msg.as_bytes())
            }
        }
    }
}

/// A pipe for a process's output: `(read end for PID 1, non-blocking; write end)`.
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = sys::pipe_cloexec()?;
    sys::set_nonblocking(r.as_raw_fd())?;
    Ok((r, w))
}

/// Expands `$VAR` (a whole word, split on whitespace) and `${VAR}` (inline) in an argv.
pub fn expand(argv: &[String], env: &[(String, String)]) -> Vec<String> {
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let mut out = Vec::new();
    for a in argv {
        if let Some(name) = a.strip_prefix('$')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.extend(get(name).split_whitespace().map(str::to_string));
            continue;
        }
        let mut s = String::new();
        let mut rest = a.as_str();
        while let Some(i) = rest.find("${") {
            s.push_str(&rest[..i]);
            match rest[i + 2..].find('}') {
                Some(j) => {
                    s.push_str(get(&rest[i + 2..i + 2 + j]));
                    rest = &rest[i + 3 + j..];
                }
                None => {
                    s.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        s.push_str(rest);
        out.push(s.replace("$$", "$"));
    }
    out
}

/// `KEY=value` lines of an `EnvironmentFile=` (comments, `export`, quotes).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_as_systemd_does() {
        let env = vec![
            ("OPTS".to_string(), "-a -b".to_string()),
            ("PORT".to_string(), "8080".to_string()),
        ];
        let argv: Vec<String> = ["/bin/x", "$OPTS", "--port=${PORT}", "$$HOME"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            expand(&argv, &env),
            vec!["/bin/x", "-a", "-b", "--port=8080", "$HOME"]
        );
        assert_eq!(
            parse_env_file("# c\nexport A=1\nB=\"two words\"\n\nC='x'\n"),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into())
            ]
        );
    }
}
