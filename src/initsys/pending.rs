//! Control connections that have not yet sent their request line. PID 1 never blocks on one:
//! an accepted connection is made non-blocking and kept here, its bytes are read whenever
//! `poll` says so, and its request is handled once the line is whole. A client that sends
//! nothing is dropped after [`REQUEST_TIMEOUT`]; past [`MAX_PENDING`] the oldest gives way. So a
//! user who opens connections and stays silent cannot stall the service manager.
//!
//! Order: `accept` (listener readable: every waiting connection, non-blocking) → `pollfds`
//! (each pending connection polled for input) → `take_ready` (read what is there; a whole line
//! → the stream, blocking again, and the line for the manager; EOF, an error, a line too long
//! or the deadline → dropped) → `next_deadline` (PID 1 wakes to drop the silent ones).

use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// How long a client has to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections waiting for their request line at once.
pub const MAX_PENDING: usize = 64;
/// The longest request line.
const MAX_LINE: usize = 1 << 16;

struct Pending {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
}

#[derive(Default)]
pub(crate) struct PendingRequests(Vec<Pending>);

impl PendingRequests {
    /// Takes every connection waiting on the listener.
    pub fn accept(&mut self, listener: &UnixListener) {
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.0.len() >= MAX_PENDING {
                self.0.remove(0);
            }
            self.0.push(Pending {
                stream,
                buf: Vec::new(),
                deadline: Instant::now() + REQUEST_TIMEOUT,
            });
        }
    }

    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().map(|p| p.stream.as_raw_fd())
    }

    /// Reads what the pending connections sent; returns those whose line is whole (the
    /// stream blocking again, the line without its newline) and drops the dead and the late.
    pub fn take_ready(&mut self) -> Vec<(UnixStream, String)> {
        let now = Instant::now();
        let mut done = Vec::new();
        let mut keep = Vec::new();
        for mut p in self.0.drain(..) {
            let mut chunk = [0u8; 4096];
            let alive = loop {
                match p.stream.read(&mut chunk) {
                    Ok(0) => break false,
                    Ok(n) => {
                        p.buf.extend_from_slice(&chunk[..n]);
                        if p.buf.contains(&b'\n') || p.buf.len() > MAX_LINE {
                            break true;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break false,
                }
            };
            if let Some(end) = p.buf.iter().position(|b| *b == b'\n') {
                if end < MAX_LINE && p.stream.set_nonblocking(false).is_ok() {
                    let line = String::from_utf8_lossy(&p.buf[..end]).into_owned();
                    done.push((p.stream, line));
                }
            } else if alive && p.buf.len() <= MAX_LINE && now < p.deadline {
                keep.push(p);
            }
        }
        self.0 = keep;
        done
    }

    /// When the oldest silent connection is to be dropped.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.0.iter().map(|p| p.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_silent_client_does_not_hold_up_one_that_speaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        let _silent = UnixStream::connect(&path).unwrap();
        let mut half = UnixStream::connect(&path).unwrap();
        let mut speaks = UnixStream::connect(&path).unwrap();
        let mut p = PendingRequests::default();
        p.accept(&l);
        assert_eq!(p.fds().count(), 3);
        half.write_all(b"{\"par").unwrap();
        speaks.write_all(b"{\"verb\":1}\n").unwrap();
        let t = Instant::now();
        let ready = p.take_ready();
        assert!(t.elapsed() < Duration::from_millis(500), "a read blocked");
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].1, "{\"verb\":1}");
        assert_eq!(p.fds().count(), 2, "the silent and the half line wait");
        half.write_all(b"tial\"}\n").unwrap();
        assert_eq!(p.take_ready()[0].1, "{\"partial\"}");
        drop(half);
        assert!(p.next_deadline().is_some());
    }
}
