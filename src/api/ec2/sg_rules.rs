//! Security group rules as objects: DescribeSecurityGroupRules, ModifySecurityGroupRules and
//! UpdateSecurityGroupRuleDescriptionsIngress/Egress (by rule id or by permission).

use std::sync::Arc;

use super::paging::Page;
use super::security_groups::{group_of, permissions_in, rule_fields};
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::sg_rules::RuleRequest;
use crate::cloud::{AwsError, Cloud};

pub(super) fn describe_security_group_rules(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let page = Page::read(p, "DescribeSecurityGroupRules", 5, 1000)?;
    let (wanted, filters) = (p.list("SecurityGroupRuleId"), p.filters()?);
    p.finish()?;
    let (rules, next) = page.take(c.describe_security_group_rules(&wanted, &filters)?);
    x.items("securityGroupRuleSet", &rules, |x, v| {
        rule_fields(x, &v.group_id, v.egress, &v.rule);
    });
    x.opt("nextToken", next);
    Ok(())
}

/// What the lab cannot put in a rule (IPv6, prefix lists), refused by name.
fn refuse_unsupported(r: &Params, at: &str) -> Result<(), AwsError> {
    for (name, why) in [
        (
            "CidrIpv6",
            "IPv6 rules are not supported by this lab (its addresses are IPv4)",
        ),
        ("PrefixListId", "prefix lists are not supported by this lab"),
    ] {
        if r.get(name).is_some() {
            return Err(AwsError::invalid(format!("{at}.{name}: {why}")));
        }
    }
    Ok(())
}

pub(super) fn modify_security_group_rules(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let group = p.required("GroupId")?;
    let mut updates = Vec::new();
    for u in p.structs("SecurityGroupRule") {
        let id = u
            .required("SecurityGroupRuleId")
            .map_err(|_| AwsError::missing("SecurityGroupRule.N.SecurityGroupRuleId"))?
            .to_string();
        let r = u.nested("SecurityGroupRule");
        refuse_unsupported(&r, "SecurityGroupRule.N.SecurityGroupRule")?;
        let req = RuleRequest {
            protocol: r
                .required("IpProtocol")
                .map_err(|_| AwsError::missing("SecurityGroupRule.N.SecurityGroupRule.IpProtocol"))?
                .to_string(),
            from_port: r.int("FromPort")?,
            to_port: r.int("ToPort")?,
            cidr: r.get("CidrIpv4").map(str::to_string),
            referenced_group: r.get("ReferencedGroupId").map(str::to_string),
            description: r.get("Description").unwrap_or("").to_string(),
        };
        updates.push((id, req));
    }
    p.finish()?;
    c.modify_security_group_rules(group, &updates)?;
    x.elem("return", true);
    Ok(())
}

fn update_descriptions(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
    egress: bool,
) -> Result<(), AwsError> {
    let group = group_of(p)?.to_string();
    let perms = permissions_in(p)?;
    let mut by_id = Vec::new();
    for d in p.structs("SecurityGroupRuleDescription") {
        let id = d
            .required("SecurityGroupRuleId")
            .map_err(|_| AwsError::missing("SecurityGroupRuleDescription.N.SecurityGroupRuleId"))?
            .to_string();
        by_id.push((id, d.get("Description").unwrap_or("").to_string()));
    }
    p.finish()?;
    c.update_rule_descriptions(&group, egress, &by_id, &perms)?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn update_descriptions_ingress(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    update_descriptions(c, p, x, false)
}

pub(super) fn update_descriptions_egress(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    update_descriptions(c, p, x, true)
}
