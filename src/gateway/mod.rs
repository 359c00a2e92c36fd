//! The SSH gateway: one russh server per public address, presenting the instance's own host
//! keys and running every session inside the instance.
//!
//! ```text
//! add(addr, route)   load host keys → russh Config (publickey only, no SHA-1) → bind addr →
//!                    accept loop task
//! accept             (`accept.rs`) reserve-backed accept → failed-login block → security
//!                    groups → caps on connections per source and on unauthenticated ones
//!                    (per source and in total, fair eviction) → TCP_NODELAY → QuickAck stream
//!                    (re-arms TCP_QUICKACK before every read: no 40 ms delayed-ACK stalls in
//!                    the handshake) → run_stream with a fresh `Conn`, closed if it has not
//!                    logged in within the login grace time
//! auth (handler)     user in the instance's /etc/passwd → key in ~/.ssh/authorized_keys inside
//!                    the instance (read by `instance_fs`, symlink-safe) → options kept
//! channels           session → `session::run` task (pty, shell/exec/sftp forked by the
//!                    instance's session helper, `helper.rs` → `sandbox::sessiond`);
//!                    direct-tcpip / tcpip-forward → `forward` (sockets from the instance's
//!                    `sandbox::Connector`, the same one the front uses)
//! remove(addr)       stop accepting, disconnect every session with "instance … is stopping"
//! ```
//!
//! The russh `Handler` (`handler.rs`) is thin: it answers requests and hands each channel to
//! one task that owns it. Nothing here enters a namespace on a runtime thread: commands run
//! through the single-threaded session helper (one per instance, `__sessiond`), netns sockets
//! come from the instance's connector (a std thread already in its network namespace).

mod accept;
mod authkeys;
mod forward;
mod handler;
mod helper;
mod instance_fs;
mod pty;
mod session;
mod session_io;
mod signals;
mod timeline;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::{MethodKind, MethodSet, Preferred};

pub use accept::Limits;
pub use authkeys::{AuthorizedKey, KeyOptions};
pub use instance_fs::{InstanceRoot, InstanceUser};

use crate::ratelimit::RateLimited;
use crate::ratelimit::reserve::FdReserve;

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
    pub config: Arc<russh::server::Config>,
    pub gateway: Arc<Gateway>,
    /// Live sessions of this route, to disconnect them on `remove`.
    pub sessions: Mutex<HashMap<u64, russh::server::Handle>>,
    /// Makes the port forwards' sockets inside the instance's network namespace.
    pub connector: Arc<crate::sandbox::Connector>,
    /// The instance's session helper (started on the first session).
    pub helper: helper::Helper,
}

struct Listener {
    ctx: Arc<RouteCtx>,
    accept: tokio::task::JoinHandle<()>,
}

/// The SSH gateway of the daemon (shared as `Arc`).
pub struct Gateway {
    exe: PathBuf,
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    sources: accept::SourceLimiter,
    gates: accept::Gates,
    reserve: FdReserve,
    pub(crate) log_limit: RateLimited,
    next_session: AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("exe", &self.exe).finish()
    }
}

impl Gateway {
    /// `exe`: the binary to run as `exe __sessiond <json>` (the daemon passes /proc/self/exe).
    pub fn new(exe: PathBuf) -> Arc<Gateway> {
        Gateway::with_limits(exe, Limits::default())
    }

    /// A gateway with other admission limits than sshd-like defaults (tests use a short grace).
    pub fn with_limits(exe: PathBuf, limits: Limits) -> Arc<Gateway> {
        Arc::new(Gateway {
            exe,
            listeners: Mutex::new(HashMap::new()),
            sources: accept::SourceLimiter::new(30, Duration::from_secs(60)),
            gates: accept::Gates::new(limits),
            reserve: FdReserve::new(),
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
            helper: helper::Helper::new(self.exe.clone(), route.init_pid, route.start_time),
            config: Arc::new(server_config(keys)),
            connector: crate::sandbox::Connector::of(route.init_pid, route.start_time),
            route,
            gateway: self.clone(),
            sessions: Mutex::new(HashMap::new()),
        });
        tracing::info!(instance = %ctx.route.instance_id, %addr, "ssh gateway listening");
        let accept = tokio::spawn(accept::accept_loop(listener, ctx.clone()));
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

    /// Connections that have not authenticated yet, across every address.
    pub fn unauthenticated(&self) -> usize {
        self.gates.startups()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_publickey_only_without_sha1() {
        let c = server_config(vec![]);
        assert_eq!(&*c.methods, &[MethodKind::PublicKey]);
        assert!(!c.preferred.key.contains(&Algorithm::Rsa { hash: None }));
    }
}
