//! The instance's service manager: systemd's unit files and `systemctl` as users know them,
//! run inside the instance's PID 1 (`sandbox::init`) and reached by the instance's tools over
//! a unix socket under `/run/ec2lab`.
//!
//! Files, in the order a start goes through them: `tmpfiles` (`tmpfiles.d`, once, as PID 1's
//! manager starts) → `units` (unit files, drop-ins, aliases, masks, SysV scripts; the syntax in
//! `unitfile`) → `install` (enabled state, what a boot starts) → `deps` (start and stop order)
//! → `manager` (PID 1's side: sockets, output pipes, the environment of a start) → `jobs` (the
//! job queue, requests, boot and shutdown) → `supervisor` (one service's state machine;
//! `watch`: exits, timers, PID files) → `spawn` (fork + exec of one process) → `journal` (the
//! output of services) → `notify` (`NOTIFY_SOCKET`) → `status` (what `status`/`list-units`
//! print) → `ctl` (the protocol) → `client` (`systemctl`) and `tools` (`journalctl`,
//! `service`, `poweroff`, …): one multi-call program, the daemon's own binary bound read-only
//! into the instance; `packages` (`yum`, `dnf`, `amazon-linux-extras`: Amazon Linux's package
//! names through `pkgmap` to the image's Debian packages, read and installed by `dpkg`) is one
//! more tool of it.
//!
//! Robustness: a unit file that does not parse is a unit in state `error` with the line that
//! failed; PID 1 calls the manager under `catch_unwind`, so even a bug here leaves the instance
//! up (the services keep running, the tools then say the manager is gone).

pub mod client;
pub mod ctl;
pub mod deps;
pub mod dpkg;
pub mod install;
pub mod jobs;
pub mod journal;
pub mod manager;
pub mod notify;
pub mod packages;
mod pending;
pub mod pkgmap;
pub mod spawn;
mod status;
pub mod supervisor;
pub mod tmpfiles;
pub mod tools;
pub mod unitfile;
pub mod units;
mod watch;

pub use manager::Manager;

/// Asks PID 1 to start every enabled unit (the boot stage's step between cloud-init's config
/// and final stages). Returns the lines to show in the boot output.
pub fn boot_units() -> Vec<String> {
    match ctl::call(&ctl::Request::Boot) {
        Ok(r) if !r.out.is_empty() => vec![r.out],
        Ok(_) => Vec::new(),
        Err(e) => vec![format!("ec2lab-init: enabled units not started: {e}")],
    }
}
