//! Security groups: CreateSecurityGroup, DeleteSecurityGroup, DescribeSecurityGroups,
//! Authorize/RevokeSecurityGroupIngress/Egress, and the evaluation of a new connection against
//! an instance's groups — a pure function ([`evaluate`]) used by the front listeners and by
//! `ec2lab why`. Fail closed: no rule, no entry.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::instances::{self, State as InstanceState};
use super::tags::{self, Filter, Filterable, Tag, TagSpec};
use super::{AwsError, Cloud, ids, validate};
use crate::store::Change;

pub const KIND: &str = "security-group";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub tags: Vec<Tag>,
}

/// One rule. `protocol` is `tcp`, `udp`, `icmp` or `-1` (all); ports are absent for `-1`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rule {
    pub id: String,
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    /// Exactly one of `cidr` and `source_group` is set.
    pub cidr: Option<String>,
    pub source_group: Option<String>,
    pub description: String,
}

impl Rule {
    /// Same peer, protocol and ports (descriptions and ids do not count), as EC2 compares.
    pub fn same_permission(&self, o: &Rule) -> bool {
        self.protocol == o.protocol
            && self.from_port == o.from_port
            && self.to_port == o.to_port
            && self.cidr == o.cidr
            && self.source_group == o.source_group
    }

    /// EC2's words for a rule: `peer: 0.0.0.0/0, TCP, from port: 22, to port: 22, ALLOW`.
    pub fn describe(&self) -> String {
        let peer = self
            .cidr
            .clone()
            .or_else(|| self.source_group.clone())
            .unwrap_or_default();
        match self.protocol.as_str() {
            "-1" => format!("peer: {peer}, ALL, ALLOW"),
            p => format!(
                "peer: {peer}, {}, from port: {}, to port: {}, ALLOW",
                p.to_uppercase(),
                self.from_port.unwrap_or(-1),
                self.to_port.unwrap_or(-1)
            ),
        }
    }

    /// Whether the rule covers this protocol and port.
    fn covers(&self, protocol: &str, port: u16) -> bool {
        if self.protocol == "-1" {
            return true;
        }
        if self.protocol != protocol {
            return false;
        }
        let (from, to) = (self.from_port.unwrap_or(-1), self.to_port.unwrap_or(-1));
        if protocol == "icmp" {
            return true;
        }
        (from..=to).contains(&i32::from(port))
    }
}

impl Filterable for SecurityGroup {
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let rules =
            |f: &dyn Fn(&Rule) -> Option<String>| Some(self.ingress.iter().filter_map(f).collect());
        match name {
            "group-id" => Some(vec![self.id.clone()]),
            "group-name" => Some(vec![self.name.clone()]),
            "description" => Some(vec![self.description.clone()]),
            "vpc-id" => Some(vec![self.vpc_id.clone()]),
            "owner-id" => Some(vec![crate::serve::ACCOUNT_ID.into()]),
            "ip-permission.protocol" => rules(&|r| Some(r.protocol.clone())),
            "ip-permission.from-port" => rules(&|r| r.from_port.map(|p| p.to_string())),
            "ip-permission.to-port" => rules(&|r| r.to_port.map(|p| p.to_string())),
            "ip-permission.cidr" => rules(&|r| r.cidr.clone()),
            "ip-permission.group-id" => rules(&|r| r.source_group.clone()),
            _ => None,
        }
    }
}

/// A permission as the API gives it, before it has an id.
#[derive(Debug, Clone)]
pub struct PermissionIn {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidrs: Vec<(String, String)>,
    /// Group id or name, with a description.
    pub groups: Vec<(String, String)>,
}

pub fn group_not_found(what: &str) -> AwsError {
    AwsError::new(
        "InvalidGroup.NotFound",
        format!("The security group '{what}' does not exist"),
    )
}

