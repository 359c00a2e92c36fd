//! The instance's PID 1 (`init_main`): console banner, the boot closure in a child, reaping
//! orphans, and shutdown.
//!
//! Order: refuse to run unless PID 1 → block the signals below and read them from a signalfd
//! → create the `/run/initctl` FIFO → banner → the service manager (`initsys`: its sockets and
//! unit files) → fork `boot` (signals reset, oom_score_adj 0, own session; its stdout/stderr
//! are the console; it asks the manager to start the enabled units between cloud-init's config
//! and final stages) → loop: reap children (each one told to the manager), serve the manager's
//! descriptors and timers, wait for a shutdown request → stop the units in reverse order
//! (within 4/5 of `shutdown_grace`) → TERM everything (`kill(-1)`), wait up to
//! `shutdown_grace`, KILL the rest → exit with the code below.
//!
//! The manager runs under `catch_unwind`: a bug in it ends the manager, never PID 1.
//!
//! Shutdown requests and the **exit-code contract** (the daemon is init's parent and reads it):
//!
//! | request | sender | exit |
//! |---|---|---|
//! | SIGTERM, SIGINT, SIGPWR | host (the daemon's `stop`; sender pid 0 in the namespace) | `EXIT_HOST_STOP` = 0 |
//! | `poweroff`/`halt`/`shutdown -h` via `/run/initctl` (runlevel 0, what sysvinit's and systemd's tools write when PID 1 is not systemd), or the lab's `poweroff`/`systemctl poweroff` over the manager's socket | instance | `EXIT_POWEROFF` = 100 |
//! | `reboot`, `shutdown -r`, `systemctl reboot` over the manager's socket | instance | `EXIT_REBOOT` = 101 |
//! | SIGUSR1 (busybox halt), SIGUSR2 (busybox poweroff), SIGPWR, SIGRTMIN+3/+4 (systemd halt/poweroff) | instance | `EXIT_POWEROFF` = 100 |
//! | `reboot` via `/run/initctl` (runlevel 6), SIGTERM (busybox reboot), SIGINT (ctrl-alt-del), SIGRTMIN+5 | instance | `EXIT_REBOOT` = 101 |
//! | SIGRTMIN+5 / SIGUSR2 from the host | host | 101 / 100 (the daemon may use them for reboot) |
//! | init itself failed (not PID 1, cannot set up signals) | — | `EXIT_FAILURE` = 1 |
//! | killed by a signal (SIGKILL from `stop` after its grace, OOM, …) | — | signal death = crashed or forced |
//!
//! "Instance asked to shut down" = exit 100 (or 101 for reboot); "stopped by the host" = 0;
//! anything else = crashed. `InitExit::from_status` does this mapping.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::sys::{self, Fork, WaitStatus};
use crate::initsys::Manager;
use crate::initsys::ctl::Power;

/// Init's exit code after a stop requested by the host.
pub const EXIT_HOST_STOP: i32 = 0;
/// Init's exit code when init itself failed.
pub const EXIT_FAILURE: i32 = 1;
/// Init's exit code when the instance powered itself off (poweroff, halt, shutdown -h).
pub const EXIT_POWEROFF: i32 = 100;
/// Init's exit code when a reboot was requested.
pub const EXIT_REBOOT: i32 = 101;

/// How the instance's PID 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitExit {
    /// Stopped on the host's request (exit 0).
    HostStop,
    /// The instance powered itself off (`poweroff`, `halt`, `shutdown -h`): exit 100.
    Poweroff,
    /// The instance asked for a reboot: exit 101.
    Reboot,
    /// Init exited with another code (1 = init itself failed).
    Failed(i32),
    /// Init was killed by this signal (crash, OOM, or SIGKILL after the stop grace).
    Killed(i32),
}

impl InitExit {
    /// Maps init's wait status to its meaning (see the module docs).
    pub fn from_status(s: WaitStatus) -> InitExit {
        match s {
            WaitStatus::Exited(EXIT_HOST_STOP) => InitExit::HostStop,
            WaitStatus::Exited(EXIT_POWEROFF) => InitExit::Poweroff,
            WaitStatus::Exited(EXIT_REBOOT) => InitExit::Reboot,
            WaitStatus::Exited(c) => InitExit::Failed(c),
            WaitStatus::Signaled(s) => InitExit::Killed(s),
        }
    }
}

