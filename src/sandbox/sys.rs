//! The system-call seam: one thin wrapper per raw call the sandbox makes.
//!
//! Each wrapper turns the C convention (-1 + errno) into `io::Result` and does nothing else;
//! callers attach the path or value that failed (see `SandboxError`). Everything that needs
//! `unsafe` for a syscall lives here, so the setup sequences elsewhere read as plain Rust.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// `-1` → `Err(errno)`.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_l(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Retries a call interrupted by a signal.
pub(crate) fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(crate) fn cstring(s: impl AsRef<[u8]>) -> io::Result<CString> {
    CString::new(s.as_ref())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains a nul byte"))
}

pub(crate) fn cpath(p: &Path) -> io::Result<CString> {
    cstring(p.as_os_str().as_bytes())
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

pub(crate) fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: every pointer is either null or a valid nul-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            opt_ptr(src),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    };
    cvt(r).map(drop)
}

pub(crate) fn umount2(target: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `target` is a valid nul-terminated string.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both arguments are valid nul-terminated strings; the syscall only reads them.
    cvt_l(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

pub(crate) fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a file descriptor we borrow for the duration of the call.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

/// A new TCP socket (non-blocking, close-on-exec) in the calling thread's network namespace,
/// where it stays for its whole life.
pub(crate) fn tcp_socket(v6: bool) -> io::Result<OwnedFd> {
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket(2) with constant arguments; on success we own the new descriptor.
    let fd = cvt(unsafe { libc::socket(domain, ty, 0) })?;
    // SAFETY: `fd` is fresh from socket(2) and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Starts connecting the non-blocking socket `fd` to `addr`: `Ok(true)` when already
/// connected, `Ok(false)` while in progress (EINPROGRESS).
pub(crate) fn connect_start(fd: BorrowedFd<'_>, addr: &std::net::SocketAddr) -> io::Result<bool> {
    // SAFETY: all-zero is a valid sockaddr_storage; the family's struct is filled in below.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: the address is valid for `len` bytes during the call.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    };
    match cvt(r) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `fd` is writable (or has an error or hang-up) right now, without waiting.
pub(crate) fn writable_now(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    cvt(unsafe { libc::poll(&mut pfd, 1, 0) }).map(|n| n > 0)
}

pub(crate) fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`'s bytes, which outlive the call.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

pub(crate) fn fchdir(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed descriptor.
    cvt(unsafe { libc::fchdir(fd.as_raw_fd()) }).map(drop)
}

pub(crate) fn chdir(p: &CStr) -> io::Result<()> {
    // SAFETY: valid nul-terminated string.
    cvt(unsafe { libc::chdir(p.as_ptr()) }).map(drop)
}

pub(crate) fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on integers; the caller owns `to` afterwards as it did before.
    cvt(unsafe { libc::dup2(from, to) }).map(drop)
}

/// Closes every descriptor in `first..=last` (close_range(2), Linux 5.9).
pub(crate) fn close_range(first: u32, last: u32) -> io::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: closing descriptors by number; callers only keep the ones outside the range.
    cvt(unsafe { libc::close_range(first, last, 0) }).map(drop)
}

/// Closes every descriptor ≥ 3 except those listed.
pub(crate) fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd >= 3)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    let mut next = 3u32;
    for fd in keep {
        close_range(next, fd.saturating_sub(1))?;
        next = fd + 1;
    }
    close_range(next, u32::MAX)
}

pub(crate) fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both numbers are fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, new) }).map(drop)
}

pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

// ---------------------------------------------------------------------------------------------
// openat2 (Linux 5.6): resolve a path with the rootfs as "/" so that symlinks in an image or in
// a persisted upper layer can never lead a mount outside the instance's root.

pub(crate) const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub(crate) const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub(crate) fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    let fd = retry(|| {
        // SAFETY: `how` is a correctly laid-out `struct open_how` and its size is passed; `path`
        // is a valid string. On success the result is a fresh descriptor we own.
        cvt_l(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        })
    })?;
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let fd = retry(|| {
        // SAFETY: valid string; on success we own the returned descriptor.
        cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })
    })?;
    // SAFETY: fresh descriptor from open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn mkdirat(dirfd: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: valid string and borrowed descriptor.
    cvt(unsafe { libc::mkdirat(dirfd.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

pub(crate) fn mknodat(
    dirfd: BorrowedFd<'_>,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: valid string and borrowed descriptor.
    cvt(unsafe { libc::mknodat(dirfd.as_raw_fd(), name.as_ptr(), mode, dev) }).map(drop)
}

pub(crate) fn symlinkat(target: &CStr, dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid strings and borrowed descriptor.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dirfd.as_raw_fd(), name.as_ptr()) }).map(drop)
}

pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed descriptor.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed descriptor.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// Flags of the mount that holds `path` (`ST_RDONLY`, `ST_NOSUID`, …), as statvfs reports them.
pub(crate) fn statvfs_flags(path: &CStr) -> io::Result<libc::c_ulong> {
    // SAFETY: zeroed statvfs is a valid out-parameter; `path` is a valid string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_flag)
}

pub(crate) fn statfs_type(path: &CStr) -> io::Result<i64> {
    // SAFETY: zeroed statfs is a valid out-parameter; `path` is a valid string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::statfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// "/proc/self/fd/N": lets mount(2) act on a descriptor resolved earlier with openat2.
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no nul in a formatted path")
}

// ---------------------------------------------------------------------------------------------
// Processes

pub(crate) enum Fork {
    Child,
    Parent {
        pid: libc::pid_t,
        pidfd: Option<OwnedFd>,
    },
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3(2) used like fork(2): the child continues on a copy of the caller's stack.
///
/// Only call this from a single-threaded process. Unlike glibc's fork, the raw syscall does
/// not run atfork handlers nor update glibc's cached thread id in the child; the child must
/// therefore avoid `raise`/`abort`-style self-signalling through glibc and should not create
/// threads (our PID 1 does neither).
pub(crate) fn clone3(flags: u64, exit_signal: u64) -> io::Result<Fork> {
    let mut pidfd: libc::c_int = -1;
    let want_pidfd = flags & libc::CLONE_PIDFD as u64 != 0;
    let args = CloneArgs {
        flags,
        pidfd: if want_pidfd {
            &mut pidfd as *mut libc::c_int as u64
        } else {
            0
        },
        exit_signal,
        ..Default::default()
    };
    // SAFETY: `args` is a correctly laid-out `struct clone_args` whose size we pass; no stack is
    // given, so the child resumes here on a private copy of our memory, exactly as with fork.
    // The process is single-threaded (documented requirement), so no lock can be held by a
    // thread that does not exist in the child.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let pid = cvt_l(r)? as libc::pid_t;
    if pid == 0 {
        return Ok(Fork::Child);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a fresh descriptor that we now own.
    let pidfd = want_pidfd.then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Ok(Fork::Parent { pid, pidfd })
}

/// glibc fork(2), for single-threaded helpers (enter, init).
pub(crate) fn fork() -> io::Result<Fork> {
    // SAFETY: callers are single-threaded helper processes; the child only runs our own code.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent { pid, pidfd: None }
    })
}

pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the result is a fresh descriptor we own.
    let fd = cvt_l(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed pidfd; no siginfo is passed.
    cvt_l(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Waits until `fd` is readable (for a pidfd: the process has exited). `None` waits forever.
/// Returns false on timeout.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// How a process ended, as waitid(2) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl WaitStatus {
    /// Shell convention: exit code, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            WaitStatus::Exited(c) => c,
            WaitStatus::Signaled(s) => 128 + s,
        }
    }
}

const P_PIDFD: libc::idtype_t = 3;

fn waitid_raw(
    idtype: libc::idtype_t,
    id: libc::id_t,
    options: libc::c_int,
) -> io::Result<Option<(libc::pid_t, WaitStatus)>> {
    // SAFETY: zeroed siginfo is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-parameter; plain syscall.
    retry(|| cvt(unsafe { libc::waitid(idtype, id, &mut info, options) }))?;
    // SAFETY: waitid filled a SIGCHLD siginfo (or left it zeroed with WNOHANG), so the child
    // fields are the ones to read.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    let st = if info.si_code == libc::CLD_EXITED {
        WaitStatus::Exited(status)
    } else {
        WaitStatus::Signaled(status)
    };
    Ok(Some((pid, st)))
}

/// Reaps the process behind `pidfd` (it must be our child). `block=false` returns `None` while
/// it still runs.
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<WaitStatus>> {
    let opts = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    Ok(waitid_raw(P_PIDFD, pidfd.as_raw_fd() as libc::id_t, opts)?.map(|(_, s)| s))
}

/// waitpid(-1, WNOHANG) as waitid: the next exited child, if any.
pub(crate) fn reap_any() -> io::Result<Option<(libc::pid_t, WaitStatus)>> {
    waitid_raw(libc::P_ALL, 0, libc::WEXITED | libc::WNOHANG)
}

pub(crate) fn wait_pid(pid: libc::pid_t, block: bool) -> io::Result<Option<WaitStatus>> {
    let opts = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    Ok(waitid_raw(libc::P_PID, pid as libc::id_t, opts)?.map(|(_, s)| s))
}

pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: always succeeds.
    unsafe { libc::getpid() }
}

/// `_exit(2)`: leaves without running atexit handlers or destructors (for forked children).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: terminates the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

// ---------------------------------------------------------------------------------------------
// Signals

pub(crate) fn sigset(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: zeroed sigset is a valid argument for sigemptyset, which initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in sigs {
        // SAFETY: as above; invalid numbers are simply rejected by sigaddset.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

pub(crate) fn sigprocmask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: valid set pointer; old mask not requested.
    cvt(unsafe { libc::sigprocmask(how, set, std::ptr::null_mut()) }).map(drop)
}

/// Unblocks every signal and restores the default disposition of all catchable ones (Rust
/// starts with SIGPIPE ignored, which exec would pass on to instance programs).
pub(crate) fn reset_signals() {
    let all = {
        // SAFETY: sigfillset initialises the zeroed set.
        let mut s: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sigfillset(&mut s) };
        s
    };
    let _ = sigprocmask(libc::SIG_UNBLOCK, &all);
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting the default disposition is always sound; errors for reserved
        // signals are ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

pub(crate) fn signalfd(sigs: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset(sigs);
    sigprocmask(libc::SIG_BLOCK, &set)?;
    // SAFETY: valid set; on success we own the new descriptor.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from a non-blocking signalfd: (signal number, sender pid as seen
/// in our PID namespace — 0 when the sender lives outside it).
pub(crate) fn read_signalfd(fd: BorrowedFd<'_>) -> io::Result<Option<(i32, u32)>> {
    // SAFETY: zeroed signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let len = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the buffer is exactly one signalfd_siginfo.
    let r = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            len,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if r as usize != len {
        return Ok(None);
    }
    Ok(Some((info.ssi_signo as i32, info.ssi_pid)))
}

// ---------------------------------------------------------------------------------------------
// Capabilities and prctl

pub(crate) fn prctl(
    option: libc::c_int,
    a2: libc::c_ulong,
    a3: libc::c_ulong,
) -> io::Result<libc::c_int> {
    // SAFETY: prctl with integer arguments only (no pointers) for the options we use.
    cvt(unsafe { libc::prctl(option, a2, a3, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Sets the calling thread's effective, permitted and inheritable sets (64-bit masks).
pub(crate) fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: version-3 header followed by the two-element data array the kernel expects.
    cvt_l(unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) })
        .map(drop)
}

pub(crate) fn setgroups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: pointer/length describe `groups`.
    cvt(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }).map(drop)
}

pub(crate) fn setresgid(gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::setresgid(gid, gid, gid) }).map(drop)
}

pub(crate) fn setresuid(uid: libc::uid_t) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::setresuid(uid, uid, uid) }).map(drop)
}

pub(crate) fn setsid() -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::setsid() }).map(drop)
}

pub(crate) fn umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: always succeeds.
    unsafe { libc::umask(mask) }
}

/// execve(2). Only returns on failure.
pub(crate) fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: null-terminated arrays of valid strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// Writes all of `buf` to a raw descriptor (used where no `File` should own the descriptor).
pub(crate) fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: pointer/length describe `buf`.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

/// ioctl with an integer argument.
pub(crate) fn ioctl_int(
    fd: BorrowedFd<'_>,
    req: libc::Ioctl,
    arg: libc::c_int,
) -> io::Result<libc::c_int> {
    // SAFETY: the requests used here take an integer argument.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) })
}

pub(crate) fn isatty(fd: RawFd) -> bool {
    // SAFETY: plain call on an integer descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

// ---------------------------------------------------------------------------------------------
// The new mount API (Linux 5.2+; idmapped mounts 5.12+): detached bind clones, their
// attributes, and attaching them.

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `open_tree(path, OPEN_TREE_CLONE)`: a detached copy of the mount at `path` (rooted there),
/// like a non-recursive bind mount that is not attached anywhere yet.
pub(crate) fn open_tree_clone(path: &CStr) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: valid string; on success the result is a fresh descriptor we own.
    let fd = cvt_l(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })?;
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `mount_setattr` on a detached mount: sets `attrs`, with `userns` for `MOUNT_ATTR_IDMAP`.
pub(crate) fn mount_setattr(
    mnt: BorrowedFd<'_>,
    attrs: u64,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |f| f.as_raw_fd() as u64),
    };
    // SAFETY: `attr` is a correctly laid-out `struct mount_attr` whose size we pass; the empty
    // path with AT_EMPTY_PATH names the descriptor itself.
    cvt_l(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Attaches the detached mount `mnt` on the directory (or file) `target` refers to.
pub(crate) fn move_mount_to(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: both descriptors are borrowed for the call; empty paths name them.
    cvt_l(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}
