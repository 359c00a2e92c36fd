//! Network interfaces: every instance that is not terminated has one primary interface,
//! `eni-` + its id's digits, made and gone with it (as `DeleteOnTermination` ENIs are), which
//! DescribeNetworkInterfaces shows: its subnet, private IP and DNS name, groups, MAC, attachment
//! and public-IP association. They are not records of their own: the instance is the source.

use super::instances::{Instance, State as InstanceState};
use super::tags::{Filter, Filterable, Tag};
use super::vpcs::{check_ids, keep};
use super::{AwsError, Cloud};

/// An instance's primary network interface.
#[derive(Debug, Clone)]
pub struct Interface {
    pub instance: Instance,
}

impl Interface {
    pub fn id(&self) -> String {
        interface_id(&self.instance.id)
    }
}

/// The interface id of an instance: `i-0abc…` → `eni-0abc…`.
pub fn interface_id(instance_id: &str) -> String {
    instance_id.replacen("i-", "eni-", 1)
}

impl Filterable for Interface {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let i = &self.instance;
        let one = |s: &str| Some(vec![s.to_string()]);
        match name {
            "network-interface-id" => one(&self.id()),
            "attachment.instance-id" => one(&i.id),
            "attachment.status" => one("attached"),
            "attachment.device-index" => one("0"),
            "availability-zone" => one(&i.zone),
            "subnet-id" => one(&i.subnet_id),
            "vpc-id" => one(&i.vpc_id),
            "private-ip-address" | "addresses.private-ip-address" => one(&i.private_ip),
            "association.public-ip" => Some(i.public_ip.iter().cloned().collect()),
            "group-id" => Some(i.groups.iter().map(|g| g.id.clone()).collect()),
            "group-name" => Some(i.groups.iter().map(|g| g.name.clone()).collect()),
            "mac-address" => one(&i.mac()),
            "status" => one("in-use"),
            "interface-type" => one("interface"),
            "requester-managed" => one("false"),
            "source-dest-check" => one("true"),
            "owner-id" => one(crate::serve::ACCOUNT_ID),
            _ => None,
        }
    }
}

impl Cloud {
    pub fn describe_network_interfaces(
        &self,
        wanted: &[String],
        filters: &[Filter],
    ) -> Result<Vec<Interface>, AwsError> {
        let all: Vec<Interface> = self
            .state()
            .instances
            .iter()
            .filter(|i| i.state != InstanceState::Terminated)
            .map(|i| Interface {
                instance: i.clone(),
            })
            .collect();
        let known: Vec<String> = all.iter().map(Interface::id).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        check_ids(
            wanted,
            &known,
            "eni",
            "InvalidNetworkInterfaceID.Malformed",
            "InvalidNetworkInterfaceID.NotFound",
            "network interface",
        )?;
        let picked = all
            .into_iter()
            .filter(|n| wanted.is_empty() || wanted.contains(&n.id()))
            .collect();
        keep(picked, filters)
    }
}
