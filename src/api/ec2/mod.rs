//! The EC2 Query API (`Version=2016-11-15`): one function per action that decodes its
//! parameters, calls the control plane, and writes the response XML. `dispatch` is the table;
//! the handlers live in one file per resource.

mod addresses;
mod catalog;
mod images;
mod instances;
mod interfaces;
mod keypairs;
mod metadata_options;
pub mod paging;
mod run;
mod security_groups;
mod sg_rules;
mod tags;
mod type_offerings;
mod vpc;

use std::sync::Arc;

use super::Params;
use super::xml::{EC2_NS, Xml};
use crate::cloud::tags::Tag;
use crate::cloud::{AwsError, Cloud};

type Handler = fn(&Arc<Cloud>, &Params, &mut Xml) -> Result<(), AwsError>;

/// The dispatch table: `lookup` finds an action's handler, `actions` lists what is implemented
/// (the botocore walk test reads it).
macro_rules! table {
    ($($action:ident => $handler:path,)*) => {
        fn lookup(action: &str) -> Option<Handler> {
            Some(match action {
                $(stringify!($action) => $handler,)*
                _ => return None,
            })
        }

        /// Every EC2 action the lab answers, in table order.
        pub fn actions() -> &'static [&'static str] {
            &[$(stringify!($action),)*]
        }
    };
}

table! {
    CreateKeyPair => keypairs::create_key_pair,
    ImportKeyPair => keypairs::import_key_pair,
    DescribeKeyPairs => keypairs::describe_key_pairs,
    DeleteKeyPair => keypairs::delete_key_pair,
    DescribeRegions => catalog::describe_regions,
    DescribeAvailabilityZones => catalog::describe_availability_zones,
    DescribeInstanceTypes => catalog::describe_instance_types,
    RegisterImage => images::register_image,
    DescribeImages => images::describe_images,
    DeregisterImage => images::deregister_image,
    RunInstances => run::run_instances,
    DescribeInstances => instances::describe_instances,
    StartInstances => instances::start_instances,
    StopInstances => instances::stop_instances,
    RebootInstances => instances::reboot_instances,
    TerminateInstances => instances::terminate_instances,
    DescribeInstanceStatus => instances::describe_instance_status,
    GetConsoleOutput => instances::get_console_output,
    ModifyInstanceAttribute => instances::modify_instance_attribute,
    DescribeInstanceAttribute => instances::describe_instance_attribute,
    CreateSecurityGroup => security_groups::create_security_group,
    DeleteSecurityGroup => security_groups::delete_security_group,
    DescribeSecurityGroups => security_groups::describe_security_groups,
    AuthorizeSecurityGroupIngress => security_groups::authorize_ingress,
    AuthorizeSecurityGroupEgress => security_groups::authorize_egress,
    RevokeSecurityGroupIngress => security_groups::revoke_ingress,
    RevokeSecurityGroupEgress => security_groups::revoke_egress,
    AllocateAddress => addresses::allocate_address,
    AssociateAddress => addresses::associate_address,
    DisassociateAddress => addresses::disassociate_address,
    ReleaseAddress => addresses::release_address,
    DescribeAddresses => addresses::describe_addresses,
    CreateTags => tags::create_tags,
    DeleteTags => tags::delete_tags,
    DescribeTags => tags::describe_tags,
    DescribeVpcs => vpc::describe_vpcs,
    DescribeSubnets => vpc::describe_subnets,
    DescribeNetworkInterfaces => interfaces::describe_network_interfaces,
    DescribeAccountAttributes => vpc::describe_account_attributes,
    DescribeInstanceTypeOfferings => type_offerings::describe_instance_type_offerings,
    DescribeSecurityGroupRules => sg_rules::describe_security_group_rules,
    ModifySecurityGroupRules => sg_rules::modify_security_group_rules,
    UpdateSecurityGroupRuleDescriptionsIngress => sg_rules::update_descriptions_ingress,
    UpdateSecurityGroupRuleDescriptionsEgress => sg_rules::update_descriptions_egress,
    ModifyInstanceMetadataOptions => metadata_options::modify_instance_metadata_options,
}

/// Runs one EC2 action and returns the response document.
pub fn dispatch(
    cloud: &Arc<Cloud>,
    action: &str,
    p: &Params,
    request_id: &str,
) -> Result<String, AwsError> {
    let handler = lookup(action).ok_or_else(|| {
        AwsError::new(
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        )
    })?;
    p.get("Version"); // checked by the service choice; any version is answered as 2016-11-15
    // Every handler decodes, then calls `p.finish()` (which refuses unread names and answers
    // DryRun) before it acts; reaching the end here with either is a bug of ours.
    let dry_run = p.bool("DryRun")? == Some(true);
    let root = format!("{action}Response");
    let mut x = Xml::new(&root, EC2_NS);
    x.elem("requestId", request_id);
    handler(cloud, p, &mut x)?;
    if let Err(e) = p.finish() {
        tracing::error!(
            action,
            dry_run,
            "{e} (the handler acted without its checkpoint)"
        );
        return Err(e);
    }
    Ok(x.finish(&root))
}

pub(super) fn tag_set(x: &mut Xml, tags: &[Tag]) {
    x.items("tagSet", tags, |x, t| {
        x.elem("key", &t.key).elem("value", &t.value);
    });
}
