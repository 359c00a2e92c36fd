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
    let a = c.allocate_address(&p.tag_specs()?)?;
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
    let id = c.associate_address(
        p.get("AllocationId"),
        p.get("PublicIp"),
        p.required("InstanceId")?,
        p.bool("AllowReassociation")?,
    )?;
    x.elem("return", true).elem("associationId", id);
    Ok(())
}

pub(super) fn disassociate_address(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    c.disassociate_address(p.get("AssociationId"), p.get("PublicIp"))?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn release_address(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    c.release_address(p.get("AllocationId"), p.get("PublicIp"))?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn describe_addresses(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let list = c.describe_addresses(&p.list("AllocationId"), &p.list("PublicIp"), &p.filters()?)?;
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
