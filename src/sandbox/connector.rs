//! The connector of an instance: one long-lived std thread that joined the instance's network
//! namespace and makes sockets there on request, for the front proxy (`front::proxy`) and the
//! SSH gateway's port forwarding (`gateway::forward`). The daemon's tokio threads never change
//! namespace.
//!
//! A socket belongs to the network namespace it was created in for its whole life, and
//! `connect`/`bind` resolve addresses in the socket's namespace, not the calling thread's. So
//! the thread only creates sockets; connecting, binding and listening happen on tokio.
//!
//! ```text
//! Connector::of(pid, start)  one per instance: a registry keyed by its PID 1 (pid + start
//!                            time) hands the front and the gateway the same connector; a
//!                            reboot or a stop/start is a new PID 1 in a new namespace, so a
//!                            new connector
//! connect / listen           a request over a channel → the thread (started on the first
//!                            request: a verified pidfd of PID 1 → setns(CLONE_NEWNET)) makes
//!                            a non-blocking socket and hands it back → the caller connects
//!                            (CONNECT_TIMEOUT) or binds and listens on tokio: the thread never
//!                            waits on a peer, so a slow or unreachable target stalls only its
//!                            own connection. While it runs, the thread keeps POOL IPv4
//!                            sockets made ahead: a connection takes one without waiting, and
//!                            the thread is woken to top the pool up once it is down to
//!                            POOL_LOW (one wake per few connections, not one per connection)
//! idle                       the thread ends after IDLE without a request and its pool is
//!                            closed; the next request starts it again (an idle instance costs
//!                            no thread and no descriptor)
//! close                      the instance stops (runtime): the thread ends, the pool is closed,
//!                            later requests fail with `Closed`; dropping the last handle does
//!                            the same
//! ```

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

use super::{process, sys};

/// How long a connection into an instance may take to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connector's thread ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(10);
/// The name of the connector threads (visible in `/proc/<daemon>/task/*/comm`).
pub const THREAD_NAME: &str = "ec2lab-netconn";
/// Listen backlog of sockets made by `listen`.
const BACKLOG: u32 = 1024;
/// IPv4 sockets the running thread keeps made ahead (descriptors of the daemon: few).
const POOL: usize = 8;
/// The thread is woken to top the pool up when a connection leaves this many or fewer.
const POOL_LOW: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("instance with pid {pid} is gone: no sockets in its network namespace")]
    Closed { pid: i32 },
    #[error("cannot enter the network namespace of pid {pid}: {source}")]
    Enter { pid: i32, source: io::Error },
    #[error("cannot make a socket in the network namespace of pid {pid}: {source}")]
    Socket { pid: i32, source: io::Error },
    #[error("connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("connect to {addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
}

enum Request {
    /// One socket, IPv6 or IPv4, answered on `reply`.
    Socket {
        v6: bool,
        reply: oneshot::Sender<Result<OwnedFd, ConnectorError>>,
    },
    /// Top the pool up to POOL.
    Refill,
}

#[derive(Default)]
struct State {
    /// The running thread's queue; `None` when no thread runs.
    tx: Option<Sender<Request>>,
    /// IPv4 sockets made ahead by the running thread (empty when none runs).
    pool: Vec<OwnedFd>,
    /// A `Refill` is queued.
    refilling: bool,
    /// The instance stopped: no thread will be started again.
    closed: bool,
}

impl State {
    /// No thread any more: its queue and its pool go.
    fn retire(&mut self) {
        self.tx = None;
        self.pool.clear();
        self.refilling = false;
    }
}

/// The connector of one instance (see the module header). Shared as `Arc`.
pub struct Connector {
    pid: i32,
    start_time: u64,
    /// How long the thread waits for a request before it ends (IDLE).
    idle: Duration,
    state: Arc<Mutex<State>>,
}

