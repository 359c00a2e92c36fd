//! Admission of SSH connections until they authenticate (sshd's MaxStartups,
//! PerSourceMaxStartups and LoginGraceTime), so that one client cannot take the gateway down.
//!
//! ```text
//! accept      reserve-backed accept (out of descriptors: waiting clients are closed at once;
//!             the loop never dies or spins)
//!   → failed-login block (too many failed logins from the source)
//!   → security groups of the instance
//!   → connections per source across the gateway (authenticated ones included)
//!   → unauthenticated connections: per source on this address, and in total across the
//!     gateway — a full gate evicts the oldest of the source holding the most, so a flood from
//!     many addresses cannot starve a login from another one
//!     (every refusal closes the socket before any byte is sent; logged rate-limited)
//!   → TCP_NODELAY → serve
//! serve       run_stream over a QuickAck stream; a watchdog shuts the socket down when the
//!             login grace time ends or the slot is evicted, and frees the unauthenticated slot
//!             as soon as the handler reports a login. Authenticated sessions have no timeout.
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::{RouteCtx, handler};
use crate::ratelimit::conns::{ConnGate, Slot, source_key};

/// Admission limits of the gateway (sshd's names in brackets).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Unauthenticated connections across the gateway [MaxStartups].
    pub max_startups: usize,
    /// Unauthenticated connections from one source to one instance address
    /// [PerSourceMaxStartups, per instance as each EC2 instance runs its own sshd].
    pub per_source_startups: usize,
    /// Connections from one source across the gateway, authenticated or not.
    pub per_source_connections: usize,
    /// Time a connection has to authenticate, from accept [LoginGraceTime].
    pub login_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_startups: 256,
            per_source_startups: 10,
            per_source_connections: 512,
            login_grace: Duration::from_secs(30),
        }
    }
}

/// Unauthenticated connections are counted by (instance address, source).
pub(crate) type StartupKey = (SocketAddr, IpAddr);

/// The gates of a gateway, shared by its accept loops.
#[derive(Debug)]
pub(crate) struct Gates {
    pub limits: Limits,
    startups: Arc<ConnGate<StartupKey>>,
    per_source: Arc<ConnGate<IpAddr>>,
}

impl Gates {
    pub fn new(limits: Limits) -> Gates {
        Gates {
            startups: ConnGate::new(limits.per_source_startups, limits.max_startups, true),
            per_source: ConnGate::new(limits.per_source_connections, usize::MAX, false),
            limits,
        }
    }

    /// Unauthenticated connections counted now.
    pub fn startups(&self) -> usize {
        self.startups.count()
    }
}

pub(crate) async fn accept_loop(listener: tokio::net::TcpListener, ctx: Arc<RouteCtx>) {
    let addr = listener.local_addr().ok();
    loop {
        let (sock, peer) = ctx.gateway.reserve.accept(&listener).await;
        if ctx.gateway.sources.blocked(peer.ip()) {
            if let Some(suppressed) = ctx.gateway.log_limit.check() {
                tracing::warn!(instance = %ctx.route.instance_id, %peer, suppressed, "ssh connection refused: too many failed logins from this source");
            }
            continue;
        }
        if let Some(admit) = &ctx.route.admit
            && !(admit.0)(peer)
        {
            continue; // denied by the instance's security groups: closed at once
        }
        let src = source_key(peer.ip());
        let gates = &ctx.gateway.gates;
        let local = addr.unwrap_or(peer);
        let slots = gates.per_source.try_acquire(src).and_then(|conn| {
            let startup = gates.startups.try_acquire((local, src))?;
            Ok((conn, startup))
        });
        let (conn, startup) = match slots {
            Ok(s) => s,
            Err(why) => {
                if let Some(suppressed) = ctx.gateway.log_limit.check() {
                    tracing::warn!(instance = %ctx.route.instance_id, %peer, reason = %why, suppressed, "ssh connection refused");
                }
                continue; // `sock` is dropped: closed before any byte is sent
            }
        };
        let _ = sock.set_nodelay(true);
        tokio::spawn(serve_connection(ctx.clone(), sock, peer, startup, conn));
    }
}

