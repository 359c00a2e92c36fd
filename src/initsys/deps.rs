//! Ordering between units: `After=`/`Before=` decide who waits for whom; `Wants=`/`Requires=`
//! pull units into a job (see `install::boot_set`). Start order is a topological sort, stop
//! order its reverse; a cycle is broken at the name that sorts first (systemd breaks it too,
//! with a warning).

use std::collections::BTreeSet;

use super::units::Registry;

/// True when `a` is ordered after `b` (`a: After=b` or `b: Before=a`).
pub fn after(reg: &Registry, a: &str, b: &str) -> bool {
    let (Some(ua), Some(ub)) = (reg.get(a), reg.get(b)) else {
        return false;
    };
    ua.after.iter().any(|x| reg.resolve(x) == Some(&ub.name))
        || ub.before.iter().any(|x| reg.resolve(x) == Some(&ua.name))
}

/// `set` in start order.
pub fn start_order(reg: &Registry, set: &BTreeSet<String>) -> Vec<String> {
    let mut left: BTreeSet<String> = set.clone();
    let mut out = Vec::new();
    while !left.is_empty() {
        let ready = left
            .iter()
            .find(|a| !left.iter().any(|b| b != *a && after(reg, a, b)))
            .or_else(|| left.iter().next())
            .cloned();
        let Some(n) = ready else { break };
        left.remove(&n);
        out.push(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::units::Unit;
    use super::*;

    fn unit(name: &str, after: &[&str], before: &[&str]) -> Unit {
        Unit {
            name: name.into(),
            after: after.iter().map(|s| s.to_string()).collect(),
            before: before.iter().map(|s| s.to_string()).collect(),
            ..Unit::default()
        }
    }

    #[test]
    fn after_and_before_order_starts_and_a_cycle_still_ends() {
        let mut reg = Registry::default();
        for u in [
            unit("web.service", &["db.service"], &[]),
            unit("db.service", &[], &[]),
            unit("cache.service", &[], &["db.service"]),
            unit("x.service", &["y.service"], &[]),
            unit("y.service", &["x.service"], &[]),
        ] {
            reg.units.insert(u.name.clone(), u);
        }
        let set: BTreeSet<String> = ["web.service", "db.service", "cache.service"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            start_order(&reg, &set),
            vec!["cache.service", "db.service", "web.service"]
        );
        let cyc: BTreeSet<String> = ["x.service", "y.service"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(start_order(&reg, &cyc).len(), 2);
    }
}
