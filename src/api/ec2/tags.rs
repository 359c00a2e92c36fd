//! CreateTags, DeleteTags, DescribeTags.

use std::sync::Arc;

use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::tags::Tag;
use crate::cloud::{AwsError, Cloud};

pub(super) fn create_tags(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    c.create_tags(&p.list("ResourceId"), &p.tags("Tag")?)?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn delete_tags(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let structs = p.structs("Tag");
    let mut tags = Vec::new();
    let mut with_value = Vec::new();
    for t in &structs {
        let key = t
            .required("Key")
            .map_err(|_| AwsError::missing("Tag.N.Key"))?;
        tags.push(Tag {
            key: key.to_string(),
            value: t.get("Value").unwrap_or("").to_string(),
        });
        with_value.push(t.get("Value").is_some());
    }
    c.delete_tags(&p.list("ResourceId"), &tags, &with_value)?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn describe_tags(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let tags = c.describe_tags(&p.filters()?)?;
    x.items("tagSet", &tags, |x, t| {
        x.elem("resourceId", &t.resource_id)
            .elem("resourceType", t.resource_type)
            .elem("key", &t.tag.key)
            .elem("value", &t.tag.value);
    });
    Ok(())
}
