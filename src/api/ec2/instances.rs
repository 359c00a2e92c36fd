//! Instance actions (RunInstances is `run`): DescribeInstances, Start/Stop/Reboot/TerminateInstances,
//! DescribeInstanceStatus, GetConsoleOutput, Modify/DescribeInstanceAttribute. Element names
//! follow the EC2 model (reference §3.6).

use std::sync::Arc;

use base64::Engine;

use super::paging::Page;
use super::tag_set;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::instances::StateChange;
use crate::cloud::tags::{self, Filterable, Tag};
use crate::cloud::{AwsError, Cloud, Instance, InstanceState, catalog};

pub(super) fn group_set(x: &mut Xml, i: &Instance) {
    x.items("groupSet", &i.groups, |x, g| {
        x.elem("groupId", &g.id).elem("groupName", &g.name);
    });
}

fn state(x: &mut Xml, name: &str, s: InstanceState) {
    x.nest(name, |x| {
        x.elem("code", s.code()).elem("name", s.name());
    });
}

/// One `Instance` structure.
pub(super) fn write_instance(x: &mut Xml, i: &Instance, region: &str) {
    let t = catalog::instance_type(&i.instance_type);
    x.elem("instanceId", &i.id).elem("imageId", &i.image_id);
    state(x, "instanceState", i.state);
    let terminated = i.state == InstanceState::Terminated;
    x.elem(
        "privateDnsName",
        if terminated {
            String::new()
        } else {
            i.private_dns(region)
        },
    )
    .elem("dnsName", i.public_dns(region).unwrap_or_default())
    .elem("reason", &i.transition_reason)
    .opt("keyName", i.key_name.as_ref())
    .elem("amiLaunchIndex", i.ami_launch_index)
    .items("productCodes", Vec::<()>::new(), |_, _| {})
    .elem("instanceType", &i.instance_type)
    .elem("launchTime", &i.launch_time)
    .nest("placement", |x| {
        x.elem("availabilityZone", &i.zone)
            .elem("groupName", "")
            .elem("tenancy", "default");
    })
    .nest("monitoring", |x| {
        x.elem(
            "state",
            if i.launch.monitoring {
                "enabled"
            } else {
                "disabled"
            },
        );
    });
    if !terminated {
        x.elem("subnetId", &i.subnet_id)
            .elem("vpcId", &i.vpc_id)
            .elem("privateIpAddress", &i.private_ip);
    }
    x.opt("ipAddress", i.public_ip.as_ref())
        .elem("sourceDestCheck", true);
    group_set(x, i);
    if let Some((code, message)) = &i.state_reason {
        x.nest("stateReason", |x| {
            x.elem("code", code).elem("message", message);
        });
    }
    x.elem("architecture", "x86_64")
        .elem("rootDeviceType", "ebs")
        .elem("rootDeviceName", "/dev/xvda");
    block_device_mapping(x, i);
    x.elem("virtualizationType", "hvm")
        .elem("clientToken", i.client_token.clone().unwrap_or_default());
    tag_set(x, &i.tags);
    if let Some(iam) = &i.launch.iam_instance_profile {
        x.nest("iamInstanceProfile", |x| {
            x.elem("arn", &iam.arn).elem("id", &iam.id);
        });
    }
    x.elem("hypervisor", "xen")
        .items("networkInterfaceSet", (!terminated).then_some(i), |x, i| {
            x.elem("networkInterfaceId", i.id.replacen("i-", "eni-", 1))
                .elem(
                    "description",
                    i.launch.interface_description.clone().unwrap_or_default(),
                )
                .elem("subnetId", &i.subnet_id)
                .elem("vpcId", &i.vpc_id)
                .elem("ownerId", crate::serve::ACCOUNT_ID)
                .elem("status", "in-use")
                .elem("privateIpAddress", &i.private_ip)
                .elem("privateDnsName", i.private_dns(region))
                .elem("sourceDestCheck", true);
            group_set(x, i);
            if let Some(ip) = &i.public_ip {
                x.nest("association", |x| {
                    x.elem("publicIp", ip)
                        .elem("publicDnsName", i.public_dns(region).unwrap_or_default())
                        .elem("ipOwnerId", "amazon");
                });
            }
        })
        .elem("ebsOptimized", i.launch.ebs_optimized)
        .elem("enaSupport", true)
        .nest("cpuOptions", |x| {
            let vcpus = t.map(|t| t.vcpus).unwrap_or(1);
            let threads = if vcpus > 1 { 2 } else { 1 };
            x.elem("coreCount", (vcpus / threads).max(1))
                .elem("threadsPerCore", threads);
        })
        .nest("metadataOptions", |x| {
            super::metadata_options::options_fields(x, i)
        })
        .elem("platformDetails", "Linux/UNIX")
        .elem("usageOperation", "RunInstances")
        .nest("privateDnsNameOptions", |x| {
            x.elem("hostnameType", "ip-name")
                .elem("enableResourceNameDnsARecord", false);
        });
}

