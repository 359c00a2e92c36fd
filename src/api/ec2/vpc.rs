//! The default VPC as tools first ask for it: DescribeVpcs, DescribeSubnets (each default
//! subnet with its free addresses, `defaultForAz` and `mapPublicIpOnLaunch`) and
//! DescribeAccountAttributes (`supported-platforms` VPC, `default-vpc`, the limits).

use std::sync::Arc;

use super::paging::Page;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::{AwsError, Cloud};

pub(super) fn describe_vpcs(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let page = Page::read(p, "DescribeVpcs", 5, 1000)?;
    let (wanted, filters) = (p.list("VpcId"), p.filters()?);
    p.finish()?;
    let (vpcs, next) = page.take(c.describe_vpcs(&wanted, &filters)?);
    x.items("vpcSet", &vpcs, |x, v| {
        x.elem("vpcId", &v.id)
            .elem("ownerId", &v.owner_id)
            .elem("state", "available")
            .elem("cidrBlock", &v.cidr)
            .items("cidrBlockAssociationSet", [&v.cidr], |x, cidr| {
                x.elem("associationId", v.id.replacen("vpc-", "vpc-cidr-assoc-", 1))
                    .elem("cidrBlock", cidr)
                    .nest("cidrBlockState", |x| {
                        x.elem("state", "associated");
                    });
            })
            .elem("dhcpOptionsId", "default")
            .elem("instanceTenancy", "default")
            .elem("isDefault", true)
            .items("tagSet", Vec::<()>::new(), |_, _| {});
    });
    x.opt("nextToken", next);
    Ok(())
}

pub(super) fn describe_subnets(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let page = Page::read(p, "DescribeSubnets", 5, 1000)?;
    let (wanted, filters) = (p.list("SubnetId"), p.filters()?);
    p.finish()?;
    let (subnets, next) = page.take(c.describe_subnets(&wanted, &filters)?);
    x.items("subnetSet", &subnets, |x, s| {
        x.elem("subnetId", &s.subnet.id)
            .elem("subnetArn", &s.arn)
            .elem("state", "available")
            .elem("ownerId", &s.owner_id)
            .elem("vpcId", &s.vpc_id)
            .elem("cidrBlock", &s.subnet.cidr)
            .items("ipv6CidrBlockAssociationSet", Vec::<()>::new(), |_, _| {})
            .elem("availableIpAddressCount", s.available_ips)
            .elem("availabilityZone", &s.subnet.zone)
            .elem("availabilityZoneId", &s.zone_id)
            .elem("defaultForAz", true)
            .elem("mapPublicIpOnLaunch", true)
            .elem("mapCustomerOwnedIpOnLaunch", false)
            .elem("assignIpv6AddressOnCreation", false)
            .elem("enableDns64", false)
            .elem("ipv6Native", false)
            .nest("privateDnsNameOptionsOnLaunch", |x| {
                x.elem("hostnameType", "ip-name")
                    .elem("enableResourceNameDnsARecord", false)
                    .elem("enableResourceNameDnsAAAARecord", false);
            })
            .items("tagSet", Vec::<()>::new(), |_, _| {});
    });
    x.opt("nextToken", next);
    Ok(())
}

/// The account's attributes, in AWS's order.
fn account_attributes(c: &Cloud) -> Vec<(&'static str, Vec<String>)> {
    let limits = &c.cfg.limits;
    vec![
        ("supported-platforms", vec!["VPC".into()]),
        ("vpc-max-security-groups-per-interface", vec!["5".into()]),
        // One instance per vCPU of the quota is the most that can run (1-vCPU types).
        ("max-instances", vec![limits.max_vcpus.to_string()]),
        ("max-elastic-ips", vec![limits.max_elastic_ips.to_string()]),
        (
            "vpc-max-elastic-ips",
            vec![limits.max_elastic_ips.to_string()],
        ),
        ("default-vpc", vec![c.network().vpc_id]),
    ]
}

pub(super) fn describe_account_attributes(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let wanted = p.list("AttributeName");
    p.finish()?;
    let all = account_attributes(c);
    if let Some(bad) = wanted.iter().find(|w| !all.iter().any(|(n, _)| n == w)) {
        let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        return Err(AwsError::invalid(format!(
            "Value ({}) for parameter attributeName is invalid. Expecting one of: {}.",
            crate::cloud::validate::shown(bad),
            names.join(", ")
        )));
    }
    let keep = all
        .iter()
        .filter(|(n, _)| wanted.is_empty() || wanted.iter().any(|w| w == n));
    x.items("accountAttributeSet", keep, |x, (name, values)| {
        x.elem("attributeName", name)
            .items("attributeValueSet", values, |x, v| {
                x.elem("attributeValue", v);
            });
    });
    Ok(())
}
