//! What happens to an instance after the API answered: boots, stops, reboots and terminations
//! that the host carries out, the instance ending by itself, and the reconciliation at daemon
//! start.
//!
//! One rule keeps them apart: at most one of them works on an instance at a time (a lock per
//! instance id, taken around the host's work), and each writes its end state only if the record
//! is still in the state it started from (compare and set). So a terminate that arrives while a
//! boot is under way waits for the boot, then finds the sandbox live, stops it and only then
//! deletes the root volume (the volume used to leak with "Directory not empty" when the two ran
//! side by side); and a boot never records `running` over a `shutting-down`.
//!
//! Reconciliation at start (after the runtime removed whatever the previous daemon left):
//! `stopping` → `stopped`; `shutting-down` → finish terminating (stop, delete the volume,
//! `terminated`); `running`/`pending` → boot again from the root volume, or `stopped` with the
//! reason when that fails.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use super::images::Image;
use super::instances::{Instance, State};
use super::{AwsError, Cloud};

/// Lifecycle locks by instance id. An entry is a few bytes and stays for the daemon's life (a
/// lock must never be replaced while a thread waits on it).
static LOCKS: LazyLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = LazyLock::new(Default::default);

fn lock_of(id: &str) -> Arc<Mutex<()>> {
    LOCKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(id.to_string())
        .or_default()
        .clone()
}