/// Configuration of the instance's init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitConfig {
    /// Shown in the boot banner.
    pub instance_id: String,
    /// How long processes get between SIGTERM and SIGKILL at shutdown.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Host,
    Poweroff,
    Reboot,
}

impl Reason {
    fn code(self) -> i32 {
        match self {
            Reason::Host => EXIT_HOST_STOP,
            Reason::Poweroff => EXIT_POWEROFF,
            Reason::Reboot => EXIT_REBOOT,
        }
    }
    fn text(self) -> &'static str {
        match self {
            Reason::Host => "stop requested by the host",
            Reason::Poweroff => "power-off requested by the instance",
            Reason::Reboot => "reboot requested",
        }
    }
}

fn rtmin(n: i32) -> i32 {
    libc::SIGRTMIN() + n
}

pub(crate) fn handled_signals() -> Vec<i32> {
    vec![
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGPWR,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        rtmin(3),
        rtmin(4),
        rtmin(5),
    ]
}

/// What a signal means; `from_host` = the sender is outside the instance (pid 0 in our view).
fn classify(sig: i32, from_host: bool) -> Option<Reason> {
    let r = match sig {
        libc::SIGTERM | libc::SIGINT if from_host => Reason::Host,
        libc::SIGPWR if from_host => Reason::Host,
        libc::SIGTERM | libc::SIGINT => Reason::Reboot,
        libc::SIGPWR | libc::SIGUSR1 | libc::SIGUSR2 => Reason::Poweroff,
        s if s == rtmin(3) || s == rtmin(4) => Reason::Poweroff,
        s if s == rtmin(5) => Reason::Reboot,
        _ => return None,
    };
    Some(r)
}

const INITCTL: &std::ffi::CStr = c"/run/initctl";
const INIT_MAGIC: i32 = 0x0309_1969;
const INIT_CMD_RUNLVL: i32 = 1;
/// sizeof(struct init_request) in sysvinit's initreq.h.
const INITRQ_LEN: usize = 384;

/// Decodes one `struct init_request` (magic, cmd, runlevel, …).
fn parse_initctl(req: &[u8]) -> Option<Reason> {
    if req.len() < 12 {
        return None;
    }
    let int = |i: usize| i32::from_ne_bytes(req[i * 4..i * 4 + 4].try_into().unwrap());
    if int(0) != INIT_MAGIC || int(1) != INIT_CMD_RUNLVL {
        return None;
    }
    match u8::try_from(int(2)).ok()? {
        b'0' => Some(Reason::Poweroff),
        b'6' => Some(Reason::Reboot),
        _ => None,
    }
}

struct Console {
    t0: Instant,
}

impl Console {
    /// One console line, kernel-log style: `[    0.001234] ec2lab-init: …`.
    fn line(&self, msg: &str) {
        let t = self.t0.elapsed();
        let s = format!(
            "[{:5}.{:06}] ec2lab-init: {msg}\n",
            t.as_secs(),
            t.subsec_micros()
        );
        let _ = sys::write_all_fd(1, s.as_bytes());
    }
}

