//! DescribeInstanceTypeOfferings: every offered type in the region, or in each zone
//! (`LocationType` `region` | `availability-zone` | `availability-zone-id`), filtered by
//! `instance-type` and `location`, paged.

use std::sync::Arc;

use super::paging::Page;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::catalog::{self, INSTANCE_TYPES};
use crate::cloud::tags::{self, Filterable, Tag};
use crate::cloud::{AwsError, Cloud};

struct Offering {
    instance_type: &'static str,
    location_type: &'static str,
    location: String,
}

impl Filterable for Offering {
    fn tags(&self) -> &[Tag] {
        &[]
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "instance-type" => Some(vec![self.instance_type.to_string()]),
            "location" => Some(vec![self.location.clone()]),
            _ => None,
        }
    }
}

/// The locations of a location type: the region, its zone names or its zone ids.
fn locations(region: &str, location_type: &str) -> Result<(&'static str, Vec<String>), AwsError> {
    let zones = catalog::zones(region);
    Ok(match location_type {
        "region" => ("region", vec![region.to_string()]),
        "availability-zone" => (
            "availability-zone",
            zones.into_iter().map(|(name, _)| name).collect(),
        ),
        "availability-zone-id" => (
            "availability-zone-id",
            zones.into_iter().map(|(_, id)| id).collect(),
        ),
        other => {
            return Err(AwsError::invalid(format!(
                "Value ({}) for parameter locationType is invalid. Expecting region, availability-zone or availability-zone-id.",
                crate::cloud::validate::shown(other)
            )));
        }
    })
}

pub(super) fn describe_instance_type_offerings(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let page = Page::read(p, "DescribeInstanceTypeOfferings", 5, 1000)?;
    let filters = p.filters()?;
    let location_type = p
        .get("LocationType")
        .filter(|t| !t.is_empty())
        .unwrap_or("region");
    let (location_type, places) = locations(&c.cfg.region, location_type)?;
    p.finish()?;
    let mut keep = Vec::new();
    for place in &places {
        for t in INSTANCE_TYPES {
            let o = Offering {
                instance_type: t.name,
                location_type,
                location: place.clone(),
            };
            if tags::matches(&o, &filters)? {
                keep.push(o);
            }
        }
    }
    let (offerings, next) = page.take(keep);
    x.items("instanceTypeOfferingSet", &offerings, |x, o| {
        x.elem("instanceType", o.instance_type)
            .elem("locationType", o.location_type)
            .elem("location", &o.location);
    });
    x.opt("nextToken", next);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_types() {
        assert_eq!(
            locations("ap-northeast-2", "region").unwrap().1,
            ["ap-northeast-2"]
        );
        assert_eq!(
            locations("ap-northeast-2", "availability-zone")
                .unwrap()
                .1
                .len(),
            4
        );
        assert_eq!(
            locations("ap-northeast-2", "availability-zone-id")
                .unwrap()
                .1[0],
            "apne2-az1"
        );
        assert!(locations("ap-northeast-2", "outpost").is_err());
    }
}
