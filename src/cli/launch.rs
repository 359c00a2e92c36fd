//! `ec2lab run`: RunInstances in the forms tutorials use. Security groups are named by id or
//! name (names resolved with DescribeSecurityGroups); `--subnet`, `--public-ip` and
//! `--no-public-ip` are sent as the first network interface (`NetworkInterface.1.*`, what the
//! aws CLI's `--associate-public-ip-address` sends), the groups then going with it; without them
//! the groups are sent as `SecurityGroupId.N`. `--wait` polls until every instance is running,
//! then prints its id, name and public IP.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;

use super::client::Element;
use super::instance::{describe, name_of, p, table};
use super::lifecycle::{WaitArgs, wait_for_state};
use super::output::Rows;
use super::{CliError, Client, Common};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// AMI id or name (default: the built-in lab-linux).
    #[arg(long, default_value = "lab-linux")]
    pub image: String,
    #[arg(long = "type", default_value = "t2.micro")]
    pub instance_type: String,
    /// Key pair name (its public key goes into the default user's authorized_keys).
    #[arg(long)]
    pub key: Option<String>,
    /// The Name tag.
    #[arg(long)]
    pub name: Option<String>,
    /// Availability zone: a full name (ap-northeast-2a) or just its letter (a).
    #[arg(long)]
    pub zone: Option<String>,
    /// A user data file (script, #cloud-config, …).
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// A security group, by id (sg-…) or name; repeat for more (default: the VPC's default).
    #[arg(long = "security-group", value_name = "NAME|ID")]
    pub security_groups: Vec<String>,
    /// The subnet to launch into (subnet-…).
    #[arg(long, value_name = "ID")]
    pub subnet: Option<String>,
    /// Give the instance a public IP address (the subnet's setting otherwise).
    #[arg(long, conflicts_with = "no_public_ip")]
    pub public_ip: bool,
    /// Give the instance no public IP address.
    #[arg(long)]
    pub no_public_ip: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

pub fn run(common: &Common, a: RunArgs) -> Result<(), CliError> {
    let client = common.client()?;
    let image_id = resolve_image(&client, &a.image)?;
    let mut params = vec![
        p("ImageId", image_id),
        p("InstanceType", a.instance_type),
        p("MinCount", a.count.to_string()),
        p("MaxCount", a.count.to_string()),
    ];
    if let Some(k) = a.key {
        params.push(p("KeyName", k));
    }
    if let Some(z) = a.zone {
        let zone = if z.len() == 1 {
            format!("{}{z}", client.region())
        } else {
            z
        };
        params.push(p("Placement.AvailabilityZone", zone));
    }
    if let Some(n) = a.name {
        params.extend([
            p("TagSpecification.1.ResourceType", "instance"),
            p("TagSpecification.1.Tag.1.Key", "Name"),
            p("TagSpecification.1.Tag.1.Value", n),
        ]);
    }
    if let Some(f) = a.user_data {
        let raw = std::fs::read(&f)
            .map_err(|e| CliError::Setup(format!("cannot read {}: {e}", f.display())))?;
        params.push(p(
            "UserData",
            base64::engine::general_purpose::STANDARD.encode(raw),
        ));
    }
    let groups = resolve_groups(&client, &a.security_groups)?;
    let public_ip = match (a.public_ip, a.no_public_ip) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    params.extend(network_params(&groups, a.subnet, public_ip));
    let r = client.call("RunInstances", &params)?;
    let ids: Vec<String> = r
        .items("instancesSet")
        .iter()
        .map(|i| i.text_of("instanceId"))
        .collect();
    if a.wait.wait {
        let deadline = Instant::now() + Duration::from_secs(a.wait.timeout);
        let ready = wait_for_state(&client, &ids, "running", deadline)?;
        ready_table(&ready).print(common.output);
        return Ok(());
    }
    // Show them as they are now.
    let now = describe(&client, &ids)?;
    table(&now.iter().collect::<Vec<_>>()).print(common.output);
    Ok(())
}