/// Body of `__init`: the instance's PID 1. Never returns; see the module docs for the exit
/// codes. `boot` runs once per start in a child process.
pub fn init_main(cfg: InitConfig, boot: impl FnOnce()) -> ! {
    let con = Console { t0: Instant::now() };
    if sys::getpid() != 1 {
        // kill(-1) at shutdown would hit every process we may signal: only ever run as PID 1
        // of an instance's PID namespace.
        eprintln!("ec2lab init: not PID 1 of an instance, refusing to run");
        std::process::exit(EXIT_FAILURE);
    }
    let sfd = match sys::signalfd(&handled_signals()) {
        Ok(fd) => fd,
        Err(e) => {
            con.line(&format!("cannot set up signal handling: {e}"));
            std::process::exit(EXIT_FAILURE);
        }
    };
    let initctl = open_initctl()
        .map_err(|e| {
            con.line(&format!(
                "no /run/initctl ({e}); shutdown requests only by signal"
            ))
        })
        .ok();
    con.line(&format!("booting instance {}", cfg.instance_id));
    let mut mgr =
        std::panic::catch_unwind(|| Manager::new(std::path::Path::new("/"), cfg.shutdown_grace))
            .map_err(|_| con.line("the service manager failed to start; no units"))
            .ok();

    let mut close = vec![
        sfd.as_raw_fd(),
        initctl.as_ref().map_or(-1, |f| f.as_raw_fd()),
    ];
    if let Some(m) = &mgr {
        close.extend(m.pollfds().iter().map(|p| p.fd));
    }
    let boot_pid = match spawn_boot(boot, &close) {
        Ok(pid) => Some(pid),
        Err(e) => {
            con.line(&format!("cannot start boot: {e}"));
            None
        }
    };

    let reason = wait_for_shutdown(
        &con,
        sfd.as_fd(),
        initctl.as_ref().map(|f| f.as_fd()),
        boot_pid,
        &mut mgr,
    );
    con.line(&format!("{}; stopping all processes", reason.text()));
    let units_limit = cfg.shutdown_grace * 4 / 5;
    let fd = sfd.as_fd();
    guard(&mut mgr, &con, |m| {
        m.stop_all(units_limit, &mut |m, step| {
            let mut pfds = vec![libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            pfds.extend(m.pollfds());
            // SAFETY: valid pollfd array of the given length.
            unsafe {
                libc::poll(
                    pfds.as_mut_ptr(),
                    pfds.len() as libc::nfds_t,
                    step.as_millis() as i32,
                )
            };
            while let Ok(Some(_)) = sys::read_signalfd(fd) {}
            while let Ok(Some((pid, st))) = sys::reap_any() {
                m.child_exited(pid, st);
            }
            m.handle(&pfds[1..]);
        })
    });
    let _ = sys::kill(-1, libc::SIGTERM);
    if !wait_until_alone(sfd.as_fd(), cfg.shutdown_grace) {
        con.line(&format!(
            "killing processes still running after {} ms",
            cfg.shutdown_grace.as_millis()
        ));
        let _ = sys::kill(-1, libc::SIGKILL);
        wait_until_alone(sfd.as_fd(), Duration::from_secs(5));
    }
    con.line(match reason {
        Reason::Reboot => "restarting system",
        _ => "system halted",
    });
    std::process::exit(reason.code())
}

fn open_initctl() -> io::Result<OwnedFd> {
    // SAFETY: valid path string.
    let r = unsafe { libc::mkfifo(INITCTL.as_ptr(), 0o600) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    // O_RDWR: we hold a writer ourselves, so the FIFO never reports EOF between clients.
    sys::open(INITCTL, libc::O_RDWR | libc::O_NONBLOCK, 0)
}

fn spawn_boot(boot: impl FnOnce(), close: &[i32]) -> io::Result<libc::pid_t> {
    match sys::fork()? {
        Fork::Parent { pid, .. } => Ok(pid),
        Fork::Child => {
            for &fd in close.iter().filter(|&&fd| fd >= 0) {
                // SAFETY: these descriptors belong to the parent's init loop; the child never
                // uses them, and owning wrappers are not dropped in this process (we _exit).
                unsafe { libc::close(fd) };
            }
            sys::reset_signals();
            let _ = std::fs::write("/proc/self/oom_score_adj", "0");
            let _ = sys::setsid();
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(boot)).is_ok();
            let _ = io::Write::flush(&mut io::stdout());
            sys::exit_now(if ok { 0 } else { 1 })
        }
    }
}

/// Runs `f` on the manager; a panic ends the manager (never PID 1).
fn guard<T>(
    mgr: &mut Option<Manager>,
    con: &Console,
    f: impl FnOnce(&mut Manager) -> T,
) -> Option<T> {
    let m = mgr.as_mut()?;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(m))) {
        Ok(v) => Some(v),
        Err(_) => {
            con.line("the service manager failed; services keep running without it");
            *mgr = None;
            None
        }
    }
}

fn reap_all(
    con: Option<&Console>,
    boot_pid: Option<libc::pid_t>,
    mut on_exit: impl FnMut(libc::pid_t, WaitStatus),
) {
    while let Ok(Some((pid, st))) = sys::reap_any() {
        if Some(pid) == boot_pid
            && let Some(con) = con
            && st != WaitStatus::Exited(0)
        {
            con.line(&format!("boot finished with status {}", st.code()));
        }
        on_exit(pid, st);
    }
}

