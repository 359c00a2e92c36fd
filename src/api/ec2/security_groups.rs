//! Security group actions: Create/Delete/DescribeSecurityGroups and
//! Authorize/RevokeSecurityGroupIngress/Egress, in the modern `IpPermissions` form and the
//! legacy flat form (`IpProtocol`, `FromPort`, `ToPort`, `CidrIp`, `SourceSecurityGroupName`).

use std::sync::Arc;

use super::paging::Page;
use super::tag_set;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::security_groups::{PermissionIn, Rule, SecurityGroup};
use crate::cloud::{AwsError, Cloud};

pub(super) fn create_security_group(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let (name, description) = (p.required("GroupName")?, p.required("GroupDescription")?);
    let (vpc, tags) = (p.get("VpcId"), p.tag_specs()?);
    p.finish()?;
    let g = c.create_security_group(name, description, vpc, &tags)?;
    x.elem("return", true)
        .elem("groupId", &g.id)
        .elem("securityGroupArn", arn(c, &g.id));
    tag_set(x, &g.tags);
    Ok(())
}

fn arn(c: &Cloud, id: &str) -> String {
    format!(
        "arn:aws:ec2:{}:{}:security-group/{id}",
        c.cfg.region, c.cfg.account_id
    )
}

/// GroupId or GroupName (one of them).
pub(super) fn group_of(p: &Params) -> Result<&str, AwsError> {
    match (p.get("GroupId"), p.get("GroupName")) {
        (Some(_), Some(_)) => Err(AwsError::combination(
            "The parameter GroupName cannot be used with the parameter GroupId",
        )),
        (Some(g), None) | (None, Some(g)) => Ok(g),
        (None, None) => Err(AwsError::missing("GroupId or GroupName")),
    }
}

pub(super) fn delete_security_group(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let group = group_of(p)?;
    p.finish()?;
    let id = c.delete_security_group(group)?;
    x.elem("return", true).elem("groupId", id);
    Ok(())
}

fn permissions(x: &mut Xml, name: &str, rules: &[Rule]) {
    x.items(name, rules, |x, r| {
        x.elem("ipProtocol", &r.protocol)
            .opt("fromPort", r.from_port)
            .opt("toPort", r.to_port);
        x.items("groups", r.source_group.as_ref(), |x, g| {
            x.elem("groupId", g)
                .elem("userId", crate::serve::ACCOUNT_ID);
            if !r.description.is_empty() {
                x.elem("description", &r.description);
            }
        });
        x.items("ipRanges", r.cidr.as_ref(), |x, c| {
            x.elem("cidrIp", c);
            if !r.description.is_empty() {
                x.elem("description", &r.description);
            }
        });
        x.items("ipv6Ranges", Vec::<()>::new(), |_, _| {}).items(
            "prefixListIds",
            Vec::<()>::new(),
            |_, _| {},
        );
    });
}

pub(super) fn describe_security_groups(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let page = Page::read(p, "DescribeSecurityGroups", 5, 1000)?;
    let (ids, names, filters) = (p.list("GroupId"), p.list("GroupName"), p.filters()?);
    if page.is_paged() && !(ids.is_empty() && names.is_empty()) {
        return Err(AwsError::combination(
            "The parameters GroupId and GroupName cannot be used with the parameter MaxResults or NextToken",
        ));
    }
    p.finish()?;
    let (groups, next) = page.take(c.describe_security_groups(&ids, &names, &filters)?);
    x.opt("nextToken", next.as_ref());
    x.items("securityGroupInfo", &groups, |x, g: &SecurityGroup| {
        x.elem("ownerId", crate::serve::ACCOUNT_ID)
            .elem("groupName", &g.name)
            .elem("groupId", &g.id)
            .elem("groupDescription", &g.description)
            .elem("vpcId", &g.vpc_id)
            .elem("securityGroupArn", arn(c, &g.id));
        permissions(x, "ipPermissions", &g.ingress);
        permissions(x, "ipPermissionsEgress", &g.egress);
        tag_set(x, &g.tags);
    });
    Ok(())
}