/// The root volume, then the EBS volumes of the launch's mappings (recorded; the EBS issue
/// attaches them). A terminated instance shows none.
fn block_device_mapping(x: &mut Xml, i: &Instance) {
    if i.state == InstanceState::Terminated {
        x.items("blockDeviceMapping", Vec::<()>::new(), |_, _| {});
        return;
    }
    let root = "/dev/xvda";
    let root_delete = i
        .launch
        .root(root)
        .and_then(|b| b.ebs.as_ref())
        .is_none_or(|e| e.delete_on_termination);
    let mut rows = vec![(root, i.root_volume_id.as_str(), root_delete)];
    for b in &i.launch.block_devices {
        if let Some(e) = b.ebs.as_ref().filter(|_| i.launch.root(root) != Some(b)) {
            rows.push((&b.device_name, &e.volume_id, e.delete_on_termination));
        }
    }
    x.items("blockDeviceMapping", rows, |x, (device, volume, delete)| {
        x.elem("deviceName", device).nest("ebs", |x| {
            x.elem("volumeId", volume)
                .elem("status", "attached")
                .elem("attachTime", &i.root_attach_time)
                .elem("deleteOnTermination", delete);
        });
    });
}

pub(super) fn describe_instances(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let page = Page::read(p, "DescribeInstances", 5, 1000)?;
    let (ids, filters) = (p.list("InstanceId"), p.filters()?);
    if page.is_paged() && !ids.is_empty() {
        return Err(AwsError::combination(
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    // Instances managed by other services: the lab has none, so including them changes nothing.
    p.bool("IncludeManagedResources")?;
    p.finish()?;
    let (insts, next) = page.take(c.describe_instances(&ids, &filters)?);
    // One reservation element per reservation, in launch order.
    let mut reservations: Vec<(String, Vec<&Instance>)> = Vec::new();
    for i in &insts {
        match reservations
            .iter_mut()
            .find(|(r, _)| *r == i.reservation_id)
        {
            Some((_, v)) => v.push(i),
            None => reservations.push((i.reservation_id.clone(), vec![i])),
        }
    }
    x.opt("nextToken", next.as_ref());
    x.items("reservationSet", &reservations, |x, (rid, insts)| {
        x.elem("reservationId", rid)
            .elem("ownerId", crate::serve::ACCOUNT_ID);
        group_set(x, insts[0]);
        x.items("instancesSet", insts, |x, i| {
            write_instance(x, i, &c.cfg.region)
        });
    });
    Ok(())
}

fn state_changes(x: &mut Xml, changes: &[StateChange]) {
    x.items("instancesSet", changes, |x, ch| {
        x.elem("instanceId", &ch.id);
        state(x, "currentState", ch.current);
        state(x, "previousState", ch.previous);
    });
}

pub(super) fn start_instances(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let ids = p.list("InstanceId");
    p.refuse(&["AdditionalInfo"])?;
    p.finish()?;
    let ch = c.start_instances(&ids)?;
    state_changes(x, &ch);
    Ok(())
}

pub(super) fn stop_instances(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let (ids, force) = (p.list("InstanceId"), p.bool("Force")?.unwrap_or(false));
    p.only("Hibernate", &["false"])?;
    p.only("SkipOsShutdown", &["false"])?;
    p.finish()?;
    let ch = c.stop_instances(&ids, force)?;
    state_changes(x, &ch);
    Ok(())
}

pub(super) fn terminate_instances(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let ids = p.list("InstanceId");
    // Termination always shuts the OS down (TERM, then KILL after the grace period).
    p.only("Force", &["false"])?;
    p.only("SkipOsShutdown", &["false"])?;
    p.finish()?;
    let ch = c.terminate_instances(&ids)?;
    state_changes(x, &ch);
    Ok(())
}

pub(super) fn reboot_instances(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let ids = p.list("InstanceId");
    p.finish()?;
    c.reboot_instances(&ids)?;
    x.elem("return", true);
    Ok(())
}

/// The status checks of DescribeInstanceStatus.
struct Status<'a>(&'a Instance);

impl Filterable for Status<'_> {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let ok = if self.0.state == InstanceState::Running {
            "ok"
        } else {
            "not-applicable"
        };
        Some(vec![match name {
            "availability-zone" => self.0.zone.clone(),
            "instance-state-name" => self.0.state.name().into(),
            "instance-state-code" => self.0.state.code().to_string(),
            "system-status.status" | "instance-status.status" => ok.into(),
            "system-status.reachability" | "instance-status.reachability" => {
                if ok == "ok" {
                    "passed".into()
                } else {
                    "not-applicable".into()
                }
            }
            _ => return None,
        }])
    }
}

