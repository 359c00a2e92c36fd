//! The VPC firewall compiler: security groups and the live instances → one nftables ruleset for
//! the router's namespace (`table ip ec2lab`), replaced as a whole in one transaction. Pure:
//! the same snapshot always gives the same text, so it is unit-tested, and checked by `nft -c`.
//!
//! What the ruleset does, in the kernel's order for a packet from one instance to another:
//!
//! ```text
//! prerouting   (raw)  from an instance's veth with a source that is not its private IP → drop
//!                     (no instance can speak as another: the firewall, the metadata service
//!                     and source-group rules all trust the source address)
//! forward      ct state established,related → accept (replies, ICMP errors; connections
//!                     already open survive rule changes, as AWS's connection tracking does)
//!              ct state invalid → drop
//!              iifname → out_<n>: the SOURCE instance's outbound rules (union of its groups);
//!                     a match → in_dispatch, none → drop (the base chain's policy)
//! in_dispatch  oifname → in_<n>: the DESTINATION instance's inbound rules; a match → accept
//! ```
//!
//! A rule's peer is a CIDR or a group: a group means the private IPs of the running instances
//! in it (a named set per referenced group), never a public or host address. Protocols: `tcp`
//! and `udp` with a port range, `icmp` with type and code (-1 = any), `-1` = everything, a
//! number = that IP protocol. Traffic to the router itself (metadata service, DNS) is not
//! forwarded, so groups do not apply to it, as on AWS.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::cloud::security_groups::{Rule, SecurityGroup};

/// The nftables table this module owns in the router namespace.
pub const TABLE: &str = "ec2lab";

/// One running instance as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub private_ip: Ipv4Addr,
    /// The router-side interface of its veth (`ve` + hex, made by `sandbox::vpc::peer_name`).
    pub iface: String,
    /// Its security group ids.
    pub groups: Vec<String>,
}

/// What the ruleset is compiled from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub members: Vec<Member>,
    pub groups: Vec<SecurityGroup>,
}

/// Which way a rule is read: inbound rules match the source address, outbound the destination.
#[derive(Clone, Copy)]
enum Dir {
    In,
    Out,
}

/// The whole nft script: creates the table if missing, deletes it and defines it again, in one
/// transaction (`nft -f` applies a file atomically).
pub fn compile(s: &Snapshot) -> String {
    let members: Vec<&Member> = s.members.iter().filter(|m| safe_iface(&m.iface)).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{"
    );

    let owned: Vec<String> = members
        .iter()
        .map(|m| format!("\"{}\" . {}", m.iface, m.private_ip))
        .collect();
    let _ = writeln!(
        out,
        "  set owned {{\n    type ifname . ipv4_addr\n{}  }}",
        elements(&owned)
    );
    for g in referenced_groups(s) {
        let ips: BTreeSet<String> = members
            .iter()
            .filter(|m| m.groups.contains(&g))
            .map(|m| m.private_ip.to_string())
            .collect();
        let ips: Vec<String> = ips.into_iter().collect();
        let _ = writeln!(
            out,
            "  set {} {{\n    type ipv4_addr\n{}  }}",
            set_name(&g),
            elements(&ips)
        );
    }

    out.push_str(
        "  chain prerouting {\n    type filter hook prerouting priority raw; policy accept;\n    \
         iifname \"lo\" accept\n    iifname . ip saddr != @owned drop\n  }\n",
    );
    out.push_str(
        "  chain forward {\n    type filter hook forward priority filter; policy drop;\n    \
         ct state established,related accept\n    ct state invalid drop\n",
    );
    dispatch(&mut out, &members, "iifname", "out");
    out.push_str("  }\n");

    out.push_str("  chain in_dispatch {\n");
    dispatch(&mut out, &members, "oifname", "in");
    out.push_str("  }\n");

    for (n, m) in members.iter().enumerate() {
        let groups: Vec<&SecurityGroup> = s
            .groups
            .iter()
            .filter(|g| m.groups.contains(&g.id))
            .collect();
        let _ = writeln!(out, "  chain out_{n} {{");
        for r in groups.iter().flat_map(|g| &g.egress) {
            if let Some(matches) = rule_match(r, Dir::Out) {
                let _ = writeln!(out, "    {matches}goto in_dispatch");
            }
        }
        out.push_str("  }\n");
        let _ = writeln!(out, "  chain in_{n} {{");
        for r in groups.iter().flat_map(|g| &g.ingress) {
            if let Some(matches) = rule_match(r, Dir::In) {
                let _ = writeln!(out, "    {matches}accept");
            }
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// `<field> vmap { "ve…" : goto <chain>_<n>, … }`, one entry per member (none for no members:
/// an empty vmap does not parse).
fn dispatch(out: &mut String, members: &[&Member], field: &str, chain: &str) {
    if members.is_empty() {
        return;
    }
    let map: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(n, m)| format!("\"{}\" : goto {chain}_{n}", m.iface))
        .collect();
    let _ = writeln!(out, "    {field} vmap {{ {} }}", map.join(", "));
}

/// `elements = { … }` lines of a set, or nothing for an empty set.
fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("    elements = {{ {} }}\n", items.join(", "))
    }
}

/// Groups named as a peer by some rule, sorted.
fn referenced_groups(s: &Snapshot) -> BTreeSet<String> {
    s.groups
        .iter()
        .flat_map(|g| g.ingress.iter().chain(&g.egress))
        .filter_map(|r| r.source_group.clone())
        .filter(|g| safe_id(g))
        .collect()
}

fn set_name(group: &str) -> String {
    format!("grp_{}", group.replace('-', "_"))
}

