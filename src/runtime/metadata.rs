//! What the metadata service shows for an instance: a snapshot built from the control plane's
//! current record on every request, so tags and addresses show at once.

use std::sync::{Arc, Weak};

use crate::cloud::{Cloud, InstanceState, catalog};
use crate::imds::{Metadata, MetadataSource};

pub struct InstanceMetadata {
    pub cloud: Weak<Cloud>,
    pub instance_id: String,
}

impl MetadataSource for InstanceMetadata {
    fn metadata(&self) -> Option<Metadata> {
        let cloud: Arc<Cloud> = self.cloud.upgrade()?;
        let i = cloud.instance(&self.instance_id).ok()?;
        if matches!(i.state, InstanceState::Terminated | InstanceState::Stopped) {
            return None;
        }
        let region = cloud.cfg.region.clone();
        let zone_id = catalog::zones(&region)
            .into_iter()
            .find(|(z, _)| *z == i.zone)
            .map(|(_, id)| id)
            .unwrap_or_default();
        let net = cloud.network();
        let subnet_cidr = net
            .subnets
            .iter()
            .find(|s| s.id == i.subnet_id)
            .map(|s| s.cidr.clone())
            .unwrap_or_default();
        Some(Metadata {
            instance_id: i.id.clone(),
            ami_id: i.image_id.clone(),
            ami_launch_index: i.ami_launch_index,
            instance_type: i.instance_type.clone(),
            reservation_id: i.reservation_id.clone(),
            account_id: cloud.cfg.account_id.clone(),
            region: region.clone(),
            availability_zone: i.zone.clone(),
            availability_zone_id: zone_id,
            pending_time: i
                .launch_time
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string()
                + "Z",
            local_ipv4: i.private_ip.clone(),
            public_ipv4: i.public_ip.clone(),
            local_hostname: i.private_dns(&region),
            public_hostname: i.public_dns(&region),
            mac: i.mac(),
            interface_id: i.id.replacen("i-", "eni-", 1),
            security_groups: i.groups.iter().map(|g| g.name.clone()).collect(),
            security_group_ids: i.groups.iter().map(|g| g.id.clone()).collect(),
            subnet_id: i.subnet_id.clone(),
            subnet_ipv4_cidr_block: subnet_cidr,
            vpc_id: i.vpc_id.clone(),
            vpc_ipv4_cidr_block: net.cidr.clone(),
            public_keys: match (&i.key_name, &i.public_key) {
                (Some(n), Some(k)) => vec![(n.clone(), k.clone())],
                _ => Vec::new(),
            },
            user_data: i.user_data_bytes(),
            tags: i
                .tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
            instance_tags_enabled: i.instance_metadata_tags,
            http_tokens_required: i.http_tokens == "required",
            http_endpoint_enabled: i.http_endpoint == "enabled",
            ..Metadata::default()
        })
    }
}
