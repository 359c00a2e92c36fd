//! The lab's VPC router: one network namespace per data dir, owned by the daemon, that every
//! instance reaches through a veth pair. It holds the metadata address 169.254.169.254, so the
//! daemon serves IMDS there — outside the instances, whose own port 80 stays free for their web
//! servers — and it is where traffic between instances will be routed.
//!
//! ```text
//! instance netns                        router netns (DIR/vpc-router.netns)
//!   eth0  172.31.0.4/32  ─── veth ───  ve-<id>   route 172.31.0.4/32 dev ve-<id>
//!   route 169.254.169.254/32 dev eth0   lo: 169.254.169.254/32  ← IMDS listener (daemon)
//! ```
//!
//! The router namespace lives as a bind mount of its nsfs file, so it outlives a daemon crash
//! and is reused by the next start; instance ends of the veths vanish with their namespaces.
//! All rtnetlink messages are built here by hand (no `ip` binary).

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::sys;

/// The metadata service's address, on the router's loopback.
pub const METADATA_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;

/// An rtnetlink message under construction: header, fixed part, attributes (nesting allowed).
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid
        Msg {
            buf,
            nests: Vec::new(),
        }
    }
    fn raw(&mut self, b: &[u8]) -> &mut Msg {
        self.buf.extend_from_slice(b);
        self
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Msg {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }
    fn begin(&mut self, ty: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }
    fn end(&mut self) -> &mut Msg {
        let start = self.nests.pop().expect("balanced nests");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// `struct ifinfomsg` for interface `index` with `flags` (change mask = flags).
fn ifinfo(index: i32, flags: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&flags.to_ne_bytes());
    b
}

fn cname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

/// Sends one request on a fresh NETLINK_ROUTE socket and waits for its ack.
fn request(msg: Vec<u8>) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; on success we own the descriptor.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    sys::cvt(raw)?;
    // SAFETY: fresh descriptor from socket(2).
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: buffer and address are valid for the given lengths.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
            let err = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
            return if err == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-err))
            };
        }
    }
}

fn ifindex(name: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::other("interface name has a nul byte"))?;
    // SAFETY: valid nul-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i as i32)
    }
}

fn link_up(name: &str) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, 0);
    m.raw(&ifinfo(ifindex(name)?, libc::IFF_UP as u32));
    request(m.finish())
}

fn add_addr(name: &str, addr: Ipv4Addr, scope: u8) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    m.raw(&[libc::AF_INET as u8, 32, 0, scope])
        .raw(&(ifindex(name)? as u32).to_ne_bytes());
    m.attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets());
    request(m.finish())
}

/// `ip route replace <dst>/32 dev <name> scope link` (replace: a route left by an instance
/// whose namespace the kernel is still tearing down must not block its next boot).
fn add_route(dst: Ipv4Addr, name: &str) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; flags
    m.raw(&[
        libc::AF_INET as u8,
        32,
        0,
        0,
        libc::RT_TABLE_MAIN,
        libc::RTPROT_BOOT,
        libc::RT_SCOPE_LINK,
        libc::RTN_UNICAST,
    ])
    .raw(&0u32.to_ne_bytes());
    m.attr(RTA_DST, &dst.octets())
        .attr(RTA_OIF, &ifindex(name)?.to_ne_bytes());
    request(m.finish())
}

/// `ip route replace default via <gateway> dev <name> onlink`.
fn add_default_route(gateway: Ipv4Addr, name: &str) -> io::Result<()> {
    const RTA_GATEWAY: u16 = 5;
    const RTNH_F_ONLINK: u32 = 4;
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    m.raw(&[
        libc::AF_INET as u8,
        0,
        0,
        0,
        libc::RT_TABLE_MAIN,
        libc::RTPROT_BOOT,
        libc::RT_SCOPE_UNIVERSE,
        libc::RTN_UNICAST,
    ])
    .raw(&RTNH_F_ONLINK.to_ne_bytes());
    m.attr(RTA_GATEWAY, &gateway.octets())
        .attr(RTA_OIF, &ifindex(name)?.to_ne_bytes());
    request(m.finish())
}

/// `ip link add <name> type veth peer name <peer> netns <peer_ns>`.
fn add_veth(name: &str, peer: &str, peer_ns: &File) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.raw(&ifinfo(0, 0)).attr(IFLA_IFNAME, &cname(name));
    m.begin(IFLA_LINKINFO)
        .attr(IFLA_INFO_KIND, b"veth")
        .begin(IFLA_INFO_DATA)
        .begin(VETH_INFO_PEER);
    m.raw(&ifinfo(0, 0))
        .attr(IFLA_IFNAME, &cname(peer))
        .attr(IFLA_NET_NS_FD, &peer_ns.as_raw_fd().to_ne_bytes());
    m.end().end().end();
    request(m.finish())
}

/// A fresh router-side interface name for one boot of an instance: `ve` + 12 random hex digits.
/// Fresh per boot, because the kernel removes the veth of a stopped instance asynchronously.
pub fn peer_name() -> String {
    let n: u64 = rand::random();
    format!("ve{:012x}", n & 0xffff_ffff_ffff)
}

/// How an instance joins the router (part of the launch spec).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VpcLink {
    /// The router namespace's bind-mounted nsfs file.
    pub router_netns: PathBuf,
    /// The instance's private IP (on its `eth0`).
    pub address: Ipv4Addr,
    /// The router-side interface name.
    pub peer_name: String,
    /// The instance's default gateway: its subnet's base address + 1, as on AWS (held by the
    /// router's loopback, so the router answers ARP for it on every veth).
    pub gateway: Ipv4Addr,
}

