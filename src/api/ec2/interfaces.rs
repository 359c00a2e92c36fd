//! DescribeNetworkInterfaces: each running or stopped instance's primary interface (see
//! `cloud::interfaces`), in the `NetworkInterface` shape — its attachment to the instance and
//! its public-IP association.

use std::sync::Arc;

use super::instances::group_set;
use super::paging::Page;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::{AwsError, Cloud};

pub(super) fn describe_network_interfaces(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let page = Page::read(p, "DescribeNetworkInterfaces", 5, 1000)?;
    let (wanted, filters) = (p.list("NetworkInterfaceId"), p.filters()?);
    // Interfaces managed by other services (load balancers, NAT gateways) are shown only with
    // it; the lab has none yet, so both answers are the same list.
    p.bool("IncludeManagedResources")?;
    p.finish()?;
    let (enis, next) = page.take(c.describe_network_interfaces(&wanted, &filters)?);
    let region = c.cfg.region.clone();
    x.items("networkInterfaceSet", &enis, |x, n| {
        let i = &n.instance;
        let public = i.public_ip.as_ref().map(|ip| (ip, i.public_dns(&region)));
        let association = |x: &mut Xml| {
            if let Some((ip, dns)) = &public {
                x.nest("association", |x| {
                    x.elem("ipOwnerId", "amazon")
                        .elem("publicDnsName", dns.clone().unwrap_or_default())
                        .elem("publicIp", *ip);
                });
            }
        };
        association(x);
        x.nest("attachment", |x| {
            x.elem("attachTime", &i.launch_time)
                .elem("attachmentId", n.id().replacen("eni-", "eni-attach-", 1))
                .elem("deleteOnTermination", true)
                .elem("deviceIndex", 0)
                .elem("networkCardIndex", 0)
                .elem("instanceId", &i.id)
                .elem("instanceOwnerId", &c.cfg.account_id)
                .elem("status", "attached");
        })
        .elem("availabilityZone", &i.zone)
        .elem(
            "description",
            i.launch.interface_description.clone().unwrap_or_default(),
        );
        group_set(x, i);
        x.elem("interfaceType", "interface")
            .items("ipv6AddressesSet", Vec::<()>::new(), |_, _| {})
            .elem("macAddress", i.mac())
            .elem("networkInterfaceId", n.id())
            .elem("ownerId", &c.cfg.account_id)
            .elem("privateDnsName", i.private_dns(&region))
            .elem("privateIpAddress", &i.private_ip)
            .items("privateIpAddressesSet", [i], |x, i| {
                association(x);
                x.elem("primary", true)
                    .elem("privateDnsName", i.private_dns(&region))
                    .elem("privateIpAddress", &i.private_ip);
            })
            .elem("requesterManaged", false)
            .elem("sourceDestCheck", true)
            .elem("status", "in-use")
            .elem("subnetId", &i.subnet_id)
            .items("tagSet", Vec::<()>::new(), |_, _| {})
            .elem("vpcId", &i.vpc_id);
    });
    x.opt("nextToken", next);
    Ok(())
}
