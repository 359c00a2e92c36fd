//! What RunInstances asks of an instance beyond its image, type and network: block device
//! mappings, an IAM instance profile, EBS optimisation, detailed monitoring and CPU credits.
//! The API decodes them into a [`Launch`]; [`Launch::check`] validates it as EC2 does (before
//! anything is stored), and [`Launch::for_instance`] gives each new instance its own copy with
//! volume ids. The record keeps it and DescribeInstances shows it; making the data volumes real
//! is the EBS issue's (today only the root volume exists).

use serde::{Deserialize, Serialize};

use super::{AwsError, catalog, ids};

/// The launch settings one instance keeps (`#[serde(default)]`: records older than them load).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Launch {
    pub block_devices: Vec<BlockDevice>,
    pub iam_instance_profile: Option<IamProfile>,
    pub ebs_optimized: bool,
    /// `Monitoring.Enabled`: detailed monitoring (shown as `monitoring.state`).
    pub monitoring: bool,
    /// `CreditSpecification.CpuCredits` (`standard` | `unlimited`, burstable types only).
    pub cpu_credits: Option<String>,
    /// `NetworkInterface.1.Description`: the primary interface's description.
    pub interface_description: Option<String>,
}

/// One `BlockDeviceMapping.N`: exactly one of an EBS volume, `NoDevice` or an instance store
/// (`VirtualName`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockDevice {
    pub device_name: String,
    pub ebs: Option<Ebs>,
    pub no_device: bool,
    pub virtual_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ebs {
    /// Given at launch (`for_instance`); empty in a request.
    pub volume_id: String,
    pub volume_size: Option<u32>,
    pub volume_type: String,
    pub delete_on_termination: bool,
    pub encrypted: bool,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IamProfile {
    pub arn: String,
    pub id: String,
}

/// EBS volume types and their size range in GiB.
const VOLUME_TYPES: &[(&str, u32, u32)] = &[
    ("gp3", 1, 16384),
    ("gp2", 1, 16384),
    ("io1", 4, 16384),
    ("io2", 4, 65536),
    ("st1", 125, 16384),
    ("sc1", 125, 16384),
    ("standard", 1, 1024),
];

impl Launch {
    /// Checks the settings for an instance of `instance_type` booted from an image whose root
    /// device is `root_device` of `root_size` GiB.
    pub fn check(
        &self,
        instance_type: &str,
        root_device: &str,
        root_size: u32,
    ) -> Result<(), AwsError> {
        for (n, b) in self.block_devices.iter().enumerate() {
            let at = format!("BlockDeviceMapping.{}", n + 1);
            check_device(&at, b, root_device, root_size)?;
            if self.block_devices[..n]
                .iter()
                .any(|o| o.device_name == b.device_name)
            {
                return Err(AwsError::new(
                    "InvalidBlockDeviceMapping",
                    format!(
                        "The device '{}' is used in more than one block-device mapping",
                        b.device_name
                    ),
                ));
            }
        }
        if self.cpu_credits.is_some()
            && !catalog::instance_type(instance_type).is_some_and(|t| t.burstable)
        {
            return Err(AwsError::combination(format!(
                "The parameter CreditSpecification is not supported for instance type {instance_type}: \
                 CPU credits apply to burstable (T) instances only"
            )));
        }
        Ok(())
    }

    /// This launch for one new instance: each EBS mapping gets its own volume id.
    pub fn for_instance(&self) -> Launch {
        let mut l = self.clone();
        for e in l.block_devices.iter_mut().filter_map(|b| b.ebs.as_mut()) {
            e.volume_id = ids::new_id("vol");
        }
        l
    }

    /// The EBS mapping of the root device, if the request gave one.
    pub fn root<'a>(&'a self, root_device: &str) -> Option<&'a BlockDevice> {
        self.block_devices
            .iter()
            .find(|b| same_device(&b.device_name, root_device))
    }
}

/// `/dev/sda1` and `/dev/xvda` name the same root on a Xen-style image.
fn same_device(a: &str, b: &str) -> bool {
    let norm = |d: &str| d.replacen("/dev/sd", "/dev/xvd", 1);
    a == b || norm(a) == norm(b)
}

fn device_name_ok(d: &str) -> bool {
    let Some(rest) = d
        .strip_prefix("/dev/xvd")
        .or_else(|| d.strip_prefix("/dev/sd"))
        .or_else(|| d.strip_prefix("/dev/hd"))
    else {
        return false;
    };
    let letters = rest.chars().take_while(|c| c.is_ascii_lowercase()).count();
    let digits = &rest[letters..];
    (1..=2).contains(&letters) && digits.len() <= 2 && digits.chars().all(|c| c.is_ascii_digit())
}

