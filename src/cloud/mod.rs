//! The control plane: the lab's resources, their rules and state machines. Pure logic over the
//! store — no sockets, no syscalls. Each operation checks its input, computes the new records,
//! writes them through [`Store::apply`] in one transaction, and only then updates the live copy in
//! memory, so a restart sees exactly what was acknowledged.
//!
//! Submodules: `error` (AWS error codes), `ids`, `validate` (every client string before it is
//! stored), `limits` (account limits), `tags` (tags and filters), `catalog` (zones and instance
//! types), one per resource kind.

pub mod addresses;
pub mod catalog;
mod error;
pub mod host;
pub mod ids;
pub mod images;
pub mod instances;
pub mod interfaces;
pub mod keypairs;
pub mod launch;
mod lifecycle;
pub mod limits;
pub mod metadata_options;
pub mod network;
pub mod security_groups;
pub mod sg_rules;
pub mod tagging;
pub mod tags;
pub mod validate;
pub mod vpcs;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub use error::AwsError;
pub use host::Host;
pub use images::Image;
pub use instances::{Instance, State as InstanceState};
pub use keypairs::KeyPair;
pub use limits::Limits;
pub use tags::{Filter, Tag, TagSpec};

use crate::store::Store;

/// Settings of the lab that the control plane needs.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    pub region: String,
    pub account_id: String,
    /// The API endpoint URL, as clients reach it (`http://127.0.0.1:8773`).
    pub endpoint: String,
    /// Pool of public (and later Elastic) IPs, inside 127.0.0.0/8.
    pub public_cidr: ipnet::Ipv4Net,
    /// Account limits (`serve --max-vcpus` and the like).
    pub limits: Limits,
}

/// The live state, loaded from the store at start.
#[derive(Debug, Default)]
pub struct State {
    pub key_pairs: Vec<KeyPair>,
    pub images: Vec<Image>,
    pub instances: Vec<Instance>,
    pub security_groups: Vec<security_groups::SecurityGroup>,
    pub addresses: Vec<addresses::Address>,
}

pub struct Cloud {
    pub cfg: CloudConfig,
    store: Store,
    state: Mutex<State>,
    network: network::Network,
    host: OnceLock<Arc<dyn Host>>,
    /// Where the next public address search starts (see `network::next_public_ip`).
    public_cursor: std::sync::atomic::AtomicU32,
}

impl Cloud {
    pub fn open(cfg: CloudConfig, store: Store) -> Result<Cloud, AwsError> {
        let state = State {
            key_pairs: store.load(keypairs::KIND)?,
            images: store.load(images::KIND)?,
            instances: store.load(instances::KIND)?,
            security_groups: store.load(security_groups::KIND)?,
            addresses: store.load(addresses::KIND)?,
        };
        let network = match store.meta("network")? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| AwsError::internal(format!("stored network: {e}")))?,
            None => {
                let n = network::Network::new(&cfg.region);
                store.set_meta("network", &serde_json::to_string(&n).expect("json"))?;
                n
            }
        };
        let cloud = Cloud {
            cfg,
            store,
            state: Mutex::new(state),
            network,
            host: OnceLock::new(),
            public_cursor: std::sync::atomic::AtomicU32::new(0),
        };
        cloud.ensure_default_group()?;
        Ok(cloud)
    }

    /// Plugs in the runtime that makes instances real (once, at start).
    pub fn set_host(&self, host: Arc<dyn Host>) {
        let _ = self.host.set(host);
    }

    pub(crate) fn host(&self) -> &dyn Host {
        match self.host.get() {
            Some(h) => h.as_ref(),
            None => &host::NoHost,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free public address (auto-assigned or Elastic) from the pool, rotating through it.
    pub(crate) fn next_public_ip(&self, used: &[String]) -> Result<String, AwsError> {
        use std::sync::atomic::Ordering;
        let cursor = self.public_cursor.load(Ordering::Relaxed);
        let (ip, next) = network::next_public_ip(&self.cfg.public_cidr, used, cursor)?;
        self.public_cursor.store(next, Ordering::Relaxed);
        Ok(ip)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Now as AWS writes timestamps: `2026-11-22T03:10:50.000Z`.
pub fn now_iso() -> String {
    iso(time::OffsetDateTime::now_utc())
}

pub fn iso(t: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(fmt)
        .expect("formattable")
}
