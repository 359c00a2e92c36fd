//! Decoding of Query-protocol form parameters into typed values: scalars, EC2 flattened lists
//! (`KeyName.1`), Query lists (`Subnets.member.1`), nested structures (`Filter.1.Value.1`,
//! `TagSpecification.1.Tag.1.Key`) and booleans/integers with AWS-shaped errors.
//!
//! Nothing is dropped silently: every accessor records the names it read (a nested view records
//! them under their full names, in the one set its parent shares), and [`Params::finish`] refuses
//! the first name no accessor read with `UnknownParameter`. A handler calls it after decoding and
//! before it changes anything; the dispatcher calls it again after the handler.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::cloud::{AwsError, Filter, Tag, TagSpec};

/// The decoded parameters of one request (names are case-sensitive, as on AWS).
/// A view is the whole request (`base` empty) or the fields under one prefix (`base` =
/// `"Placement."`); all views of a request share `read`.
#[derive(Debug, Default, Clone)]
pub struct Params {
    map: BTreeMap<String, String>,
    base: String,
    read: Arc<Mutex<BTreeSet<String>>>,
}

impl Params {
    /// Parses an `application/x-www-form-urlencoded` body or query string. Later duplicates win.
    pub fn parse(form: &[u8]) -> Params {
        let map = form_urlencoded::parse(form).into_owned().collect();
        Params {
            map,
            ..Params::default()
        }
    }

    /// A view of the fields under `prefix.` (`prefix` is relative to this view).
    fn view(&self, prefix: &str, map: BTreeMap<String, String>) -> Params {
        Params {
            map,
            base: format!("{}{prefix}.", self.base),
            read: self.read.clone(),
        }
    }

    fn mark(&self, name: &str) {
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        read.insert(format!("{}{name}", self.base));
    }

