//! Security group rules as objects (`sgr-…`): DescribeSecurityGroupRules, ModifySecurityGroupRules
//! and UpdateSecurityGroupRuleDescriptionsIngress/Egress. A rule's id is made when the rule is
//! authorized and kept in its group's record, so it is the same after a restart.
//!
//! A change is all or nothing: every rule named is found and every new value checked (the same
//! protocol, port and CIDR rules as Authorize*) before the group is written once; the front
//! listeners then see the new rules (`Host::groups_changed`).

use super::security_groups::{self, PermissionIn, Rule, SecurityGroup};
use super::tags::{self, Filter, Filterable, Tag};
use super::{AwsError, Cloud, validate};

/// One rule with the group it belongs to, as DescribeSecurityGroupRules lists it.
#[derive(Debug, Clone)]
pub struct RuleView {
    pub group_id: String,
    pub egress: bool,
    pub rule: Rule,
}

impl Filterable for RuleView {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "group-id" => Some(vec![self.group_id.clone()]),
            "security-group-rule-id" => Some(vec![self.rule.id.clone()]),
            _ => None,
        }
    }
}

/// The new content of a rule (ModifySecurityGroupRules' `SecurityGroupRule`): a peer CIDR or a
/// referenced group.
#[derive(Debug, Clone)]
pub struct RuleRequest {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: Option<String>,
    pub referenced_group: Option<String>,
    pub description: String,
}

fn rule_not_found(id: &str) -> AwsError {
    AwsError::new(
        "InvalidSecurityGroupRuleId.NotFound",
        format!("The security group rule ID '{id}' does not exist"),
    )
}

fn check_rule_id(id: &str) -> Result<(), AwsError> {
    validate::id(id, "sgr", "InvalidSecurityGroupRuleId.Malformed")
}

/// The rule `id` of `g`, ingress or egress, for changing.
fn rule_mut<'a>(g: &'a mut SecurityGroup, id: &str) -> Result<&'a mut Rule, AwsError> {
    g.ingress
        .iter_mut()
        .chain(g.egress.iter_mut())
        .find(|r| r.id == id)
        .ok_or_else(|| rule_not_found(id))
}

impl Cloud {
    pub fn describe_security_group_rules(
        &self,
        wanted: &[String],
        filters: &[Filter],
    ) -> Result<Vec<RuleView>, AwsError> {
        for id in wanted {
            check_rule_id(id)?;
        }
        let mut all = Vec::new();
        for g in &self.state().security_groups {
            for (egress, list) in [(false, &g.ingress), (true, &g.egress)] {
                all.extend(list.iter().map(|r| RuleView {
                    group_id: g.id.clone(),
                    egress,
                    rule: r.clone(),
                }));
            }
        }
        if let Some(missing) = wanted
            .iter()
            .find(|w| !all.iter().any(|v| &v.rule.id == *w))
        {
            return Err(rule_not_found(missing));
        }
        let mut out = Vec::new();
        for v in all {
            if (wanted.is_empty() || wanted.contains(&v.rule.id)) && tags::matches(&v, filters)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// ModifySecurityGroupRules: replaces each named rule of `group` with its new content.
    pub fn modify_security_group_rules(
        &self,
        group: &str,
        updates: &[(String, RuleRequest)],
    ) -> Result<(), AwsError> {
        if updates.is_empty() {
            return Err(AwsError::missing("SecurityGroupRule"));
        }
        let mut g = self.security_group(group)?;
        for (id, req) in updates {
            check_rule_id(id)?;
            validate::rule_description(
                "SecurityGroupRule.N.SecurityGroupRule.Description",
                &req.description,
            )?;
            let (protocol, from_port, to_port) = security_groups::normalize(&PermissionIn {
                protocol: req.protocol.clone(),
                from_port: req.from_port,
                to_port: req.to_port,
                cidrs: Vec::new(),
                groups: Vec::new(),
            })?;
            let (cidr, source_group) = match (&req.cidr, &req.referenced_group) {
                (Some(c), None) => (Some(security_groups::parse_cidr(c)?), None),
                (None, Some(sg)) => (None, Some(self.security_group(sg)?.id)),
                _ => {
                    return Err(AwsError::combination(
                        "A rule needs exactly one peer: CidrIpv4 or ReferencedGroupId",
                    ));
                }
            };
            let new = Rule {
                id: id.clone(),
                protocol,
                from_port,
                to_port,
                cidr,
                source_group,
                description: req.description.clone(),
            };
            let egress = g.egress.iter().any(|r| &r.id == id);
            let list = if egress { &g.egress } else { &g.ingress };
            if list
                .iter()
                .any(|o| o.id != new.id && o.same_permission(&new))
            {
                return Err(AwsError::new(
                    "InvalidPermission.Duplicate",
                    format!("the specified rule \"{}\" already exists", new.describe()),
                ));
            }
            *rule_mut(&mut g, id)? = new;
        }
        self.put_group(g)?;
        self.host().groups_changed();
        Ok(())
    }

    /// UpdateSecurityGroupRuleDescriptionsIngress/Egress: by rule id, or by permission (the
    /// description given with each peer goes to the rule with that peer, protocol and ports).
    pub fn update_rule_descriptions(
        &self,
        group: &str,
        egress: bool,
        by_id: &[(String, String)],
        perms: &[PermissionIn],
    ) -> Result<(), AwsError> {
        if by_id.is_empty() && perms.is_empty() {
            return Err(AwsError::missing(
                "IpPermissions or SecurityGroupRuleDescriptions",
            ));
        }
        let mut g = self.security_group(group)?;
        let list = if egress {
            &mut g.egress
        } else {
            &mut g.ingress
        };
        for (id, d) in by_id {
            check_rule_id(id)?;
            validate::rule_description("SecurityGroupRuleDescription.N.Description", d)?;
            let r = list
                .iter_mut()
                .find(|r| &r.id == id)
                .ok_or_else(|| rule_not_found(id))?;
            r.description = d.clone();
        }
        for p in perms {
            for (probe, d) in self.probes(p)? {
                validate::rule_description("IpPermissions.N.IpRanges.M.Description", &d)?;
                let r = list
                    .iter_mut()
                    .find(|r| r.same_permission(&probe))
                    .ok_or_else(|| security_groups::permission_not_found(&probe))?;
                r.description = d;
            }
        }
        self.put_group(g)
    }
}
