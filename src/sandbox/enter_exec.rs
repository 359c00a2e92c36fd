//! Step 6 of entering an instance, in the forked child (of `__enter`, or of the session
//! helper): setsid (+TIOCSCTTY), seccomp filter, fd limit, the instance's capability set,
//! groups/gid/uid, cwd = home, login environment, exec with a PATH search (127 = not found,
//! 126 = found but not executable, 125 = a step before failed).

use std::io;
use std::os::fd::AsRawFd;

use super::enter::{EXIT_ENTER_FAILED, EnterSpec, Tty, stdin_fd};
use super::passwd::User;
use super::{caps, seccomp, sys};

const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// The login environment, then the caller's variables on top.
fn build_env(spec: &EnterSpec, user: &User) -> Vec<(String, String)> {
    let path = if user.uid == 0 { ROOT_PATH } else { USER_PATH };
    let mut env: Vec<(String, String)> = [
        ("HOME", user.home.as_str()),
        ("USER", user.name.as_str()),
        ("LOGNAME", user.name.as_str()),
        ("SHELL", user.shell.as_str()),
        ("PATH", path),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if spec.tty {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    for (k, v) in &spec.env {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// argv for exec: the login shell (`-bash`) when empty.
fn command_argv(spec: &EnterSpec, user: &User) -> (String, Vec<String>) {
    if spec.argv.is_empty() {
        let base = user.shell.rsplit('/').next().unwrap_or("sh");
        (user.shell.clone(), vec![format!("-{base}")])
    } else {
        (spec.argv[0].clone(), spec.argv.clone())
    }
}

pub(super) fn exec_child(spec: &EnterSpec, user: &User, tty: Tty, last_cap: u32) -> ! {
    sys::reset_signals();
    let die = |what: &str, e: io::Error| -> ! {
        eprintln!("ec2lab exec: {what}: {e}");
        sys::exit_now(EXIT_ENTER_FAILED)
    };
    if let Err(e) = sys::setsid() {
        die("setsid", e);
    }
    match tty {
        Tty::None => {}
        Tty::Direct => {
            if let Err(e) = sys::ioctl_int(stdin_fd(), libc::TIOCSCTTY, 0) {
                eprintln!("ec2lab exec: no controlling terminal: {e}");
            }
        }
        Tty::Relay(master, slave) => {
            drop(master);
            for fd in 0..3 {
                if let Err(e) = sys::dup2(slave.as_raw_fd(), fd) {
                    die("attach pty", e);
                }
            }
            drop(slave);
            if let Err(e) = sys::ioctl_int(stdin_fd(), libc::TIOCSCTTY, 0) {
                die("set controlling terminal", e);
            }
        }
    }
    if let Err(e) = sys::close_fds_except(&[]) {
        die("close fds", e);
    }
    // As in PID 1: the seccomp filter while CAP_SYS_ADMIN is still held, the instance's fd
    // limit, then the instance's capability set.
    if let Err(e) = seccomp::install(&seccomp::Policy::instance()) {
        die("install seccomp filter", e);
    }
    if let Err(e) = super::launch::set_fd_limit() {
        die("set RLIMIT_NOFILE", e);
    }
    if let Err(e) = caps::drop_to_instance_set(last_cap) {
        die("drop capabilities", e);
    }
    if let Err(e) = sys::setgroups(&user.groups)
        .and_then(|_| sys::setresgid(user.gid))
        .and_then(|_| sys::setresuid(user.uid))
    {
        die(&format!("become {} (uid {})", user.name, user.uid), e);
    }
    let home = sys::cstring(&user.home).unwrap_or_else(|_| c"/".into());
    if sys::chdir(&home).is_err() {
        let _ = sys::chdir(c"/");
    }
    sys::umask(0o022);
    let env = build_env(spec, user);
    let (prog, argv) = command_argv(spec, user);
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(USER_PATH.to_string(), |(_, v)| v.clone());
    let (code, err) = exec_search(&prog, &argv, &env, &path);
    eprintln!("ec2lab exec: {prog}: {err}");
    sys::exit_now(code)
}

/// execve with a PATH search like execvp. Returns (exit code, error) on failure: 127 when
/// nothing was found, 126 when something was found but could not be executed.
fn exec_search(
    prog: &str,
    argv: &[String],
    env: &[(String, String)],
    path: &str,
) -> (i32, io::Error) {
    let cargv: Result<Vec<_>, _> = argv.iter().map(sys::cstring).collect();
    let cenv: Result<Vec<_>, _> = env
        .iter()
        .map(|(k, v)| sys::cstring(format!("{k}={v}")))
        .collect();
    let (Ok(cargv), Ok(cenv)) = (cargv, cenv) else {
        return (
            EXIT_ENTER_FAILED,
            io::Error::new(io::ErrorKind::InvalidInput, "argument contains a nul byte"),
        );
    };
    let candidates: Vec<String> = if prog.contains('/') {
        vec![prog.to_string()]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{prog}", d.trim_end_matches('/')))
            .collect()
    };
    let mut found: Option<io::Error> = None;
    for c in candidates {
        let Ok(cpath) = sys::cstring(&c) else {
            continue;
        };
        let e = sys::execve(&cpath, &cargv, &cenv);
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
            _ => found = found.or(Some(e)),
        }
    }
    match found {
        Some(e) => (126, e),
        None => (
            127,
            io::Error::new(io::ErrorKind::NotFound, "command not found"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            name: "ec2-user".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/ec2-user".into(),
            shell: "/bin/bash".into(),
            groups: vec![1000, 10],
        }
    }

    fn spec(argv: &[&str]) -> EnterSpec {
        EnterSpec {
            init_pid: 1,
            start_time: 0,
            user: "ec2-user".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            tty: false,
        }
    }

    #[test]
    fn login_shell_argv() {
        assert_eq!(
            command_argv(&spec(&[]), &user()),
            ("/bin/bash".to_string(), vec!["-bash".to_string()])
        );
        assert_eq!(
            command_argv(&spec(&["ls", "-l"]), &user()),
            ("ls".to_string(), vec!["ls".to_string(), "-l".to_string()])
        );
    }

    #[test]
    fn env_overrides() {
        let mut s = spec(&[]);
        s.tty = true;
        s.env = vec![
            ("TERM".into(), "vt100".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        let env = build_env(&s, &user());
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/home/ec2-user"));
        assert_eq!(get("USER"), Some("ec2-user"));
        assert_eq!(get("TERM"), Some("vt100"));
        assert_eq!(get("LANG"), Some("C.UTF-8"));
        assert_eq!(get("PATH"), Some(USER_PATH));
        assert_eq!(env.iter().filter(|(k, _)| k == "TERM").count(), 1);
    }
}
