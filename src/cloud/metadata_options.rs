//! An instance's metadata options (`HttpTokens`, `HttpEndpoint`, `HttpPutResponseHopLimit`,
//! `InstanceMetadataTags`, `HttpProtocolIpv6`): decoded from a `Params` view — RunInstances'
//! `MetadataOptions.*` or ModifyInstanceMetadataOptions' top level — checked, and applied to the
//! record. The metadata service reads the record on every request, so a change is enforced at
//! once (tokens required → a GET without a token is 401; endpoint disabled → 404).
//!
//! Order: [`MetadataOptions::parse`] reads every member (before the caller's `Params::finish`)
//! and checks each value → [`MetadataOptions::apply`] changes only the options given.

use super::instances::{Instance, State};
use super::{AwsError, Cloud};
use crate::api::Params;

/// The options a request gives; `None` leaves an option as it is (or at its default on launch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataOptions {
    /// `optional` or `required`.
    pub http_tokens: Option<String>,
    /// `enabled` or `disabled`.
    pub http_endpoint: Option<String>,
    /// 1 to 64.
    pub hop_limit: Option<u32>,
    /// Instance tags in the metadata.
    pub instance_tags: Option<bool>,
}

fn one_of(name: &str, v: Option<&str>, allowed: [&str; 2]) -> Result<Option<String>, AwsError> {
    match v {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
        Some(v) => Err(AwsError::new(
            "InvalidParameterValue",
            format!(
                "Value ({}) for parameter {name} is invalid. Expecting {} or {}.",
                super::validate::shown(v),
                allowed[0],
                allowed[1]
            ),
        )),
    }
}

impl MetadataOptions {
    /// Reads the options from `p` (`p.nested("MetadataOptions")` for RunInstances); `prefix`
    /// is how the names appear in errors (`MetadataOptions.` or empty).
    pub fn parse(p: &Params, prefix: &str) -> Result<MetadataOptions, AwsError> {
        let name = |n: &str| format!("{prefix}{n}");
        let http_tokens = one_of(
            &name("HttpTokens"),
            p.get("HttpTokens"),
            ["optional", "required"],
        )?;
        let http_endpoint = one_of(
            &name("HttpEndpoint"),
            p.get("HttpEndpoint"),
            ["enabled", "disabled"],
        )?;
        let tags = one_of(
            &name("InstanceMetadataTags"),
            p.get("InstanceMetadataTags"),
            ["enabled", "disabled"],
        )?;
        let ipv6 = one_of(
            &name("HttpProtocolIpv6"),
            p.get("HttpProtocolIpv6"),
            ["enabled", "disabled"],
        )?;
        if ipv6.as_deref() == Some("enabled") {
            return Err(AwsError::invalid(format!(
                "{} enabled is not supported by this lab (the metadata service is IPv4 only)",
                name("HttpProtocolIpv6")
            )));
        }
        let hop_name = name("HttpPutResponseHopLimit");
        let hop_limit = match p.get("HttpPutResponseHopLimit") {
            None => None,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if (1..=64).contains(&n) => Some(n),
                _ => {
                    return Err(AwsError::new(
                        "InvalidParameterValue",
                        format!(
                            "Value ({}) for parameter {hop_name} is invalid. Expecting a value between 1 and 64.",
                            super::validate::shown(v)
                        ),
                    ));
                }
            },
        };
        Ok(MetadataOptions {
            http_tokens,
            http_endpoint,
            hop_limit,
            instance_tags: tags.map(|t| t == "enabled"),
        })
    }

    /// True when the request gave no option at all.
    pub fn is_empty(&self) -> bool {
        *self == MetadataOptions::default()
    }

    /// Sets the options given on `i`.
    pub fn apply(&self, i: &mut Instance) {
        if let Some(t) = &self.http_tokens {
            i.http_tokens = t.clone();
        }
        if let Some(e) = &self.http_endpoint {
            i.http_endpoint = e.clone();
        }
        if let Some(h) = self.hop_limit {
            i.http_hop_limit = h;
        }
        if let Some(t) = self.instance_tags {
            i.instance_metadata_tags = t;
        }
    }
}

impl Cloud {
    /// ModifyInstanceMetadataOptions: the new options apply to the next metadata request.
    pub fn modify_instance_metadata_options(
        &self,
        id: &str,
        opts: &MetadataOptions,
    ) -> Result<Instance, AwsError> {
        let mut i = self.instance(id)?;
        if matches!(i.state, State::Terminated | State::ShuttingDown) {
            return Err(AwsError::new(
                "IncorrectInstanceState",
                format!(
                    "The instance '{id}' is not in a state from which its metadata options can be changed ({}).",
                    i.state.name()
                ),
            ));
        }
        if opts.is_empty() {
            return Err(AwsError::missing(
                "HttpTokens, HttpEndpoint, HttpPutResponseHopLimit or InstanceMetadataTags",
            ));
        }
        opts.apply(&mut i);
        self.put_instance(i.clone())?;
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_by_name() {
        let p = Params::parse(
            b"HttpTokens=required&HttpPutResponseHopLimit=2&InstanceMetadataTags=enabled",
        );
        let o = MetadataOptions::parse(&p, "").unwrap();
        assert_eq!(o.http_tokens.as_deref(), Some("required"));
        assert_eq!(o.hop_limit, Some(2));
        assert_eq!(o.instance_tags, Some(true));
        assert!(p.finish().is_ok());
        let p = Params::parse(b"HttpPutResponseHopLimit=65");
        let e = MetadataOptions::parse(&p, "MetadataOptions.").unwrap_err();
        assert!(
            e.message
                .contains("MetadataOptions.HttpPutResponseHopLimit"),
            "{e}"
        );
        let p = Params::parse(b"HttpTokens=sometimes");
        assert_eq!(
            MetadataOptions::parse(&p, "").unwrap_err().code,
            "InvalidParameterValue"
        );
        let p = Params::parse(b"HttpProtocolIpv6=enabled");
        assert!(MetadataOptions::parse(&p, "").is_err());
    }
}
