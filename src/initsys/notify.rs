//! `NOTIFY_SOCKET`: the datagram socket services of `Type=notify` report to (`READY=1`,
//! `MAINPID=`, `STATUS=`), with the sender's pid from `SCM_CREDENTIALS`; and the sending side
//! for the lab's own `systemd-notify`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

/// The socket inside the instance (where systemd has it).
pub const NOTIFY_SOCKET: &str = "/run/systemd/notify";

/// Binds the notify socket (non-blocking, credentials passed).
pub fn bind(path: &str) -> io::Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    if let Some(d) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(d)?;
    }
    let s = UnixDatagram::bind(path)?;
    s.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: valid socket and option buffer of the stated size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(s))
}

/// One message: the sender's pid (0 if unknown) and the text. `None` when nothing is queued.
pub fn recv(fd: &OwnedFd) -> Option<(i32, String)> {
    let mut buf = [0u8; 4096];
    // Room for one SCM_CREDENTIALS message.
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is valid; we fill the pointers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers of the given sizes.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return None;
    }
    let mut pid = 0;
    // SAFETY: walking the control messages the kernel wrote into cbuf, with the CMSG macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                pid = cred.pid;
            } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                // Descriptors sent along (FDSTORE=1) are not kept: close them.
                let fd: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                drop(OwnedFd::from_raw_fd(fd));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((
        pid,
        String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
    ))
}

/// Sends `text` to `$NOTIFY_SOCKET` (what `systemd-notify` does).
pub fn send(text: &str) -> io::Result<()> {
    let path = std::env::var("NOTIFY_SOCKET")
        .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "NOTIFY_SOCKET is not set"))?;
    let s = UnixDatagram::unbound()?;
    s.send_to(text.as_bytes(), path)?;
    Ok(())
}
