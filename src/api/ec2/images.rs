//! AMI actions: RegisterImage (from an AMI directory on this host), DescribeImages,
//! DeregisterImage.

use std::path::Path;
use std::sync::Arc;

use super::paging::Page;
use super::tag_set;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::{AwsError, Cloud, Image, validate};

/// RegisterImage with `ImageLocation` = the absolute path of an AMI directory on the lab host.
pub(super) fn register_image(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    p.refuse(&[
        "BillingProduct",
        "BootMode",
        "TpmSupport",
        "UefiData",
        "ImdsSupport",
        "KernelId",
        "RamdiskId",
        "BlockDeviceMapping",
        "SriovNetSupport",
    ])?;
    // The manifest in the AMI directory says these; the request may only agree with it.
    p.only("Architecture", &["x86_64"])?;
    p.only("VirtualizationType", &["hvm"])?;
    p.only("RootDeviceName", &["/dev/xvda"])?;
    p.only("EnaSupport", &["true"])?;
    let name = p.required("Name")?;
    let location = p.get("ImageLocation").ok_or_else(|| {
        AwsError::missing("ImageLocation (the absolute path of an AMI directory on the lab host)")
    })?;
    validate::text("ImageLocation", location)?;
    let (description, tags) = (p.get("Description"), p.tag_specs()?);
    p.finish()?;
    let ami = crate::ami::inspect(Path::new(location)).map_err(|e| {
        AwsError::new(
            "InvalidParameterValue",
            format!("ImageLocation {}: {e}", validate::shown(location)),
        )
    })?;
    let img = c.register_image(&ami, Some(name), description, &tags, false)?;
    x.elem("imageId", &img.id);
    Ok(())
}

pub(super) fn describe_images(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    p.refuse(&["ExecutableBy"])?;
    // The lab has no deprecated or disabled images: including them changes nothing.
    p.bool("IncludeDeprecated")?;
    p.bool("IncludeDisabled")?;
    let page = Page::read(p, "DescribeImages", 5, 1000)?;
    let (ids, owners, filters) = (p.list("ImageId"), p.list("Owner"), p.filters()?);
    if page.is_paged() && !ids.is_empty() {
        return Err(AwsError::combination(
            "The parameter ImageId cannot be used with the parameter MaxResults or NextToken",
        ));
    }
    p.finish()?;
    let (images, next) = page.take(c.describe_images(&ids, &owners, &filters)?);
    x.opt("nextToken", next.as_ref());
    x.items("imagesSet", &images, |x, i: &Image| {
        x.elem("imageId", &i.id)
            .elem("imageLocation", i.location.display())
            .elem("imageState", "available")
            .elem("imageOwnerId", crate::serve::ACCOUNT_ID)
            .elem("creationDate", &i.creation_date)
            .elem("isPublic", false)
            .elem("architecture", &i.architecture)
            .elem("imageType", "machine")
            .elem("name", &i.name)
            .elem("description", &i.description)
            .opt("imageOwnerAlias", i.owner_alias.as_ref())
            .elem("rootDeviceType", "ebs")
            .elem("rootDeviceName", &i.root_device_name)
            .items("blockDeviceMapping", [i], |x, i| {
                x.elem("deviceName", &i.root_device_name).nest("ebs", |x| {
                    x.elem("volumeSize", i.root_size_gib)
                        .elem("deleteOnTermination", true)
                        .elem("volumeType", "gp3")
                        .elem("encrypted", false);
                });
            })
            .elem("virtualizationType", "hvm")
            .elem("hypervisor", "xen")
            .elem("enaSupport", true)
            .elem("platformDetails", "Linux/UNIX")
            .elem("usageOperation", "RunInstances");
        tag_set(x, &i.tags);
    });
    Ok(())
}

pub(super) fn deregister_image(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let id = p.required("ImageId")?;
    // Lab images have no snapshots: there is nothing to delete with them.
    p.bool("DeleteAssociatedSnapshots")?;
    p.finish()?;
    c.deregister_image(id)?;
    x.elem("return", true)
        .items("deleteSnapshotResultSet", Vec::<()>::new(), |_, _| {});
    Ok(())
}
