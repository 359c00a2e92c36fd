//! Where boot output goes, and running scripts and commands as cloud-init does.
//!
//! Every line for the user (banners, script output, warnings, the final message) is appended to
//! `/var/log/cloud-init-output.log` and written to the console; short diagnostic lines go to
//! `/var/log/cloud-init.log`. A child process writes straight into the output log (an append
//! file, never a pipe, so a daemon the script leaves running cannot block the boot or die of
//! SIGPIPE later), and while the child runs its new log bytes are copied to the console.
//! A script whose `#!` interpreter the image lacks is not started: the warning names the
//! interpreter (exec alone would only say "No such file or directory", as if the script were).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::userdata::UserDataError;

/// `PATH` for everything user data runs.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The boot's output sinks.
pub struct Out<'a> {
    pub root: PathBuf,
    console: &'a mut dyn Write,
    output_log: PathBuf,
    init_log: PathBuf,
}

impl<'a> Out<'a> {
    /// Opens (creates) the two log files under `root`.
    pub fn new(root: &Path, console: &'a mut dyn Write) -> Result<Self, UserDataError> {
        let dir = root.join("var/log");
        std::fs::create_dir_all(&dir).map_err(|e| UserDataError::io(&dir, e))?;
        let out = Out {
            root: root.to_path_buf(),
            console,
            output_log: dir.join("cloud-init-output.log"),
            init_log: dir.join("cloud-init.log"),
        };
        for (path, mode) in [(&out.output_log, 0o644), (&out.init_log, 0o640)] {
            open_append(path, mode).map_err(|e| UserDataError::io(path, e))?;
        }
        Ok(out)
    }

    /// A line for the user: console and output log.
    pub fn line(&mut self, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(b'\n');
        if let Ok(mut f) = open_append(&self.output_log, 0o644) {
            let _ = f.write_all(&bytes);
        }
        let _ = self.console.write_all(&bytes);
        let _ = self.console.flush();
    }

    /// A diagnostic line in `/var/log/cloud-init.log` only.
    pub fn info(&mut self, module: &str, msg: &str) {
        self.log_line(module, "INFO", msg);
    }

    /// A problem: in `cloud-init.log`, the output log and on the console.
    pub fn warn(&mut self, module: &str, msg: &str) {
        let line = self.log_line(module, "WARNING", msg);
        self.line(&line);
    }

    fn log_line(&mut self, module: &str, level: &str, msg: &str) -> String {
        let line = format!("{} - {module}[{level}]: {msg}", log_timestamp());
        if let Ok(mut f) = open_append(&self.init_log, 0o640) {
            let _ = writeln!(f, "{line}");
        }
        line
    }

    /// Runs a command to completion with its stdout/stderr in the output log and on the
    /// console; returns `None` (after a warning) when it could not start.
    pub fn run(&mut self, label: &str, mut cmd: Command) -> Option<ExitStatus> {
        let _ = self.console.flush();
        if let Some(why) = missing_interpreter(Path::new(cmd.get_program())) {
            self.warn("util", &format!("cannot run {label}: {why}"));
            return None;
        }
        let log = match open_append(&self.output_log, 0o644) {
            Ok(f) => f,
            Err(e) => {
                self.warn(
                    "util",
                    &format!("cannot open the output log for {label}: {e}"),
                );
                return None;
            }
        };
        let start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let child = log.try_clone().and_then(|err| {
            // stdin: a pipe closed at once (EOF), so nothing depends on /dev/null.
            cmd.stdin(Stdio::piped())
                .stdout(log)
                .stderr(err)
                .current_dir(&self.root)
                .spawn()
        });
        let mut child = match child {
            Ok(mut c) => {
                drop(c.stdin.take());
                c
            }
            Err(e) => {
                self.warn("util", &format!("failed running {label}: {e}"));
                return None;
            }
        };
        let mut reader = File::open(&self.output_log).ok();
        if let Some(r) = reader.as_mut() {
            let _ = r.seek(SeekFrom::Start(start));
        }
        let mut pause = Duration::from_millis(2);
        loop {
            let done = child.try_wait();
            if let Some(r) = reader.as_mut() {
                let _ = copy_available(r, &mut *self.console);
            }
            match done {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => {
                    self.warn("util", &format!("cannot wait for {label}: {e}"));
                    return None;
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Runs a script or command and warns when it fails; `true` on success.
    pub fn run_checked(&mut self, module: &str, label: &str, cmd: Command) -> bool {
        match self.run(label, cmd) {
            Some(status) if status.success() => true,
            Some(status) => {
                let code = status
                    .code()
                    .map(|c| format!("exit status {c}"))
                    .unwrap_or_else(|| format!("{status}"));
                self.warn(module, &format!("{label} failed with {code}"));
                false
            }
            None => false,
        }
    }
}

fn copy_available(reader: &mut File, console: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return console.flush();
        }
        console.write_all(&buf[..n])?;
    }
}

fn open_append(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)
}

/// A command with the clean environment user data runs in.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("PATH", PATH).env("HOME", "/root");
    cmd
}

