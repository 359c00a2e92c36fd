//! One session channel, owned by one task: it collects `pty-req` and `env`, starts the command
//! inside the instance on `shell`/`exec`/`subsystem sftp` through the instance's session
//! helper (`helper.rs`; as the logged-in user, login environment from the instance's passwd),
//! relays stdin, window changes and signals (over the session socket), and when the helper
//! reports the command's end sends its output first, then exit-status (or exit-signal), EOF
//! and close.
//!
//! The channel is always read (a kept russh `Channel` that is not read stalls the whole
//! connection); writes into the command's stdin happen in that same loop, so a command that
//! does not read its input pushes back on the client through the SSH window.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelWriteHalf, Pty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::RouteCtx;
use super::handler::{Login, env_allowed};
use super::instance_fs::InstanceRoot;
use super::pty;
use super::session_io::{Ours, pump, pump_pty, stdio};
use super::signals::{signal_name, signal_number};
use super::timeline::Timeline;
use crate::sandbox::{EXIT_ENTER_FAILED, EnterSpec, SessionRequest, WaitStatus, decode_status};

/// Where OpenSSH's sftp-server lives on common images.
const SFTP_SERVERS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/sftp-server",
];

pub(crate) struct SessionCtx {
    pub ctx: Arc<RouteCtx>,
    pub login: Arc<Login>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub handle: Handle,
    pub timeline: Timeline,
}

struct PtyReq {
    term: String,
    cols: u32,
    rows: u32,
    px_w: u32,
    px_h: u32,
    modes: Vec<(Pty, u32)>,
}

enum Kind {
    Shell,
    Exec(String),
    Sftp,
}

enum Input {
    Pipe(Option<tokio::net::unix::pipe::Sender>),
    Pty(Arc<pty::Master>),
}

/// A started command.
struct Started {
    /// The session socket to the helper: 4 bytes = a signal for the command.
    signals: tokio::net::unix::OwnedWriteHalf,
    input: Input,
}

impl Started {
    async fn write(&mut self, data: &[u8]) {
        match &mut self.input {
            Input::Pipe(stdin) => {
                if let Some(w) = stdin
                    && w.write_all(data).await.is_err()
                {
                    *stdin = None; // the command closed its input: discard the rest
                }
            }
            Input::Pty(m) => {
                let _ = m.write_all(data).await;
            }
        }
    }

    fn eof(&mut self) {
        if let Input::Pipe(stdin) = &mut self.input {
            *stdin = None;
        }
    }

    fn signal(&self, sig: i32) {
        // 4 bytes on an idle socket: never short (a helper that is gone has nothing to signal).
        let _ = self.signals.try_write(&sig.to_le_bytes());
    }
}

