//! Helpers of the flood tests (`ssh_flood`, `front_flood`): connections from chosen loopback
//! source addresses, bounded waits for the server to close, descriptor limits and counts.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// Upper bound for anything a server should do "at once" or "after its timeout".
pub const BOUND: Duration = Duration::from_secs(30);

pub async fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((src, 0))).unwrap();
    tokio::time::timeout(BOUND, sock.connect(addr))
        .await
        .expect("connect within the bound")
        .unwrap()
}

/// Reads until the server closes; what it sent. Panics if it stays open past the bound.
pub async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    match tokio::time::timeout(BOUND, s.read_to_end(&mut out)).await {
        Ok(_) => out, // EOF, or a reset: closed either way
        Err(_) => panic!("connection still open after {BOUND:?}"),
    }
}

/// Whether the server has not closed the connection (a peek that does not wait).
pub fn still_open(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    // SAFETY: recv into a valid one-byte buffer on a socket we own; MSG_PEEK consumes nothing.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0 || (n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock)
}

pub fn src(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Raises this process's soft descriptor limit to its hard limit (5,000 sockets and more).
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= 6000,
        "RLIMIT_NOFILE hard limit {}",
        lim.rlim_max
    );
}

pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Opens `count` connections to `addr`, the i-th from 127.0.0.(`first` + i % `sources`), at most
/// 256 connecting at a time; even ones then send `hello` (if any) and all stay open on this side.
pub async fn open_many(
    addr: SocketAddr,
    count: usize,
    first: u8,
    sources: usize,
    hello: &'static [u8],
) -> Vec<TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut set = tokio::task::JoinSet::new();
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        if set.len() >= 256 {
            held.push(set.join_next().await.unwrap().unwrap());
        }
        let from = src(first + (i % sources) as u8);
        set.spawn(async move {
            let mut s = connect_from(from, addr).await;
            if i % 2 == 0 && !hello.is_empty() {
                let _ = s.write_all(hello).await; // may be closed already
            }
            s
        });
    }
    while let Some(s) = set.join_next().await {
        held.push(s.unwrap());
    }
    held
}