/// The gateway of a default-VPC subnet (a /20) holding `ip`: its base address + 1.
pub fn gateway_of(ip: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(ip) & !0xfff) | 1)
}

/// Inside a new instance (its PID 1, single-threaded, before capabilities are dropped): makes
/// `eth0` ↔ router veth, addresses and routes on both sides. Errors name the step.
pub(crate) fn attach(link: &VpcLink) -> Result<(), (String, io::Error)> {
    let ctx = |what: &str| {
        let what = what.to_string();
        move |e| (what, e)
    };
    let router = File::open(&link.router_netns)
        .map_err(ctx(&format!("open {}", link.router_netns.display())))?;
    let own = File::open("/proc/thread-self/ns/net").map_err(ctx("open own netns"))?;
    add_veth("eth0", &link.peer_name, &router)
        .map_err(ctx(&format!("create veth eth0/{}", link.peer_name)))?;
    link_up("eth0").map_err(ctx("set eth0 up"))?;
    add_addr("eth0", link.address, libc::RT_SCOPE_UNIVERSE)
        .map_err(ctx(&format!("add {}/32 to eth0", link.address)))?;
    add_route(METADATA_ADDR, "eth0").map_err(ctx("route 169.254.169.254 via eth0"))?;
    add_default_route(link.gateway, "eth0")
        .map_err(ctx(&format!("default route via {}", link.gateway)))?;
    sys::setns(router.as_fd(), libc::CLONE_NEWNET).map_err(ctx("enter router netns"))?;
    let result = link_up(&link.peer_name)
        .map_err(ctx(&format!("set {} up", link.peer_name)))
        .and_then(
            |()| match add_addr("lo", link.gateway, libc::RT_SCOPE_UNIVERSE) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                    Err((format!("add gateway {} to the router", link.gateway), e))
                }
                _ => Ok(()),
            },
        )
        .and_then(|()| {
            add_route(link.address, &link.peer_name).map_err(ctx(&format!(
                "route {} via {}",
                link.address, link.peer_name
            )))
        });
    sys::setns(own.as_fd(), libc::CLONE_NEWNET).map_err(ctx("return to own netns"))?;
    result
}

/// The daemon's handle on the router namespace.
#[derive(Debug, Clone)]
pub struct Router {
    pub path: PathBuf,
}

impl Router {
    /// Opens the router at `path`, creating it (a new network namespace, loopback up with the
    /// metadata address, bind-mounted at `path`) when `path` is not one yet.
    pub fn open_or_create(path: &Path) -> io::Result<Router> {
        if is_netns(path) {
            return Ok(Router {
                path: path.to_path_buf(),
            });
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = umount(path);
        File::create(path)?;
        let target = path.to_path_buf();
        std::thread::Builder::new()
            .name("ec2lab-router".into())
            .spawn(move || -> io::Result<()> {
                // SAFETY: unshare on this thread only; it exits right after.
                sys::cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
                super::netns::setup_loopback(&[METADATA_ADDR]).map_err(|(_, e)| e)?;
                let src = c"/proc/thread-self/ns/net";
                let dst = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
                    .map_err(|_| io::Error::other("router path has a nul byte"))?;
                // SAFETY: valid nul-terminated paths; a plain bind mount.
                sys::cvt(unsafe {
                    libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                })?;
                Ok(())
            })?
            .join()
            .map_err(|_| io::Error::other("router thread panicked"))??;
        Ok(Router {
            path: path.to_path_buf(),
        })
    }

    /// A listening socket inside the router namespace (the metadata service).
    pub fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let ns = File::open(&self.path)?;
        std::thread::Builder::new()
            .name("ec2lab-router".into())
            .spawn(move || {
                sys::setns(ns.as_fd(), libc::CLONE_NEWNET)?;
                TcpListener::bind(addr)
            })?
            .join()
            .map_err(|_| io::Error::other("router thread panicked"))?
    }

    /// Turns IPv4 forwarding between the instances on or off (`net.ipv4.ip_forward` of the
    /// router namespace; `vpc::Firewall` turns it on once its first ruleset is in).
    pub fn set_forwarding(path: &Path, on: bool) -> io::Result<()> {
        let ns = File::open(path)?;
        std::thread::Builder::new()
            .name("ec2lab-router".into())
            .spawn(move || {
                sys::setns(ns.as_fd(), libc::CLONE_NEWNET)?;
                // /proc/sys/net is the opening thread's network namespace (sysctl looks at
                // the calling task, unlike /proc/net, which follows the thread group leader).
                std::fs::write("/proc/sys/net/ipv4/ip_forward", if on { "1" } else { "0" })
            })?
            .join()
            .map_err(|_| io::Error::other("router thread panicked"))?
    }

    /// Removes the router (daemon shutdown). Instances must be stopped first.
    pub fn remove(&self) {
        let _ = umount(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn umount(path: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("nul"))?;
    // SAFETY: valid nul-terminated path.
    sys::cvt(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) }).map(|_| ())
}

/// Whether `path` is an nsfs file (a bind-mounted namespace).
fn is_netns(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == NSFS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_fit_ifnamsiz() {
        let n = peer_name();
        assert_eq!(n.len(), 14);
        assert!(n.len() < libc::IFNAMSIZ);
        assert_ne!(n, peer_name());
    }

    #[test]
    fn nested_attributes_have_lengths() {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.begin(IFLA_LINKINFO).attr(IFLA_INFO_KIND, b"veth").end();
        let b = m.finish();
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        // nest header length = 4 (nest) + 8 (kind attr: 4 + 4 bytes "veth")
        assert_eq!(u16::from_ne_bytes([b[16], b[17]]), 12);
    }
}