/// The group, subnet and public-IP parameters: the network-interface form when a subnet or a
/// public-IP choice is given (groups go with the interface then), else `SecurityGroupId.N`.
fn network_params(
    groups: &[String],
    subnet: Option<String>,
    public_ip: Option<bool>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if subnet.is_none() && public_ip.is_none() {
        for (n, g) in groups.iter().enumerate() {
            out.push(p(&format!("SecurityGroupId.{}", n + 1), g.clone()));
        }
        return out;
    }
    let ni = "NetworkInterface.1";
    out.push(p(&format!("{ni}.DeviceIndex"), "0"));
    if let Some(v) = public_ip {
        out.push(p(&format!("{ni}.AssociatePublicIpAddress"), v.to_string()));
    }
    if let Some(s) = subnet {
        out.push(p(&format!("{ni}.SubnetId"), s));
    }
    for (n, g) in groups.iter().enumerate() {
        out.push(p(&format!("{ni}.SecurityGroupId.{}", n + 1), g.clone()));
    }
    out
}

/// What `run --wait` prints: the instances ready to use.
fn ready_table(ready: &[Element]) -> Rows {
    let mut rows = Rows::new(&["INSTANCE ID", "NAME", "PUBLIC IP"]);
    for i in ready {
        rows.push(vec![
            i.text_of("instanceId"),
            name_of(i),
            i.text_of("ipAddress"),
        ]);
    }
    rows
}

/// Security group ids for ids or names, in the order given; an unknown name is an error.
fn resolve_groups(client: &Client, given: &[String]) -> Result<Vec<String>, CliError> {
    let names: Vec<&String> = given.iter().filter(|g| !g.starts_with("sg-")).collect();
    let mut known: Vec<(String, String)> = Vec::new();
    if !names.is_empty() {
        let mut q = vec![p("Filter.1.Name", "group-name")];
        for (n, name) in names.iter().enumerate() {
            q.push(p(&format!("Filter.1.Value.{}", n + 1), name.as_str()));
        }
        let r = client.call("DescribeSecurityGroups", &q)?;
        known = r
            .items("securityGroupInfo")
            .iter()
            .map(|g| (g.text_of("groupName"), g.text_of("groupId")))
            .collect();
    }
    given
        .iter()
        .map(|g| {
            if g.starts_with("sg-") {
                return Ok(g.clone());
            }
            let ids: Vec<&String> = known
                .iter()
                .filter(|(name, _)| name == g)
                .map(|(_, id)| id)
                .collect();
            match ids.as_slice() {
                [id] => Ok((*id).clone()),
                [] => Err(CliError::Setup(format!(
                    "no security group named '{g}' (see `aws ec2 describe-security-groups`)"
                ))),
                _ => Err(CliError::Setup(format!(
                    "{} security groups are named '{g}': use its id",
                    ids.len()
                ))),
            }
        })
        .collect()
}

/// An AMI id, or the id of the AMI with that name.
fn resolve_image(client: &Client, image: &str) -> Result<String, CliError> {
    if image.starts_with("ami-") {
        return Ok(image.to_string());
    }
    let r = client.call(
        "DescribeImages",
        &[p("Filter.1.Name", "name"), p("Filter.1.Value.1", image)],
    )?;
    r.items("imagesSet")
        .first()
        .map(|i| i.text_of("imageId"))
        .ok_or_else(|| CliError::Setup(format!("no AMI named '{image}' (see `ec2lab image ls`)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_go_with_the_interface_only_when_it_is_sent() {
        let g = vec!["sg-1".to_string(), "sg-2".to_string()];
        assert_eq!(
            network_params(&g, None, None),
            [
                p("SecurityGroupId.1", "sg-1"),
                p("SecurityGroupId.2", "sg-2")
            ]
        );
        assert_eq!(
            network_params(&g, Some("subnet-9".into()), Some(false)),
            [
                p("NetworkInterface.1.DeviceIndex", "0"),
                p("NetworkInterface.1.AssociatePublicIpAddress", "false"),
                p("NetworkInterface.1.SubnetId", "subnet-9"),
                p("NetworkInterface.1.SecurityGroupId.1", "sg-1"),
                p("NetworkInterface.1.SecurityGroupId.2", "sg-2"),
            ]
        );
    }
}