/// Ids and interface names go into the script: only what we make ourselves gets there.
fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn safe_iface(name: &str) -> bool {
    !name.is_empty() && name.len() < 16 && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The match part of one rule (ending in a space, or empty for "everything"), or `None` when the
/// rule cannot match IPv4 traffic between instances (an IPv6 peer, a bad value).
fn rule_match(r: &Rule, dir: Dir) -> Option<String> {
    let field = match dir {
        Dir::In => "saddr",
        Dir::Out => "daddr",
    };
    let mut m = String::new();
    match (&r.cidr, &r.source_group) {
        (Some(c), _) => {
            let net: Ipv4Net = c.parse().ok()?;
            if net.prefix_len() > 0 {
                let _ = write!(m, "ip {field} {} ", net.trunc());
            }
        }
        (None, Some(g)) if safe_id(g) => {
            let _ = write!(m, "ip {field} @{} ", set_name(g));
        }
        _ => return None,
    }
    let (from, to) = (r.from_port.unwrap_or(-1), r.to_port.unwrap_or(-1));
    match r.protocol.as_str() {
        "-1" | "all" => {}
        p @ ("tcp" | "udp") => {
            let all = (from <= 0 && to >= 65535) || (from == -1 && to == -1);
            if all {
                let _ = write!(m, "meta l4proto {p} ");
            } else {
                let (lo, hi) = (from.clamp(0, 65535), to.clamp(0, 65535));
                if lo == hi {
                    let _ = write!(m, "{p} dport {lo} ");
                } else {
                    let _ = write!(m, "{p} dport {lo}-{hi} ");
                }
            }
        }
        "icmp" => {
            let _ = write!(m, "meta l4proto icmp ");
            if (0..=255).contains(&from) {
                let _ = write!(m, "icmp type {from} ");
                if (0..=255).contains(&to) {
                    let _ = write!(m, "icmp code {to} ");
                }
            }
        }
        n => {
            let proto: u8 = n.parse().ok()?;
            let _ = write!(m, "meta l4proto {proto} ");
        }
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(proto: &str, from: i32, to: i32, cidr: Option<&str>, group: Option<&str>) -> Rule {
        Rule {
            id: "sgr-1".into(),
            protocol: proto.into(),
            from_port: (proto != "-1").then_some(from),
            to_port: (proto != "-1").then_some(to),
            cidr: cidr.map(str::to_string),
            source_group: group.map(str::to_string),
            description: String::new(),
        }
    }

    fn group(id: &str, ingress: Vec<Rule>, egress: Vec<Rule>) -> SecurityGroup {
        SecurityGroup {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            vpc_id: "vpc-1".into(),
            ingress,
            egress,
            tags: vec![],
        }
    }

    fn member(ip: [u8; 4], iface: &str, groups: &[&str]) -> Member {
        Member {
            private_ip: ip.into(),
            iface: iface.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    pub(crate) fn db_lesson() -> Snapshot {
        let all_out = rule("-1", 0, 0, Some("0.0.0.0/0"), None);
        Snapshot {
            members: vec![
                member([172, 31, 0, 4], "ve0a", &["sg-web"]),
                member([172, 31, 32, 5], "ve0b", &["sg-db"]),
            ],
            groups: vec![
                group(
                    "sg-web",
                    vec![rule("tcp", 80, 80, Some("0.0.0.0/0"), None)],
                    vec![all_out.clone()],
                ),
                group(
                    "sg-db",
                    vec![
                        rule("tcp", 3306, 3306, None, Some("sg-web")),
                        rule("icmp", 8, -1, Some("172.31.0.0/16"), None),
                        rule("udp", 5000, 5010, Some("10.1.2.3/8"), None),
                    ],
                    vec![all_out],
                ),
            ],
        }
    }

    #[test]
    fn rules_become_matches_with_sets_for_groups() {
        let text = compile(&db_lesson());
        for want in [
            "set owned {\n    type ifname . ipv4_addr\n    elements = { \"ve0a\" . 172.31.0.4, \"ve0b\" . 172.31.32.5 }",
            "set grp_sg_web {\n    type ipv4_addr\n    elements = { 172.31.0.4 }",
            "iifname vmap { \"ve0a\" : goto out_0, \"ve0b\" : goto out_1 }",
            "oifname vmap { \"ve0a\" : goto in_0, \"ve0b\" : goto in_1 }",
            "ip saddr @grp_sg_web tcp dport 3306 accept",
            "ip saddr 172.31.0.0/16 meta l4proto icmp icmp type 8 accept",
            "ip saddr 10.0.0.0/8 udp dport 5000-5010 accept",
            "tcp dport 80 accept",
            "  chain out_0 {\n    goto in_dispatch\n  }",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(text.starts_with("table ip ec2lab\ndelete table ip ec2lab\n"));
    }

    #[test]
    fn nothing_foreign_reaches_the_script() {
        let mut s = db_lesson();
        s.members
            .push(member([172, 31, 0, 9], "ve;x\"", &["sg-web"]));
        s.groups[0]
            .ingress
            .push(rule("tcp", 1, 2, None, Some("sg-x; flush ruleset")));
        s.groups[0]
            .ingress
            .push(rule("tcp", 1, 2, Some("::/0"), None));
        let text = compile(&s);
        assert!(!text.contains("ve;x") && !text.contains("flush") && !text.contains("::"));
    }

    /// The kernel's own parser agrees (`nft -c` checks without applying; needs nft and root).
    #[test]
    fn nft_accepts_the_script() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: nft -c needs root");
            return;
        }
        let Ok(out) = std::process::Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                let empty = Snapshot {
                    groups: db_lesson().groups,
                    ..Snapshot::default()
                };
                let script = compile(&db_lesson()) + &compile(&empty);
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait_with_output()
            })
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nft is missing (Debian's nftables)"
            );
            eprintln!("SKIPPED: nft is not installed (Debian's nftables)");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
