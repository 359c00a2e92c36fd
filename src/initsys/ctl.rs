//! The control protocol between the instance's tools (`systemctl`, `service`, the boot stage)
//! and PID 1: one JSON request line on a stream socket at [`SOCKET`], one JSON response, then
//! the connection closes. Verbs that wait for jobs (start, stop, restart, reload, the boot)
//! answer when their jobs finished. Only the instance's root may change state (`SO_PEERCRED`).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

/// The control socket inside the instance.
pub const SOCKET: &str = "/run/ec2lab/init.sock";

/// A job verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    TryRestart,
    Reload,
    ReloadOrRestart,
}

impl Verb {
    pub fn word(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::TryRestart => "try-restart",
            Verb::Reload => "reload",
            Verb::ReloadOrRestart => "reload-or-restart",
        }
    }
}

/// What the instance asks PID 1 for power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Power {
    Poweroff,
    Halt,
    Reboot,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Job {
        verb: Verb,
        units: Vec<String>,
        no_block: bool,
    },
    /// The boot stage: start everything enabled, in order, and answer when done.
    Boot,
    Status {
        units: Vec<String>,
    },
    IsActive {
        units: Vec<String>,
    },
    IsFailed {
        units: Vec<String>,
    },
    ListUnits {
        all: bool,
        types: Vec<String>,
        states: Vec<String>,
        legend: bool,
    },
    Show {
        units: Vec<String>,
        props: Vec<String>,
    },
    DaemonReload,
    ResetFailed {
        units: Vec<String>,
    },
    Power(Power),
}

/// One response: what to print and the exit code; `units` are the names the request resolved
/// to (so `systemctl status` can add the journal's last lines).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub code: i32,
    pub out: String,
    pub err: String,
    #[serde(default)]
    pub units: Vec<String>,
}

impl Response {
    pub fn fail(code: i32, err: impl Into<String>) -> Response {
        Response {
            code,
            err: err.into(),
            ..Response::default()
        }
    }
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("failed to connect to the service manager at {SOCKET}: {0}")]
    Connect(std::io::Error),
    #[error("the service manager did not answer: {0}")]
    Io(std::io::Error),
    #[error("the service manager answered something unreadable: {0}")]
    Decode(serde_json::Error),
}

/// Sends `req` to PID 1 and waits for the answer.
pub fn call(req: &Request) -> Result<Response, CtlError> {
    call_at(std::path::Path::new(SOCKET), req)
}

/// Writes all of `buf` with `MSG_NOSIGNAL`: the tools run with SIGPIPE's default action (so
/// `systemctl status | head` ends quietly, as systemd's does), and PID 1 closing the socket
/// must be an error here, not a signal.
fn send_all(s: &UnixStream, mut buf: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        // SAFETY: send on a connected socket we own, from a valid buffer of that length.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

pub fn call_at(path: &std::path::Path, req: &Request) -> Result<Response, CtlError> {
    let s = UnixStream::connect(path).map_err(CtlError::Connect)?;
    let mut line = serde_json::to_string(req).map_err(CtlError::Decode)?;
    line.push('\n');
    send_all(&s, line.as_bytes()).map_err(CtlError::Io)?;
    let mut r = BufReader::new(s);
    let mut ans = String::new();
    r.read_line(&mut ans).map_err(CtlError::Io)?;
    if ans.is_empty() {
        return Err(CtlError::Io(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
    }
    serde_json::from_str(&ans).map_err(CtlError::Decode)
}
