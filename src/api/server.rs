//! The API's HTTP/1 server: its own accept loop over hyper, so that one client cannot make the
//! daemon stop answering.
//!
//! Order of one connection: accept (an accept error backs off and never ends the loop; on
//! EMFILE/ENFILE the oldest idle connection is closed to free a descriptor) → admission: at
//! most `max_connections` at once; when full, the oldest connection that is not running a
//! request (an idle keep-alive, a half-sent head or body) is closed to make room, and when every
//! one is running a request the new one is closed at once → hyper reads the head within
//! `header_timeout` → the handler ([`super::handle`]) checks the credentials before the body and
//! reads the body within `body_timeout` → after each response the connection may stay idle for
//! `idle_timeout` → when the connection ends, a lingering close (write side shut, what the
//! client still sends read and dropped, at most 4 MiB and 2 s) so a client refused mid-upload
//! gets its answer instead of a reset.
//!
//! Shutdown: stop accepting, ask every connection to finish its request and close, wait for
//! them (bounded).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::ApiState;
use crate::ratelimit::RateLimited;

/// Largest request head (request line and headers) hyper buffers.
const MAX_HEAD: usize = 64 * 1024;
/// The lingering close: how long and how much is read and dropped after the last response.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 * 1024 * 1024;
/// How long shutdown waits for the connections to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The server's limits, from `serve` flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// One admitted connection, as the registry and the handler see it.
pub struct Conn {
    /// Requests being dispatched (after their body was read): such a connection is not evicted.
    busy: AtomicUsize,
    /// Milliseconds since `epoch` after which an idle connection is closed.
    deadline_ms: AtomicU64,
    epoch: Instant,
    kill: Notify,
    body_timeout: Duration,
    idle_timeout: Duration,
}

/// Held while a request is dispatched; see [`Conn::dispatching`].
pub struct Busy<'a>(&'a Conn);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    fn new(cfg: &ServerConfig) -> Conn {
        let c = Conn {
            busy: AtomicUsize::new(0),
            deadline_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            kill: Notify::new(),
            body_timeout: cfg.body_timeout,
            idle_timeout: cfg.idle_timeout,
        };
        // A new connection gets a little more than hyper's head timeout to send its head.
        c.extend(cfg.header_timeout + Duration::from_secs(1));
        c
    }

    fn extend(&self, by: Duration) {
        let ms = (self.epoch.elapsed() + by).as_millis() as u64;
        self.deadline_ms.store(ms, Ordering::SeqCst);
    }

    fn deadline(&self) -> Instant {
        self.epoch + Duration::from_millis(self.deadline_ms.load(Ordering::SeqCst))
    }

    /// A request head arrived: the body must be read by the returned instant.
    pub fn request_started(&self) -> tokio::time::Instant {
        self.extend(self.body_timeout + Duration::from_secs(1));
        tokio::time::Instant::now() + self.body_timeout
    }

    /// The body is read and the request runs: the connection is not evicted meanwhile.
    pub fn dispatching(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// The response is ready: the connection may now stay idle for the idle timeout.
    pub fn request_finished(&self) {
        self.extend(self.idle_timeout);
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// Resolves when the connection has been idle past its deadline.
    async fn expired(&self) {
        loop {
            tokio::time::sleep_until(self.deadline().into()).await;
            if self.is_busy() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            } else if Instant::now() >= self.deadline() {
                return;
            }
        }
    }
}

/// The admitted connections, oldest first.
struct Registry {
    max: usize,
    next: u64,
    conns: BTreeMap<u64, Arc<Conn>>,
}

impl Registry {
    /// Admits a new connection, evicting the oldest idle one when full; `None` when every
    /// admitted connection is running a request.
    fn admit(&mut self, cfg: &ServerConfig) -> Option<(u64, Arc<Conn>)> {
        if self.conns.len() >= self.max && !self.evict_oldest_idle() {
            return None;
        }
        let key = self.next;
        self.next += 1;
        let conn = Arc::new(Conn::new(cfg));
        self.conns.insert(key, conn.clone());
        Some((key, conn))
    }

    /// Closes the oldest connection that is not running a request; false if there is none.
    fn evict_oldest_idle(&mut self) -> bool {
        let Some(victim) = self
            .conns
            .iter()
            .find(|(_, c)| !c.is_busy())
            .map(|(k, _)| *k)
        else {
            return false;
        };
        if let Some(c) = self.conns.remove(&victim) {
            c.kill.notify_one();
        }
        true
    }
}

/// Removes its connection from the registry when the connection task ends.
struct Slot {
    registry: Arc<Mutex<Registry>>,
    key: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.registry).conns.remove(&self.key);
    }
}

fn lock(r: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves the API on `listener` until `shutdown` resolves, then lets the connections finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let registry = Arc::new(Mutex::new(Registry {
        max: cfg.max_connections.max(1),
        next: 0,
        conns: BTreeMap::new(),
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let accept_log = RateLimited::new(1.0, 5);
    let refused_log = RateLimited::new(1.0, 5);
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                backoff = Duration::from_millis(5);
                s
            }
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE): free one by closing the oldest idle
                // connection. For that and any other accept error: back off, then retry.
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    lock(&registry).evict_oldest_idle();
                }
                if let Some(suppressed) = accept_log.check() {
                    tracing::warn!(error = %e, suppressed, "API accept failed; backing off");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some((key, conn)) = lock(&registry).admit(&cfg) else {
            if let Some(suppressed) = refused_log.check() {
                tracing::warn!(
                    max = cfg.max_connections,
                    suppressed,
                    "API connection refused: every connection is running a request"
                );
            }
            drop(stream);
            continue;
        };
        let slot = Slot {
            registry: registry.clone(),
            key,
        };
        tokio::spawn(connection(
            stream,
            conn,
            slot,
            state.clone(),
            cfg.clone(),
            stop_rx.clone(),
        ));
    }
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    while !lock(&registry).conns.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type BoxedResponse =
    Pin<Box<dyn Future<Output = Result<hyper::Response<super::ResponseBody>, Infallible>> + Send>>;

async fn connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    _slot: Slot,
    state: Arc<ApiState>,
    cfg: ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let svc_conn = conn.clone();
    let svc = hyper::service::service_fn(move |req| -> BoxedResponse {
        let (state, conn) = (state.clone(), svc_conn.clone());
        Box::pin(async move { Ok(super::handle(&state, &conn, req).await) })
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .keep_alive(true)
        // A client that shuts its side after sending still gets its answer.
        .half_close(true)
        .max_buf_size(MAX_HEAD);
    let mut http = builder.serve_connection(TokioIo::new(stream), svc);
    let mut graceful = false;
    loop {
        if *stop.borrow() && !graceful {
            Pin::new(&mut http).graceful_shutdown();
            graceful = true;
        }
        tokio::select! {
            _ = std::future::poll_fn(|cx| http.poll_without_shutdown(cx)) => break,
            () = conn.kill.notified() => return,
            () = conn.expired() => return,
            _ = stop.changed(), if !graceful => {}
        }
    }
    linger(http.into_parts().io.into_inner()).await;
}

/// Shuts the write side (the client sees the end of the response) and reads what the client
/// still sends, so that closing does not reset the connection under its last response.
async fn linger(mut s: TcpStream) {
    if s.shutdown().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0usize;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while total < LINGER_BYTES {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}
