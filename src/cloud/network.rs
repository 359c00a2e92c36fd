//! The default VPC: `172.31.0.0/16` with one `/20` subnet per zone (as AWS's default VPC lays them
//! out), its default security group, and private IP allocation inside a subnet. Made once on first
//! start and kept in the store.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{AwsError, catalog, ids};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub vpc_id: String,
    pub cidr: String,
    pub subnets: Vec<Subnet>,
    pub default_sg_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub zone: String,
    pub cidr: String,
}

impl Network {
    pub fn new(region: &str) -> Network {
        let subnets = catalog::zones(region)
            .into_iter()
            .enumerate()
            .map(|(i, (zone, _))| Subnet {
                id: ids::new_id("subnet"),
                zone,
                cidr: format!("172.31.{}.0/20", i * 16),
            })
            .collect();
        Network {
            vpc_id: ids::new_id("vpc"),
            cidr: "172.31.0.0/16".into(),
            subnets,
            default_sg_id: ids::new_id("sg"),
        }
    }
}

/// The subnet for a launch: by subnet id, by zone, or spread over the zones.
pub fn pick_subnet(
    net: &Network,
    region: &str,
    zone: Option<&str>,
    subnet_id: Option<&str>,
    spread: usize,
) -> Result<Subnet, AwsError> {
    if let Some(id) = subnet_id {
        let s = net.subnets.iter().find(|s| s.id == id).ok_or_else(|| {
            AwsError::new(
                "InvalidSubnetID.NotFound",
                format!("The subnet ID '{id}' does not exist"),
            )
        })?;
        if let Some(z) = zone
            && z != s.zone
        {
            return Err(AwsError::combination(format!(
                "The subnet {id} is in {}, not in the requested availability zone {z}",
                s.zone
            )));
        }
        return Ok(s.clone());
    }
    if let Some(z) = zone {
        if !catalog::is_zone(region, z) {
            return Err(AwsError::invalid(format!(
                "Invalid availability zone: [{z}]"
            )));
        }
        return Ok(net
            .subnets
            .iter()
            .find(|s| s.zone == z)
            .cloned()
            .expect("a subnet per zone"));
    }
    Ok(net.subnets[spread % net.subnets.len()].clone())
}

/// The lowest free address of the subnet (AWS reserves the first four and the last).
pub fn next_ip(subnet: &Subnet, used: &[String]) -> Result<String, AwsError> {
    let net: Ipv4Net = subnet.cidr.parse().expect("valid subnet cidr");
    let first = u32::from(net.network()) + 4;
    let last = u32::from(net.broadcast()) - 1;
    for n in first..=last {
        let ip = Ipv4Addr::from(n).to_string();
        if !used.contains(&ip) {
            return Ok(ip);
        }
    }
    Err(AwsError::new(
        "InsufficientFreeAddressesInSubnet",
        format!(
            "There are not enough free addresses in subnet '{}' to satisfy the requested number of instances.",
            subnet.id
        ),
    ))
}

/// A free public address from the lab's pool (`--public-cidr`), searching from `cursor` (an
/// offset into the pool) and wrapping around, so a stopped-and-started instance gets a new
/// address as on AWS. Returns the address and the cursor for the next search. The pool's network
/// and broadcast addresses are skipped.
pub fn next_public_ip(
    pool: &Ipv4Net,
    used: &[String],
    cursor: u32,
) -> Result<(String, u32), AwsError> {
    let first = u32::from(pool.network()) + 1;
    let last = u32::from(pool.broadcast()).saturating_sub(1);
    let size = last.saturating_sub(first) + 1;
    for k in 0..size {
        let off = (cursor + k) % size;
        let ip = Ipv4Addr::from(first + off).to_string();
        if !used.contains(&ip) {
            return Ok((ip, (off + 1) % size));
        }
    }
    Err(AwsError::new(
        "AddressLimitExceeded",
        format!("The lab's public address pool {pool} is exhausted (serve --public-cidr)."),
    ))
}

/// Checks a requested private IP: inside the subnet, not reserved, not taken.
pub fn claim_ip(subnet: &Subnet, ip: &str, used: &[String]) -> Result<String, AwsError> {
    let net: Ipv4Net = subnet.cidr.parse().expect("valid subnet cidr");
    let addr: Ipv4Addr = ip
        .parse()
        .map_err(|_| AwsError::invalid_value("PrivateIpAddress", ip))?;
    let n = u32::from(addr);
    if !net.contains(&addr) || n < u32::from(net.network()) + 4 || n == u32::from(net.broadcast()) {
        return Err(AwsError::new(
            "InvalidParameterValue",
            format!(
                "Address {ip} is not in the usable range of subnet {} ({})",
                subnet.id, subnet.cidr
            ),
        ));
    }
    if used.iter().any(|u| u == ip) {
        return Err(AwsError::new(
            "InvalidIPAddress.InUse",
            format!("Address {ip} is in use."),
        ));
    }
    Ok(ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_and_addresses() {
        let n = Network::new("ap-northeast-2");
        assert_eq!(n.subnets[1].cidr, "172.31.16.0/20");
        assert_eq!(n.subnets[1].zone, "ap-northeast-2b");
        let s = pick_subnet(&n, "ap-northeast-2", Some("ap-northeast-2c"), None, 0).unwrap();
        assert_eq!(s.cidr, "172.31.32.0/20");
        assert!(pick_subnet(&n, "ap-northeast-2", Some("us-east-1a"), None, 0).is_err());
        assert_eq!(next_ip(&s, &[]).unwrap(), "172.31.32.4");
        assert_eq!(next_ip(&s, &["172.31.32.4".into()]).unwrap(), "172.31.32.5");
        assert!(claim_ip(&s, "172.31.32.2", &[]).is_err());
        assert!(claim_ip(&s, "172.31.0.9", &[]).is_err());
        assert!(claim_ip(&s, "172.31.33.9", &["172.31.33.9".into()]).is_err());
        assert_eq!(claim_ip(&s, "172.31.33.9", &[]).unwrap(), "172.31.33.9");
    }

    #[test]
    fn public_ips_rotate_and_skip_used() {
        let pool: Ipv4Net = "127.100.0.0/30".parse().unwrap(); // .1 and .2 usable
        let (a, c) = next_public_ip(&pool, &[], 0).unwrap();
        assert_eq!(a, "127.100.0.1");
        let (b, c) = next_public_ip(&pool, &[], c).unwrap();
        assert_eq!(
            b, "127.100.0.2",
            "a released address is not handed out again at once"
        );
        let (x, _) = next_public_ip(&pool, &["127.100.0.1".into()], c).unwrap();
        assert_eq!(x, "127.100.0.2");
        assert!(next_public_ip(&pool, &[a, b], c).is_err());
    }
}
