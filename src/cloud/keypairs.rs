//! Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair. The daemon keeps only
//! the public key; a created key's private half is returned once, in the requested format, and
//! dropped.

use serde::{Deserialize, Serialize};

use super::tags::{self, Filter, Filterable, Tag, TagSpec};
use super::{AwsError, Cloud, ids, now_iso, validate};
use crate::keys::{self, KeyType, PpkVersion, PublicKey};
use crate::store::Change;

pub const KIND: &str = "key-pair";
const MAX_KEY_PAIRS: usize = 5000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyPair {
    pub id: String,
    pub name: String,
    pub key_type: String,
    pub fingerprint: String,
    /// The authorized_keys line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
    pub create_time: String,
    pub tags: Vec<Tag>,
}

impl Filterable for KeyPair {
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "key-pair-id" => self.id.clone(),
            "key-name" => self.name.clone(),
            "fingerprint" => self.fingerprint.clone(),
            "key-type" => self.key_type.clone(),
            _ => return None,
        }])
    }
}

/// The private key format a CreateKeyPair asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    Pem,
    Ppk,
}

pub struct Created {
    pub key_pair: KeyPair,
    /// The private key, in the requested format. Never stored.
    pub material: String,
}

pub fn parse_key_type(v: Option<&str>) -> Result<KeyType, AwsError> {
    match v {
        None | Some("rsa") => Ok(KeyType::Rsa),
        Some("ed25519") => Ok(KeyType::Ed25519),
        Some(other) => Err(AwsError::invalid_value("KeyType", other)),
    }
}

pub fn parse_key_format(v: Option<&str>) -> Result<KeyFormat, AwsError> {
    match v {
        None | Some("pem") => Ok(KeyFormat::Pem),
        Some("ppk") => Ok(KeyFormat::Ppk),
        Some(other) => Err(AwsError::invalid_value("KeyFormat", other)),
    }
}

fn duplicate(name: &str) -> AwsError {
    AwsError::new(
        "InvalidKeyPair.Duplicate",
        format!("The keypair '{name}' already exists."),
    )
}

pub fn not_found(name: &str) -> AwsError {
    AwsError::new(
        "InvalidKeyPair.NotFound",
        format!("The key pair '{name}' does not exist"),
    )
}

impl Cloud {
    pub fn create_key_pair(
        &self,
        name: &str,
        key_type: KeyType,
        format: KeyFormat,
        tag_specs: &[TagSpec],
    ) -> Result<Created, AwsError> {
        validate::key_name(name)?;
        let tags = tags::tags_for(tag_specs, "key-pair")?;
        // Generating an RSA key takes tens of milliseconds: do it before taking the lock.
        let private = keys::generate(key_type);
        let material = match format {
            KeyFormat::Pem => private.to_pem(),
            KeyFormat::Ppk => private.to_ppk(PpkVersion::V3, name, None),
        };
        let public = private.public_key();
        let kp = KeyPair {
            id: ids::new_id("key"),
            name: name.to_string(),
            key_type: key_type.to_string(),
            fingerprint: private.aws_created_fingerprint(),
            public_key: format!("{} {}", public.to_openssh(), name),
            create_time: now_iso(),
            tags,
        };
        self.insert_key_pair(kp.clone())?;
        Ok(Created {
            key_pair: kp,
            material,
        })
    }

    /// ImportKeyPair. `material` is the decoded file content (OpenSSH, PEM/DER SPKI, RFC 4716).
    pub fn import_key_pair(
        &self,
        name: &str,
        material: &[u8],
        tag_specs: &[TagSpec],
    ) -> Result<KeyPair, AwsError> {
        validate::key_name(name)?;
        let tags = tags::tags_for(tag_specs, "key-pair")?;
        let public = PublicKey::parse_import(material).map_err(|e| {
            AwsError::new(
                "InvalidKeyPair.Format",
                format!("Key is not in valid OpenSSH public key format ({e})"),
            )
        })?;
        let kp = KeyPair {
            id: ids::new_id("key"),
            name: name.to_string(),
            key_type: public.key_type().to_string(),
            fingerprint: public.aws_imported_fingerprint(),
            public_key: format!("{} {}", public.to_openssh(), name),
            create_time: now_iso(),
            tags,
        };
        self.insert_key_pair(kp.clone())?;
        Ok(kp)
    }

    fn insert_key_pair(&self, kp: KeyPair) -> Result<(), AwsError> {
        let mut st = self.state();
        if st.key_pairs.iter().any(|k| k.name == kp.name) {
            return Err(duplicate(&kp.name));
        }
        if st.key_pairs.len() >= MAX_KEY_PAIRS {
            return Err(AwsError::new(
                "ResourceLimitExceeded",
                format!("You have reached the limit of {MAX_KEY_PAIRS} key pairs in this region."),
            ));
        }
        self.store()
            .apply(&[Change::put(KIND, &kp.id, Some(&kp.name), &kp)?])?;
        st.key_pairs.push(kp);
        Ok(())
    }

    pub fn describe_key_pairs(
        &self,
        names: &[String],
        ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<KeyPair>, AwsError> {
        let st = self.state();
        for n in names {
            if !st.key_pairs.iter().any(|k| &k.name == n) {
                return Err(not_found(n));
            }
        }
        for id in ids {
            if !st.key_pairs.iter().any(|k| &k.id == id) {
                return Err(AwsError::new(
                    "InvalidKeyPair.NotFound",
                    format!("The key pair ID '{id}' does not exist"),
                ));
            }
        }
        let mut out = Vec::new();
        for k in &st.key_pairs {
            if (!names.is_empty() && !names.contains(&k.name))
                || (!ids.is_empty() && !ids.contains(&k.id))
            {
                continue;
            }
            if tags::matches(k, filters)? {
                out.push(k.clone());
            }
        }
        Ok(out)
    }

    /// DeleteKeyPair by name or id. Deleting a key pair that does not exist succeeds, as on EC2.
    /// Returns the id of the deleted key pair, if there was one.
    pub fn delete_key_pair(
        &self,
        name: Option<&str>,
        id: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        if name.is_none() && id.is_none() {
            return Err(AwsError::missing("KeyName or KeyPairId"));
        }
        if let Some(id) = id
            && !ids::well_formed(id, "key")
        {
            return Err(AwsError::new(
                "InvalidKeyPair.NotFound",
                format!("The key pair ID '{id}' does not exist"),
            ));
        }
        let mut st = self.state();
        let Some(pos) = st
            .key_pairs
            .iter()
            .position(|k| name.is_some_and(|n| n == k.name) || id.is_some_and(|i| i == k.id))
        else {
            return Ok(None);
        };
        let gone = st.key_pairs[pos].id.clone();
        self.store().apply(&[Change::delete(KIND, &gone)])?;
        st.key_pairs.remove(pos);
        Ok(Some(gone))
    }

    /// The key pair with this name (RunInstances `KeyName`).
    pub fn key_pair(&self, name: &str) -> Result<KeyPair, AwsError> {
        self.state()
            .key_pairs
            .iter()
            .find(|k| k.name == name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }
}
