//! The seam between the control plane and the machine: what `cloud` asks of the runtime that
//! makes instances real (sandboxes, metadata service, console). The daemon plugs in the real
//! runtime; unit tests plug in a recording fake.

use super::images::Image;
use super::instances::Instance;

pub trait Host: Send + Sync {
    /// Boots the instance's sandbox from its root volume (created from the image on first boot).
    /// Blocking, milliseconds. On error nothing of this boot is left behind.
    fn start(&self, inst: &Instance, image: &Image) -> Result<(), String>;
    /// Shuts the sandbox down (TERM, grace period, KILL) and waits for it. Idempotent.
    fn stop(&self, instance_id: &str);
    /// Deletes the instance's root volume and runtime files (after `stop`).
    fn destroy(&self, instance_id: &str);
    /// The most recent console output (at most 64 KiB).
    fn console(&self, instance_id: &str) -> Vec<u8>;
    /// The instance's public IP changed while it may be running (an Elastic IP came or went):
    /// listeners on its old address move to the new one.
    fn public_ip_changed(&self, _inst: &Instance) {}
    /// Security group rules or an instance's groups changed: front listeners follow.
    fn groups_changed(&self) {}
}

/// A host that does nothing: for a control plane without a runtime (unit tests).
pub struct NoHost;

impl Host for NoHost {
    fn start(&self, _: &Instance, _: &Image) -> Result<(), String> {
        Ok(())
    }
    fn stop(&self, _: &str) {}
    fn destroy(&self, _: &str) {}
    fn console(&self, _: &str) -> Vec<u8> {
        Vec::new()
    }
}
