//! Caps on concurrent connections that a client can open: at most `per_key` connections per key
//! (a source address, or a source on one listener) and at most `total` for the whole gate.
//!
//! ```text
//! try_acquire(key)   key full → refused (PerKey)
//!                    gate full → fair eviction (when enabled): the oldest unsettled connection
//!                                of the key holding the most is told to close and the newcomer
//!                                takes its place, if that key holds more than the newcomer's;
//!                                else refused
//!                    otherwise → a `Slot`, counted until it is dropped
//! Slot::settle()     the connection proved itself (first byte, login): never evicted
//! Slot::evicted()    resolves once the gate evicted this slot (the owner closes its connection)
//! ```
//!
//! Eviction is what keeps a flood from many addresses from starving a login from another one:
//! a key that holds nothing always gets in.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many connections from this source (limit {0})")]
    PerKey(usize),
    #[error("too many connections in total (limit {0})")]
    Total(usize),
}

/// The key of a source address: IPv4-mapped IPv6 counts as IPv4.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

struct Entry {
    id: u64,
    evicted: Arc<Notify>,
    settled: bool,
}

struct State<K> {
    keys: HashMap<K, VecDeque<Entry>>,
    total: usize,
    next_id: u64,
}

/// A connection cap shared by accept loops (as `Arc`).
pub struct ConnGate<K> {
    per_key: usize,
    total: usize,
    evict: bool,
    state: Mutex<State<K>>,
}

impl<K> std::fmt::Debug for ConnGate<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnGate")
            .field("per_key", &self.per_key)
            .field("total", &self.total)
            .field("evict", &self.evict)
            .finish()
    }
}

/// One counted connection; dropping it frees its place.
pub struct Slot<K: Eq + Hash + Clone> {
    gate: Arc<ConnGate<K>>,
    key: K,
    id: u64,
    evicted: Arc<Notify>,
}

impl<K: Eq + Hash + Clone> ConnGate<K> {
    /// `evict`: when the gate is full, make room by evicting from the heaviest key.
    pub fn new(per_key: usize, total: usize, evict: bool) -> Arc<ConnGate<K>> {
        Arc::new(ConnGate {
            per_key,
            total,
            evict,
            state: Mutex::new(State {
                keys: HashMap::new(),
                total: 0,
                next_id: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection under `key`, or says why it must be closed.
    pub fn try_acquire(self: &Arc<Self>, key: K) -> Result<Slot<K>, Refused> {
        let mut s = self.lock();
        let held = s.keys.get(&key).map_or(0, VecDeque::len);
        if held >= self.per_key {
            return Err(Refused::PerKey(self.per_key));
        }
        if s.total >= self.total {
            if !self.evict {
                return Err(Refused::Total(self.total));
            }
            let heaviest = s
                .keys
                .iter()
                .filter(|(_, q)| q.len() > held)
                .filter_map(|(k, q)| Some((k, q.len(), q.iter().position(|e| !e.settled)?)))
                .max_by_key(|(_, len, _)| *len)
                .map(|(k, _, pos)| (k.clone(), pos));
            let Some((heaviest, pos)) = heaviest else {
                return Err(Refused::Total(self.total));
            };
            let queue = s.keys.get_mut(&heaviest).expect("key just found");
            let victim = queue.remove(pos).expect("position just found");
            if queue.is_empty() {
                s.keys.remove(&heaviest);
            }
            s.total -= 1;
            victim.evicted.notify_one();
        }
        let id = s.next_id;
        s.next_id += 1;
        s.total += 1;
        let evicted = Arc::new(Notify::new());
        s.keys.entry(key.clone()).or_default().push_back(Entry {
            id,
            evicted: evicted.clone(),
            settled: false,
        });
        Ok(Slot {
            gate: self.clone(),
            key,
            id,
            evicted,
        })
    }

    /// Connections counted now (all keys).
    pub fn count(&self) -> usize {
        self.lock().total
    }
}

impl<K: Eq + Hash + Clone> Slot<K> {
    /// Marks the connection as established: it still counts, but is never evicted.
    pub fn settle(&self) {
        let mut s = self.gate.lock();
        if let Some(e) = s
            .keys
            .get_mut(&self.key)
            .and_then(|q| q.iter_mut().find(|e| e.id == self.id))
        {
            e.settled = true;
        }
    }

    /// Resolves once the gate evicted this connection to make room for another source.
    pub async fn evicted(&self) {
        self.evicted.notified().await
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        let Some(queue) = s.keys.get_mut(&self.key) else {
            return; // evicted: no longer counted
        };
        let Some(pos) = queue.iter().position(|e| e.id == self.id) else {
            return;
        };
        queue.remove(pos);
        if queue.is_empty() {
            s.keys.remove(&self.key);
        }
        s.total -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now_or_never(slot: &Slot<u8>) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(1), slot.evicted())
                .await
                .is_ok()
        })
    }

    #[test]
    fn per_key_and_total_caps_free_on_drop() {
        let g = ConnGate::<u8>::new(2, 3, false);
        let a1 = g.try_acquire(1).unwrap();
        let _a2 = g.try_acquire(1).unwrap();
        assert_eq!(g.try_acquire(1).err(), Some(Refused::PerKey(2)));
        let _b1 = g.try_acquire(2).unwrap();
        assert_eq!(g.try_acquire(3).err(), Some(Refused::Total(3)));
        drop(a1);
        assert_eq!(g.count(), 2);
        let _c1 = g.try_acquire(3).unwrap();
        assert_eq!(g.count(), 3);
    }

    #[test]
    fn a_full_gate_evicts_the_oldest_of_the_heaviest_key() {
        let g = ConnGate::<u8>::new(10, 4, true);
        let flood: Vec<_> = (0..3).map(|_| g.try_acquire(1).unwrap()).collect();
        let other = g.try_acquire(2).unwrap();
        // Key 3 holds nothing: key 1 (3 held) gives up its oldest connection.
        let login = g.try_acquire(3).unwrap();
        assert!(now_or_never(&flood[0]));
        assert!(!now_or_never(&flood[1]) && !now_or_never(&other) && !now_or_never(&login));
        assert_eq!(g.count(), 4);
        // Dropping the evicted slot does not count it twice.
        drop(flood);
        assert_eq!(g.count(), 2);
        // Equal shares: no eviction, the newcomer is refused.
        let _x = g.try_acquire(2).unwrap();
        let _y = g.try_acquire(3).unwrap();
        assert_eq!(g.try_acquire(2).err(), Some(Refused::Total(4)));
    }

    #[test]
    fn settled_connections_are_never_evicted() {
        let g = ConnGate::<u8>::new(10, 3, true);
        let a: Vec<_> = (0..3).map(|_| g.try_acquire(1).unwrap()).collect();
        a[0].settle();
        a[1].settle();
        // The oldest unsettled one of key 1 gives way.
        let b = g.try_acquire(2).unwrap();
        assert!(now_or_never(&a[2]) && !now_or_never(&a[0]) && !now_or_never(&a[1]));
        // Key 1 now holds only settled connections: nothing to evict.
        b.settle();
        assert_eq!(g.try_acquire(3).err(), Some(Refused::Total(3)));
    }

    #[test]
    fn source_key_maps_v4_in_v6() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(source_key(v6), v6);
    }
}