fn wait_for_shutdown(
    con: &Console,
    sfd: BorrowedFd<'_>,
    initctl: Option<BorrowedFd<'_>>,
    boot_pid: Option<libc::pid_t>,
    mgr: &mut Option<Manager>,
) -> Reason {
    loop {
        let mut pfds = vec![libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(fd) = initctl {
            pfds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let base = pfds.len();
        let timeout = guard(mgr, con, |m| {
            pfds.extend(m.pollfds());
            m.timeout()
        })
        .flatten()
        .map_or(-1, |d| d.as_millis().min(60_000) as i32 + 1);
        // SAFETY: valid pollfd array of the given length.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if r < 0 {
            continue;
        }
        while let Ok(Some((sig, sender))) = sys::read_signalfd(sfd) {
            if sig == libc::SIGCHLD {
                reap_all(Some(con), boot_pid, |pid, st| {
                    guard(mgr, con, |m| m.child_exited(pid, st));
                });
            } else if let Some(reason) = classify(sig, sender == 0) {
                return reason;
            }
        }
        let power = guard(mgr, con, |m| {
            m.handle(&pfds[base..]);
            m.power.take()
        })
        .flatten();
        match power {
            Some(Power::Reboot) => return Reason::Reboot,
            Some(_) => return Reason::Poweroff,
            None => {}
        }
        if let Some(fd) = initctl {
            let mut buf = [0u8; INITRQ_LEN];
            loop {
                // SAFETY: reading into our buffer from a descriptor we own.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                if let Some(reason) = parse_initctl(&buf[..n as usize]) {
                    return reason;
                }
            }
        }
    }
}

/// Other processes in our PID namespace that are not zombies (zombies of processes whose
/// parent is outside, e.g. `__enter` helpers, are already dead).
fn others_alive() -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            return false;
        };
        pid != 1 && matches!(super::process::stat(pid), Ok((st, _)) if st != 'Z' && st != 'X')
    })
}

/// Reaps until no other process is left or `limit` passes. True if alone.
fn wait_until_alone(sfd: BorrowedFd<'_>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        while let Ok(Some(_)) = sys::read_signalfd(sfd) {}
        reap_all(None, None, |_, _| {});
        if !others_alive() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let step = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(20));
        let _ = sys::poll_readable(sfd, Some(step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_meanings() {
        assert_eq!(classify(libc::SIGTERM, true), Some(Reason::Host));
        assert_eq!(classify(libc::SIGINT, true), Some(Reason::Host));
        assert_eq!(classify(libc::SIGTERM, false), Some(Reason::Reboot));
        assert_eq!(classify(libc::SIGUSR2, false), Some(Reason::Poweroff));
        assert_eq!(classify(libc::SIGUSR1, false), Some(Reason::Poweroff));
        assert_eq!(classify(rtmin(4), false), Some(Reason::Poweroff));
        assert_eq!(classify(rtmin(5), true), Some(Reason::Reboot));
        assert_eq!(classify(libc::SIGHUP, false), None);
        assert_eq!(classify(libc::SIGCHLD, true), None);
    }

    #[test]
    fn initctl_requests() {
        let mut req = [0u8; INITRQ_LEN];
        req[0..4].copy_from_slice(&INIT_MAGIC.to_ne_bytes());
        req[4..8].copy_from_slice(&INIT_CMD_RUNLVL.to_ne_bytes());
        req[8..12].copy_from_slice(&i32::from(b'0').to_ne_bytes());
        assert_eq!(parse_initctl(&req), Some(Reason::Poweroff));
        req[8..12].copy_from_slice(&i32::from(b'6').to_ne_bytes());
        assert_eq!(parse_initctl(&req), Some(Reason::Reboot));
        req[8..12].copy_from_slice(&i32::from(b'3').to_ne_bytes());
        assert_eq!(parse_initctl(&req), None);
        req[0] ^= 1;
        assert_eq!(parse_initctl(&req), None);
    }

    #[test]
    fn exit_mapping() {
        assert_eq!(
            InitExit::from_status(WaitStatus::Exited(0)),
            InitExit::HostStop
        );
        assert_eq!(
            InitExit::from_status(WaitStatus::Exited(100)),
            InitExit::Poweroff
        );
        assert_eq!(
            InitExit::from_status(WaitStatus::Exited(101)),
            InitExit::Reboot
        );
        assert_eq!(
            InitExit::from_status(WaitStatus::Exited(1)),
            InitExit::Failed(1)
        );
        assert_eq!(
            InitExit::from_status(WaitStatus::Signaled(9)),
            InitExit::Killed(9)
        );
    }
}
