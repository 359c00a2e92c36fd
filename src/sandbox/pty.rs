//! Terminals for entered commands: pty pairs from the instance's own devpts, and the relay
//! the `__enter` helper runs when the caller's terminal cannot be handed over (see `enter`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::passwd::User;
use super::sys::{self, WaitStatus};
use super::{Running, is_alive};

/// Opens a pty pair at `ptmx` (master, slave).
fn pty_at(ptmx: &std::ffi::CStr) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = sys::open(ptmx, libc::O_RDWR | libc::O_NOCTTY, 0)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int that outlives the call.
    sys::cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    let s = sys::ioctl_int(
        master.as_fd(),
        libc::TIOCGPTPEER,
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
    )?;
    // SAFETY: TIOCGPTPEER returned a fresh descriptor we own.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    Ok((master, slave))
}

/// A pty pair from the instance's own devpts, for the SSH gateway: `(master, slave)`. Hand the
/// slave to `enter_command` as stdin/stdout/stderr with `tty: true`; inside, the command sees
/// `/dev/pts/N` (so `tty`, `sudo`, `who` work) and the helper gives the slave to the user.
/// Only opens files (through `/proc/<pid>/root`), so it is fine on a runtime thread.
pub fn open_pty(r: &Running) -> io::Result<(OwnedFd, OwnedFd)> {
    let gone = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("instance init (pid {}) is not running", r.init_pid),
        )
    };
    if !is_alive(r) {
        return Err(gone());
    }
    let pair = pty_at(&sys::cstring(format!(
        "/proc/{}/root/dev/ptmx",
        r.init_pid
    ))?)?;
    // Checked again after opening: the pid cannot have been recycled in between unnoticed.
    if !is_alive(r) {
        return Err(gone());
    }
    Ok(pair)
}

/// A pty pair from the instance's devpts (we are in its mount namespace) for relaying.
pub(crate) fn open_pty_inside(user: &User, tty_gid: u32) -> io::Result<(OwnedFd, OwnedFd)> {
    let (master, slave) = pty_at(c"/dev/ptmx")?;
    give_tty(slave.as_fd(), user, tty_gid)?;
    copy_winsize(0, master.as_raw_fd());
    Ok((master, slave))
}

/// The terminal belongs to the user, group tty, mode 0620 — as sshd does.
pub(crate) fn give_tty(fd: BorrowedFd<'_>, user: &User, tty_gid: u32) -> io::Result<()> {
    sys::fchown(fd, user.uid, tty_gid)?;
    sys::fchmod(fd, 0o620)
}

/// Is `fd` a terminal of the instance's own devpts (made by `open_pty`)? Host terminals are
/// never chowned to an instance user.
pub(crate) fn is_instance_pty(fd: RawFd) -> bool {
    let dev = |st: io::Result<std::fs::Metadata>| {
        st.ok().map(|m| std::os::unix::fs::MetadataExt::dev(&m))
    };
    let fd_dev = {
        // SAFETY: fd is our stdin; ManuallyDrop keeps the File from closing it.
        let f =
            std::mem::ManuallyDrop::new(unsafe { <std::fs::File as FromRawFd>::from_raw_fd(fd) });
        dev(f.metadata())
    };
    fd_dev.is_some() && fd_dev == dev(std::fs::metadata("/dev/pts/ptmx"))
}

pub(crate) fn copy_winsize(from: RawFd, to: RawFd) {
    // SAFETY: zeroed winsize is plain data; the ioctls read/write exactly one winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Restores the caller's terminal mode when dropped.
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> Option<RawMode> {
        if !sys::isatty(fd) {
            return None;
        }
        // SAFETY: zeroed termios is plain data filled by tcgetattr; cfmakeraw edits a copy.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the termios we saved for this descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved) };
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into our buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Copies stdin → pty master and master → stdout until the child exits.
pub(crate) fn relay(master: OwnedFd, child: libc::pid_t, sfd: BorrowedFd<'_>) -> WaitStatus {
    let m = master.as_raw_fd();
    let _raw = RawMode::enter(0);
    let stdin_is_tty = sys::isatty(0);
    let _ = sys::set_nonblocking(m);
    let mut pending: Vec<u8> = Vec::new();
    let (mut stdin_open, mut master_open) = (true, true);
    let mut buf = vec![0u8; 16 * 1024];
    let mut status = None;
    loop {
        if let Some(st) = status {
            // Drain what the child left in the pty, then leave (background processes that
            // still hold the terminal do not keep us here).
            while let Ok(n) = read_fd(m, &mut buf) {
                if n == 0 || sys::write_all_fd(1, &buf[..n]).is_err() {
                    break;
                }
            }
            return st;
        }
        let mut pfds = vec![libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let stdin_slot = (stdin_open && pending.is_empty()).then(|| {
            pfds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
            pfds.len() - 1
        });
        let master_slot = master_open.then(|| {
            let ev = libc::POLLIN | if pending.is_empty() { 0 } else { libc::POLLOUT };
            pfds.push(libc::pollfd {
                fd: m,
                events: ev,
                revents: 0,
            });
            pfds.len() - 1
        });
        // SAFETY: valid pollfd array of the given length.
        if unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) } < 0 {
            continue;
        }
        if pfds[0].revents != 0 {
            status = super::enter::handle_signals(sfd, child, Some(m));
        }
        if let Some(i) = stdin_slot
            && pfds[i].revents != 0
        {
            match read_fd(0, &mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    if !stdin_is_tty {
                        pending.push(4); // ^D: end of input for the program on the pty
                    }
                }
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(_) => stdin_open = false,
            }
        }
        if let Some(i) = master_slot {
            let rev = pfds[i].revents;
            if rev & libc::POLLIN != 0 {
                match read_fd(m, &mut buf) {
                    Ok(0) => master_open = false,
                    Ok(n) => {
                        let _ = sys::write_all_fd(1, &buf[..n]);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                        ) => {}
                    Err(_) => master_open = false, // EIO: no slave left open
                }
            } else if rev & (libc::POLLHUP | libc::POLLERR) != 0 {
                master_open = false;
            }
            if rev & libc::POLLOUT != 0 && !pending.is_empty() {
                // SAFETY: writing from our buffer.
                let n = unsafe { libc::write(m, pending.as_ptr().cast(), pending.len()) };
                if n > 0 {
                    pending.drain(..n as usize);
                }
            }
        }
        if !master_open {
            pending.clear();
        }
    }
}