type Registry = Mutex<HashMap<(i32, u64), Weak<Connector>>>;
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connector {
    /// The connector of the instance whose PID 1 is `pid`, started at `start_time` (field 22
    /// of its `/proc/<pid>/stat`; 0 skips the check). No thread starts until the first request.
    pub fn of(pid: i32, start_time: u64) -> Arc<Connector> {
        let mut reg = lock(&REGISTRY);
        if let Some(c) = reg.get(&(pid, start_time)).and_then(Weak::upgrade)
            && !lock(&c.state).closed
        {
            return c;
        }
        reg.retain(|_, w| w.strong_count() > 0);
        let c = Arc::new(Connector {
            pid,
            start_time,
            idle: IDLE,
            state: Arc::default(),
        });
        reg.insert((pid, start_time), Arc::downgrade(&c));
        c
    }

    /// A TCP connection to `addr` made from inside the instance (no delay set).
    ///
    /// Inside one host the handshake is usually over when connect(2) returns (EINPROGRESS
    /// all the same): a poll without waiting sees it, and the connection goes to tokio already
    /// established, without a turn of the reactor. Otherwise tokio waits for it.
    pub async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, ConnectorError> {
        let fd = self.socket_fd(addr.is_ipv6()).await?;
        let failed = |source| ConnectorError::Connect { addr, source };
        let done = sys::connect_start(fd.as_fd(), &addr).map_err(failed)?
            || sys::writable_now(fd.as_fd()).map_err(failed)?;
        let stream = TcpStream::from_std(std::net::TcpStream::from(fd)).map_err(failed)?;
        if !done {
            let ready = tokio::time::timeout(CONNECT_TIMEOUT, stream.writable()).await;
            match ready {
                Ok(r) => r.map_err(failed)?,
                Err(_) => {
                    return Err(ConnectorError::Timeout {
                        addr,
                        timeout: CONNECT_TIMEOUT,
                    });
                }
            }
        }
        if let Some(e) = stream.take_error().map_err(failed)? {
            return Err(failed(e));
        }
        // Not connected after all (a refused connect can leave no pending error behind).
        stream.peer_addr().map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        Ok(stream)
    }

    /// A listening TCP socket (SO_REUSEADDR) on `addr` inside the instance. It keeps the
    /// instance's network namespace alive: drop it when the instance stops.
    pub async fn listen(&self, addr: SocketAddr) -> Result<TcpListener, ConnectorError> {
        let sock = self.socket(addr.is_ipv6()).await?;
        let failed = |source| ConnectorError::Listen { addr, source };
        sock.set_reuseaddr(true).map_err(failed)?;
        sock.bind(addr).map_err(failed)?;
        sock.listen(BACKLOG).map_err(failed)
    }

    /// The instance stopped: its thread ends and every later request fails.
    pub fn close(&self) {
        {
            let mut st = lock(&self.state);
            st.closed = true;
            st.retire();
        }
        let mut reg = lock(&REGISTRY);
        let key = (self.pid, self.start_time);
        if reg
            .get(&key)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
        {
            reg.remove(&key);
        }
    }

    /// Whether the connector's thread is running now.
    pub fn has_thread(&self) -> bool {
        lock(&self.state).tx.is_some()
    }

    /// One new socket inside the instance's network namespace: from the pool, else made by
    /// the thread for this request.
    async fn socket(&self, v6: bool) -> Result<TcpSocket, ConnectorError> {
        let fd = self.socket_fd(v6).await?;
        Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(fd)))
    }

    async fn socket_fd(&self, v6: bool) -> Result<OwnedFd, ConnectorError> {
        let fd = match self.pooled(v6)? {
            Some(fd) => fd,
            None => {
                let (reply, answer) = oneshot::channel();
                self.send(Request::Socket { v6, reply })?;
                let closed = ConnectorError::Closed { pid: self.pid };
                answer.await.map_err(|_| closed)??
            }
        };
        Ok(fd)
    }

    /// An IPv4 socket from the pool, if it has one; wakes the thread to top it up when low.
    fn pooled(&self, v6: bool) -> Result<Option<OwnedFd>, ConnectorError> {
        if v6 {
            return Ok(None);
        }
        let mut st = lock(&self.state);
        if st.closed {
            return Err(ConnectorError::Closed { pid: self.pid });
        }
        let fd = st.pool.pop();
        if fd.is_some() && st.pool.len() <= POOL_LOW && !st.refilling {
            st.refilling = st
                .tx
                .as_ref()
                .is_some_and(|tx| tx.send(Request::Refill).is_ok());
        }
        Ok(fd)
    }

    /// Queues `req` for the thread, starting one when none runs.
    fn send(&self, req: Request) -> Result<(), ConnectorError> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(ConnectorError::Closed { pid: self.pid });
        }
        let req = match &st.tx {
            Some(tx) => match tx.send(req) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(req)) => req, // its thread ended: start another
            },
            None => req,
        };
        let pid = self.pid;
        let pidfd = process::open_verified_pidfd(pid, self.start_time)
            .map_err(|source| ConnectorError::Enter { pid, source })?
            .ok_or(ConnectorError::Closed { pid })?;
        let (tx, rx) = mpsc::channel();
        let (state, idle) = (self.state.clone(), self.idle);
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || serve(pid, pidfd, rx, idle, state))
            .map_err(|source| ConnectorError::Socket { pid, source })?;
        let _ = tx.send(req); // the thread answers it, whatever happens next
        st.tx = Some(tx);
        Ok(())
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        // Its thread sees the queue disconnected and ends. (The registry's entry is a dead
        // `Weak` now, pruned by the next `of`; never lock the registry here: `of` may drop the
        // last handle of a closed connector while holding it.)
        lock(&self.state).retire();
    }
}