/// Normalizes a protocol (`tcp`/`6`, `udp`/`17`, `icmp`/`1`, `-1`/`all`) and checks the ports.
pub(crate) fn normalize(p: &PermissionIn) -> Result<(String, Option<i32>, Option<i32>), AwsError> {
    let proto = match p.protocol.to_ascii_lowercase().as_str() {
        "tcp" | "6" => "tcp",
        "udp" | "17" => "udp",
        "icmp" | "1" => "icmp",
        "-1" | "all" => "-1",
        other => {
            return Err(AwsError::new(
                "InvalidParameterValue",
                format!("Invalid value '{other}' for IP protocol. Unknown protocol."),
            ));
        }
    };
    match proto {
        "-1" => Ok(("-1".into(), None, None)),
        "icmp" => {
            let (f, t) = (p.from_port.unwrap_or(-1), p.to_port.unwrap_or(-1));
            if !(-1..=255).contains(&f) || !(-1..=255).contains(&t) {
                return Err(AwsError::invalid(format!(
                    "ICMP type ({f}) and code ({t}) must be between -1 and 255"
                )));
            }
            Ok(("icmp".into(), Some(f), Some(t)))
        }
        _ => {
            let (Some(f), Some(t)) = (p.from_port, p.to_port) else {
                return Err(AwsError::missing("FromPort and ToPort (for tcp and udp)"));
            };
            if !(0..=65535).contains(&f) || !(0..=65535).contains(&t) || f > t {
                return Err(AwsError::new(
                    "InvalidParameterValue",
                    format!("Invalid port range: from port {f} to port {t} (0-65535, from ≤ to)"),
                ));
            }
            Ok((proto.into(), Some(f), Some(t)))
        }
    }
}

pub(crate) fn parse_cidr(c: &str) -> Result<String, AwsError> {
    let net: Ipv4Net = c.trim().parse().map_err(|_| {
        AwsError::new(
            "InvalidParameterValue",
            format!("Value ({c}) for parameter cidrIp is invalid. This is not a valid CIDR block."),
        )
    })?;
    if net.trunc() != net {
        return Err(AwsError::new(
            "InvalidParameterValue",
            format!(
                "CIDR block {c} is malformed: host bits are set (did you mean {}?)",
                net.trunc()
            ),
        ));
    }
    Ok(net.to_string())
}

/// The verdict on one new connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed by this group's rule.
    Allowed {
        group_id: String,
        group_name: String,
        rule: Rule,
    },
    /// No rule of the instance's groups allows it.
    Denied,
}

/// Whether a connection from `src` to `protocol`/`port` is allowed by the instance's groups.
/// `source_groups_of(ip)` tells which groups the instance owning `ip` belongs to (for rules
/// whose peer is a security group). Pure; fail closed.
pub fn evaluate(
    groups: &[SecurityGroup],
    src: Ipv4Addr,
    protocol: &str,
    port: u16,
    source_groups_of: &dyn Fn(Ipv4Addr) -> Vec<String>,
) -> Verdict {
    first_match(
        groups,
        |g| &g.ingress,
        src,
        protocol,
        port,
        source_groups_of,
    )
}

/// The outbound side: whether the source instance's `groups` let a new connection out to `dst`
/// (a CIDR containing it, or a group whose running members own it), as the VPC router checks.
pub fn evaluate_egress(
    groups: &[SecurityGroup],
    dst: Ipv4Addr,
    protocol: &str,
    port: u16,
    groups_of: &dyn Fn(Ipv4Addr) -> Vec<String>,
) -> Verdict {
    first_match(groups, |g| &g.egress, dst, protocol, port, groups_of)
}

fn first_match(
    groups: &[SecurityGroup],
    rules: impl Fn(&SecurityGroup) -> &Vec<Rule>,
    peer: Ipv4Addr,
    protocol: &str,
    port: u16,
    groups_of: &dyn Fn(Ipv4Addr) -> Vec<String>,
) -> Verdict {
    let mut peer_groups: Option<Vec<String>> = None;
    for g in groups {
        for r in rules(g) {
            if !r.covers(protocol, port) {
                continue;
            }
            let peer_ok = match (&r.cidr, &r.source_group) {
                (Some(c), _) => c.parse::<Ipv4Net>().is_ok_and(|n| n.contains(&peer)),
                (None, Some(sg)) => peer_groups
                    .get_or_insert_with(|| groups_of(peer))
                    .contains(sg),
                _ => false,
            };
            if peer_ok {
                return Verdict::Allowed {
                    group_id: g.id.clone(),
                    group_name: g.name.clone(),
                    rule: r.clone(),
                };
            }
        }
    }
    Verdict::Denied
}

