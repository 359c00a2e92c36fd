//! The default VPC and its subnets as DescribeVpcs and DescribeSubnets show them: the layout of
//! [`network::Network`](super::network::Network) (made once, kept in the store) plus what is live
//! — each subnet's free addresses (a /20 has 4091 usable, less one per instance in it that is not
//! terminated). The lab has exactly this one VPC; every subnet is its zone's default.
//!
//! Order of one Describe: ids checked (malformed, then unknown: all or nothing, as on AWS) →
//! the views built → filters applied; the API pages the result.

use ipnet::Ipv4Net;

use super::instances::State as InstanceState;
use super::network::Subnet;
use super::tags::{self, Filter, Filterable, Tag};
use super::{AwsError, Cloud, catalog, validate};

/// The default VPC.
#[derive(Debug, Clone)]
pub struct VpcView {
    pub id: String,
    pub cidr: String,
    pub owner_id: String,
}

/// One default subnet with what is live in it.
#[derive(Debug, Clone)]
pub struct SubnetView {
    pub subnet: Subnet,
    pub zone_id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub available_ips: u32,
    pub arn: String,
}

/// Usable addresses of a subnet: all of them less AWS's five reserved (network, router, DNS,
/// future use, broadcast).
pub fn usable_addresses(cidr: &str) -> u32 {
    let net: Ipv4Net = cidr.parse().expect("valid subnet cidr");
    (1u32 << (32 - u32::from(net.prefix_len()))).saturating_sub(5)
}

impl Filterable for VpcView {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "vpc-id" => self.id.clone(),
            "cidr" | "cidr-block-association.cidr-block" => self.cidr.clone(),
            "cidr-block-association.state" | "state" => "available".into(),
            "is-default" => "true".into(),
            "owner-id" => self.owner_id.clone(),
            "dhcp-options-id" => "default".into(),
            _ => return None,
        }])
    }
}

impl Filterable for SubnetView {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "subnet-id" => self.subnet.id.clone(),
            "vpc-id" => self.vpc_id.clone(),
            "availability-zone" | "availabilityZone" => self.subnet.zone.clone(),
            "availability-zone-id" | "availabilityZoneId" => self.zone_id.clone(),
            "cidr-block" | "cidr" | "cidrBlock" => self.subnet.cidr.clone(),
            "default-for-az" | "defaultForAz" => "true".into(),
            "map-public-ip-on-launch" => "true".into(),
            "available-ip-address-count" => self.available_ips.to_string(),
            "state" => "available".into(),
            "owner-id" => self.owner_id.clone(),
            "subnet-arn" => self.arn.clone(),
            _ => return None,
        }])
    }
}

pub(super) fn keep<T: Filterable>(items: Vec<T>, filters: &[Filter]) -> Result<Vec<T>, AwsError> {
    let mut out = Vec::new();
    for i in items {
        if tags::matches(&i, filters)? {
            out.push(i);
        }
    }
    Ok(out)
}

/// Refuses malformed ids, then ids that are not in `known`.
pub(super) fn check_ids(
    wanted: &[String],
    known: &[&str],
    prefix: &str,
    malformed: &'static str,
    not_found: &'static str,
    what: &str,
) -> Result<(), AwsError> {
    for w in wanted {
        validate::id(w, prefix, malformed)?;
    }
    let missing: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|w| !known.contains(w))
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => Err(AwsError::new(
            not_found,
            format!("The {what} ID '{one}' does not exist"),
        )),
        many => Err(AwsError::new(
            not_found,
            format!("The {what} IDs '{}' do not exist", many.join(", ")),
        )),
    }
}

impl Cloud {
    pub fn describe_vpcs(
        &self,
        wanted: &[String],
        filters: &[Filter],
    ) -> Result<Vec<VpcView>, AwsError> {
        let net = self.network();
        check_ids(
            wanted,
            &[net.vpc_id.as_str()],
            "vpc",
            "InvalidVpcID.Malformed",
            "InvalidVpcID.NotFound",
            "vpc",
        )?;
        let vpc = VpcView {
            id: net.vpc_id.clone(),
            cidr: net.cidr.clone(),
            owner_id: self.cfg.account_id.clone(),
        };
        keep(vec![vpc], filters)
    }

    pub fn describe_subnets(
        &self,
        wanted: &[String],
        filters: &[Filter],
    ) -> Result<Vec<SubnetView>, AwsError> {
        let net = self.network();
        let known: Vec<&str> = net.subnets.iter().map(|s| s.id.as_str()).collect();
        check_ids(
            wanted,
            &known,
            "subnet",
            "InvalidSubnetID.Malformed",
            "InvalidSubnetID.NotFound",
            "subnet",
        )?;
        let zones = catalog::zones(&self.cfg.region);
        let st = self.state();
        let views: Vec<SubnetView> = net
            .subnets
            .iter()
            .filter(|s| wanted.is_empty() || wanted.contains(&s.id))
            .map(|s| {
                let used = st
                    .instances
                    .iter()
                    .filter(|i| i.subnet_id == s.id && i.state != InstanceState::Terminated)
                    .count() as u32;
                SubnetView {
                    subnet: s.clone(),
                    zone_id: zones
                        .iter()
                        .find(|(z, _)| *z == s.zone)
                        .map(|(_, id)| id.clone())
                        .unwrap_or_default(),
                    vpc_id: net.vpc_id.clone(),
                    owner_id: self.cfg.account_id.clone(),
                    available_ips: usable_addresses(&s.cidr).saturating_sub(used),
                    arn: format!(
                        "arn:aws:ec2:{}:{}:subnet/{}",
                        self.cfg.region, self.cfg.account_id, s.id
                    ),
                }
            })
            .collect();
        drop(st);
        keep(views, filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_subnet_has_4091_addresses() {
        assert_eq!(usable_addresses("172.31.16.0/20"), 4091);
        assert_eq!(usable_addresses("172.31.0.0/16"), 65531);
    }

    #[test]
    fn ids_are_checked_all_or_nothing() {
        let known = ["subnet-0123456789abcdef0"];
        let ok = check_ids(
            &["subnet-0123456789abcdef0".into()],
            &known,
            "subnet",
            "M",
            "N",
            "subnet",
        );
        assert!(ok.is_ok());
        let e = check_ids(&["vpc-1".into()], &known, "subnet", "M", "N", "subnet");
        assert_eq!(e.unwrap_err().code, "M");
        let e = check_ids(
            &["subnet-0123456789abcdef1".into()],
            &known,
            "subnet",
            "M",
            "N",
            "subnet",
        );
        assert_eq!(e.unwrap_err().code, "N");
    }
}
