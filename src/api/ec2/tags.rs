//! CreateTags, DeleteTags, DescribeTags.

use std::sync::Arc;

use super::paging::Page;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::tags::Tag;
use crate::cloud::{AwsError, Cloud};

pub(super) fn create_tags(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let (ids, tags) = (p.list("ResourceId"), p.tags("Tag")?);
    p.finish()?;
    c.create_tags(&ids, &tags)?;
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
    let ids = p.list("ResourceId");
    p.finish()?;
    c.delete_tags(&ids, &tags, &with_value)?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn describe_tags(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let page = Page::read(p, "DescribeTags", 5, 1000)?;
    let filters = p.filters()?;
    p.finish()?;
    let (tags, next) = page.take(c.describe_tags(&filters)?);
    x.opt("nextToken", next.as_ref());
    x.items("tagSet", &tags, |x, t| {
        x.elem("resourceId", &t.resource_id)
            .elem("resourceType", t.resource_type)
            .elem("key", &t.tag.key)
            .elem("value", &t.tag.value);
    });
    Ok(())
}