impl Cloud {
    /// Makes sure the default VPC's `default` group exists (first start).
    pub(crate) fn ensure_default_group(&self) -> Result<(), AwsError> {
        let net = self.network();
        let mut st = self.state();
        if st.security_groups.iter().any(|g| g.id == net.default_sg_id) {
            return Ok(());
        }
        let g = SecurityGroup {
            id: net.default_sg_id.clone(),
            name: "default".into(),
            description: "default VPC security group".into(),
            vpc_id: net.vpc_id.clone(),
            ingress: vec![Rule {
                id: ids::new_id("sgr"),
                protocol: "-1".into(),
                from_port: None,
                to_port: None,
                cidr: None,
                source_group: Some(net.default_sg_id.clone()),
                description: String::new(),
            }],
            egress: vec![all_out()],
            tags: Vec::new(),
        };
        self.store()
            .apply(&[Change::put(KIND, &g.id, Some(&g.name), &g)?])?;
        st.security_groups.push(g);
        Ok(())
    }

    pub fn create_security_group(
        &self,
        name: &str,
        description: &str,
        vpc_id: Option<&str>,
        tag_specs: &[TagSpec],
    ) -> Result<SecurityGroup, AwsError> {
        validate::group_name(name)?;
        validate::group_description(description)?;
        let net = self.network();
        if let Some(v) = vpc_id
            && v != net.vpc_id
        {
            return Err(AwsError::new(
                "InvalidVpcID.NotFound",
                format!("The vpc ID '{v}' does not exist"),
            ));
        }
        let g = SecurityGroup {
            id: ids::new_id("sg"),
            name: name.to_string(),
            description: description.to_string(),
            vpc_id: net.vpc_id.clone(),
            ingress: Vec::new(),
            egress: vec![all_out()],
            tags: tags::tags_for(tag_specs, "security-group")?,
        };
        let mut st = self.state();
        self.cfg.limits.check_security_groups(
            st.security_groups
                .iter()
                .filter(|x| x.vpc_id == net.vpc_id)
                .count(),
        )?;
        if st.security_groups.iter().any(|x| x.name == name) {
            return Err(AwsError::new(
                "InvalidGroup.Duplicate",
                format!(
                    "The security group '{name}' already exists for VPC '{}'",
                    net.vpc_id
                ),
            ));
        }
        self.store()
            .apply(&[Change::put(KIND, &g.id, Some(&g.name), &g)?])?;
        st.security_groups.push(g.clone());
        Ok(g)
    }

    /// The group named by id (`sg-…`) or by name.
    pub fn security_group(&self, id_or_name: &str) -> Result<SecurityGroup, AwsError> {
        if id_or_name.starts_with("sg-") {
            validate::id(id_or_name, "sg", "InvalidGroupId.Malformed")?;
        }
        self.state()
            .security_groups
            .iter()
            .find(|g| g.id == id_or_name || g.name == id_or_name)
            .cloned()
            .ok_or_else(|| group_not_found(id_or_name))
    }

    pub fn delete_security_group(&self, id_or_name: &str) -> Result<String, AwsError> {
        let g = self.security_group(id_or_name)?;
        if g.name == "default" {
            return Err(AwsError::new(
                "CannotDelete",
                format!(
                    "the specified group: \"{}\" name: \"default\" cannot be deleted by a user",
                    g.id
                ),
            ));
        }
        let mut st = self.state();
        if st
            .instances
            .iter()
            .any(|i| i.state != InstanceState::Terminated && i.groups.iter().any(|r| r.id == g.id))
        {
            return Err(AwsError::new(
                "DependencyViolation",
                format!("resource {} has a dependent object", g.id),
            ));
        }
        if st.security_groups.iter().any(|o| {
            o.id != g.id
                && o.ingress
                    .iter()
                    .chain(&o.egress)
                    .any(|r| r.source_group.as_deref() == Some(&g.id))
        }) {
            return Err(AwsError::new(
                "DependencyViolation",
                format!(
                    "resource {} has a dependent object (a rule of another group refers to it)",
                    g.id
                ),
            ));
        }
        self.store().apply(&[Change::delete(KIND, &g.id)])?;
        st.security_groups.retain(|x| x.id != g.id);
        Ok(g.id)
    }