fn check_device(
    at: &str,
    b: &BlockDevice,
    root_device: &str,
    root_size: u32,
) -> Result<(), AwsError> {
    if b.device_name.is_empty() {
        return Err(AwsError::missing(&format!("{at}.DeviceName")));
    }
    if !device_name_ok(&b.device_name) {
        return Err(AwsError::invalid(format!(
            "Invalid device name {} (parameter {at}.DeviceName)",
            super::validate::shown(&b.device_name)
        )));
    }
    let kinds = [b.ebs.is_some(), b.no_device, b.virtual_name.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(AwsError::combination(format!(
            "{at} must have exactly one of Ebs, NoDevice and VirtualName"
        )));
    }
    if let Some(v) = &b.virtual_name {
        let n = v
            .strip_prefix("ephemeral")
            .and_then(|n| n.parse::<u32>().ok());
        if n.is_none_or(|n| n > 23) {
            return Err(AwsError::invalid_value(&format!("{at}.VirtualName"), v));
        }
    }
    let is_root = same_device(&b.device_name, root_device);
    if is_root && b.ebs.is_none() {
        return Err(AwsError::new(
            "InvalidBlockDeviceMapping",
            format!(
                "The root device {} must be an EBS volume ({at})",
                b.device_name
            ),
        ));
    }
    let Some(e) = &b.ebs else { return Ok(()) };
    let Some((_, min, max)) = VOLUME_TYPES.iter().find(|(t, _, _)| *t == e.volume_type) else {
        return Err(AwsError::invalid_value(
            &format!("{at}.Ebs.VolumeType"),
            &e.volume_type,
        ));
    };
    match e.volume_size {
        None if !is_root => {
            return Err(AwsError::missing(&format!(
                "{at}.Ebs.VolumeSize (a new volume needs a size; snapshots are not supported by this lab)"
            )));
        }
        Some(s) if s < *min || s > *max => {
            return Err(AwsError::invalid(format!(
                "Volume of {s} GiB is invalid for type {} (parameter {at}.Ebs.VolumeSize): \
                 it must be between {min} and {max} GiB",
                e.volume_type
            )));
        }
        Some(s) if is_root && s < root_size => {
            return Err(AwsError::new(
                "InvalidBlockDeviceMapping",
                format!(
                    "Volume of size {s}GB is smaller than the image's root volume, expect size >= {root_size}GB ({at}.Ebs.VolumeSize)"
                ),
            ));
        }
        _ => {}
    }
    let iops_range = match e.volume_type.as_str() {
        "io1" => Some((100, 64000)),
        "io2" => Some((100, 256000)),
        "gp3" => Some((3000, 16000)),
        _ => None,
    };
    match (e.iops, iops_range) {
        (Some(_), None) => {
            return Err(AwsError::combination(format!(
                "The parameter {at}.Ebs.Iops is not supported for {} volumes",
                e.volume_type
            )));
        }
        (None, Some(_)) if e.volume_type.starts_with("io") => {
            return Err(AwsError::missing(&format!(
                "{at}.Ebs.Iops (it must be given for {} volumes)",
                e.volume_type
            )));
        }
        (Some(i), Some((lo, hi))) if i < lo || i > hi => {
            return Err(AwsError::invalid(format!(
                "Value ({i}) for parameter {at}.Ebs.Iops is invalid: {} volumes take {lo} to {hi}",
                e.volume_type
            )));
        }
        _ => {}
    }
    match e.throughput {
        Some(_) if e.volume_type != "gp3" => Err(AwsError::combination(format!(
            "The parameter {at}.Ebs.Throughput is only valid for gp3 volumes"
        ))),
        Some(t) if !(125..=1000).contains(&t) => Err(AwsError::invalid(format!(
            "Value ({t}) for parameter {at}.Ebs.Throughput is invalid: gp3 volumes take 125 to 1000 MiB/s"
        ))),
        _ => Ok(()),
    }
}

