//! Fixed facts of the lab's region: its availability zones and the instance types on offer, with
//! AWS's real vCPU and memory figures (the sandbox enforces them as cgroup limits).

/// An instance type and the limits it gives an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceType {
    pub name: &'static str,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub free_tier: bool,
    pub burstable: bool,
    pub clock_ghz: &'static str,
    pub network: &'static str,
}

const fn t(
    name: &'static str,
    vcpus: u32,
    memory_mib: u64,
    free_tier: bool,
    burstable: bool,
    clock_ghz: &'static str,
    network: &'static str,
) -> InstanceType {
    InstanceType {
        name,
        vcpus,
        memory_mib,
        free_tier,
        burstable,
        clock_ghz,
        network,
    }
}

pub const INSTANCE_TYPES: &[InstanceType] = &[
    t("t2.nano", 1, 512, false, true, "3.3", "Low to Moderate"),
    t("t2.micro", 1, 1024, true, true, "2.5", "Low to Moderate"),
    t("t2.small", 1, 2048, false, true, "2.5", "Low to Moderate"),
    t("t2.medium", 2, 4096, false, true, "2.3", "Low to Moderate"),
    t("t2.large", 2, 8192, false, true, "2.3", "Low to Moderate"),
    t("t3.nano", 2, 512, false, true, "2.5", "Up to 5 Gigabit"),
    t("t3.micro", 2, 1024, true, true, "2.5", "Up to 5 Gigabit"),
    t("t3.small", 2, 2048, false, true, "2.5", "Up to 5 Gigabit"),
    t("t3.medium", 2, 4096, false, true, "2.5", "Up to 5 Gigabit"),
    t("t3.large", 2, 8192, false, true, "2.5", "Up to 5 Gigabit"),
    t("m5.large", 2, 8192, false, false, "3.1", "Up to 10 Gigabit"),
    t(
        "m5.xlarge",
        4,
        16384,
        false,
        false,
        "3.1",
        "Up to 10 Gigabit",
    ),
    t("c5.large", 2, 4096, false, false, "3.4", "Up to 10 Gigabit"),
    t(
        "c5.xlarge",
        4,
        8192,
        false,
        false,
        "3.4",
        "Up to 10 Gigabit",
    ),
    t(
        "r5.large",
        2,
        16384,
        false,
        false,
        "3.1",
        "Up to 10 Gigabit",
    ),
];

pub fn instance_type(name: &str) -> Option<&'static InstanceType> {
    INSTANCE_TYPES.iter().find(|t| t.name == name)
}

/// The offered types, for error messages: `t2.nano, t2.micro, …`.
pub fn offered_types() -> String {
    INSTANCE_TYPES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The type named, or the error `code` that names it and lists what the lab offers.
pub fn offered_type(
    name: &str,
    code: &'static str,
) -> Result<&'static InstanceType, super::AwsError> {
    instance_type(name).ok_or_else(|| {
        super::AwsError::new(
            code,
            format!(
                "Invalid value '{}' for InstanceType. This lab offers: {}.",
                super::validate::shown(name),
                offered_types()
            ),
        )
    })
}

/// The lab's zones: `<region>a` … `<region>d`, with AWS-style zone ids (`apne2-az1`).
pub fn zones(region: &str) -> Vec<(String, String)> {
    ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("{region}{l}"),
                format!("{}-az{}", zone_id_prefix(region), i + 1),
            )
        })
        .collect()
}

pub fn is_zone(region: &str, zone: &str) -> bool {
    zones(region).iter().any(|(z, _)| z == zone)
}

/// `ap-northeast-2` → `apne2`, `us-east-1` → `use1`, `eu-central-1` → `euc1`.
fn zone_id_prefix(region: &str) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i == 0 || p.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(p);
        } else {
            let short = match *p {
                "northeast" => "ne",
                "northwest" => "nw",
                "southeast" => "se",
                "southwest" => "sw",
                "north" => "n",
                "south" => "s",
                "east" => "e",
                "west" => "w",
                "central" => "c",
                other => &other[..1.min(other.len())],
            };
            out.push_str(short);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_types() {
        let z = zones("ap-northeast-2");
        assert_eq!(
            z[0],
            ("ap-northeast-2a".to_string(), "apne2-az1".to_string())
        );
        assert_eq!(z[3].0, "ap-northeast-2d");
        assert_eq!(zones("us-east-1")[1].1, "use1-az2");
        assert_eq!(instance_type("t2.micro").unwrap().memory_mib, 1024);
        assert_eq!(instance_type("c5.large").unwrap().vcpus, 2);
        assert!(instance_type("t2.huge").is_none());
        let e = offered_type("p4d.24xlarge", "InvalidParameterValue").unwrap_err();
        assert!(
            e.message.contains("p4d.24xlarge") && e.message.contains("t3.micro"),
            "{e}"
        );
    }
}
