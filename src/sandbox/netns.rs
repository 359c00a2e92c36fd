//! The instance's network namespace: loopback setup inside it (at launch). Sockets the daemon
//! makes inside it (front proxying, SSH port forwarding) come from `connector`.
//!
//! Loopback setup talks rtnetlink directly (no `ip` binary): one `RTM_NEWLINK` that sets `lo`
//! up — the kernel then adds 127.0.0.1/8 itself — and one `RTM_NEWADDR` per extra /32,
//! all sent in one datagram and each acknowledged.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::sys;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_HOST: u8 = 254;

fn push_hdr(buf: &mut Vec<u8>, len: u32, ty: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
}

/// The rtnetlink requests: set interface `ifindex` up, then add each address as /32.
/// Sequence numbers are 1..=n. Pure, so it is unit-tested byte for byte.
pub(crate) fn lo_requests(ifindex: u32, addrs: &[Ipv4Addr]) -> (Vec<u8>, u32) {
    let mut buf = Vec::new();
    // RTM_NEWLINK: nlmsghdr(16) + ifinfomsg(16)
    push_hdr(&mut buf, 32, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1);
    buf.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad, type
    buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    buf.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes()); // flags
    buf.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes()); // change mask
    let mut seq = 1;
    for a in addrs {
        seq += 1;
        // nlmsghdr(16) + ifaddrmsg(8) + 2 × rtattr(4 + 4)
        push_hdr(
            &mut buf,
            40,
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            seq,
        );
        let scope = if a.is_loopback() {
            RT_SCOPE_HOST
        } else {
            RT_SCOPE_UNIVERSE
        };
        buf.extend_from_slice(&[libc::AF_INET as u8, 32, 0, scope]);
        buf.extend_from_slice(&ifindex.to_ne_bytes());
        for ty in [IFA_LOCAL, IFA_ADDRESS] {
            buf.extend_from_slice(&8u16.to_ne_bytes());
            buf.extend_from_slice(&ty.to_ne_bytes());
            buf.extend_from_slice(&a.octets());
        }
    }
    (buf, seq)
}

/// Brings `lo` up and adds `addrs` as /32 in the calling thread's network namespace.
/// An address that already exists is fine. Errors name the address (or `lo`) that failed.
pub(crate) fn setup_loopback(addrs: &[Ipv4Addr]) -> Result<(), (String, io::Error)> {
    let lo = |e| ("lo".to_string(), e);
    // SAFETY: socket(2) with constant arguments; on success we own the descriptor.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    let sock = {
        sys::cvt(raw).map_err(lo)?;
        // SAFETY: fresh descriptor from socket(2).
        unsafe { OwnedFd::from_raw_fd(raw) }
    };
    // The loopback device is always interface 1 in a new namespace; ask anyway.
    // SAFETY: valid nul-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if ifindex == 0 {
        return Err(lo(io::Error::last_os_error()));
    }
    let (req, last_seq) = lo_requests(ifindex, addrs);
    // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: buffer and address are valid for the given lengths.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(lo(io::Error::last_os_error()));
    }
    // Collect one ack (NLMSG_ERROR, error 0) per request.
    let mut acked = 0;
    let mut buf = vec![0u8; 8192];
    while acked < last_seq {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(lo(e));
        }
        let mut off = 0usize;
        let n = n as usize;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
            if len < 16 || off + len > n {
                break;
            }
            if ty == NLMSG_ERROR && len >= 20 {
                let err = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                acked += 1;
                if err != 0 && -err != libc::EEXIST {
                    let what = if seq <= 1 {
                        "lo".to_string()
                    } else {
                        format!("{}/32", addrs[seq as usize - 2])
                    };
                    return Err((what, io::Error::from_raw_os_error(-err)));
                }
            }
            off += (len + 3) & !3;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let (b, last) = lo_requests(1, &[Ipv4Addr::new(169, 254, 169, 254)]);
        assert_eq!(last, 2);
        assert_eq!(b.len(), 32 + 40);
        // first header: len 32, RTM_NEWLINK, REQUEST|ACK, seq 1
        assert_eq!(&b[0..4], &32u32.to_ne_bytes());
        assert_eq!(&b[4..6], &RTM_NEWLINK.to_ne_bytes());
        assert_eq!(&b[6..8], &5u16.to_ne_bytes());
        assert_eq!(&b[8..12], &1u32.to_ne_bytes());
        assert_eq!(&b[20..24], &1i32.to_ne_bytes()); // ifindex
        assert_eq!(&b[24..28], &1u32.to_ne_bytes()); // IFF_UP
        let a = &b[32..];
        assert_eq!(&a[0..4], &40u32.to_ne_bytes());
        assert_eq!(&a[4..6], &RTM_NEWADDR.to_ne_bytes());
        assert_eq!(&a[6..8], &0x605u16.to_ne_bytes());
        assert_eq!(&a[8..12], &2u32.to_ne_bytes());
        assert_eq!(&a[16..20], &[2, 32, 0, 0]); // AF_INET, /32, flags, scope universe
        assert_eq!(&a[24..32], &[8, 0, 2, 0, 169, 254, 169, 254]);
        assert_eq!(&a[32..40], &[8, 0, 1, 0, 169, 254, 169, 254]);
    }
}