/// What ended the unauthenticated phase of a connection.
enum Phase {
    Ended,
    LoggedIn,
    Close(&'static str),
}

async fn serve_connection(
    ctx: Arc<RouteCtx>,
    sock: TcpStream,
    peer: SocketAddr,
    startup: Slot<StartupKey>,
    _conn: Slot<IpAddr>,
) {
    // A second descriptor of the socket, to shut it down from here whatever russh is doing.
    let Ok(kill) = sock.as_fd().try_clone_to_owned() else {
        return; // out of descriptors: closed at once
    };
    let kill = std::net::TcpStream::from(kill);
    let (login_tx, login_rx) = oneshot::channel();
    let session = run_session(ctx.clone(), sock, peer, login_tx);
    tokio::pin!(session);
    let phase = tokio::select! {
        _ = &mut session => Phase::Ended,
        r = login_rx => match r {
            Ok(()) => Phase::LoggedIn,
            Err(_) => Phase::Close("session ended before login"),
        },
        _ = tokio::time::sleep(ctx.gateway.gates.limits.login_grace) => Phase::Close("login grace time over"),
        _ = startup.evicted() => Phase::Close("evicted: too many unauthenticated connections"),
    };
    match phase {
        Phase::Ended => return,
        Phase::LoggedIn => {}
        Phase::Close(why) => {
            tracing::debug!(instance = %ctx.route.instance_id, %peer, why, "ssh connection closed before login");
            let _ = kill.shutdown(std::net::Shutdown::Both);
        }
    }
    drop(kill);
    drop(startup);
    session.await;
}

async fn run_session(
    ctx: Arc<RouteCtx>,
    sock: TcpStream,
    peer: SocketAddr,
    login: oneshot::Sender<()>,
) {
    let local = sock.local_addr().unwrap_or(peer);
    let id = ctx.gateway.next_session.fetch_add(1, Ordering::Relaxed);
    let timeline = super::timeline::Timeline::start(id);
    timeline.mark("accepted");
    let handler = handler::Conn::new(ctx.clone(), peer, local, login, timeline.clone());
    let span = tracing::debug_span!("ssh", instance = %ctx.route.instance_id, %peer, id);
    let _e = span.enter();
    let running = match russh::server::run_stream(ctx.config.clone(), QuickAck(sock), handler).await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "ssh handshake failed");
            return;
        }
    };
    ctx.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, running.handle());
    drop(_e);
    let result = running.await;
    ctx.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    timeline.mark("closed");
    if let Err(e) = result {
        tracing::debug!(instance = %ctx.route.instance_id, %peer, error = %e, "ssh session ended with an error");
    }
}

/// A TCP stream that re-arms `TCP_QUICKACK` before every read (Linux clears it after a while,
/// and a delayed ACK during key exchange costs 40 ms per round trip).
struct QuickAck(TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid socket and an int option.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Failed logins per source address: more than `max` within `window` blocks new connections
/// from that source until the window has passed. IPv4-mapped IPv6 counts as IPv4.
pub(crate) struct SourceLimiter {
    max: u32,
    window: Duration,
    map: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SourceLimiter {
    pub fn new(max: u32, window: Duration) -> SourceLimiter {
        SourceLimiter {
            max,
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn fail(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, (t, _)| now.duration_since(*t) < self.window);
        }
        let e = m.entry(source_key(ip)).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    pub fn blocked(&self, ip: IpAddr) -> bool {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&source_key(ip))
            .is_some_and(|(t, n)| *n > self.max && t.elapsed() < self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_max_and_normalizes_mapped_v6() {
        let l = SourceLimiter::new(2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        l.fail(ip);
        l.fail(mapped);
        assert!(!l.blocked(ip));
        l.fail(ip);
        assert!(l.blocked(mapped));
        assert!(!l.blocked("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn limiter_forgets_after_window() {
        let l = SourceLimiter::new(0, Duration::from_millis(1));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        l.fail(ip);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!l.blocked(ip));
    }
}