/// The permissions of an Authorize/Revoke call, in either form.
pub(super) fn permissions_in(p: &Params) -> Result<Vec<PermissionIn>, AwsError> {
    let mut out = Vec::new();
    // Rules of other accounts and tags on rules are not modelled.
    p.refuse(&["TagSpecification"])?;
    p.only("SourceSecurityGroupOwnerId", &[crate::serve::ACCOUNT_ID])?;
    for perm in p.structs("IpPermissions") {
        perm.refuse(&["PrefixListIds"])?;
        let cidrs = perm
            .structs("IpRanges")
            .iter()
            .map(|r| {
                let c = r
                    .required("CidrIp")
                    .map_err(|_| AwsError::missing("IpPermissions.N.IpRanges.M.CidrIp"))?;
                Ok((
                    c.to_string(),
                    r.get("Description").unwrap_or("").to_string(),
                ))
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        let groups = perm
            .structs("Groups")
            .iter()
            .map(|g| {
                g.refuse(&["VpcId", "VpcPeeringConnectionId", "PeeringStatus"])?;
                g.only("UserId", &[crate::serve::ACCOUNT_ID])?;
                let id = g
                    .get("GroupId")
                    .or_else(|| g.get("GroupName"))
                    .ok_or_else(|| AwsError::missing("IpPermissions.N.Groups.M.GroupId"))?;
                Ok((
                    id.to_string(),
                    g.get("Description").unwrap_or("").to_string(),
                ))
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        if !perm.structs("Ipv6Ranges").is_empty() {
            return Err(AwsError::new(
                "InvalidParameterValue",
                "IPv6 rules are not supported by this lab (its addresses are IPv4)",
            ));
        }
        out.push(PermissionIn {
            protocol: perm
                .required("IpProtocol")
                .map_err(|_| AwsError::missing("IpPermissions.N.IpProtocol"))?
                .to_string(),
            from_port: perm.int("FromPort")?,
            to_port: perm.int("ToPort")?,
            cidrs,
            groups,
        });
    }
    // The legacy flat form: every member read, whether IpProtocol came or not.
    let (from_port, to_port) = (p.int("FromPort")?, p.int("ToPort")?);
    let (cidr, source) = (p.get("CidrIp"), p.get("SourceSecurityGroupName"));
    match p.get("IpProtocol") {
        Some(proto) => out.push(PermissionIn {
            protocol: proto.to_string(),
            from_port,
            to_port,
            cidrs: cidr
                .map(|c| (c.to_string(), String::new()))
                .into_iter()
                .collect(),
            groups: source
                .map(|g| (g.to_string(), String::new()))
                .into_iter()
                .collect(),
        }),
        None if from_port.is_some() || to_port.is_some() || cidr.is_some() || source.is_some() => {
            return Err(AwsError::missing("IpProtocol"));
        }
        None => {}
    }
    Ok(out)
}

fn rule_set(x: &mut Xml, name: &str, group_id: &str, egress: bool, rules: &[Rule]) {
    x.items(name, rules, |x, r| rule_fields(x, group_id, egress, r));
}

/// The fields of one `SecurityGroupRule` (Authorize* responses, DescribeSecurityGroupRules).
pub(super) fn rule_fields(x: &mut Xml, group_id: &str, egress: bool, r: &Rule) {
    x.elem("securityGroupRuleId", &r.id)
        .elem("groupId", group_id)
        .elem("groupOwnerId", crate::serve::ACCOUNT_ID)
        .elem("isEgress", egress)
        .elem("ipProtocol", &r.protocol)
        .elem("fromPort", r.from_port.unwrap_or(-1))
        .elem("toPort", r.to_port.unwrap_or(-1))
        .opt("cidrIpv4", r.cidr.as_ref());
    if let Some(g) = &r.source_group {
        x.nest("referencedGroupInfo", |x| {
            x.elem("groupId", g)
                .elem("userId", crate::serve::ACCOUNT_ID);
        });
    }
    if !r.description.is_empty() {
        x.elem("description", &r.description);
    }
    x.items("tagSet", Vec::<()>::new(), |_, _| {});
}

fn authorize(c: &Arc<Cloud>, p: &Params, x: &mut Xml, egress: bool) -> Result<(), AwsError> {
    let (group, perms) = (group_of(p)?, permissions_in(p)?);
    p.finish()?;
    let group = c.security_group(group)?;
    let added = c.authorize(&group.id, egress, &perms)?;
    x.elem("return", true);
    rule_set(x, "securityGroupRuleSet", &group.id, egress, &added);
    Ok(())
}

fn revoke(c: &Arc<Cloud>, p: &Params, x: &mut Xml, egress: bool) -> Result<(), AwsError> {
    let (group, perms) = (group_of(p)?, permissions_in(p)?);
    let rule_ids = p.list("SecurityGroupRuleId");
    p.finish()?;
    let group = c.security_group(group)?;
    let removed = c.revoke(&group.id, egress, &perms, &rule_ids)?;
    x.elem("return", true);
    rule_set(
        x,
        "revokedSecurityGroupRuleSet",
        &group.id,
        egress,
        &removed,
    );
    Ok(())
}

pub(super) fn authorize_ingress(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    authorize(c, p, x, false)
}

pub(super) fn authorize_egress(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    authorize(c, p, x, true)
}

pub(super) fn revoke_ingress(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    revoke(c, p, x, false)
}

pub(super) fn revoke_egress(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    revoke(c, p, x, true)
}
