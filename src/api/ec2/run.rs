//! RunInstances: decodes every member of its input shape — the instance-level network form
//! (`SubnetId`, `SecurityGroupId.N`, `PrivateIpAddress`) or the tutorials' interface form
//! (`NetworkInterface.1.*`, which the CLI's `--associate-public-ip-address` sends), block device
//! mappings, placement, metadata options and the rest — refuses what the lab does not do by name,
//! checks AWS's combination rules, and only then launches (`Params::finish` in between).

use std::sync::Arc;

use super::instances::{group_set, write_instance};
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::instances::RunRequest;
use crate::cloud::launch::{BlockDevice, Ebs, IamProfile, Launch};
use crate::cloud::metadata_options::MetadataOptions;
use crate::cloud::{AwsError, Cloud, InstanceState};

/// Members of RunInstances the lab does not do (each covers everything under it).
const REFUSED: &[&str] = &[
    "Ipv6AddressCount",
    "Ipv6Address",
    "KernelId",
    "RamdiskId",
    "ElasticGpuSpecification",
    "ElasticInferenceAccelerator",
    "LaunchTemplate",
    "InstanceMarketOptions",
    "CpuOptions",
    "CapacityReservationSpecification",
    "LicenseSpecification",
    "MaintenanceOptions",
    "NetworkPerformanceOptions",
    "Operator",
    "SecondaryInterface",
    "AdditionalInfo",
];

/// Members of `NetworkInterface.N` the lab does not do.
const REFUSED_IN_INTERFACE: &[&str] = &[
    "NetworkInterfaceId",
    "Ipv6AddressCount",
    "Ipv6Addresses",
    "SecondaryPrivateIpAddressCount",
    "AssociateCarrierIpAddress",
    "Ipv4Prefix",
    "Ipv4PrefixCount",
    "Ipv6Prefix",
    "Ipv6PrefixCount",
    "PrimaryIpv6",
    "EnaSrdSpecification",
    "ConnectionTrackingSpecification",
    "EnaQueueCount",
];

/// Members of `BlockDeviceMapping.N.Ebs` the lab does not do.
const REFUSED_IN_EBS: &[&str] = &[
    "SnapshotId",
    "KmsKeyId",
    "OutpostArn",
    "AvailabilityZone",
    "AvailabilityZoneId",
    "VolumeInitializationRate",
    "EbsCardIndex",
];

pub(super) fn run_instances(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let req = decode(p)?;
    p.finish()?; // before anything is launched
    let insts = c.run_instances(req)?;
    let first = insts.first().expect("at least one instance");
    x.elem("reservationId", &first.reservation_id)
        .elem("ownerId", crate::serve::ACCOUNT_ID);
    group_set(x, first);
    x.items("instancesSet", &insts, |x, i| {
        // RunInstances reports the instances as they were launched: pending.
        let mut shown = i.clone();
        shown.state = InstanceState::Pending;
        write_instance(x, &shown, &c.cfg.region);
    });
    Ok(())
}

/// The network of the primary interface, from either form.
#[derive(Default)]
struct Nic {
    subnet_id: Option<String>,
    group_ids: Vec<String>,
    private_ip: Option<String>,
    associate_public_ip: Option<bool>,
    description: Option<String>,
}

fn decode(p: &Params) -> Result<RunRequest, AwsError> {
    p.refuse(REFUSED)?;
    // Newer botocore (1.44): detailed-monitoring metric categories.
    p.nested("Monitoring").refuse(&["MetricCategoryId"])?;
    let metadata = MetadataOptions::parse(&p.nested("MetadataOptions"), "MetadataOptions.")?;
    let placement = p.nested("Placement");
    placement.refuse(&[
        "AvailabilityZoneId",
        "Affinity",
        "GroupName",
        "PartitionNumber",
        "HostId",
        "SpreadDomain",
        "HostResourceGroupArn",
        "GroupId",
    ])?;
    placement.only("Tenancy", &["default"])?;
    let dns = p.nested("PrivateDnsNameOptions");
    dns.only("HostnameType", &["ip-name"])?;
    dns.only("EnableResourceNameDnsARecord", &["false"])?;
    dns.only("EnableResourceNameDnsAAAARecord", &["false"])?;
    for off in [
        "DisableApiStop",
        "EnablePrimaryIpv6",
        "HibernationOptions.Configured",
        "EnclaveOptions.Enabled",
    ] {
        p.only(off, &["false"])?;
    }
    let nic = interface(p)?;
    let launch = Launch {
        block_devices: block_devices(p)?,
        iam_instance_profile: iam_profile(p)?,
        ebs_optimized: p.bool("EbsOptimized")?.unwrap_or(false),
        monitoring: p.nested("Monitoring").bool("Enabled")?.unwrap_or(false),
        cpu_credits: p
            .nested("CreditSpecification")
            .only("CpuCredits", &["standard", "unlimited"])?
            .map(str::to_ascii_lowercase),
        interface_description: nic.description,
    };
    Ok(RunRequest {
        image_id: p.required("ImageId")?.to_string(),
        instance_type: p.get("InstanceType").map(str::to_string),
        min_count: p
            .int("MinCount")?
            .ok_or_else(|| AwsError::missing("MinCount"))?,
        max_count: p
            .int("MaxCount")?
            .ok_or_else(|| AwsError::missing("MaxCount"))?,
        key_name: p.get("KeyName").map(str::to_string),
        user_data: p.get("UserData").map(str::to_string),
        zone: placement.get("AvailabilityZone").map(str::to_string),
        subnet_id: nic.subnet_id,
        tag_specs: p.tag_specs()?,
        client_token: p.get("ClientToken").map(str::to_string),
        shutdown_behavior: p
            .get("InstanceInitiatedShutdownBehavior")
            .map(str::to_string),
        metadata,
        security_group_ids: nic.group_ids,
        security_groups: p.list("SecurityGroup"),
        private_ip: nic.private_ip,
        disable_api_termination: p.bool("DisableApiTermination")?.unwrap_or(false),
        associate_public_ip: nic.associate_public_ip,
        launch,
    })
}