    pub fn describe_security_groups(
        &self,
        ids_in: &[String],
        names: &[String],
        filters: &[Filter],
    ) -> Result<Vec<SecurityGroup>, AwsError> {
        for id in ids_in {
            validate::id(id, "sg", "InvalidGroupId.Malformed")?;
        }
        let st = self.state();
        for w in ids_in.iter().chain(names) {
            if !st
                .security_groups
                .iter()
                .any(|g| &g.id == w || &g.name == w)
            {
                return Err(group_not_found(w));
            }
        }
        let mut out = Vec::new();
        for g in &st.security_groups {
            if (!ids_in.is_empty() || !names.is_empty())
                && !ids_in.contains(&g.id)
                && !names.contains(&g.name)
            {
                continue;
            }
            if tags::matches(g, filters)? {
                out.push(g.clone());
            }
        }
        Ok(out)
    }

    /// AuthorizeSecurityGroupIngress/Egress: all permissions or none; returns the new rules.
    pub fn authorize(
        &self,
        group: &str,
        egress: bool,
        perms: &[PermissionIn],
    ) -> Result<Vec<Rule>, AwsError> {
        if perms.is_empty() {
            return Err(AwsError::missing("IpPermissions"));
        }
        let mut g = self.security_group(group)?;
        let mut added = Vec::new();
        for p in perms {
            let (protocol, from_port, to_port) = normalize(p)?;
            if p.cidrs.is_empty() && p.groups.is_empty() {
                return Err(AwsError::missing(
                    "IpRanges or Groups (the peer of the rule)",
                ));
            }
            let mut peers: Vec<(Option<String>, Option<String>, String)> = Vec::new();
            for (c, d) in &p.cidrs {
                validate::rule_description("IpPermissions.N.IpRanges.M.Description", d)?;
                peers.push((Some(parse_cidr(c)?), None, d.clone()));
            }
            for (sg, d) in &p.groups {
                validate::rule_description("IpPermissions.N.Groups.M.Description", d)?;
                let src = self.security_group(sg)?;
                peers.push((None, Some(src.id), d.clone()));
            }
            for (cidr, source_group, description) in peers {
                let r = Rule {
                    id: ids::new_id("sgr"),
                    protocol: protocol.clone(),
                    from_port,
                    to_port,
                    cidr,
                    source_group,
                    description,
                };
                let list = if egress { &g.egress } else { &g.ingress };
                if list
                    .iter()
                    .chain(&added)
                    .any(|o: &Rule| o.same_permission(&r))
                {
                    return Err(AwsError::new(
                        "InvalidPermission.Duplicate",
                        format!("the specified rule \"{}\" already exists", r.describe()),
                    ));
                }
                added.push(r);
            }
        }
        let list = if egress {
            &mut g.egress
        } else {
            &mut g.ingress
        };
        list.extend(added.iter().cloned());
        self.cfg.limits.check_rules(list.len(), egress)?;
        self.put_group(g)?;
        self.host().groups_changed();
        Ok(added)
    }

    /// RevokeSecurityGroupIngress/Egress by permission or by rule id; all or nothing.
    pub fn revoke(
        &self,
        group: &str,
        egress: bool,
        perms: &[PermissionIn],
        rule_ids: &[String],
    ) -> Result<Vec<Rule>, AwsError> {
        let mut g = self.security_group(group)?;
        let list = if egress {
            &mut g.egress
        } else {
            &mut g.ingress
        };
        let mut removed = Vec::new();
        for id in rule_ids {
            let pos = list.iter().position(|r| &r.id == id).ok_or_else(|| {
                AwsError::new(
                    "InvalidSecurityGroupRuleId.NotFound",
                    format!("The security group rule ID '{id}' does not exist"),
                )
            })?;
            removed.push(list.remove(pos));
        }
        for p in perms {
            for (probe, _) in self.probes(p)? {
                let pos = list
                    .iter()
                    .position(|r| r.same_permission(&probe))
                    .ok_or_else(|| permission_not_found(&probe))?;
                removed.push(list.remove(pos));
            }
        }
        if removed.is_empty() {
            return Err(AwsError::missing("IpPermissions or SecurityGroupRuleId"));
        }
        self.put_group(g)?;
        self.host().groups_changed();
        Ok(removed)
    }

