//! ModifyInstanceMetadataOptions: the instance's metadata options change at once (the metadata
//! service reads them on every request); the response shows them as `applied`.

use std::sync::Arc;

use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::metadata_options::MetadataOptions;
use crate::cloud::{AwsError, Cloud, Instance};

pub(super) fn modify_instance_metadata_options(
    c: &Arc<Cloud>,
    p: &Params,
    x: &mut Xml,
) -> Result<(), AwsError> {
    let id = p.required("InstanceId")?;
    let opts = MetadataOptions::parse(p, "")?;
    p.finish()?;
    let i = c.modify_instance_metadata_options(id, &opts)?;
    x.elem("instanceId", &i.id);
    x.nest("instanceMetadataOptions", |x| options_fields(x, &i));
    Ok(())
}

/// The fields of `InstanceMetadataOptionsResponse`.
pub(super) fn options_fields(x: &mut Xml, i: &Instance) {
    x.elem("state", "applied")
        .elem("httpTokens", &i.http_tokens)
        .elem("httpPutResponseHopLimit", i.http_hop_limit)
        .elem("httpEndpoint", &i.http_endpoint)
        .elem("httpProtocolIpv6", "disabled")
        .elem(
            "instanceMetadataTags",
            if i.instance_metadata_tags {
                "enabled"
            } else {
                "disabled"
            },
        );
}
