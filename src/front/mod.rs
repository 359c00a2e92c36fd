//! Front listeners: on every running instance's public IP, a TCP listener for each port its
//! security groups open (SSH has its own listener in the gateway). Each new connection is
//! checked against the instance's *current* inbound rules by source address and port — fail
//! closed — then proxied to the same port on the instance's private IP inside its network
//! namespace, on a connection made by the instance's `sandbox::Connector` (no thread per
//! connection). Denied connections are closed at once and logged, rate-limited. Rule changes
//! apply to the next connection; open connections stay, as on AWS.
//!
//! Which ports get a listener: every port of a rule's range when the range has at most
//! [`MAX_RANGE`] ports; for wider ranges and "all traffic" (-1) rules, the [`COMMON_PORTS`]
//! inside the range. The SSH port is left to the gateway.
//!
//! Idle connections cannot take the daemon's descriptors (`proxy.rs`): connections are capped
//! per source and in total on each instance port, a connection silent in both directions is
//! closed after a timeout, and accept loops keep a descriptor in reserve.

mod proxy;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};

use crate::cloud::security_groups::{self, SecurityGroup, Verdict};
use crate::cloud::{Cloud, InstanceState};
use crate::ratelimit::RateLimited;
use crate::ratelimit::reserve::FdReserve;
use crate::sandbox::Connector;

pub use proxy::{FIRST_BYTE_TIMEOUT, PER_PORT, PER_SOURCE};

/// Ranges up to this many ports are listened on in full.
pub const MAX_RANGE: i32 = 100;
/// Ports listened on for wider ranges and for "all traffic" rules.
pub const COMMON_PORTS: &[u16] = &[
    80, 443, 3000, 3306, 5000, 5432, 6379, 8000, 8080, 8443, 8888, 9000,
];