/// Runs an executable script file; falls back to `sh FILE` when it has no `#!` line.
pub fn script_command(path: &Path) -> Command {
    let has_shebang = std::fs::read(path)
        .map(|b| b.starts_with(b"#!"))
        .unwrap_or(true);
    if has_shebang {
        command(path)
    } else {
        let mut cmd = command("sh");
        cmd.arg(path);
        cmd
    }
}

/// Why the script at `path` cannot start, when its `#!` line names an interpreter this image
/// does not have: the interpreter itself, or the program `#!/usr/bin/env NAME` would look up
/// in [`PATH`]. `None` for anything else (no `#!`, a relative program, an unreadable file).
pub fn missing_interpreter(path: &Path) -> Option<String> {
    if !path.is_absolute() {
        return None;
    }
    let mut head = [0u8; 256];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let interp = words.next()?;
    let hint = "start it with #!/bin/sh, or use an image that has it";
    if !Path::new(interp).exists() {
        return Some(format!(
            "its #! interpreter {interp} is not in this image ({hint})"
        ));
    }
    if Path::new(interp).file_name() == Some("env".as_ref()) {
        let name = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
        let found = name.contains('/')
            || PATH
                .split(':')
                .any(|dir| Path::new(dir).join(name).is_file());
        if !found {
            return Some(format!(
                "its #! line runs {name} through {interp}, and {name} is not in this image's \
                 PATH ({hint})"
            ));
        }
    }
    None
}

/// `2026-11-22 03:14:00,123` in UTC, cloud-init's log timestamp.
pub fn log_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

/// RFC 2822 time, as cloud-init's banners and final message print it.
pub fn rfc2822_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

/// Seconds since the instance's PID 1 started (the instance's "boot"), from `/proc`.
pub fn uptime_seconds() -> f64 {
    let host_uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let started = std::fs::read_to_string("/proc/1/stat").ok().and_then(|s| {
        // Fields after the parenthesised command name; starttime is field 22 overall.
        let rest = &s[s.rfind(')')? + 2..];
        rest.split_whitespace().nth(19)?.parse::<f64>().ok()
    });
    match started {
        Some(start) if ticks > 0 => (host_uptime - start / ticks as f64).max(0.0),
        _ => host_uptime,
    }
}

#[cfg(test)]
mod tests {
    use super::missing_interpreter;

    fn script(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-001");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn names_the_missing_interpreter() {
        let (_d, p) = script("#!/no/such/bash -e\necho hi\n");
        let why = missing_interpreter(&p).unwrap();
        assert!(why.contains("/no/such/bash is not in this image"), "{why}");
        let (_d, p) = script("#!/usr/bin/env no-such-shell-xyz\necho hi\n");
        let why = missing_interpreter(&p).unwrap();
        assert!(
            why.contains("runs no-such-shell-xyz through /usr/bin/env"),
            "{why}"
        );
    }

    #[test]
    fn present_interpreters_and_plain_files_pass() {
        for text in [
            "#!/bin/sh\necho hi\n",
            "#!/usr/bin/env sh\n",
            "echo no shebang\n",
        ] {
            let (_d, p) = script(text);
            assert_eq!(missing_interpreter(&p), None, "{text}");
        }
        assert_eq!(missing_interpreter("sh".as_ref()), None);
    }
}