/// `NetworkInterface.1.*` (one interface at device index 0) or the instance-level members —
/// not both, as on AWS.
fn interface(p: &Params) -> Result<Nic, AwsError> {
    let top = Nic {
        subnet_id: p.get("SubnetId").map(str::to_string),
        group_ids: p.list("SecurityGroupId"),
        private_ip: p.get("PrivateIpAddress").map(str::to_string),
        ..Nic::default()
    };
    let mut nics = p.structs("NetworkInterface");
    if nics.is_empty() {
        return Ok(top);
    }
    if nics.len() > 1 {
        return Err(AwsError::unsupported(
            "NetworkInterface.2 (more than one network interface)",
        ));
    }
    let n = nics.remove(0);
    n.refuse(REFUSED_IN_INTERFACE)?;
    n.only("InterfaceType", &["interface"])?;
    n.only("NetworkCardIndex", &["0"])?;
    // The interface goes with the instance; one that outlives it is not supported.
    n.only("DeleteOnTermination", &["true"])?;
    match n.int::<i64>("DeviceIndex")? {
        Some(0) => {}
        Some(_) => {
            return Err(AwsError::unsupported(
                "NetworkInterface.1.DeviceIndex other than 0 (a secondary interface)",
            ));
        }
        None => return Err(AwsError::missing("NetworkInterface.1.DeviceIndex")),
    }
    if !top.group_ids.is_empty() || !p.list("SecurityGroup").is_empty() {
        return Err(AwsError::combination(
            "Network interfaces and an instance-level security groups may not be specified on the same request",
        ));
    }
    if top.subnet_id.is_some() {
        return Err(AwsError::combination(
            "Network interfaces and an instance-level subnet ID may not be specified on the same request",
        ));
    }
    if top.private_ip.is_some() {
        return Err(AwsError::combination(
            "Network interfaces and an instance-level private IP address should not be specified on the same request",
        ));
    }
    let description = n.get("Description").map(str::to_string);
    if let Some(d) = &description {
        crate::cloud::validate::text("NetworkInterface.1.Description", d)?;
    }
    Ok(Nic {
        subnet_id: n.get("SubnetId").map(str::to_string),
        group_ids: n.list("SecurityGroupId"),
        private_ip: primary_ip(&n)?,
        associate_public_ip: n.bool("AssociatePublicIpAddress")?,
        description,
    })
}

/// The interface's primary private address: `PrivateIpAddress`, or the one `Primary` entry of
/// `PrivateIpAddresses.N` (the CLI's `--private-ip-address` with `--associate-public-ip-address`
/// sends that form); secondary addresses are not supported.
fn primary_ip(n: &Params) -> Result<Option<String>, AwsError> {
    let direct = n.get("PrivateIpAddress").map(str::to_string);
    let mut set = n.structs("PrivateIpAddresses");
    if set.is_empty() {
        return Ok(direct);
    }
    if set.len() > 1 || set[0].bool("Primary")? == Some(false) {
        return Err(AwsError::unsupported(
            "NetworkInterface.1.PrivateIpAddresses.2 (secondary private IP addresses)",
        ));
    }
    let entry = set.remove(0);
    let ip = entry
        .required("PrivateIpAddress")
        .map_err(|_| AwsError::missing("NetworkInterface.1.PrivateIpAddresses.1.PrivateIpAddress"))?
        .to_string();
    match direct {
        Some(d) if d != ip => Err(AwsError::combination(
            "NetworkInterface.1.PrivateIpAddress and the primary address of NetworkInterface.1.PrivateIpAddresses differ",
        )),
        _ => Ok(Some(ip)),
    }
}

/// `BlockDeviceMapping.N.*`: decoded here, checked by `Launch::check`.
fn block_devices(p: &Params) -> Result<Vec<BlockDevice>, AwsError> {
    p.structs("BlockDeviceMapping")
        .into_iter()
        .map(|b| {
            let e = b.nested("Ebs");
            e.refuse(REFUSED_IN_EBS)?;
            let ebs = if e.is_empty() {
                None
            } else {
                Some(Ebs {
                    volume_id: String::new(),
                    volume_size: e.int("VolumeSize")?,
                    volume_type: e.get("VolumeType").unwrap_or("gp3").to_string(),
                    delete_on_termination: e.bool("DeleteOnTermination")?.unwrap_or(true),
                    encrypted: e.bool("Encrypted")?.unwrap_or(false),
                    iops: e.int("Iops")?,
                    throughput: e.int("Throughput")?,
                })
            };
            Ok(BlockDevice {
                device_name: b.get("DeviceName").unwrap_or("").to_string(),
                ebs,
                // `NoDevice` carries an empty string on the wire: its presence is the value.
                no_device: b.get("NoDevice").is_some(),
                virtual_name: b.get("VirtualName").map(str::to_string),
            })
        })
        .collect()
}

fn iam_profile(p: &Params) -> Result<Option<IamProfile>, AwsError> {
    let iam = p.nested("IamInstanceProfile");
    let (arn, name) = (iam.get("Arn"), iam.get("Name"));
    if arn.is_none() && name.is_none() {
        return Ok(None);
    }
    IamProfile::new(crate::serve::ACCOUNT_ID, arn, name).map(Some)
}
