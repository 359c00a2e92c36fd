//! The VPC's data plane in the router namespace (`sandbox::vpc` makes the namespace and the
//! instances' veths; this module decides what may cross it). Today: the stateful firewall
//! that enforces security groups between instances (`firewall`).
//!
//! ```text
//! Firewall::start(router)  one std thread per daemon, idle until asked
//! Firewall::update(snap)   the runtime's view changed (an instance booted or stopped, a group,
//!                          a rule or an instance's groups changed) → the newest snapshot is
//!                          kept, the thread is woken; updates that arrive while one applies
//!                          are folded into the next (the last one wins, none is lost)
//! thread                   joins the router namespace once; per update: compile → `nft -f -`
//!                          (spawned from the thread, so in that namespace; one transaction: the
//!                          old ruleset stays whole until the new one replaces it) → the
//!                          generation applied is published (`applied`); a failure is logged
//!                          with nft's message and the previous ruleset stays
//! ```
//!
//! Until the first ruleset is in, the router forwards nothing (the kernel's default for a
//! namespace with `ip_forward` off): the thread turns forwarding on after its first apply.

pub mod firewall;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use firewall::{Member, Snapshot};

#[derive(Default)]
struct State {
    /// The newest snapshot not yet applied, with its generation and when it was asked for.
    pending: Option<(u64, Snapshot, std::time::Instant)>,
    next: u64,
    applied: u64,
    stopped: bool,
}

/// The applier of the VPC firewall (see the module docs).
pub struct Firewall {
    router: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
}

impl Firewall {
    /// Starts the applier for the router namespace bind-mounted at `router`.
    pub fn start(router: PathBuf) -> Arc<Firewall> {
        let fw = Arc::new(Firewall {
            router,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let me = fw.clone();
        let _ = std::thread::Builder::new()
            .name("ec2lab-vpc-fw".into())
            .spawn(move || me.run());
        fw
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for `snap` to be enforced; returns its generation (see [`Firewall::wait_applied`]).
    pub fn update(&self, snap: Snapshot) -> u64 {
        let mut st = self.lock();
        st.next += 1;
        let generation = st.next;
        st.pending = Some((generation, snap, std::time::Instant::now()));
        self.wake.notify_all();
        generation
    }

    /// Waits until generation `generation` (or a later one) is in the kernel, at most `timeout`;
    /// whether it is.
    pub fn wait_applied(&self, generation: u64, timeout: Duration) -> bool {
        let st = self.lock();
        let (st, _) = self
            .wake
            .wait_timeout_while(st, timeout, |s| s.applied < generation && !s.stopped)
            .unwrap_or_else(|p| p.into_inner());
        st.applied >= generation
    }

    /// Daemon shutdown: the thread ends (the ruleset stays with the namespace).
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_all();
    }

    fn run(&self) {
        // This thread lives in the router's namespace: the `nft` it spawns inherits it (one
        // exec per update, no `nsenter`).
        let joined = std::fs::File::open(&self.router).and_then(|ns| {
            crate::sandbox::sys::setns(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWNET)
        });
        if let Err(e) = joined {
            tracing::error!(error = %e, router = %self.router.display(), "the VPC firewall cannot enter the router namespace");
            return;
        }
        let mut forwarding = false;
        loop {
            let (generation, snap, asked) = {
                let mut st = self.lock();
                while st.pending.is_none() && !st.stopped {
                    st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.stopped {
                    return;
                }
                st.pending.take().expect("pending")
            };
            let t0 = std::time::Instant::now();
            let script = firewall::compile(&snap);
            match self.apply(&script) {
                Ok(()) => {
                    if !forwarding {
                        match crate::sandbox::vpc::Router::set_forwarding(&self.router, true) {
                            Ok(()) => forwarding = true,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot turn on forwarding in the VPC router")
                            }
                        }
                    }
                    tracing::debug!(
                        generation,
                        members = snap.members.len(),
                        ms = t0.elapsed().as_secs_f64() * 1000.0,
                        since_asked_ms = asked.elapsed().as_secs_f64() * 1000.0,
                        "vpc firewall applied"
                    )
                }
                Err(e) => tracing::error!(generation, error = %e, "cannot apply the VPC firewall"),
            }
            let mut st = self.lock();
            st.applied = st.applied.max(generation);
            self.wake.notify_all();
        }
    }

    /// `nft -f -`, from this thread (in the router namespace).
    fn apply(&self, script: &str) -> Result<(), String> {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e} (install Debian's nftables)"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("writing to nft: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}