/// Binds `addr`, retrying for up to a second while it is in use: a listener just aborted on the
/// same address (an Elastic IP moving between instances) closes when its task is next polled.
fn bind_retrying(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let mut tries = 0;
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The TCP ports the groups open (22 and the SSH port excluded: those are the gateway's).
pub fn ports_to_listen(groups: &[SecurityGroup], ssh_port: u16) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for r in groups.iter().flat_map(|g| &g.ingress) {
        let (from, to) = match r.protocol.as_str() {
            "tcp" => (r.from_port.unwrap_or(0), r.to_port.unwrap_or(-1)),
            "-1" => (0, 65535),
            _ => continue,
        };
        if to - from < MAX_RANGE {
            out.extend((from.max(1)..=to).filter_map(|p| u16::try_from(p).ok()));
        } else {
            out.extend(
                COMMON_PORTS
                    .iter()
                    .copied()
                    .filter(|p| (from..=to).contains(&i32::from(*p))),
            );
        }
    }
    // SSH is the gateway's (tcp/22 rules apply to it, on --ssh-port).
    out.remove(&22);
    out.remove(&ssh_port);
    out
}

struct Listener {
    task: tokio::task::JoinHandle<()>,
}

/// instance id → (public ip, port → listener)
type Listeners = HashMap<String, (Ipv4Addr, HashMap<u16, Listener>)>;

pub struct Front {
    handle: tokio::runtime::Handle,
    cloud: Weak<Cloud>,
    ssh_port: u16,
    listeners: Mutex<Listeners>,
    denied_log: Arc<RateLimited>,
    reserve: FdReserve,
}

impl Front {
    pub fn new(handle: tokio::runtime::Handle, cloud: Weak<Cloud>, ssh_port: u16) -> Arc<Front> {
        Arc::new(Front {
            handle,
            cloud,
            ssh_port,
            listeners: Mutex::new(HashMap::new()),
            denied_log: Arc::new(RateLimited::new(2.0, 20)),
            reserve: FdReserve::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the instance's listeners match its public IP and its groups' open ports.
    /// `connector` makes the connections into its network namespace.
    pub fn sync(self: &Arc<Self>, instance_id: &str, connector: &Arc<Connector>) {
        let Some(cloud) = self.cloud.upgrade() else {
            return;
        };
        let Ok(inst) = cloud.instance(instance_id) else {
            return;
        };
        let ip = inst
            .public_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        // Called for booted sandboxes: a launch calls it before the record turns `running`.
        let live = matches!(inst.state, InstanceState::Running | InstanceState::Pending);
        let Some(ip) = ip.filter(|_| live) else {
            self.remove(instance_id);
            return;
        };
        let want = ports_to_listen(&cloud.groups_of(&inst), self.ssh_port);
        let private: Ipv4Addr = inst.private_ip.parse().unwrap_or(Ipv4Addr::LOCALHOST);
        let mut all = self.lock();
        let entry = all
            .entry(instance_id.to_string())
            .or_insert_with(|| (ip, HashMap::new()));
        if entry.0 != ip {
            for (_, l) in entry.1.drain() {
                l.task.abort();
            }
            entry.0 = ip;
        }
        entry.1.retain(|port, l| {
            let keep = want.contains(port);
            if !keep {
                l.task.abort();
            }
            keep
        });
        for port in want {
            if entry.1.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::from((ip, port));
            let std_listener = match bind_retrying(addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(instance = %instance_id, %addr, error = %e, "cannot open a front listener");
                    continue;
                }
            };
            let _ = std_listener.set_nonblocking(true);
            let _g = self.handle.enter();
            let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                continue;
            };
            let (me, conn) = (self.clone(), connector.clone());
            let id = instance_id.to_string();
            let task = self
                .handle
                .spawn(async move { me.accept_loop(listener, id, port, private, conn).await });
            entry.1.insert(port, Listener { task });
        }
    }

    /// Closes every listener of the instance (it stopped, or lost its public IP).
    pub fn remove(&self, instance_id: &str) {
        if let Some((_, ls)) = self.lock().remove(instance_id) {
            for (_, l) in ls {
                l.task.abort();
            }
        }
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        id: String,
        port: u16,
        private: Ipv4Addr,
        connector: Arc<Connector>,
    ) {
        let gate = proxy::PortGate::new();
        loop {
            let (client, peer) = self.reserve.accept(&listener).await;
            let slot = match gate.admit(peer) {
                Ok(slot) => slot,
                Err(why) => {
                    if let Some(suppressed) = self.denied_log.check() {
                        tracing::warn!(instance = %id, port, %peer, reason = %why, suppressed, "front connection refused");
                    }
                    continue; // `client` is dropped: closed at once, no data
                }
            };
            let (me, conn) = (self.clone(), connector.clone());
            let id = id.clone();
            tokio::spawn(async move {
                if me.admit(&id, peer, port) {
                    proxy::serve(client, slot, private, port, &conn).await;
                }
            });
        }
    }

    /// The security-group check of one new connection (current rules, fail closed).
    pub fn admit(&self, instance_id: &str, peer: SocketAddr, port: u16) -> bool {
        let Some(cloud) = self.cloud.upgrade() else {
            return false;
        };
        let Ok(inst) = cloud.instance(instance_id) else {
            return false;
        };
        let src = match peer.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return false,
            },
        };
        let groups = cloud.groups_of(&inst);
        let verdict =
            security_groups::evaluate(&groups, src, "tcp", port, &|ip| cloud.groups_of_address(ip));
        match verdict {
            Verdict::Allowed { .. } => true,
            Verdict::Denied => {
                if let Some(suppressed) = self.denied_log.check() {
                    tracing::info!(instance = %instance_id, port, source = %src, suppressed, "connection denied by security groups");
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::security_groups::Rule;

    fn group(rules: Vec<(&str, i32, i32)>) -> SecurityGroup {
        SecurityGroup {
            id: "sg-1".into(),
            name: "g".into(),
            description: String::new(),
            vpc_id: String::new(),
            ingress: rules
                .into_iter()
                .map(|(p, f, t)| Rule {
                    id: "sgr".into(),
                    protocol: p.into(),
                    from_port: Some(f),
                    to_port: Some(t),
                    cidr: Some("0.0.0.0/0".into()),
                    source_group: None,
                    description: String::new(),
                })
                .collect(),
            egress: vec![],
            tags: vec![],
        }
    }

    /// Cost of the per-connection rule check, for scripts/bench/front.sh (no threshold here:
    /// run with `cargo test --release -- --ignored rule_check_cost --nocapture`).
    #[test]
    #[ignore]
    fn rule_check_cost() {
        let rules: Vec<(&str, i32, i32)> = (0..20)
            .map(|i| ("tcp", 1000 + i, 1000 + i))
            .chain([("tcp", 80, 80)])
            .collect();
        let groups = [group(rules.clone()), group(rules)];
        let src: Ipv4Addr = "127.0.0.9".parse().unwrap();
        let n = 1_000_000;
        let t0 = std::time::Instant::now();
        let mut allowed = 0;
        for i in 0..n {
            let port = if i % 2 == 0 { 80 } else { 81 };
            if matches!(
                security_groups::evaluate(&groups, src, "tcp", port, &|_| Vec::new()),
                Verdict::Allowed { .. }
            ) {
                allowed += 1;
            }
        }
        let per = t0.elapsed().as_nanos() as f64 / n as f64;
        assert_eq!(allowed, n / 2);
        println!("rule check: {per:.0} ns per connection (2 groups, 42 rules)");
    }

    #[test]
    fn listened_ports() {
        let p = ports_to_listen(
            &[group(vec![
                ("tcp", 22, 22),
                ("tcp", 80, 80),
                ("tcp", 8000, 8002),
                ("udp", 53, 53),
            ])],
            22,
        );
        assert_eq!(
            p.into_iter().collect::<Vec<_>>(),
            vec![80, 8000, 8001, 8002]
        );
        let wide = ports_to_listen(&[group(vec![("tcp", 1, 65535)])], 22);
        assert!(wide.contains(&443) && wide.contains(&8080) && wide.len() == COMMON_PORTS.len());
        let all = ports_to_listen(&[group(vec![("-1", 0, 0)])], 22);
        assert_eq!(all.len(), COMMON_PORTS.len());
        assert!(ports_to_listen(&[], 22).is_empty());
    }
}
