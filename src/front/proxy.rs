//! One front connection, from accept to the end of the proxying, with the caps that keep idle
//! connections from holding the daemon's descriptors:
//!
//! ```text
//! admit (per port)  connections per source and in total on this instance port (`PortGate`);
//!                   over the source's cap → closed at once; port full → the oldest silent
//!                   connection of the source holding the most gives way (so a flood from many
//!                   addresses cannot lock others out), else closed at once; refusals are
//!                   logged rate-limited by the caller
//! serve             security groups (the caller's check) → connect to the same port on the
//!                   private IP inside the instance's netns (through its `sandbox::Connector`,
//!                   CONNECT_TIMEOUT; a thread already in the namespace makes the socket,
//!                   tokio connects it) → wait for a first byte from either
//!                   side (server-first protocols such as MySQL count); closed after
//!                   FIRST_BYTE_TIMEOUT without one, or when evicted → established (never
//!                   evicted) → copy both ways until either side ends
//! ```
//!
//! Established connections are never timed out: an idle keep-alive connection is legitimate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::ratelimit::conns::{ConnGate, Refused, Slot, source_key};
use crate::sandbox::Connector;

/// Concurrent connections from one source address to one instance port.
pub const PER_SOURCE: usize = 256;
/// Concurrent connections to one instance port.
pub const PER_PORT: usize = 1024;
/// How long a new connection may stay silent in both directions before it is closed.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

/// The connection caps of one listener (instance public IP and port).
pub(super) struct PortGate(Arc<ConnGate<IpAddr>>);

impl PortGate {
    pub fn new() -> PortGate {
        PortGate(ConnGate::new(PER_SOURCE, PER_PORT, true))
    }

    pub fn admit(&self, peer: SocketAddr) -> Result<Slot<IpAddr>, Refused> {
        self.0.try_acquire(source_key(peer.ip()))
    }
}

/// Proxies an admitted connection into the instance; `slot` is held until it ends.
pub(super) async fn serve(
    client: TcpStream,
    slot: Slot<IpAddr>,
    private: Ipv4Addr,
    port: u16,
    connector: &Connector,
) {
    let _ = client.set_nodelay(true);
    let target = SocketAddr::from((private, port));
    let Ok(mut inner) = connector.connect(target).await else {
        return; // nothing listens inside: the client sees the connection close
    };
    let spoke = tokio::select! {
        spoke = first_byte(&client, &inner, FIRST_BYTE_TIMEOUT) => spoke,
        _ = slot.evicted() => false,
    };
    if !spoke {
        return;
    }
    slot.settle();
    let mut client = client;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut inner).await;
}

/// Waits until either side has something to read (data, end of stream or an error); false
/// when neither had within `timeout`.
pub(super) async fn first_byte(a: &TcpStream, b: &TcpStream, timeout: Duration) -> bool {
    // `peek`, not `readable`: readiness can be reported before anything arrived.
    let (mut x, mut y) = ([0u8; 1], [0u8; 1]);
    let either = async {
        tokio::select! {
            _ = a.peek(&mut x) => {}
            _ = b.peek(&mut y) => {}
        }
    };
    tokio::time::timeout(timeout, either).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn first_byte_from_either_side_or_timeout() {
        let (mut client, client_end) = pair().await;
        let (server_end, mut server) = pair().await;
        let short = Duration::from_millis(50);
        assert!(!first_byte(&client_end, &server_end, short).await);
        // A server-first protocol: the instance's greeting counts.
        server.write_all(b"220 hello\r\n").await.unwrap();
        assert!(first_byte(&client_end, &server_end, Duration::from_secs(30)).await);
        // A client that only connects and closes counts too (end of stream).
        let (c2, c2_end) = pair().await;
        let (s2_end, _s2) = pair().await;
        drop(c2);
        assert!(first_byte(&c2_end, &s2_end, Duration::from_secs(30)).await);
        // Nothing was consumed: the proxy still sees the greeting.
        client.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 11];
        assert_eq!(server_end.peek(&mut buf).await.unwrap(), 11);
    }

    #[test]
    fn port_gate_caps_one_source() {
        let g = PortGate::new();
        let a: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:4000".parse().unwrap();
        let held: Vec<_> = (0..PER_SOURCE).map(|_| g.admit(a).unwrap()).collect();
        assert_eq!(g.admit(a).err(), Some(Refused::PerKey(PER_SOURCE)));
        let b1 = g.admit(b).unwrap();
        // A full port: the oldest silent connection of the heaviest source gives way.
        let more: Vec<_> = (0..PER_PORT - PER_SOURCE - 1)
            .map(|i| {
                g.admit(SocketAddr::from((
                    [127, 1, (i / 200) as u8, (i % 200) as u8],
                    1,
                )))
                .unwrap()
            })
            .collect();
        b1.settle();
        assert!(g.admit("127.0.0.4:1".parse().unwrap()).is_ok());
        drop((held, more));
        assert!(g.admit(a).is_ok());
    }
}
