//! Account limits as AWS states them, set by `serve` flags (AWS's defaults where they make sense
//! on one host): running On-Demand vCPUs, Elastic IPs per region, security groups per VPC and
//! rules per group (inbound and outbound counted apart). Each check takes what is in use and
//! what is asked for, and answers AWS's error code and message.

use super::AwsError;
use super::catalog;
use super::instances::{Instance, State};

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Limits {
    /// Running On-Demand vCPUs (pending, running and stopping instances), as AWS's default quota
    /// for standard instance types.
    #[arg(long = "max-vcpus", default_value_t = 64)]
    pub max_vcpus: u32,
    /// Elastic IP addresses per region.
    #[arg(long = "max-elastic-ips", default_value_t = 5)]
    pub max_elastic_ips: u32,
    /// Security groups per VPC.
    #[arg(long = "max-security-groups", default_value_t = 2500)]
    pub max_security_groups: u32,
    /// Inbound rules per security group, and outbound rules per security group.
    #[arg(long = "max-rules-per-group", default_value_t = 60)]
    pub max_rules_per_group: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_vcpus: 64,
            max_elastic_ips: 5,
            max_security_groups: 2500,
            max_rules_per_group: 60,
        }
    }
}

/// The vCPUs of an instance type (1 for a name the catalog does not know).
pub fn vcpus_of(instance_type: &str) -> u32 {
    catalog::instance_type(instance_type).map_or(1, |t| t.vcpus)
}

/// The vCPUs that count toward the running-instances limit.
pub fn vcpus_in_use(instances: &[Instance]) -> u32 {
    instances
        .iter()
        .filter(|i| matches!(i.state, State::Pending | State::Running | State::Stopping))
        .map(|i| vcpus_of(&i.instance_type))
        .sum()
}

impl Limits {
    /// How many instances of `per_instance` vCPUs may start now: at least `min`, at most `max`.
    pub fn instances_allowed(
        &self,
        in_use: u32,
        per_instance: u32,
        min: u32,
        max: u32,
    ) -> Result<u32, AwsError> {
        let room = self.max_vcpus.saturating_sub(in_use) / per_instance.max(1);
        if room < min {
            return Err(AwsError::new(
                "VcpuLimitExceeded",
                format!(
                    "You have requested more vCPU capacity than your current vCPU limit of {} allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.",
                    self.max_vcpus
                ),
            ));
        }
        Ok(room.min(max))
    }

    pub fn check_addresses(&self, allocated: usize) -> Result<(), AwsError> {
        if allocated >= self.max_elastic_ips as usize {
            return Err(AwsError::new(
                "AddressLimitExceeded",
                "The maximum number of addresses has been reached.",
            ));
        }
        Ok(())
    }

    pub fn check_security_groups(&self, in_vpc: usize) -> Result<(), AwsError> {
        if in_vpc >= self.max_security_groups as usize {
            return Err(AwsError::new(
                "SecurityGroupLimitExceeded",
                format!(
                    "The maximum number of security groups has been reached (limit {} per VPC).",
                    self.max_security_groups
                ),
            ));
        }
        Ok(())
    }

    pub fn check_rules(&self, rules: usize, egress: bool) -> Result<(), AwsError> {
        if rules > self.max_rules_per_group as usize {
            return Err(AwsError::new(
                "RulesPerSecurityGroupLimitExceeded",
                format!(
                    "The maximum number of rules per security group has been reached (limit {} {} rules).",
                    self.max_rules_per_group,
                    if egress { "outbound" } else { "inbound" }
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_room() {
        let l = Limits {
            max_vcpus: 4,
            ..Limits::default()
        };
        assert_eq!(l.instances_allowed(0, 1, 1, 10).unwrap(), 4);
        assert_eq!(l.instances_allowed(3, 1, 1, 10).unwrap(), 1);
        assert_eq!(
            l.instances_allowed(3, 2, 1, 1).unwrap_err().code,
            "VcpuLimitExceeded"
        );
        assert!(l.check_addresses(4).is_ok() && l.check_addresses(5).is_err());
        assert!(l.check_rules(60, false).is_ok() && l.check_rules(61, true).is_err());
    }
}
