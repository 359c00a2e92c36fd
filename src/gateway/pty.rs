//! Terminals for SSH sessions: a pty pair from the instance's own devpts (opened through
//! `/proc/<init>/root/dev/ptmx`, so the command sees `/dev/pts/N` of its instance), the client's
//! terminal modes and window size applied to it, and the master as a non-blocking tokio stream.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use russh::Pty;
use tokio::io::unix::AsyncFd;

use super::instance_fs::same_process;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A pty pair of the instance: (master, slave, slave's number in /dev/pts).
pub fn open(init_pid: i32, start_time: u64) -> io::Result<(OwnedFd, OwnedFd, u32)> {
    let gone = || io::Error::new(io::ErrorKind::NotFound, "instance is not running");
    if !same_process(init_pid, start_time) {
        return Err(gone());
    }
    let path = std::ffi::CString::new(format!("/proc/{init_pid}/root/dev/ptmx")).expect("no nul");
    // SAFETY: valid path; on success we own the descriptor.
    let m = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    })?;
    // SAFETY: fresh descriptor from open(2).
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int that outlives the call.
    cvt(unsafe { libc::ioctl(m, libc::TIOCSPTLCK, &unlock) })?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    cvt(unsafe { libc::ioctl(m, libc::TIOCGPTN, &mut n) })?;
    // SAFETY: TIOCGPTPEER returns a new descriptor that we own.
    let s = cvt(unsafe {
        libc::ioctl(
            m,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh descriptor.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    if !same_process(init_pid, start_time) {
        return Err(gone());
    }
    Ok((master, slave, n))
}

/// Gives the terminal to the user who logged in, as sshd does: owner the user, group `tty`
/// (both ids inside the instance), mode 0620 — in host ids, through the instance's uid_map /
/// gid_map (the session helper, inside the user namespace, could not).
pub fn give_to(init_pid: i32, slave: BorrowedFd<'_>, uid: u32, tty_gid: u32) -> io::Result<()> {
    let map = |kind: &str| std::fs::read_to_string(format!("/proc/{init_pid}/{kind}"));
    let unmapped = || io::Error::other("id not mapped in the instance's user namespace");
    let host_uid = crate::sandbox::userns::to_host(&map("uid_map")?, uid).ok_or_else(unmapped)?;
    let host_gid =
        crate::sandbox::userns::to_host(&map("gid_map")?, tty_gid).ok_or_else(unmapped)?;
    // SAFETY: fchown/fchmod on a descriptor we hold.
    cvt(unsafe { libc::fchown(slave.as_raw_fd(), host_uid, host_gid) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fchmod(slave.as_raw_fd(), 0o620) })?;
    Ok(())
}

/// Sets the window size (on the master; the kernel signals the foreground group).
pub fn set_winsize(fd: RawFd, cols: u32, rows: u32, px_w: u32, px_h: u32) {
    let ws = libc::winsize {
        ws_row: rows.min(u16::MAX as u32) as u16,
        ws_col: cols.min(u16::MAX as u32) as u16,
        ws_xpixel: px_w.min(u16::MAX as u32) as u16,
        ws_ypixel: px_h.min(u16::MAX as u32) as u16,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Applies RFC 4254 terminal modes to the slave's termios.
pub fn apply_modes(slave: RawFd, modes: &[(Pty, u32)]) {
    // SAFETY: termios is plain data filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and termios.
    if unsafe { libc::tcgetattr(slave, &mut t) } != 0 {
        return;
    }
    for &(mode, value) in modes {
        let cc = |i: usize, t: &mut libc::termios| t.c_cc[i] = value as libc::cc_t;
        let flag = |f: &mut libc::tcflag_t, bit: libc::tcflag_t| {
            if value != 0 { *f |= bit } else { *f &= !bit }
        };
        match mode {
            Pty::VINTR => cc(libc::VINTR, &mut t),
            Pty::VQUIT => cc(libc::VQUIT, &mut t),
            Pty::VERASE => cc(libc::VERASE, &mut t),
            Pty::VKILL => cc(libc::VKILL, &mut t),
            Pty::VEOF => cc(libc::VEOF, &mut t),
            Pty::VEOL => cc(libc::VEOL, &mut t),
            Pty::VEOL2 => cc(libc::VEOL2, &mut t),
            Pty::VSTART => cc(libc::VSTART, &mut t),
            Pty::VSTOP => cc(libc::VSTOP, &mut t),
            Pty::VSUSP => cc(libc::VSUSP, &mut t),
            Pty::VREPRINT => cc(libc::VREPRINT, &mut t),
            Pty::VWERASE => cc(libc::VWERASE, &mut t),
            Pty::VLNEXT => cc(libc::VLNEXT, &mut t),
            Pty::VDISCARD => cc(libc::VDISCARD, &mut t),
            Pty::IGNPAR => flag(&mut t.c_iflag, libc::IGNPAR),
            Pty::PARMRK => flag(&mut t.c_iflag, libc::PARMRK),
            Pty::INPCK => flag(&mut t.c_iflag, libc::INPCK),
            Pty::ISTRIP => flag(&mut t.c_iflag, libc::ISTRIP),
            Pty::INLCR => flag(&mut t.c_iflag, libc::INLCR),
            Pty::IGNCR => flag(&mut t.c_iflag, libc::IGNCR),
            Pty::ICRNL => flag(&mut t.c_iflag, libc::ICRNL),
            Pty::IUCLC => flag(&mut t.c_iflag, libc::IUCLC),
            Pty::IXON => flag(&mut t.c_iflag, libc::IXON),
            Pty::IXANY => flag(&mut t.c_iflag, libc::IXANY),
            Pty::IXOFF => flag(&mut t.c_iflag, libc::IXOFF),
            Pty::IMAXBEL => flag(&mut t.c_iflag, libc::IMAXBEL),
            Pty::IUTF8 => flag(&mut t.c_iflag, libc::IUTF8),
            Pty::ISIG => flag(&mut t.c_lflag, libc::ISIG),
            Pty::ICANON => flag(&mut t.c_lflag, libc::ICANON),
            Pty::ECHO => flag(&mut t.c_lflag, libc::ECHO),
            Pty::ECHOE => flag(&mut t.c_lflag, libc::ECHOE),
            Pty::ECHOK => flag(&mut t.c_lflag, libc::ECHOK),
            Pty::ECHONL => flag(&mut t.c_lflag, libc::ECHONL),
            Pty::NOFLSH => flag(&mut t.c_lflag, libc::NOFLSH),
            Pty::TOSTOP => flag(&mut t.c_lflag, libc::TOSTOP),
            Pty::IEXTEN => flag(&mut t.c_lflag, libc::IEXTEN),
            Pty::ECHOCTL => flag(&mut t.c_lflag, libc::ECHOCTL),
            Pty::ECHOKE => flag(&mut t.c_lflag, libc::ECHOKE),
            Pty::PENDIN => flag(&mut t.c_lflag, libc::PENDIN),
            Pty::OPOST => flag(&mut t.c_oflag, libc::OPOST),
            Pty::OLCUC => flag(&mut t.c_oflag, libc::OLCUC),
            Pty::ONLCR => flag(&mut t.c_oflag, libc::ONLCR),
            Pty::OCRNL => flag(&mut t.c_oflag, libc::OCRNL),
            Pty::ONOCR => flag(&mut t.c_oflag, libc::ONOCR),
            Pty::ONLRET => flag(&mut t.c_oflag, libc::ONLRET),
            Pty::CS7 => flag(&mut t.c_cflag, libc::CS7),
            Pty::CS8 => flag(&mut t.c_cflag, libc::CS8),
            Pty::PARENB => flag(&mut t.c_cflag, libc::PARENB),
            Pty::PARODD => flag(&mut t.c_cflag, libc::PARODD),
            _ => {}
        }
    }
    // SAFETY: valid descriptor and termios.
    unsafe { libc::tcsetattr(slave, libc::TCSANOW, &t) };
}

/// The pty master as an async stream. Reads end (Ok(0)) on EIO: no slave is open any more.
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

impl Master {
    pub fn new(fd: OwnedFd) -> io::Result<Master> {
        // SAFETY: an OwnedFd keeps the same open descriptor for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Master { fd })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

impl Master {
    /// Reads some bytes; Ok(0) at EOF (EIO: no slave open any more).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                // SAFETY: reading into our buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| {
                // SAFETY: writing from our buffer.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}
