//! The SSH gateway: one russh server per public address, presenting the instance's own host
//! keys and running every session inside the instance.
//!
//! ```text
//! add(addr, route)   load host keys → russh Config (publickey only, no SHA-1) → bind addr →
//!                    accept loop task
//! accept             source rate limit (fail closed for hammering sources) → TCP_NODELAY →
//!                    QuickAck stream (re-arms TCP_QUICKACK before every read: no 40 ms
//!                    delayed-ACK stalls in the handshake) → run_stream with a fresh `Conn`
//! auth (handler)     user in the instance's /etc/passwd → key in ~/.ssh/authorized_keys inside
//!                    the instance (read by `instance_fs`, symlink-safe) → options kept
//! channels           session → `session::run` task (pty, shell/exec/sftp via `__enter`);
//!                    direct-tcpip / tcpip-forward → `forward` (sockets made in the netns)
//! remove(addr)       stop accepting, disconnect every session with "instance … is stopping"
//! ```
//!
//! The russh `Handler` (`handler.rs`) is thin: it answers requests and hands each channel to
//! one task that owns it. Nothing here enters a namespace on a runtime thread: commands run
//! through the single-threaded `__enter` helper, netns sockets come from `sandbox` functions
//! that use their own std thread.

mod authkeys;
mod forward;
mod handler;
mod instance_fs;
mod pty;
mod session;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::{MethodKind, MethodSet, Preferred};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use authkeys::{AuthorizedKey, KeyOptions};
pub use instance_fs::{InstanceRoot, InstanceUser};

use crate::ratelimit::RateLimited;

/// Host key files looked for in `Route::host_key_dir`, in order of preference.
pub const HOST_KEY_FILES: &[&str] = &["ssh_host_ed25519_key", "ssh_host_ecdsa_key"];

/// Everything the gateway needs to serve one instance.
#[derive(Debug, Clone)]
pub struct Route {
    pub instance_id: String,
    /// PID 1 of the instance (`sandbox::Running::init_pid`) and its start time.
    pub init_pid: i32,
    pub start_time: u64,
    /// Directory with `ssh_host_ed25519_key` / `ssh_host_ecdsa_key` (OpenSSH format).
    pub host_key_dir: PathBuf,
    /// Printed when a shell session starts (motd): instance id, type, zone, AMI.
    pub banner: String,
    /// The instance's security-group check for a new connection from this peer (fail closed:
    /// false drops the connection before any byte is sent). `None` admits everyone.
    pub admit: Option<Admit>,
}

/// A per-connection admission check (the front's security-group evaluation).
#[derive(Clone)]
pub struct Admit(pub Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>);

impl std::fmt::Debug for Admit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admit(..)")
    }
}

/// Errors of the gateway's set-up (sessions report theirs to the client).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("read host key {path}: {source}")]
    HostKeyRead { path: PathBuf, source: io::Error },
    #[error("parse host key {path}: {reason}")]
    HostKeyParse { path: PathBuf, reason: String },
    #[error("no host key in {0}")]
    NoHostKey(PathBuf),
}

impl From<GatewayError> for io::Error {
    fn from(e: GatewayError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

/// Per-route state shared by its connections.
pub(crate) struct RouteCtx {
    pub route: Route,
    pub exe: PathBuf,
    pub config: Arc<russh::server::Config>,
    pub gateway: Arc<Gateway>,
    /// Live sessions of this route, to disconnect them on `remove`.
    pub sessions: Mutex<HashMap<u64, russh::server::Handle>>,
}

struct Listener {
    ctx: Arc<RouteCtx>,
    accept: tokio::task::JoinHandle<()>,
}

/// The SSH gateway of the daemon (shared as `Arc`).
pub struct Gateway {
    exe: PathBuf,
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    sources: SourceLimiter,
    pub(crate) log_limit: RateLimited,
    next_session: AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("exe", &self.exe).finish()
    }
}

impl Gateway {
    /// `exe`: the binary to run as `exe __enter <json>` (the daemon passes /proc/self/exe).
    pub fn new(exe: PathBuf) -> Arc<Gateway> {
        Arc::new(Gateway {
            exe,
            listeners: Mutex::new(HashMap::new()),
            sources: SourceLimiter::new(30, Duration::from_secs(60)),
            log_limit: RateLimited::new(2.0, 20),
            next_session: AtomicU64::new(1),
        })
    }