    /// Every parameter of the request that no accessor read, in name order.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        self.map
            .keys()
            .map(|k| format!("{}{k}", self.base))
            .filter(|k| !read.contains(k))
            .collect()
    }

    /// The checkpoint between decoding and acting: refuses the request if it carries a
    /// parameter that nothing read, then answers a `DryRun=true` request with `DryRunOperation`
    /// (AWS checks the request first, then says it would have succeeded).
    pub fn finish(&self) -> Result<(), AwsError> {
        let dry_run = self.bool("DryRun")?;
        if let Some(name) = self.unread().first() {
            return Err(AwsError::unknown_parameter(name));
        }
        match dry_run {
            Some(true) => Err(AwsError::new(
                "DryRunOperation",
                "Request would have succeeded, but DryRun flag is set.",
            )),
            _ => Ok(()),
        }
    }

    /// The first parameter of the request that is `name` or lies under `name.`, by full name.
    fn present(&self, name: &str) -> Option<String> {
        let under = format!("{name}.");
        self.map
            .keys()
            .find(|k| *k == name || k.starts_with(&under))
            .map(|k| format!("{}{k}", self.base))
    }

    /// Refuses the members the lab does not do (`InvalidParameterValue: The parameter X is not
    /// supported by this lab`), each name covering everything under it.
    pub fn refuse(&self, names: &[&str]) -> Result<(), AwsError> {
        match names.iter().find_map(|n| self.present(n)) {
            Some(full) => Err(AwsError::unsupported(&full)),
            None => Ok(()),
        }
    }

    /// A member the lab does only with some values (`Placement.Tenancy=default`): the value if
    /// it is one of them (compared without case), refused by name otherwise.
    pub fn only(&self, name: &str, allowed: &[&str]) -> Result<Option<&str>, AwsError> {
        match self.get(name) {
            Some(v) if !allowed.iter().any(|a| a.eq_ignore_ascii_case(v)) => Err(
                AwsError::unsupported_value(&format!("{}{name}", self.base), v, allowed),
            ),
            v => Ok(v),
        }
    }

    /// Adds the parameters of another form (the query string of a POST, say).
    pub fn extend(&mut self, other: Params) {
        for (k, v) in other.map {
            self.map.entry(k).or_insert(v);
        }
    }

    /// True when this view holds no parameter at all (`Ebs` absent from a mapping, say).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let v = self.map.get(name).map(String::as_str);
        if v.is_some() {
            self.mark(name);
        }
        v
    }

    pub fn required(&self, name: &str) -> Result<&str, AwsError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(AwsError::missing(name)),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, AwsError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(AwsError::invalid_value(name, v)),
        }
    }

    pub fn int<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, AwsError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| AwsError::invalid_value(name, v)),
        }
    }

    /// The values of a flattened list `Prefix.1`, `Prefix.2`, … in index order. Also accepts the
    /// Query protocol's `Prefix.member.N`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut items: Vec<(u32, String)> = Vec::new();
        for (k, v) in self.with_prefix(prefix) {
            let idx = k.strip_prefix("member.").unwrap_or(k);
            if let Ok(n) = idx.parse::<u32>() {
                self.mark(&format!("{prefix}.{k}"));
                items.push((n, v.to_string()));
            }
        }
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// The members of a list of structures, `Prefix.N.Field…`, each as its own `Params` holding
    /// only the fields (`Field…`), in index order.
    pub fn structs(&self, prefix: &str) -> Vec<Params> {
        let mut items: BTreeMap<(u32, String), BTreeMap<String, String>> = BTreeMap::new();
        for (k, v) in self.with_prefix(prefix) {
            let (member, k) = match k.strip_prefix("member.") {
                Some(rest) => ("member.", rest),
                None => ("", k),
            };
            let Some((idx, field)) = k.split_once('.') else {
                continue;
            };
            let Ok(n) = idx.parse::<u32>() else { continue };
            items
                .entry((n, format!("{prefix}.{member}{idx}")))
                .or_default()
                .insert(field.to_string(), v.to_string());
        }
        items
            .into_iter()
            .map(|((_, at), map)| self.view(&at, map))
            .collect()
    }

    /// The fields of a nested structure `Prefix.Field…`, as its own `Params`.
    pub fn nested(&self, prefix: &str) -> Params {
        let map = self
            .with_prefix(prefix)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.view(prefix, map)
    }

    fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let start = format!("{prefix}.");
        self.map
            .range(start.clone()..)
            .take_while(move |(k, _)| k.starts_with(&start))
            .map(move |(k, v)| (&k[prefix.len() + 1..], v.as_str()))
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Result<Vec<Filter>, AwsError> {
        self.structs("Filter")
            .into_iter()
            .map(|f| {
                let name = f
                    .required("Name")
                    .map_err(|_| AwsError::missing("Filter.N.Name"))?;
                Ok(Filter {
                    name: name.to_string(),
                    values: f.list("Value"),
                })
            })
            .collect()
    }

    /// `TagSpecification.N.ResourceType` / `TagSpecification.N.Tag.M.Key|Value`.
    pub fn tag_specs(&self) -> Result<Vec<TagSpec>, AwsError> {
        self.structs("TagSpecification")
            .into_iter()
            .map(|s| {
                let resource_type = s
                    .required("ResourceType")
                    .map_err(|_| AwsError::missing("TagSpecification.N.ResourceType"))?
                    .to_string();
                Ok(TagSpec {
                    resource_type,
                    tags: s.tags("Tag")?,
                })
            })
            .collect()
    }

    /// `Prefix.N.Key` / `Prefix.N.Value` (`Tag.N…` for EC2, `Tags.member.N…` for the Query protocol).
    pub fn tags(&self, prefix: &str) -> Result<Vec<Tag>, AwsError> {
        self.structs(prefix)
            .into_iter()
            .map(|t| {
                let key = t
                    .required("Key")
                    .map_err(|_| AwsError::missing(&format!("{prefix}.N.Key")))?;
                Ok(Tag {
                    key: key.to_string(),
                    value: t.get("Value").unwrap_or("").to_string(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_structs_and_nesting() {
        let p = Params::parse(
            b"Action=X&KeyName.2=b&KeyName.1=a&KeyName.10=c&Filter.1.Name=key-name&Filter.1.Value.1=x\
              &Filter.1.Value.2=y&Filter.2.Name=tag%3AName&Filter.2.Value.1=web\
              &TagSpecification.1.ResourceType=key-pair&TagSpecification.1.Tag.1.Key=Name\
              &TagSpecification.1.Tag.1.Value=lab&Subnets.member.2=s2&Subnets.member.1=s1\
              &Placement.AvailabilityZone=ap-northeast-2a",
        );
        assert_eq!(p.list("KeyName"), ["a", "b", "c"]);
        assert_eq!(p.list("Subnets"), ["s1", "s2"]);
        let f = p.filters().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].values, ["x", "y"]);
        assert_eq!(f[1].name, "tag:Name");
        let t = p.tag_specs().unwrap();
        assert_eq!(t[0].resource_type, "key-pair");
        assert_eq!(t[0].tags[0].key, "Name");
        assert_eq!(t[0].tags[0].value, "lab");
        assert_eq!(
            p.nested("Placement").get("AvailabilityZone"),
            Some("ap-northeast-2a")
        );
        assert!(p.list("KeyNam").is_empty());
    }

    #[test]
    fn typed_values_and_errors() {
        let p = Params::parse(b"DryRun=true&MinCount=2&Bad=maybe&N=x");
        assert_eq!(p.bool("DryRun").unwrap(), Some(true));
        assert_eq!(p.int::<u32>("MinCount").unwrap(), Some(2));
        assert_eq!(p.bool("Bad").unwrap_err().code, "InvalidParameterValue");
        assert_eq!(p.int::<u32>("N").unwrap_err().code, "InvalidParameterValue");
        assert_eq!(p.required("Missing").unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn refused_and_restricted_members_are_named() {
        let p = Params::parse(
            b"Placement.Tenancy=dedicated&Placement.GroupName=g&CpuOptions.CoreCount=2&DryRun=true",
        );
        let e = p.refuse(&["KernelId", "CpuOptions"]).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert!(e.message.contains("CpuOptions.CoreCount"), "{e}");
        let pl = p.nested("Placement");
        let e = pl.refuse(&["GroupName"]).unwrap_err();
        assert!(e.message.contains("Placement.GroupName"), "{e}");
        let e = pl.only("Tenancy", &["default"]).unwrap_err();
        assert!(e.message.contains("Placement.Tenancy"), "{e}");
        assert!(
            p.refuse(&["Kernel"]).is_ok(),
            "a name is not a prefix of another"
        );
    }

    #[test]
    fn finish_refuses_unread_then_answers_dry_run() {
        let p = Params::parse(b"DryRun=true&A=1&B=2");
        p.get("A");
        let e = p.finish().unwrap_err();
        assert_eq!(e.code, "UnknownParameter");
        assert!(e.message.contains(" B "), "{e}");
        p.get("B");
        assert_eq!(p.finish().unwrap_err().code, "DryRunOperation");
        let p = Params::parse(b"DryRun=false&A=1");
        p.get("A");
        assert!(p.finish().is_ok());
    }
}