impl IamProfile {
    /// `IamInstanceProfile.Arn` or `.Name` (one of them): the lab has no IAM, so the profile
    /// is recorded as named and shown back.
    pub fn new(
        account: &str,
        arn: Option<&str>,
        name: Option<&str>,
    ) -> Result<IamProfile, AwsError> {
        let arn = match (arn, name) {
            (Some(_), Some(_)) => {
                return Err(AwsError::combination(
                    "The parameter IamInstanceProfile.Name may not be used in combination with IamInstanceProfile.Arn",
                ));
            }
            (Some(a), None) => {
                let named = a
                    .strip_prefix("arn:aws:iam::")
                    .and_then(|r| r.split_once(":instance-profile/"))
                    .map(|(_, n)| n.rsplit('/').next().unwrap_or(n))
                    .is_some_and(profile_name_ok);
                if !named {
                    return Err(AwsError::invalid_value("IamInstanceProfile.Arn", a));
                }
                a.to_string()
            }
            (None, Some(n)) => {
                if !profile_name_ok(n) {
                    return Err(AwsError::invalid_value("IamInstanceProfile.Name", n));
                }
                format!("arn:aws:iam::{account}:instance-profile/{n}")
            }
            (None, None) => return Err(AwsError::missing("IamInstanceProfile.Arn")),
        };
        let id = format!("AIPA{}", ids::new_id("x")[2..].to_ascii_uppercase());
        Ok(IamProfile { arn, id })
    }
}

fn profile_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ebs(kind: &str, size: Option<u32>) -> BlockDevice {
        BlockDevice {
            device_name: "/dev/sdf".into(),
            ebs: Some(Ebs {
                volume_size: size,
                volume_type: kind.into(),
                delete_on_termination: true,
                ..Ebs::default()
            }),
            ..BlockDevice::default()
        }
    }

    fn check(devices: Vec<BlockDevice>) -> Result<(), AwsError> {
        Launch {
            block_devices: devices,
            ..Launch::default()
        }
        .check("t2.micro", "/dev/xvda", 8)
    }

    #[test]
    fn block_devices_are_checked_as_ebs_does() {
        assert!(check(vec![ebs("gp3", Some(20))]).is_ok());
        assert!(
            check(vec![ebs("gp3", None)]).is_err(),
            "a data volume needs a size"
        );
        assert!(
            check(vec![ebs("st1", Some(20))]).is_err(),
            "st1 starts at 125 GiB"
        );
        assert!(check(vec![ebs("gp9", Some(20))]).is_err());
        let mut io = ebs("io1", Some(20));
        assert!(check(vec![io.clone()]).is_err(), "io1 needs iops");
        io.ebs.as_mut().unwrap().iops = Some(1000);
        assert!(check(vec![io]).is_ok());
        let mut gp2 = ebs("gp2", Some(20));
        gp2.ebs.as_mut().unwrap().throughput = Some(200);
        assert_eq!(
            check(vec![gp2]).unwrap_err().code,
            "InvalidParameterCombination"
        );
        let mut root = ebs("gp3", Some(4));
        root.device_name = "/dev/xvda".into();
        assert_eq!(
            check(vec![root.clone()]).unwrap_err().code,
            "InvalidBlockDeviceMapping"
        );
        root.ebs.as_mut().unwrap().volume_size = None;
        assert!(check(vec![root]).is_ok(), "the root keeps the image's size");
        assert!(check(vec![ebs("gp3", Some(9)), ebs("gp3", Some(9))]).is_err());
        let bad = BlockDevice {
            device_name: "/dev/nope".into(),
            no_device: true,
            ..BlockDevice::default()
        };
        assert!(check(vec![bad]).is_err());
        let both = BlockDevice {
            device_name: "/dev/sdb".into(),
            no_device: true,
            virtual_name: Some("ephemeral0".into()),
            ..BlockDevice::default()
        };
        assert!(check(vec![both]).is_err());
    }

    #[test]
    fn volume_ids_are_per_instance_and_profiles_have_arns() {
        let l = Launch {
            block_devices: vec![ebs("gp3", Some(9))],
            ..Launch::default()
        };
        let (a, b) = (l.for_instance(), l.for_instance());
        let id = |l: &Launch| l.block_devices[0].ebs.clone().unwrap().volume_id;
        assert!(id(&a).starts_with("vol-"));
        assert_ne!(id(&a), id(&b));
        let p = IamProfile::new("123", None, Some("web")).unwrap();
        assert_eq!(p.arn, "arn:aws:iam::123:instance-profile/web");
        assert!(
            IamProfile::new("1", Some("arn:aws:iam::1:instance-profile/x"), Some("x")).is_err()
        );
        assert!(IamProfile::new("1", Some("nope"), None).is_err());
        let credits = Launch {
            cpu_credits: Some("unlimited".into()),
            ..Launch::default()
        };
        assert!(credits.check("t3.micro", "/dev/xvda", 8).is_ok());
        assert!(credits.check("m5.large", "/dev/xvda", 8).is_err());
    }
}