    /// The rules a permission names (one per peer, without an id), each with the description
    /// given with its peer: what Revoke* and the description updates look for.
    pub(crate) fn probes(&self, p: &PermissionIn) -> Result<Vec<(Rule, String)>, AwsError> {
        let (protocol, from_port, to_port) = normalize(p)?;
        let mut peers = Vec::new();
        for (c, d) in &p.cidrs {
            peers.push((Some(parse_cidr(c)?), None, d.clone()));
        }
        for (sg, d) in &p.groups {
            peers.push((None, Some(self.security_group(sg)?.id), d.clone()));
        }
        Ok(peers
            .into_iter()
            .map(|(cidr, source_group, d)| {
                let probe = Rule {
                    id: String::new(),
                    protocol: protocol.clone(),
                    from_port,
                    to_port,
                    cidr,
                    source_group,
                    description: String::new(),
                };
                (probe, d)
            })
            .collect())
    }

    pub(super) fn put_group(&self, g: SecurityGroup) -> Result<(), AwsError> {
        let mut st = self.state();
        self.store()
            .apply(&[Change::put(KIND, &g.id, Some(&g.name), &g)?])?;
        if let Some(slot) = st.security_groups.iter_mut().find(|x| x.id == g.id) {
            *slot = g;
        }
        Ok(())
    }

    /// The groups of an instance, as they are now.
    pub fn groups_of(&self, inst: &instances::Instance) -> Vec<SecurityGroup> {
        let st = self.state();
        inst.groups
            .iter()
            .filter_map(|r| st.security_groups.iter().find(|g| g.id == r.id).cloned())
            .collect()
    }

    /// The groups of the live instance that owns `ip` (private or public), for source-group rules.
    pub fn groups_of_address(&self, ip: Ipv4Addr) -> Vec<String> {
        let ip = ip.to_string();
        self.state()
            .instances
            .iter()
            .filter(|i| {
                i.state == InstanceState::Running
                    && (i.private_ip == ip || i.public_ip.as_deref() == Some(ip.as_str()))
            })
            .flat_map(|i| i.groups.iter().map(|g| g.id.clone()))
            .collect()
    }
}

/// No rule of the group has this permission.
pub(crate) fn permission_not_found(probe: &Rule) -> AwsError {
    AwsError::new(
        "InvalidPermission.NotFound",
        format!(
            "The specified rule does not exist in this security group: \"{}\"",
            probe.describe()
        ),
    )
}

