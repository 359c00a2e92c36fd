//! Elastic IP actions: AllocateAddress, AssociateAddress, DisassociateAddress, ReleaseAddress,
//! DescribeAddresses.

use std::sync::Arc;

use super::tag_set;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::addresses::Address;
use crate::cloud::{AwsError, Cloud};

pub(super) fn allocate_address(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    if let Some(d) = p.get("Domain")
        && d != "vpc"
    {
        return Err(AwsError::invalid_value("Domain", d));
    }
    p.refuse(&["Address", "CustomerOwnedIpv4Pool", "IpamPoolId"])?;
    p.only("PublicIpv4Pool", &["amazon"])?;
    p.only("NetworkBorderGroup", &[&c.cfg.region])?;
    let tags = p.tag_specs()?;
    p.finish()?;
    let a = c.allocate_address(&tags)?;
    x.elem("publicIp", &a.public_ip)
        .elem("domain", "vpc")
        .elem("allocationId", &a.allocation_id)
        .elem("publicIpv4Pool", "amazon")
        .elem("networkBorderGroup", &c.cfg.region);
    Ok(())
}

pub(super) fn associate_address(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    if p.get("NetworkInterfaceId").is_some() {
        return Err(AwsError::new(
            "UnsupportedOperation",
            "Associate the address with an instance (InstanceId): network interfaces are not modelled in this lab",
        ));
    }
    let (allocation, public_ip) = (p.get("AllocationId"), p.get("PublicIp"));
    let (instance, reassociate) = (p.required("InstanceId")?, p.bool("AllowReassociation")?);
    // The instance has one private address: the address goes there or nowhere.
    if let Some(ip) = p.get("PrivateIpAddress")
        && c.instance(instance)?.private_ip != ip
    {
        return Err(AwsError::invalid(format!(
            "The private IP address {} is not that of instance {instance} (parameter PrivateIpAddress)",
            crate::cloud::validate::shown(ip)
        )));
    }
    p.finish()?;
    let id = c.associate_address(allocation, public_ip, instance, reassociate)?;
    x.elem("return", true).elem("associationId", id);
    Ok(())
}

pub(super) fn disassociate_address(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let (association, public_ip) = (p.get("AssociationId"), p.get("PublicIp"));
    p.finish()?;
    c.disassociate_address(association, public_ip)?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn release_address(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let (allocation, public_ip) = (p.get("AllocationId"), p.get("PublicIp"));
    p.only("NetworkBorderGroup", &[&c.cfg.region])?;
    p.finish()?;
    c.release_address(allocation, public_ip)?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn describe_addresses(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let (ids, ips, filters) = (p.list("AllocationId"), p.list("PublicIp"), p.filters()?);
    p.finish()?;
    let list = c.describe_addresses(&ids, &ips, &filters)?;
    x.items("addressesSet", &list, |x, a: &Address| {
        x.elem("publicIp", &a.public_ip)
            .elem("allocationId", &a.allocation_id)
            .elem("domain", "vpc")
            .opt("instanceId", a.instance_id.as_ref())
            .opt("associationId", a.association_id.as_ref())
            .opt("privateIpAddress", a.private_ip.as_ref())
            .elem("publicIpv4Pool", "amazon")
            .elem("networkBorderGroup", &c.cfg.region);
        tag_set(x, &a.tags);
    });
    Ok(())
}