pub(super) fn describe_instance_status(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let all = p.bool("IncludeAllInstances")?.unwrap_or(false);
    let page = Page::read(p, "DescribeInstanceStatus", 5, 1000)?;
    let (ids, filters) = (p.list("InstanceId"), p.filters()?);
    if page.is_paged() && !ids.is_empty() {
        return Err(AwsError::combination(
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    p.bool("IncludeManagedResources")?; // none in the lab, as for DescribeInstances
    p.finish()?;
    let insts = c.describe_instances(&ids, &[])?;
    let mut keep = Vec::new();
    for i in &insts {
        if (all || i.state == InstanceState::Running) && tags::matches(&Status(i), &filters)? {
            keep.push(i);
        }
    }
    let (keep, next) = page.take(keep);
    x.opt("nextToken", next.as_ref());
    x.items("instanceStatusSet", keep, |x, i| {
        let running = i.state == InstanceState::Running;
        let status = if running { "ok" } else { "not-applicable" };
        x.elem("instanceId", &i.id)
            .elem("availabilityZone", &i.zone);
        state(x, "instanceState", i.state);
        for which in ["systemStatus", "instanceStatus"] {
            x.nest(which, |x| {
                x.elem("status", status).items("details", [()], |x, _| {
                    x.elem("name", "reachability")
                        .elem("status", if running { "passed" } else { "not-applicable" });
                });
            });
        }
        x.items("eventsSet", Vec::<()>::new(), |_, _| {});
    });
    Ok(())
}

pub(super) fn get_console_output(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let id = p.required("InstanceId")?;
    // The lab's console output is always the latest.
    p.bool("Latest")?;
    p.finish()?;
    let out = c.console_output(id)?;
    x.elem("instanceId", id)
        .elem("timestamp", crate::cloud::now_iso())
        .elem(
            "output",
            base64::engine::general_purpose::STANDARD.encode(out),
        );
    Ok(())
}

pub(super) fn modify_instance_attribute(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let id = p.required("InstanceId")?;
    let mut changes: Vec<(&str, String)> = Vec::new();
    if let (Some(a), Some(v)) = (p.get("Attribute"), p.get("Value")) {
        changes.push((a, v.to_string()));
    }
    for (param, attr) in [
        ("InstanceType", "instanceType"),
        ("UserData", "userData"),
        (
            "InstanceInitiatedShutdownBehavior",
            "instanceInitiatedShutdownBehavior",
        ),
        ("DisableApiTermination", "disableApiTermination"),
    ] {
        if let Some(v) = p.nested(param).get("Value") {
            changes.push((attr, v.to_string()));
        }
    }
    let groups = p.list("GroupId");
    if !groups.is_empty() {
        changes.push(("groupSet", groups.join(",")));
    }
    p.refuse(&[
        "SourceDestCheck",
        "DisableApiStop",
        "BlockDeviceMapping",
        "Kernel",
        "Ramdisk",
        "EbsOptimized",
        "SriovNetSupport",
        "EnaSupport",
        "EnclaveOptions",
    ])?;
    if changes.is_empty() {
        return Err(AwsError::missing("Attribute"));
    }
    p.finish()?;
    for (attr, value) in changes {
        c.modify_instance_attribute(id, attr, &value)?;
    }
    x.elem("return", true);
    Ok(())
}

pub(super) fn describe_instance_attribute(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let (id, attr) = (p.required("InstanceId")?, p.required("Attribute")?);
    p.finish()?;
    let i = c.instance(id)?;
    x.elem("instanceId", &i.id);
    let value = |x: &mut Xml, name: &str, v: String| {
        x.nest(name, |x| {
            x.elem("value", v);
        });
    };
    match attr {
        "instanceType" => value(x, "instanceType", i.instance_type.clone()),
        "userData" => {
            x.nest("userData", |x| {
                x.opt("value", i.user_data.as_ref());
            });
        }
        "instanceInitiatedShutdownBehavior" => value(x, attr, i.shutdown_behavior.clone()),
        "disableApiTermination" => value(x, attr, i.disable_api_termination.to_string()),
        "rootDeviceName" => value(x, attr, "/dev/xvda".into()),
        "groupSet" => group_set(x, &i),
        other => return Err(AwsError::invalid_value("Attribute", other)),
    }
    Ok(())
}