pub(crate) async fn run(s: SessionCtx, channel: Channel<Msg>) {
    let id = channel.id();
    let (mut rd, wr) = channel.split();
    let wr = Arc::new(wr);
    let mut pty_req: Option<PtyReq> = None;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut started: Option<Started> = None;
    while let Some(msg) = rd.wait().await {
        match msg {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            } if started.is_none() && !s.login.options.no_pty => {
                pty_req = Some(PtyReq {
                    term,
                    cols: col_width,
                    rows: row_height,
                    px_w: pix_width,
                    px_h: pix_height,
                    modes: terminal_modes,
                });
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } if started.is_none() && env_allowed(&variable_name) => {
                env.push((variable_name, variable_value));
            }
            ChannelMsg::RequestShell { .. } if started.is_none() => {
                started = start(&s, id, &wr, Kind::Shell, pty_req.take(), &env).await;
            }
            ChannelMsg::Exec { command, .. } if started.is_none() => {
                let cmd = String::from_utf8_lossy(&command).into_owned();
                started = start(&s, id, &wr, Kind::Exec(cmd), pty_req.take(), &env).await;
            }
            ChannelMsg::RequestSubsystem { name, .. } if started.is_none() && name == "sftp" => {
                started = start(&s, id, &wr, Kind::Sftp, pty_req.take(), &env).await;
            }
            ChannelMsg::Data { data } => {
                if let Some(p) = &mut started {
                    p.write(&data).await;
                }
            }
            ChannelMsg::Eof => {
                if let Some(p) = &mut started {
                    p.eof();
                }
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            } => {
                if let Some(Started {
                    input: Input::Pty(m),
                    ..
                }) = &started
                {
                    pty::set_winsize(m.raw(), col_width, row_height, pix_width, pix_height);
                }
            }
            ChannelMsg::Signal { signal } => {
                if let (Some(p), Some(sig)) = (&started, signal_number(&signal)) {
                    p.signal(sig);
                }
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    // The client closed the channel (or the connection is gone): hang up the command, as sshd
    // does when a session's connection drops.
    if let Some(p) = started {
        p.signal(libc::SIGHUP);
    }
}

/// The command line for a request, honouring a forced `command="…"` of the key.
fn argv_for(login: &Login, kind: &Kind, sftp_server: Option<&str>) -> Vec<String> {
    let shell = login.user.shell.clone();
    if let Some(forced) = &login.options.command {
        return vec![shell, "-c".into(), forced.clone()];
    }
    match kind {
        Kind::Shell => Vec::new(), // the login shell (`-bash`)
        Kind::Exec(cmd) => vec![shell, "-c".into(), cmd.clone()],
        Kind::Sftp => vec![sftp_server.unwrap_or("sftp-server").to_string()],
    }
}

fn banner_bytes(banner: &str, tty: bool) -> Vec<u8> {
    let mut text = banner.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if tty {
        text.replace('\n', "\r\n").into_bytes()
    } else {
        text.into_bytes()
    }
}

async fn fail(wr: &ChannelWriteHalf<Msg>, msg: String) -> Option<Started> {
    let _ = wr
        .extended_data_bytes(1, format!("ec2lab: {msg}\r\n").into_bytes())
        .await;
    let _ = wr.exit_status(EXIT_ENTER_FAILED as u32).await;
    let _ = wr.eof().await;
    let _ = wr.close().await;
    None
}

async fn start(
    s: &SessionCtx,
    id: russh::ChannelId,
    wr: &Arc<ChannelWriteHalf<Msg>>,
    kind: Kind,
    pty_req: Option<PtyReq>,
    client_env: &[(String, String)],
) -> Option<Started> {
    s.timeline.mark("request");
    let route = &s.ctx.route;
    let sftp_server = if matches!(kind, Kind::Sftp) && s.login.options.command.is_none() {
        let (pid, start) = (route.init_pid, route.start_time);
        let found = tokio::task::spawn_blocking(move || {
            let root = InstanceRoot::open(pid, start).ok()?;
            SFTP_SERVERS
                .iter()
                .find(|p| root.is_executable(p))
                .map(|p| p.to_string())
        })
        .await
        .ok()
        .flatten();
        if found.is_none() {
            return fail(wr, "no sftp-server in this instance".into()).await;
        }
        found
    } else {
        None
    };

    let mut env: Vec<(String, String)> = client_env.to_vec();
    env.push((
        "SSH_CONNECTION".into(),
        format!(
            "{} {} {} {}",
            s.peer.ip(),
            s.peer.port(),
            s.local.ip(),
            s.local.port()
        ),
    ));
    env.push((
        "SSH_CLIENT".into(),
        format!("{} {} {}", s.peer.ip(), s.peer.port(), s.local.port()),
    ));
    if s.login.options.command.is_some()
        && let Kind::Exec(cmd) = &kind
    {
        env.push(("SSH_ORIGINAL_COMMAND".into(), cmd.clone()));
    }

    // The terminal, if asked for: from the instance's devpts.
    let mut tty = None;
    if let Some(req) = &pty_req {
        match pty::open(route.init_pid, route.start_time) {
            Ok((master, slave, n)) => {
                pty::apply_modes(slave.as_raw_fd(), &req.modes);
                pty::set_winsize(master.as_raw_fd(), req.cols, req.rows, req.px_w, req.px_h);
                env.push(("TERM".into(), req.term.clone()));
                env.push(("SSH_TTY".into(), format!("/dev/pts/{n}")));
                tty = Some((master, slave));
            }
            Err(e) => return fail(wr, format!("cannot allocate a terminal: {e}")).await,
        }
    }

    let spec = EnterSpec {
        init_pid: route.init_pid,
        start_time: route.start_time,
        user: s.login.user.name.clone(),
        argv: argv_for(&s.login, &kind, sftp_server.as_deref()),
        env,
        tty: tty.is_some(),
    };
    if matches!(kind, Kind::Shell) && s.login.options.command.is_none() {
        let _ = wr
            .data_bytes(banner_bytes(&route.banner, tty.is_some()))
            .await;
    }

    // The command's stdio (a terminal, or three pipes with room for a full SSH window's worth
    // of packets) and our ends of it.
    let (theirs, ours) = match stdio(tty) {
        Ok(x) => x,
        Err(e) => return fail(wr, format!("cannot attach the command: {e}")).await,
    };
    let req = SessionRequest {
        spec,
        account: Some(s.login.account.clone()),
    };
    let (ctx, uid, tty_gid) = (s.ctx.clone(), s.login.user.uid, s.login.tty_gid);
    let handed = tokio::task::spawn_blocking(move || -> Result<_, String> {
        if req.spec.tty {
            pty::give_to(ctx.route.init_pid, theirs[0].as_fd(), uid, tty_gid)
                .map_err(|e| format!("cannot give the terminal to the user: {e}"))?;
        }
        let fds = [theirs[0].as_fd(), theirs[1].as_fd(), theirs[2].as_fd()];
        let sock = ctx
            .helper
            .start_session(&req, fds)
            .map_err(|e| format!("cannot start the session: {e}"))?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(sock)
    })
    .await;
    let sock = match handed {
        Ok(Ok(sock)) => sock,
        Ok(Err(msg)) => return fail(wr, msg).await,
        Err(e) => return fail(wr, format!("cannot start the session: {e}")).await,
    };
    let sock = match tokio::net::UnixStream::from_std(sock) {
        Ok(x) => x,
        Err(e) => return fail(wr, format!("cannot start the session: {e}")).await,
    };
    let (mut status_rd, status_wr) = sock.into_split();
    s.timeline.mark("started");

    let (input, pumps) = match ours {
        Ours::Pty(m) => {
            let m = match pty::Master::new(m) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    let _ = status_wr.try_write(&libc::SIGKILL.to_le_bytes());
                    return fail(wr, format!("cannot poll the terminal: {e}")).await;
                }
            };
            let pump = tokio::spawn(pump_pty(m.clone(), wr.clone()));
            (Input::Pty(m), vec![pump])
        }
        Ours::Pipes { stdin, out, err } => {
            let rx = |fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd);
            let mut pumps = Vec::new();
            if let Ok(o) = rx(out) {
                pumps.push(tokio::spawn(pump(o, wr.clone(), None, s.timeline.clone())));
            }
            if let Ok(e) = rx(err) {
                pumps.push(tokio::spawn(pump(
                    e,
                    wr.clone(),
                    Some(1),
                    s.timeline.clone(),
                )));
            }
            let stdin = tokio::net::unix::pipe::Sender::from_owned_fd(stdin).ok();
            (Input::Pipe(stdin), pumps)
        }
    };
    let is_pty = matches!(input, Input::Pty(_));
    let (wr2, handle, timeline) = (wr.clone(), s.handle.clone(), s.timeline.clone());
    tokio::spawn(async move {
        let mut word = [0u8; 8];
        let status = status_rd
            .read_exact(&mut word)
            .await
            .map(|_| decode_status(word));
        timeline.mark("exited");
        for p in pumps {
            if is_pty {
                // Background jobs may keep the terminal open: drain briefly, then stop.
                let abort = p.abort_handle();
                if tokio::time::timeout(Duration::from_millis(300), p)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            } else {
                let _ = p.await;
            }
        }
        match status {
            Ok(WaitStatus::Signaled(sig)) => {
                let _ = handle
                    .exit_signal_request(id, signal_name(sig), false, String::new(), String::new())
                    .await;
            }
            Ok(WaitStatus::Exited(code)) => {
                let _ = wr2.exit_status(code as u32).await;
            }
            Err(_) => {
                let _ = wr2.exit_status(255).await;
            }
        }
        timeline.mark("exit status sent");
        let _ = wr2.eof().await;
        let _ = wr2.close().await;
    });
    Some(Started {
        signals: status_wr,
        input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::authkeys::KeyOptions;
    use crate::gateway::instance_fs::InstanceUser;

    fn login(command: Option<&str>) -> Login {
        Login {
            user: InstanceUser {
                name: "ec2-user".into(),
                uid: 1000,
                home: "/home/ec2-user".into(),
                shell: "/bin/bash".into(),
            },
            options: KeyOptions {
                command: command.map(str::to_string),
                ..Default::default()
            },
            account: crate::sandbox::passwd::User {
                name: "ec2-user".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/ec2-user".into(),
                shell: "/bin/bash".into(),
                groups: vec![1000],
            },
            tty_gid: 5,
        }
    }

    #[test]
    fn argv_per_request() {
        let l = login(None);
        assert!(argv_for(&l, &Kind::Shell, None).is_empty());
        assert_eq!(
            argv_for(&l, &Kind::Exec("echo hi".into()), None),
            ["/bin/bash", "-c", "echo hi"]
        );
        assert_eq!(
            argv_for(&l, &Kind::Sftp, Some("/usr/lib/openssh/sftp-server")),
            ["/usr/lib/openssh/sftp-server"]
        );
        let forced = login(Some("echo no"));
        for k in [Kind::Shell, Kind::Exec("id".into()), Kind::Sftp] {
            assert_eq!(argv_for(&forced, &k, None), ["/bin/bash", "-c", "echo no"]);
        }
    }

    #[test]
    fn banner_line_endings() {
        assert_eq!(banner_bytes("a\nb", true), b"a\r\nb\r\n");
        assert_eq!(banner_bytes("a\n", false), b"a\n");
        assert!(banner_bytes("", false).is_empty());
    }
}
