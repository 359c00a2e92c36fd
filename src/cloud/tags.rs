//! Tags and `Filter.N` evaluation shared by every Describe call: AWS's wildcard matching (`*`,
//! `?`), the generic `tag:<key>`, `tag-key` and `tag-value` filters, and tag specifications.

use serde::{Deserialize, Serialize};

use super::AwsError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct TagSpec {
    pub resource_type: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// Something a Describe call can filter: it answers the values it has for a filter name, or
/// `None` when the name is not a filter of this resource type.
pub trait Filterable {
    fn tags(&self) -> &[Tag];
    fn filter_values(&self, name: &str) -> Option<Vec<String>>;
}

/// Whether the resource passes every filter (AND across filters, OR across a filter's values).
/// An unknown filter name is an error, as on AWS.
pub fn matches(r: &impl Filterable, filters: &[Filter]) -> Result<bool, AwsError> {
    for f in filters {
        let have: Vec<String> = if let Some(key) = f.name.strip_prefix("tag:") {
            r.tags()
                .iter()
                .filter(|t| t.key == key)
                .map(|t| t.value.clone())
                .collect()
        } else if f.name == "tag-key" {
            r.tags().iter().map(|t| t.key.clone()).collect()
        } else if f.name == "tag-value" {
            r.tags().iter().map(|t| t.value.clone()).collect()
        } else {
            r.filter_values(&f.name).ok_or_else(|| {
                AwsError::new(
                    "InvalidParameterValue",
                    format!("The filter '{}' is invalid", f.name),
                )
            })?
        };
        if !f
            .values
            .iter()
            .any(|want| have.iter().any(|h| glob(want, h)))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// AWS filter wildcards: `*` any run, `?` one character, `\` escapes.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '\\' && pi + 1 < p.len() && p[pi + 1] == t[ti] {
            pi += 2;
            ti += 1;
        } else if pi < p.len()
            && (p[pi] == '?' || (p[pi] == t[ti] && p[pi] != '*' && p[pi] != '\\'))
        {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The tags of the specifications addressed to `resource_type`; validates keys like AWS.
pub fn tags_for(specs: &[TagSpec], resource_type: &str) -> Result<Vec<Tag>, AwsError> {
    let mut out: Vec<Tag> = Vec::new();
    for s in specs {
        if s.resource_type != resource_type {
            return Err(AwsError::invalid(format!(
                "'{}' is not a valid taggable resource type for this operation.",
                s.resource_type
            )));
        }
        for t in &s.tags {
            super::validate::tag(t)?;
            out.retain(|o| o.key != t.key);
            out.push(t.clone());
        }
    }
    Ok(out)
}

/// Applies CreateTags semantics: a tag with an existing key replaces it. At most 50 tags.
pub fn merge(into: &mut Vec<Tag>, new: &[Tag]) -> Result<(), AwsError> {
    for t in new {
        super::validate::tag(t)?;
        match into.iter_mut().find(|o| o.key == t.key) {
            Some(o) => o.value = t.value.clone(),
            None => into.push(t.clone()),
        }
    }
    if into.len() > 50 {
        return Err(AwsError::new(
            "TagLimitExceeded",
            "The maximum number of tags (50) per resource was exceeded.",
        ));
    }
    Ok(())
}

/// Applies DeleteTags semantics: a tag given with a value is removed only when the value matches.
pub fn remove(from: &mut Vec<Tag>, gone: &[Tag], value_given: &[bool]) {
    for (t, &with_value) in gone.iter().zip(value_given) {
        from.retain(|o| !(o.key == t.key && (!with_value || o.value == t.value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_aws() {
        assert!(glob("web-*", "web-1"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*pub*2a", "lab-web-pub-2a"));
        assert!(!glob("web", "web-1"));
        assert!(glob("a\\*", "a*"));
        assert!(!glob("a\\*", "ab"));
    }
}