/// The connector's thread: joins the namespace, then answers requests (each followed by
/// topping the pool up) until the queue is closed or stays empty for `idle`.
fn serve(
    pid: i32,
    pidfd: OwnedFd,
    rx: Receiver<Request>,
    idle: Duration,
    state: Arc<Mutex<State>>,
) {
    let entered = sys::setns(pidfd.as_fd(), libc::CLONE_NEWNET);
    drop(pidfd);
    if let Err(e) = entered {
        // Answer what is queued and leave: the next request tries again (and learns that the
        // instance is gone, if it is).
        let mut st = lock(&state);
        st.retire();
        while let Ok(req) = rx.try_recv() {
            if let Request::Socket { reply, .. } = req {
                let source = copy_error(&e);
                let _ = reply.send(Err(ConnectorError::Enter { pid, source }));
            }
        }
        return;
    }
    loop {
        let req = match rx.recv_timeout(idle) {
            Ok(req) => req,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                // Senders queue under this lock: nothing can arrive once it is released with
                // the queue gone from the state.
                let mut st = lock(&state);
                match rx.try_recv() {
                    Ok(req) => req,
                    Err(_) => {
                        st.retire();
                        return;
                    }
                }
            }
        };
        if let Request::Socket { v6, reply } = req {
            let socket =
                sys::tcp_socket(v6).map_err(|source| ConnectorError::Socket { pid, source });
            let _ = reply.send(socket);
        }
        top_up(&state);
    }
}

/// Fills the pool up to POOL (made outside the lock; dropped if the connector was closed or
/// retired meanwhile).
fn top_up(state: &Mutex<State>) {
    let want = if crate::ratelimit::reserve::descriptors_scarce() {
        0 // short of descriptors: sockets are made on request only
    } else {
        POOL.saturating_sub(lock(state).pool.len())
    };
    let made: Vec<OwnedFd> = (0..want)
        .map_while(|_| sys::tcp_socket(false).ok())
        .collect();
    let mut st = lock(state);
    st.refilling = false;
    if st.tx.is_some() {
        st.pool.extend(made);
        st.pool.truncate(POOL);
    }
}

fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads of this process named like the connector's.
    fn connector_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim_end() == THREAD_NAME)
            })
            .count()
    }

    /// In our own namespace (pid = ourselves): sockets connect and listen, one thread serves
    /// them all, the registry hands out the same connector, and close ends the thread.
    #[tokio::test]
    async fn connects_listens_and_closes() {
        let me = std::process::id() as i32;
        let start = process::start_time(me).unwrap();
        let c = Connector::of(me, start);
        assert!(Arc::ptr_eq(&c, &Connector::of(me, start)));
        assert!(!c.has_thread());
        let l = c.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let before = connector_threads();
        for _ in 0..50 {
            let s = c.connect(addr).await.unwrap();
            assert!(s.nodelay().unwrap());
            l.accept().await.unwrap();
        }
        assert!(c.has_thread());
        assert_eq!(connector_threads(), before, "one thread for all requests");
        assert!(lock(&c.state).pool.len() <= POOL);
        // Nothing listens: the error names the address, and the connector still works.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = c.connect(dead).await.unwrap_err();
        assert!(e.to_string().contains(&dead.to_string()), "{e}");
        c.close();
        assert!(
            lock(&c.state).pool.is_empty(),
            "close closes the sockets made ahead"
        );
        assert!(matches!(
            c.connect(addr).await,
            Err(ConnectorError::Closed { .. })
        ));
        assert!(
            !Arc::ptr_eq(&c, &Connector::of(me, start)),
            "a closed one is not reused"
        );
    }

    #[tokio::test]
    async fn an_idle_thread_ends_and_comes_back() {
        let me = std::process::id() as i32;
        let c = Connector {
            pid: me,
            start_time: 0,
            idle: Duration::from_millis(100),
            state: Arc::default(),
        };
        let l = c.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert!(c.has_thread());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while c.has_thread() {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle thread never ended"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            lock(&c.state).pool.is_empty(),
            "an idle thread leaves no sockets"
        );
        c.connect(l.local_addr().unwrap()).await.unwrap();
        assert!(c.has_thread(), "started again by the next request");
    }

    #[tokio::test]
    async fn a_gone_process_has_no_connector() {
        // A start time that is not our process's: the pid names another process.
        let me = std::process::id() as i32;
        let c = Connector::of(me, 1);
        let e = c.connect("127.0.0.1:1".parse().unwrap()).await.unwrap_err();
        assert!(matches!(e, ConnectorError::Closed { .. }), "{e}");
    }
}