/// Holds the instance's lifecycle lock while `f` runs. Never nest two for the same id.
fn locked<T>(id: &str, f: impl FnOnce() -> T) -> T {
    let lock = lock_of(id);
    let _guard: MutexGuard<'_, ()> = lock.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

impl Cloud {
    fn state_of(&self, id: &str) -> Option<State> {
        self.state()
            .instances
            .iter()
            .find(|i| i.id == id)
            .map(|i| i.state)
    }

    /// Boots `inst` if its record is in one of `from`, and records `running` if it still is.
    /// `Ok(false)`: the record had left `from` (terminated meanwhile); nothing was booted.
    pub(super) fn boot(
        &self,
        inst: &Instance,
        image: &Image,
        from: &[State],
    ) -> Result<bool, String> {
        locked(&inst.id, || self.boot_locked(inst, image, from))
    }

    fn boot_locked(&self, inst: &Instance, image: &Image, from: &[State]) -> Result<bool, String> {
        if !self.state_of(&inst.id).is_some_and(|s| from.contains(&s)) {
            return Ok(false);
        }
        self.host().start(inst, image)?;
        // A terminate that came during the boot has set shutting-down: it stops this sandbox
        // as soon as the lock is free, so the record is left to it.
        self.set_states_from(
            std::slice::from_ref(&inst.id),
            from,
            State::Running,
            None,
            "",
        )
        .map_err(|e| e.message)?;
        Ok(true)
    }

    /// After a failed boot: `stopped` with the reason, if the record is still in one of `from`.
    fn record_boot_failure(&self, id: &str, from: &[State], e: &AwsError) {
        let reason = format!("Server.InternalError: {}", e.message);
        if let Err(e) = self.set_states_from(
            &[id.to_string()],
            from,
            State::Stopped,
            Some(("Server.InternalError", &reason)),
            "",
        ) {
            tracing::error!(instance = %id, error = %e, "cannot record the failed boot");
        }
    }

    /// Boots an instance from its image, recording `stopped` with the reason when that fails.
    /// Returns the error (already recorded) for the caller to report.
    pub(super) fn boot_or_record(&self, inst: &Instance, from: &[State]) -> Result<(), AwsError> {
        let result = self.image_for_boot(inst).and_then(|img| {
            self.boot(inst, &img, from)
                .map_err(|e| AwsError::new("InsufficientInstanceCapacity", e))
        });
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(instance = %inst.id, error = %e, "boot failed");
                self.record_boot_failure(&inst.id, from, &e);
                Err(e)
            }
        }
    }

    /// A stop the API accepted: the sandbox goes, then `stopping` → `stopped`.
    pub(super) fn finish_stop(&self, id: &str) {
        locked(id, || self.finish_stop_locked(id));
    }

    fn finish_stop_locked(&self, id: &str) {
        self.host().stop(id);
        let ids = [id.to_string()];
        if let Err(e) = self.set_states_from(&ids, &[State::Stopping], State::Stopped, None, "") {
            tracing::error!(instance = %id, error = %e, "cannot record the stopped state");
        }
    }

    /// RebootInstances: stop, then boot again if nothing else changed the record.
    pub(super) fn finish_reboot(&self, inst: &Instance) {
        locked(&inst.id, || {
            self.host().stop(&inst.id);
            let _ = self.reboot_locked(inst);
        });
    }

    fn reboot_locked(&self, inst: &Instance) -> Result<(), AwsError> {
        let result = self.image_for_boot(inst).and_then(|img| {
            self.boot_locked(inst, &img, &[State::Running])
                .map_err(|e| AwsError::new("InsufficientInstanceCapacity", e))
        });
        if let Err(e) = &result {
            tracing::error!(instance = %inst.id, error = %e, "reboot failed");
            self.record_boot_failure(&inst.id, &[State::Running], e);
        }
        result.map(|_| ())
    }

    /// A terminate the API accepted (or a shutdown with behavior `terminate`): the sandbox goes,
    /// then the volume, then the Elastic IP association; then `terminated`.
    pub(super) fn finish_terminate(&self, id: &str) {
        locked(id, || {
            self.host().stop(id);
            self.host().destroy(id);
            // Its Elastic IP stays allocated, no longer associated.
            if let Some(addr) = self.eip_of(id)
                && let Err(e) = self.detach_eip(&addr, id, false)
            {
                tracing::error!(instance = %id, error = %e, "cannot disassociate the Elastic IP");
            }
            let ids = [id.to_string()];
            if let Err(e) =
                self.set_states_from(&ids, &[State::ShuttingDown], State::Terminated, None, "")
            {
                tracing::error!(instance = %id, error = %e, "cannot record the terminated state");
            }
        });
    }

    /// Called by the runtime when an instance's PID 1 ended by itself: a `poweroff` inside it
    /// (`requested`), or a crash. The sandbox's remains go first; then, if the record is still
    /// `running` (not a stop or terminate of ours), the instance stops or terminates as its
    /// shutdown behavior says.
    pub fn instance_exited(self: &Arc<Self>, id: &str, requested: bool) {
        let terminate = locked(id, || {
            self.host().stop(id);
            let Some(inst) = self.state().instances.iter().find(|i| i.id == id).cloned() else {
                return false;
            };
            if inst.state != State::Running {
                return false;
            }
            let (code, msg) = if requested {
                (
                    "Client.InstanceInitiatedShutdown",
                    "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                )
            } else {
                (
                    "Server.InternalError",
                    "Server.InternalError: the instance's init process exited unexpectedly",
                )
            };
            let terminate = requested && inst.shutdown_behavior == "terminate";
            let to = if terminate {
                State::ShuttingDown
            } else {
                State::Stopping
            };
            let ids = [id.to_string()];
            let _ = self.set_states_from(&ids, &[State::Running], to, Some((code, msg)), "");
            if !terminate {
                let _ = self.set_states_from(&ids, &[State::Stopping], State::Stopped, None, "");
            }
            terminate
        });
        if terminate {
            let me = self.clone();
            let id = id.to_string();
            std::thread::spawn(move || me.finish_terminate(&id));
        }
    }

    /// Called by the runtime when an instance rebooted from inside: its sandbox's remains go,
    /// and it boots again from the same volume if it is still `running`.
    pub fn instance_rebooted(&self, id: &str) {
        locked(id, || {
            self.host().stop(id);
            let inst = self.state().instances.iter().find(|i| i.id == id).cloned();
            if let Some(inst) = inst.filter(|i| i.state == State::Running) {
                let _ = self.reboot_locked(&inst);
            }
        });
    }

    /// Start-up reconciliation after a stop or crash of the daemon: instances that were running
    /// or starting boot again (as after a host reboot); those caught stopping are stopped; those
    /// caught shutting down finish terminating.
    pub fn reconcile(self: &Arc<Self>) {
        let stopping: Vec<String> = self
            .instances_in(&[State::Stopping])
            .into_iter()
            .map(|i| i.id)
            .collect();
        if let Err(e) =
            self.set_states_from(&stopping, &[State::Stopping], State::Stopped, None, "")
        {
            tracing::error!(error = %e, "cannot record stopped instances");
        }
        for i in self.instances_in(&[State::ShuttingDown]) {
            self.finish_terminate(&i.id);
        }
        for i in self.instances_in(&[State::Running, State::Pending]) {
            let _ = self.boot_or_record(&i, &[State::Running, State::Pending]);
        }
    }
}
