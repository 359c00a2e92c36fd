//! CreateTags, DeleteTags and DescribeTags across every taggable resource. The resource type is
//! read from the id's prefix (`i-`, `ami-`, `key-`), as EC2 does.

use super::tags::{self, Filter, Filterable, Tag};
use super::{AwsError, Cloud, images, instances, keypairs, security_groups, validate};
use crate::store::Change;

/// One tag of one resource, as DescribeTags lists it.
#[derive(Debug, Clone)]
pub struct ResourceTag {
    pub resource_id: String,
    pub resource_type: &'static str,
    pub tag: Tag,
}

impl Filterable for ResourceTag {
    fn tags(&self) -> &[Tag] {
        std::slice::from_ref(&self.tag)
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "resource-id" => self.resource_id.clone(),
            "resource-type" => self.resource_type.to_string(),
            "key" => self.tag.key.clone(),
            "value" => self.tag.value.clone(),
            _ => return None,
        }])
    }
}

fn kind_of(id: &str) -> Result<&'static str, AwsError> {
    let (prefix, kind) = match id.split('-').next() {
        Some("i") => ("i", instances::KIND),
        Some("ami") => ("ami", images::KIND),
        Some("key") => ("key", keypairs::KIND),
        Some("sg") => ("sg", security_groups::KIND),
        _ => {
            return Err(AwsError::new(
                "InvalidID",
                format!("The ID '{}' is not valid", validate::shown(id)),
            ));
        }
    };
    validate::id(id, prefix, "InvalidID")?;
    Ok(kind)
}

fn missing(kind: &str, id: &str) -> AwsError {
    match kind {
        instances::KIND => AwsError::new(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{id}' does not exist"),
        ),
        images::KIND => images::not_found(id),
        security_groups::KIND => security_groups::group_not_found(id),
        _ => AwsError::new(
            "InvalidKeyPair.NotFound",
            format!("The key pair ID '{id}' does not exist"),
        ),
    }
}

/// A resource that carries tags, as the store keeps it.
trait Tagged: Clone + serde::Serialize {
    fn id(&self) -> &str;
    /// The unique name the store indexes, if the kind has one.
    fn name(&self) -> Option<&str>;
    fn tags_mut(&mut self) -> &mut Vec<Tag>;
}

macro_rules! tagged {
    ($t:ty, $id:ident, $name:expr) => {
        impl Tagged for $t {
            fn id(&self) -> &str {
                &self.$id
            }
            fn name(&self) -> Option<&str> {
                let f: fn(&$t) -> Option<&str> = $name;
                f(self)
            }
            fn tags_mut(&mut self) -> &mut Vec<Tag> {
                &mut self.tags
            }
        }
    };
}

tagged!(instances::Instance, id, |_| None);
tagged!(images::Image, id, |i| Some(&i.name));
tagged!(keypairs::KeyPair, id, |k| Some(&k.name));
tagged!(security_groups::SecurityGroup, id, |g| Some(&g.name));

/// Stages the tag edit of one resource of `list`: the changed copy and its store change.
fn stage<T: Tagged>(
    list: &[T],
    kind: &'static str,
    id: &str,
    f: &dyn Fn(&mut Vec<Tag>) -> Result<(), AwsError>,
    changes: &mut Vec<Change>,
) -> Result<T, AwsError> {
    let mut r = list
        .iter()
        .find(|r| r.id() == id)
        .cloned()
        .ok_or_else(|| missing(kind, id))?;
    f(r.tags_mut())?;
    changes.push(Change::put(kind, id, r.name(), &r)?);
    Ok(r)
}

/// Puts staged copies back into the live list.
fn commit<T: Tagged>(list: &mut [T], staged: Vec<T>) {
    for r in staged {
        if let Some(slot) = list.iter_mut().find(|x| x.id() == r.id()) {
            *slot = r;
        }
    }
}

impl Cloud {
    /// Applies `f` to the tags of each resource, all in one transaction; fails without change if
    /// any resource is unknown.
    fn edit_tags(
        &self,
        resource_ids: &[String],
        f: &dyn Fn(&mut Vec<Tag>) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        if resource_ids.is_empty() {
            return Err(AwsError::missing("ResourceId"));
        }
        let mut st = self.state();
        let mut changes = Vec::new();
        let (mut inst, mut img, mut kp, mut sg) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for id in resource_ids {
            match kind_of(id)? {
                instances::KIND => {
                    inst.push(stage(&st.instances, instances::KIND, id, f, &mut changes)?)
                }
                images::KIND => img.push(stage(&st.images, images::KIND, id, f, &mut changes)?),
                security_groups::KIND => sg.push(stage(
                    &st.security_groups,
                    security_groups::KIND,
                    id,
                    f,
                    &mut changes,
                )?),
                _ => kp.push(stage(&st.key_pairs, keypairs::KIND, id, f, &mut changes)?),
            }
        }
        self.store().apply(&changes)?;
        commit(&mut st.instances, inst);
        commit(&mut st.images, img);
        commit(&mut st.key_pairs, kp);
        commit(&mut st.security_groups, sg);
        Ok(())
    }

    pub fn create_tags(&self, resource_ids: &[String], new: &[Tag]) -> Result<(), AwsError> {
        if new.is_empty() {
            return Err(AwsError::missing("Tag"));
        }
        self.edit_tags(resource_ids, &|t| tags::merge(t, new))
    }

    /// `value_given[i]` says whether tag i came with a value (then only a matching value goes).
    pub fn delete_tags(
        &self,
        resource_ids: &[String],
        gone: &[Tag],
        value_given: &[bool],
    ) -> Result<(), AwsError> {
        self.edit_tags(resource_ids, &|t| {
            if gone.is_empty() {
                t.clear();
            } else {
                tags::remove(t, gone, value_given);
            }
            Ok(())
        })
    }

    pub fn describe_tags(&self, filters: &[Filter]) -> Result<Vec<ResourceTag>, AwsError> {
        let st = self.state();
        let mut all = Vec::new();
        let mut add = |id: &str, kind: &'static str, ts: &[Tag]| {
            for t in ts {
                all.push(ResourceTag {
                    resource_id: id.to_string(),
                    resource_type: kind,
                    tag: t.clone(),
                });
            }
        };
        for i in &st.instances {
            add(&i.id, "instance", &i.tags);
        }
        for i in &st.images {
            add(&i.id, "image", &i.tags);
        }
        for k in &st.key_pairs {
            add(&k.id, "key-pair", &k.tags);
        }
        for g in &st.security_groups {
            add(&g.id, "security-group", &g.tags);
        }
        drop(st);
        let mut out = Vec::new();
        for r in all {
            if tags::matches(&r, filters)? {
                out.push(r);
            }
        }
        Ok(out)
    }
}
