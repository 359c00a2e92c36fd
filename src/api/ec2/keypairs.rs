//! Key pair actions: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair.

use std::sync::Arc;

use base64::Engine;

use super::tag_set;
use crate::api::Params;
use crate::api::xml::Xml;
use crate::cloud::keypairs::{self, KeyPair};
use crate::cloud::{AwsError, Cloud};

pub(super) fn create_key_pair(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let name = p.required("KeyName")?;
    let key_type = keypairs::parse_key_type(p.get("KeyType"))?;
    let format = keypairs::parse_key_format(p.get("KeyFormat"))?;
    let tags = p.tag_specs()?;
    p.finish()?;
    let created = c.create_key_pair(name, key_type, format, &tags)?;
    let k = &created.key_pair;
    x.elem("keyPairId", &k.id)
        .elem("keyName", &k.name)
        .elem("keyFingerprint", &k.fingerprint)
        .elem("keyMaterial", &created.material);
    tag_set(x, &k.tags);
    Ok(())
}

pub(super) fn import_key_pair(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let name = p.required("KeyName")?;
    let material = p.required("PublicKeyMaterial")?;
    // botocore base64-encodes the file; accept raw text too, as some SDKs send it unencoded.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(material.trim())
        .unwrap_or_else(|_| material.as_bytes().to_vec());
    let tags = p.tag_specs()?;
    p.finish()?;
    let k = c.import_key_pair(name, &decoded, &tags)?;
    x.elem("keyFingerprint", &k.fingerprint)
        .elem("keyName", &k.name)
        .elem("keyPairId", &k.id);
    tag_set(x, &k.tags);
    Ok(())
}

pub(super) fn describe_key_pairs(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let include_public = p.bool("IncludePublicKey")?.unwrap_or(false);
    let (names, ids, filters) = (p.list("KeyName"), p.list("KeyPairId"), p.filters()?);
    p.finish()?;
    let keys = c.describe_key_pairs(&names, &ids, &filters)?;
    x.items("keySet", &keys, |x, k: &KeyPair| {
        x.elem("keyPairId", &k.id).elem("keyType", &k.key_type);
        tag_set(x, &k.tags);
        if include_public {
            x.elem("publicKey", &k.public_key);
        }
        x.elem("keyName", &k.name)
            .elem("keyFingerprint", &k.fingerprint)
            .elem("createTime", &k.create_time);
    });
    Ok(())
}

pub(super) fn delete_key_pair(c: &Arc<Cloud>, p: &Params, x: &mut Xml) -> Result<(), AwsError> {
    let (name, id) = (p.get("KeyName"), p.get("KeyPairId"));
    p.finish()?;
    let gone = c.delete_key_pair(name, id)?;
    x.elem("return", true).opt("keyPairId", gone);
    Ok(())
}