    fn listeners(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Listener>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Listens on `addr` for the instance in `route` (replacing an earlier listener there).
    pub async fn add(self: &Arc<Self>, addr: SocketAddr, route: Route) -> io::Result<()> {
        let dir = route.host_key_dir.clone();
        let keys = tokio::task::spawn_blocking(move || load_host_keys(&dir))
            .await
            .map_err(io::Error::other)??;
        self.remove(addr).await;
        let sock = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        sock.set_reuseaddr(true)?;
        // A listener just removed from this address (an Elastic IP moving between instances)
        // closes when its aborted task is next polled: retry a busy address for up to a second.
        let mut tries = 0;
        while let Err(e) = sock.bind(addr) {
            if e.kind() != io::ErrorKind::AddrInUse || tries == 20 {
                return Err(e);
            }
            tries += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let listener = sock.listen(1024)?;
        let ctx = Arc::new(RouteCtx {
            config: Arc::new(server_config(keys)),
            route,
            exe: self.exe.clone(),
            gateway: self.clone(),
            sessions: Mutex::new(HashMap::new()),
        });
        tracing::info!(instance = %ctx.route.instance_id, %addr, "ssh gateway listening");
        let accept = tokio::spawn(accept_loop(listener, ctx.clone()));
        self.listeners().insert(addr, Listener { ctx, accept });
        Ok(())
    }

    /// Stops listening on `addr` and ends that instance's sessions with a clear message.
    pub async fn remove(&self, addr: SocketAddr) {
        let Some(l) = self.listeners().remove(&addr) else {
            return;
        };
        l.accept.abort();
        let handles: Vec<_> = l
            .ctx
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        let msg = format!("instance {} is stopping", l.ctx.route.instance_id);
        for h in handles {
            let _ = h
                .disconnect(russh::Disconnect::ByApplication, msg.clone(), "en".into())
                .await;
        }
        tracing::info!(instance = %l.ctx.route.instance_id, %addr, "ssh gateway stopped listening");
    }

    /// Addresses currently served.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners().keys().copied().collect()
    }

    pub(crate) fn auth_failed(&self, ip: IpAddr) {
        self.sources.fail(ip);
    }
}

/// Loads the host keys of a route, preferred first.
pub fn load_host_keys(dir: &Path) -> Result<Vec<PrivateKey>, GatewayError> {
    let mut keys = Vec::new();
    for name in HOST_KEY_FILES {
        let path = dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(GatewayError::HostKeyRead { path, source }),
        };
        let key = PrivateKey::from_openssh(&text).map_err(|e| GatewayError::HostKeyParse {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(GatewayError::NoHostKey(dir.to_path_buf()));
    }
    Ok(keys)
}

const HOST_KEY_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    // Not host keys (we have none) but advertised in server-sig-algs for RSA user keys; the
    // SHA-1 `ssh-rsa` signature is left out on purpose.
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// The russh configuration of one route: publickey only, no SHA-1, quick first rejection.
fn server_config(keys: Vec<PrivateKey>) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-ec2lab_gateway")),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(20),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys,
        preferred: Preferred {
            key: Cow::Borrowed(HOST_KEY_ALGORITHMS),
            ..Preferred::DEFAULT
        },
        max_auth_attempts: 6,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 32768,
        channel_buffer_size: 256,
        event_buffer_size: 64,
        ..Default::default()
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, ctx: Arc<RouteCtx>) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if ctx.gateway.log_limit.check().is_some() {
                    tracing::warn!(instance = %ctx.route.instance_id, error = %e, "ssh accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if ctx.gateway.sources.blocked(peer.ip()) {
            if let Some(suppressed) = ctx.gateway.log_limit.check() {
                tracing::warn!(instance = %ctx.route.instance_id, %peer, suppressed, "ssh connection refused: too many failed logins from this source");
            }
            drop(sock);
            continue;
        }
        if let Some(admit) = &ctx.route.admit {
            if !(admit.0)(peer) {
                drop(sock); // denied by the instance's security groups: closed at once
                continue;
            }
        }
        let _ = sock.set_nodelay(true);
        tokio::spawn(serve_connection(ctx.clone(), sock, peer));
    }
}

async fn serve_connection(ctx: Arc<RouteCtx>, sock: TcpStream, peer: SocketAddr) {
    let local = sock.local_addr().unwrap_or(peer);
    let id = ctx.gateway.next_session.fetch_add(1, Ordering::Relaxed);
    let handler = handler::Conn::new(ctx.clone(), peer, local);
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
struct SourceLimiter {
    max: u32,
    window: Duration,
    map: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SourceLimiter {
    fn new(max: u32, window: Duration) -> SourceLimiter {
        SourceLimiter {
            max,
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn norm(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        }
    }

    fn fail(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, (t, _)| now.duration_since(*t) < self.window);
        }
        let e = m.entry(Self::norm(ip)).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    fn blocked(&self, ip: IpAddr) -> bool {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&Self::norm(ip))
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

    #[test]
    fn config_is_publickey_only_without_sha1() {
        let c = server_config(vec![]);
        assert_eq!(&*c.methods, &[MethodKind::PublicKey]);
        assert!(!c.preferred.key.contains(&Algorithm::Rsa { hash: None }));
    }
}