fn all_out() -> Rule {
    Rule {
        id: ids::new_id("sgr"),
        protocol: "-1".into(),
        from_port: None,
        to_port: None,
        cidr: Some("0.0.0.0/0".into()),
        source_group: None,
        description: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(proto: &str, from: i32, to: i32, cidr: &str) -> Rule {
        Rule {
            id: "sgr-1".into(),
            protocol: proto.into(),
            from_port: Some(from),
            to_port: Some(to),
            cidr: Some(cidr.into()),
            source_group: None,
            description: String::new(),
        }
    }

    fn group(rules: Vec<Rule>) -> SecurityGroup {
        SecurityGroup {
            id: "sg-1".into(),
            name: "web".into(),
            description: String::new(),
            vpc_id: "vpc-1".into(),
            ingress: rules,
            egress: vec![],
            tags: vec![],
        }
    }

    #[test]
    fn egress_is_read_toward_the_destination() {
        let mut g = group(vec![]);
        g.egress = vec![rule("tcp", 3306, 3306, "172.31.32.0/20")];
        let none = |_| Vec::new();
        let db: Ipv4Addr = "172.31.32.5".parse().unwrap();
        assert!(matches!(
            evaluate_egress(&[g.clone()], db, "tcp", 3306, &none),
            Verdict::Allowed { .. }
        ));
        assert_eq!(
            evaluate_egress(&[g.clone()], db, "tcp", 80, &none),
            Verdict::Denied
        );
        let elsewhere: Ipv4Addr = "172.31.0.9".parse().unwrap();
        assert_eq!(
            evaluate_egress(&[g.clone()], elsewhere, "tcp", 3306, &none),
            Verdict::Denied
        );
        // The inbound rules are not the outbound ones.
        assert_eq!(evaluate(&[g], db, "tcp", 3306, &none), Verdict::Denied);
    }

    #[test]
    fn evaluation_by_cidr_port_protocol_and_source_group() {
        let none = |_| Vec::new();
        let g = group(vec![
            rule("tcp", 22, 22, "127.0.0.1/32"),
            rule("tcp", 8000, 8100, "0.0.0.0/0"),
        ]);
        let lo: Ipv4Addr = "127.0.0.1".parse().unwrap();
        let other: Ipv4Addr = "127.0.0.9".parse().unwrap();
        assert!(matches!(
            evaluate(std::slice::from_ref(&g), lo, "tcp", 22, &none),
            Verdict::Allowed { .. }
        ));
        assert_eq!(
            evaluate(std::slice::from_ref(&g), other, "tcp", 22, &none),
            Verdict::Denied
        );
        assert!(matches!(
            evaluate(std::slice::from_ref(&g), other, "tcp", 8050, &none),
            Verdict::Allowed { .. }
        ));
        assert_eq!(
            evaluate(std::slice::from_ref(&g), other, "tcp", 8101, &none),
            Verdict::Denied
        );
        assert_eq!(
            evaluate(std::slice::from_ref(&g), lo, "udp", 22, &none),
            Verdict::Denied
        );
        assert_eq!(
            evaluate(&[], lo, "tcp", 22, &none),
            Verdict::Denied,
            "fail closed"
        );
        let all = group(vec![Rule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            ..rule("tcp", 0, 0, "0.0.0.0/0")
        }]);
        assert!(matches!(
            evaluate(&[all], other, "udp", 53, &none),
            Verdict::Allowed { .. }
        ));
        let by_group = group(vec![Rule {
            cidr: None,
            source_group: Some("sg-app".into()),
            ..rule("tcp", 5432, 5432, "")
        }]);
        let member = |ip: Ipv4Addr| {
            if ip == other {
                vec!["sg-app".to_string()]
            } else {
                vec![]
            }
        };
        assert!(matches!(
            evaluate(std::slice::from_ref(&by_group), other, "tcp", 5432, &member),
            Verdict::Allowed { .. }
        ));
        assert_eq!(
            evaluate(&[by_group], lo, "tcp", 5432, &member),
            Verdict::Denied
        );
    }

    #[test]
    fn rules_are_described_like_ec2() {
        assert_eq!(
            rule("tcp", 22, 22, "0.0.0.0/0").describe(),
            "peer: 0.0.0.0/0, TCP, from port: 22, to port: 22, ALLOW"
        );
        let all = Rule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            ..rule("tcp", 0, 0, "0.0.0.0/0")
        };
        assert_eq!(all.describe(), "peer: 0.0.0.0/0, ALL, ALLOW");
    }

    #[test]
    fn bad_input() {
        let p = |proto: &str, f, t| PermissionIn {
            protocol: proto.into(),
            from_port: f,
            to_port: t,
            cidrs: vec![],
            groups: vec![],
        };
        assert!(normalize(&p("tcp", Some(80), Some(22))).is_err());
        assert!(normalize(&p("tcp", Some(0), Some(70000))).is_err());
        assert!(normalize(&p("gre", None, None)).is_err());
        assert_eq!(normalize(&p("all", None, None)).unwrap().0, "-1");
        assert_eq!(normalize(&p("6", Some(1), Some(2))).unwrap().0, "tcp");
        assert!(parse_cidr("10.0.0.1/8").is_err());
        assert!(parse_cidr("300.0.0.0/8").is_err());
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap(), "0.0.0.0/0");
    }
}
