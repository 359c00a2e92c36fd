//! AMIs: RegisterImage (from an AMI directory), DescribeImages, DeregisterImage, and the built-in
//! `lab-linux` registered at first start. An image record points at its directory; the directory
//! is read (by `ami::inspect`) before the record is made, so the control plane stays pure.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::tags::{self, Filter, Filterable, Tag, TagSpec};
use super::{AwsError, Cloud, ids, now_iso, validate};
use crate::ami::{AmiDir, Manifest};
use crate::store::Change;

pub const KIND: &str = "image";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub description: String,
    pub architecture: String,
    pub default_user: String,
    pub root_device_name: String,
    pub root_size_gib: u32,
    /// The AMI directory and its root filesystem.
    pub location: PathBuf,
    pub rootfs: PathBuf,
    pub host_binds: Vec<PathBuf>,
    pub creation_date: String,
    /// `amazon` for the built-in image (like AWS's own AMIs), the lab account otherwise.
    pub owner_alias: Option<String>,
    pub tags: Vec<Tag>,
}

impl Image {
    pub fn manifest(&self) -> Manifest {
        Manifest {
            name: self.name.clone(),
            description: self.description.clone(),
            architecture: self.architecture.clone(),
            default_user: self.default_user.clone(),
            root_device_name: self.root_device_name.clone(),
            root_size_gib: self.root_size_gib,
            host_binds: self.host_binds.clone(),
        }
    }
}

impl Filterable for Image {
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "image-id" => self.id.clone(),
            "name" => self.name.clone(),
            "description" => self.description.clone(),
            "architecture" => self.architecture.clone(),
            "state" => "available".into(),
            "image-type" => "machine".into(),
            "is-public" => "false".into(),
            "root-device-type" => "ebs".into(),
            "root-device-name" => self.root_device_name.clone(),
            "virtualization-type" => "hvm".into(),
            "hypervisor" => "xen".into(),
            "manifest-location" => self.location.display().to_string(),
            "owner-alias" => self.owner_alias.clone().unwrap_or_default(),
            "owner-id" => crate::serve::ACCOUNT_ID.into(),
            "platform-details" => "Linux/UNIX".into(),
            _ => return None,
        }])
    }
}

pub fn not_found(id: &str) -> AwsError {
    AwsError::new(
        "InvalidAMIID.NotFound",
        format!("The image id '[{id}]' does not exist"),
    )
}

pub fn check_id(id: &str) -> Result<(), AwsError> {
    validate::id(id, "ami", "InvalidAMIID.Malformed")
}

impl Cloud {
    /// Registers an inspected AMI directory. `name` overrides the manifest's name.
    pub fn register_image(
        &self,
        ami: &AmiDir,
        name: Option<&str>,
        description: Option<&str>,
        tag_specs: &[TagSpec],
        builtin: bool,
    ) -> Result<Image, AwsError> {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| ami.manifest.name.clone());
        validate::image_name(&name)?;
        let img = Image {
            id: ids::new_id("ami"),
            name,
            description: {
                let d = description.unwrap_or(&ami.manifest.description);
                validate::image_description(d)?;
                d.to_string()
            },
            architecture: crate::ami::normalize_arch(&ami.manifest.architecture).to_string(),
            default_user: ami.manifest.default_user.clone(),
            root_device_name: ami.manifest.root_device_name.clone(),
            root_size_gib: ami.manifest.root_size_gib,
            location: ami.dir.clone(),
            rootfs: ami.rootfs.clone(),
            host_binds: ami.manifest.host_binds.clone(),
            creation_date: now_iso(),
            owner_alias: builtin.then(|| "amazon".to_string()),
            tags: tags::tags_for(tag_specs, "image")?,
        };
        let mut st = self.state();
        if st.images.iter().any(|i| i.name == img.name) {
            return Err(AwsError::new(
                "InvalidAMIName.Duplicate",
                format!(
                    "AMI name {} is already in use by AMI {}",
                    img.name,
                    st.images
                        .iter()
                        .find(|i| i.name == img.name)
                        .map(|i| i.id.as_str())
                        .unwrap_or("")
                ),
            ));
        }
        self.store()
            .apply(&[Change::put(KIND, &img.id, Some(&img.name), &img)?])?;
        st.images.push(img.clone());
        Ok(img)
    }

    /// Makes sure the built-in AMI is registered (and points at the current directory).
    pub fn ensure_builtin_image(&self, ami: &AmiDir) -> Result<Image, AwsError> {
        {
            let mut st = self.state();
            if let Some(pos) = st
                .images
                .iter()
                .position(|i| i.name == ami.manifest.name && i.owner_alias.is_some())
            {
                let mut img = st.images[pos].clone();
                img.location = ami.dir.clone();
                img.rootfs = ami.rootfs.clone();
                img.host_binds = ami.manifest.host_binds.clone();
                self.store()
                    .apply(&[Change::put(KIND, &img.id, Some(&img.name), &img)?])?;
                st.images[pos] = img.clone();
                return Ok(img);
            }
        }
        self.register_image(ami, None, None, &[], true)
    }

    pub fn describe_images(
        &self,
        image_ids: &[String],
        owners: &[String],
        filters: &[Filter],
    ) -> Result<Vec<Image>, AwsError> {
        for id in image_ids {
            check_id(id)?;
        }
        let st = self.state();
        for id in image_ids {
            if !st.images.iter().any(|i| &i.id == id) {
                return Err(not_found(id));
            }
        }
        let mut out = Vec::new();
        for img in &st.images {
            if !image_ids.is_empty() && !image_ids.contains(&img.id) {
                continue;
            }
            if !owners.is_empty() {
                let ok = owners.iter().any(|o| match o.as_str() {
                    "self" => img.owner_alias.is_none(),
                    "amazon" => img.owner_alias.as_deref() == Some("amazon"),
                    acct => acct == crate::serve::ACCOUNT_ID,
                });
                if !ok {
                    continue;
                }
            }
            if tags::matches(img, filters)? {
                out.push(img.clone());
            }
        }
        Ok(out)
    }

    pub fn image(&self, id: &str) -> Result<Image, AwsError> {
        check_id(id)?;
        self.state()
            .images
            .iter()
            .find(|i| i.id == id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// DeregisterImage. Instances already running from it keep running (their root is mounted);
    /// the built-in image cannot be deregistered.
    pub fn deregister_image(&self, id: &str) -> Result<(), AwsError> {
        check_id(id)?;
        let mut st = self.state();
        let pos = st
            .images
            .iter()
            .position(|i| i.id == id)
            .ok_or_else(|| not_found(id))?;
        if st.images[pos].owner_alias.is_some() {
            return Err(AwsError::new(
                "UnsupportedOperation",
                format!(
                    "The built-in image {id} ({}) cannot be deregistered",
                    st.images[pos].name
                ),
            ));
        }
        self.store().apply(&[Change::delete(KIND, id)])?;
        st.images.remove(pos);
        Ok(())
    }
}
