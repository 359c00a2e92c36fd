//! The byte paths of a session: the command's stdio (a terminal, or three pipes grown to
//! 1 MiB so a fast `cat` is not stalled every 64 KiB) and the pumps that carry its output to
//! the channel (stdout as data, stderr as extended data 1, the terminal as data).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use russh::ChannelWriteHalf;
use russh::server::Msg;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::pty;
use super::timeline::Timeline;
use crate::sandbox::fdpass;

/// Our ends of a command's stdio.
pub(crate) enum Ours {
    Pty(OwnedFd),
    Pipes {
        stdin: OwnedFd,
        out: OwnedFd,
        err: OwnedFd,
    },
}

/// Pipes carry this much between the command and the channel (the SSH window is larger; a
/// 64 KiB default pipe stalls a fast `cat` every few packets).
const PIPE_BYTES: usize = 1 << 20;

/// The command's stdin/stdout/stderr, and ours.
pub(crate) fn stdio(tty: Option<(OwnedFd, OwnedFd)>) -> std::io::Result<([OwnedFd; 3], Ours)> {
    if let Some((master, slave)) = tty {
        let (a, b) = (slave.try_clone()?, slave.try_clone()?);
        return Ok(([slave, a, b], Ours::Pty(master)));
    }
    let (in_r, in_w) = fdpass::pipe()?;
    let (out_r, out_w) = fdpass::pipe()?;
    let (err_r, err_w) = fdpass::pipe()?;
    fdpass::grow_pipe(in_w.as_fd(), PIPE_BYTES);
    fdpass::grow_pipe(out_w.as_fd(), PIPE_BYTES);
    Ok((
        [in_r, out_w, err_w],
        Ours::Pipes {
            stdin: in_w,
            out: out_r,
            err: err_r,
        },
    ))
}

pub(crate) async fn pump<R: AsyncRead + Unpin>(
    mut r: R,
    wr: Arc<ChannelWriteHalf<Msg>>,
    ext: Option<u32>,
    timeline: Timeline,
) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut first = true;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if std::mem::take(&mut first) {
            timeline.mark("first byte");
        }
        let data = buf[..n].to_vec();
        let sent = match ext {
            None => wr.data_bytes(data).await,
            Some(e) => wr.extended_data_bytes(e, data).await,
        };
        if sent.is_err() {
            // The client is gone: keep reading so the command is not blocked on a full pipe.
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
            return;
        }
    }
}

pub(crate) async fn pump_pty(m: Arc<pty::Master>, wr: Arc<ChannelWriteHalf<Msg>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match m.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if wr.data_bytes(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        }
    }
}
