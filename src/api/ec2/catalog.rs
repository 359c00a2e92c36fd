//! Fixed facts: DescribeRegions, DescribeAvailabilityZones, DescribeInstanceTypes.

use std::sync::Arc;

use super::paging::Page;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::catalog::{self, INSTANCE_TYPES};
use crate::cloud::tags::{self, Filter, Filterable, Tag};
use crate::cloud::{AwsError, Cloud};

pub(super) fn describe_regions(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let region = &c.cfg.region;
    // The lab has one region, enabled: every region, opted in or not, is that one.
    p.bool("AllRegions")?;
    let (names, filters) = (p.list("RegionName"), p.filters()?);
    p.finish()?;
    for r in names {
        if &r != region {
            return Err(AwsError::invalid(format!(
                "Invalid region: {r} (this lab has only {region})"
            )));
        }
    }
    let item = Region {
        name: region.clone(),
        endpoint: c.cfg.endpoint.clone(),
    };
    let keep = tags::matches(&item, &filters)?;
    x.items("regionInfo", keep.then_some(&item), |x, r| {
        x.elem("regionName", &r.name)
            .elem("regionEndpoint", &r.endpoint)
            .elem("optInStatus", "opt-in-not-required");
    });
    Ok(())
}

struct Region {
    name: String,
    endpoint: String,
}

impl Filterable for Region {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "region-name" => Some(vec![self.name.clone()]),
            "endpoint" => Some(vec![self.endpoint.clone()]),
            "opt-in-status" => Some(vec!["opt-in-not-required".into()]),
            _ => None,
        }
    }
}

struct Zone {
    name: String,
    id: String,
    region: String,
}

impl Filterable for Zone {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "zone-name" => self.name.clone(),
            "zone-id" => self.id.clone(),
            "region-name" => self.region.clone(),
            "state" => "available".into(),
            "zone-type" => "availability-zone".into(),
            "group-name" | "network-border-group" => self.region.clone(),
            "opt-in-status" => "opt-in-not-required".into(),
            _ => return None,
        }])
    }
}

pub(super) fn describe_availability_zones(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let region = &c.cfg.region;
    let zones: Vec<Zone> = catalog::zones(region)
        .into_iter()
        .map(|(name, id)| Zone {
            name,
            id,
            region: region.clone(),
        })
        .collect();
    let (names, zone_ids) = (p.list("ZoneName"), p.list("ZoneId"));
    // Local and Wavelength Zones: the lab has none, so all zones are the ones listed.
    p.bool("AllAvailabilityZones")?;
    let filters: Vec<Filter> = p.filters()?;
    p.finish()?;
    for n in &names {
        if !zones.iter().any(|z| &z.name == n) {
            return Err(AwsError::invalid(format!("The zone '{n}' does not exist.")));
        }
    }
    for n in &zone_ids {
        if !zones.iter().any(|z| &z.id == n) {
            return Err(AwsError::invalid(format!(
                "The zone ID '{n}' does not exist."
            )));
        }
    }
    let mut keep = Vec::new();
    for z in &zones {
        if (!names.is_empty() || !zone_ids.is_empty())
            && !names.contains(&z.name)
            && !zone_ids.contains(&z.id)
        {
            continue;
        }
        if tags::matches(z, &filters)? {
            keep.push(z);
        }
    }
    x.items("availabilityZoneInfo", keep, |x, z| {
        x.elem("zoneName", &z.name)
            .elem("zoneState", "available")
            .elem("regionName", &z.region)
            .elem("zoneId", &z.id)
            .elem("optInStatus", "opt-in-not-required")
            .elem("groupName", &z.region)
            .elem("networkBorderGroup", &z.region)
            .elem("zoneType", "availability-zone")
            .items("messageSet", Vec::<()>::new(), |_, _| {});
    });
    Ok(())
}

impl Filterable for catalog::InstanceType {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "instance-type" => self.name.to_string(),
            "current-generation" => "true".into(),
            "free-tier-eligible" => self.free_tier.to_string(),
            "burstable-performance-supported" => self.burstable.to_string(),
            "vcpu-info.default-vcpus" => self.vcpus.to_string(),
            "memory-info.size-in-mib" => self.memory_mib.to_string(),
            "processor-info.supported-architecture" => "x86_64".into(),
            _ => return None,
        }])
    }
}

pub(super) fn describe_instance_types(
    _c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let wanted = p.list("InstanceType");
    // The catalog holds only types the lab offers: none is unsupported in its region.
    p.bool("IncludeUnsupportedInRegion")?;
    let page = Page::read(p, "DescribeInstanceTypes", 5, 100)?;
    let filters = p.filters()?;
    p.finish()?;
    let unknown: Vec<&String> = wanted
        .iter()
        .filter(|w| catalog::instance_type(w).is_none())
        .collect();
    if !unknown.is_empty() {
        let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        return Err(AwsError::new(
            "InvalidInstanceType",
            format!(
                "The following supplied instance types do not exist: [{}]. This lab offers: {}.",
                list.join(", "),
                catalog::offered_types()
            ),
        ));
    }
    let mut keep = Vec::new();
    for t in INSTANCE_TYPES {
        if (wanted.is_empty() || wanted.iter().any(|w| w == t.name)) && tags::matches(t, &filters)?
        {
            keep.push(t);
        }
    }
    let (keep, next) = page.take(keep);
    x.opt("nextToken", next.as_ref());
    x.items("instanceTypeSet", keep, |x, t| {
        x.elem("instanceType", t.name)
            .elem("currentGeneration", true)
            .elem("freeTierEligible", t.free_tier)
            .items("supportedUsageClasses", ["on-demand"], |x, u| {
                x.text(u);
            })
            .items("supportedRootDeviceTypes", ["ebs"], |x, u| {
                x.text(u);
            })
            .items("supportedVirtualizationTypes", ["hvm"], |x, u| {
                x.text(u);
            })
            .elem("bareMetal", false)
            .elem("hypervisor", "nitro")
            .nest("processorInfo", |x| {
                x.items("supportedArchitectures", ["x86_64"], |x, a| {
                    x.text(a);
                });
                x.elem("sustainedClockSpeedInGhz", t.clock_ghz);
            })
            .nest("vCpuInfo", |x| {
                let threads = if t.vcpus > 1 { 2 } else { 1 };
                x.elem("defaultVCpus", t.vcpus)
                    .elem("defaultCores", (t.vcpus / threads).max(1))
                    .elem("defaultThreadsPerCore", threads);
            })
            .nest("memoryInfo", |x| {
                x.elem("sizeInMiB", t.memory_mib);
            })
            .elem("instanceStorageSupported", false)
            .nest("ebsInfo", |x| {
                x.elem("ebsOptimizedSupport", "default")
                    .elem("encryptionSupport", "supported");
            })
            .nest("networkInfo", |x| {
                x.elem("networkPerformance", t.network)
                    .elem("maximumNetworkInterfaces", 3);
            })
            .elem("burstablePerformanceSupported", t.burstable)
            .elem("autoRecoverySupported", true);
    });
    Ok(())
}
