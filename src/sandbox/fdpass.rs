//! Unix-socket plumbing of the session helper: socket pairs, and messages that carry
//! descriptors (SCM_RIGHTS). Every descriptor made or received here is close-on-exec.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::sys::cvt;

/// Most descriptors one message carries (stdin, stdout, stderr, the session's status socket).
pub const MAX_FDS: usize = 4;

/// A connected pair of `kind` (`SOCK_STREAM`, `SOCK_SEQPACKET`) unix sockets.
pub fn socketpair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: fresh descriptors that we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

const CMSG_SPACE: usize = 64; // ≥ CMSG_SPACE(MAX_FDS * sizeof(int)) on every Linux ABI

#[repr(C)]
union CmsgBuf {
    buf: [u8; CMSG_SPACE],
    _align: libc::cmsghdr,
}

/// Sends `data` with `fds` attached (one message on a SEQPACKET socket).
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = CmsgBuf {
        buf: [0; CMSG_SPACE],
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let len = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_* on a buffer of CMSG_SPACE bytes, which holds MAX_FDS descriptors;
        // the header and data written stay inside it.
        unsafe {
            msg.msg_control = cbuf.buf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = libc::CMSG_SPACE(len) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(len) as usize;
            let p = libc::CMSG_DATA(c) as *mut RawFd;
            for (i, fd) in fds.iter().enumerate() {
                p.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: msg is fully set up above.
        match cvt(unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } as i32) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Receives one message into `buf`: (bytes, descriptors). 0 bytes and no descriptors = the
/// peer closed its end.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf {
        buf: [0; CMSG_SPACE],
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the union's bytes are the control buffer.
    msg.msg_control = unsafe { cbuf.buf.as_mut_ptr() } as *mut libc::c_void;
    msg.msg_controllen = CMSG_SPACE;
    let n = loop {
        // SAFETY: msg is fully set up above.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match cvt(r as i32) {
            Ok(_) => break r as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into our buffer; SCM_RIGHTS data
    // are descriptors now owned by us.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let p = libc::CMSG_DATA(c) as *const RawFd;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(p.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("descriptors truncated"));
    }
    Ok((n, fds))
}

/// Waits up to `timeout` for `fd` to be readable (or closed).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    super::sys::poll_readable(fd, Some(timeout)).unwrap_or(false)
}

/// A pipe whose descriptors are both close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    super::sys::pipe_cloexec()
}

/// Grows a pipe's buffer (F_SETPIPE_SZ) up to `bytes`; best effort (capped by
/// /proc/sys/fs/pipe-max-size for unprivileged callers).
pub fn grow_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    // SAFETY: fcntl on a valid descriptor with an integer argument.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_cross_a_socket() {
        let (a, b) = socketpair(libc::SOCK_SEQPACKET).unwrap();
        let (r, w) = super::super::sys::pipe_cloexec().unwrap();
        send(a.as_fd(), b"hello", &[r.as_fd(), w.as_fd()]).unwrap();
        let mut buf = [0u8; 16];
        let (n, fds) = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 2);
        super::super::sys::write_all_fd(fds[1].as_raw_fd(), b"x").unwrap();
        let mut one = [0u8; 1];
        // SAFETY: reading one byte into a one-byte buffer.
        let got = unsafe { libc::read(r.as_raw_fd(), one.as_mut_ptr() as *mut _, 1) };
        assert_eq!((got, one[0]), (1, b'x'));
        drop(a);
        assert_eq!(recv(b.as_fd(), &mut buf).unwrap().0, 0);
    }
}
