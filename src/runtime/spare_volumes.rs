//! Spare root volumes, made ahead of first boots: `DIR/spares/spare-<hex>/` (a copy of the
//! volume template and the gateway's copy of fresh SSH host keys), each with its image already
//! on a loop device (auto-clear) whose descriptor the daemon holds — attaching costs a launch
//! ~3 ms of kernel waiting when the machine is otherwise idle, so it is done here, off the
//! launch path.
//!
//! Order: `refill` (one background thread at a time) makes `spare-<hex>.tmp/`, renames it to
//! `spare-<hex>/`, then attaches its image and keeps the device → `claim` (a first boot)
//! renames a spare into the instance's volume dir and hands over its device, if it has one →
//! the launcher checks that the device still holds that image (`volume::reuse`) and uses it,
//! else attaches one itself → the runtime drops the device once the launch has ended (the
//! instance's mount holds it from then on; a failed launch's device clears itself). A daemon
//! that dies drops every descriptor, so its spares' devices clear themselves too; spares left
//! on disk get a device at the next refill. Nothing is made or attached ahead while the daemon
//! is short of descriptors (`ratelimit::reserve::descriptors_scarce`).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::ratelimit::reserve::descriptors_scarce;
use crate::sandbox::volume::{self, Attached};

/// Spare volumes kept ready for first boots.
pub const SPARE_VOLUMES: usize = 4;

pub(super) struct SpareVolumes {
    dir: PathBuf,
    template: PathBuf,
    /// A thread is filling the spares.
    refilling: AtomicBool,
    /// The loop device of each spare (by directory name) that has one.
    devices: Mutex<HashMap<String, Attached>>,
}

impl SpareVolumes {
    pub fn new(dir: PathBuf, template: PathBuf) -> Arc<SpareVolumes> {
        Arc::new(SpareVolumes {
            dir,
            template,
            refilling: AtomicBool::new(false),
            devices: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The empty root volume image new volumes are copied from (see `sandbox::volume`).
    pub fn template(&self) -> &Path {
        &self.template
    }

    fn names(&self) -> Vec<String> {
        fs::read_dir(&self.dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("spare-") && !n.ends_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Moves a spare volume into place as `volume`; `None` when none is left (or another
    /// launch took the same one first), else the spare's loop device if it has one.
    pub fn claim(&self, volume: &Path) -> Option<Option<Attached>> {
        // Under the lock, so that `attach_missing` never attaches a spare being claimed.
        let mut devices = self.devices.lock().unwrap();
        for name in self.names() {
            if let Some(parent) = volume.parent() {
                let _ = fs::create_dir_all(parent);
            }
            if fs::rename(self.dir.join(&name), volume).is_ok() {
                return Some(devices.remove(&name));
            }
        }
        None
    }

    /// Keeps [`SPARE_VOLUMES`] spares ready, each on its loop device, on a background thread.
    pub fn refill(self: &Arc<Self>, make_volume: fn(&Path, &Path) -> Result<(), String>) {
        if descriptors_scarce() || self.refilling.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        std::thread::spawn(move || {
            me.attach_missing();
            while me.names().len() < SPARE_VOLUMES && !descriptors_scarce() {
                let name = format!("spare-{:016x}", rand::random::<u64>());
                let tmp = me.dir.join(format!("{name}.tmp"));
                let made = make_volume(&tmp, &me.template)
                    .and_then(|()| fs::rename(&tmp, me.dir.join(&name)).map_err(|e| e.to_string()));
                if let Err(e) = made {
                    let _ = fs::remove_dir_all(&tmp);
                    tracing::warn!(error = %e, "cannot make a spare volume");
                    break;
                }
                me.attach_missing();
            }
            me.refilling.store(false, Ordering::SeqCst);
        });
    }

    /// A loop device for every spare that has none (made by an earlier daemon, or just now).
    /// Without one (no free device, no right to attach) a spare still works: the launcher
    /// attaches it.
    fn attach_missing(&self) {
        let mut devices = self.devices.lock().unwrap();
        for name in self.names() {
            if devices.contains_key(&name) {
                continue;
            }
            if descriptors_scarce() {
                return; // a device ahead holds a descriptor; the launcher can attach it
            }
            match volume::attach(&self.dir.join(&name)) {
                Ok(Some(dev)) => {
                    devices.insert(name, dev);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(spare = %name, error = %e, "spare volume not attached ahead");
                    return;
                }
            }
        }
    }
}
