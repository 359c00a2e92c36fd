//! The one place that checks the strings clients give the control plane, as AWS checks them:
//! lengths, character sets and id shapes, each refusal naming the parameter. Every string that
//! gets stored (names, descriptions, tags, tokens) passes through here first; control characters
//! are refused in all of them, so a stored record can always be written as XML.
//!
//! Order inside each check: control characters → length → character set → reserved forms.

use base64::Engine;

use super::AwsError;
use super::tags::Tag;

/// User data is limited to 16 KB before base64, as on EC2.
pub const MAX_USER_DATA: usize = 16 * 1024;
/// How many characters of a refused value an error message echoes.
const SHOWN_CHARS: usize = 256;

/// A client value as an error message may show it: control characters written as `\xNN` (or
/// `\u{NNNN}`), cut at [`SHOWN_CHARS`] characters.
pub fn shown(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(SHOWN_CHARS * 2));
    for (n, c) in value.chars().enumerate() {
        if n == SHOWN_CHARS {
            out.push('…');
            break;
        }
        match c {
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            '\u{FFFE}' | '\u{FFFF}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn invalid(param: &str, value: &str, why: &str) -> AwsError {
    AwsError::new(
        "InvalidParameterValue",
        format!(
            "Value ({}) for parameter {param} is invalid. {why}",
            shown(value)
        ),
    )
}

/// Refuses control characters (and the non-characters U+FFFE/U+FFFF) in any stored string.
pub fn text(param: &str, value: &str) -> Result<(), AwsError> {
    if value
        .chars()
        .any(|c| c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
    {
        return Err(invalid(param, value, "Control characters are not allowed."));
    }
    Ok(())
}

/// `value` has at most `max` characters (and at least `min`).
fn length(param: &str, value: &str, min: usize, max: usize) -> Result<(), AwsError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            param,
            value,
            &format!("It must be {min} to {max} characters long (got {n})."),
        ));
    }
    Ok(())
}

/// The characters AWS allows in VPC security group names, their descriptions and rule
/// descriptions: a-z A-Z 0-9 spaces and `._-:/()#,@[]+=&;{}!$*`.
fn group_charset(param: &str, value: &str) -> Result<(), AwsError> {
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(*c)))
    {
        return Err(invalid(
            param,
            value,
            &format!(
                "The character '{}' is not allowed: use a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{{}}!$*",
                shown(&c.to_string())
            ),
        ));
    }
    Ok(())
}

/// A user tag: key 1–128 characters, not starting with `aws:`; value 0–256 characters.
pub fn tag(t: &Tag) -> Result<(), AwsError> {
    text("Tag.Key", &t.key)?;
    text("Tag.Value", &t.value)?;
    length("Tag.Key", &t.key, 1, 128)?;
    length("Tag.Value", &t.value, 0, 256)?;
    if t.key.to_ascii_lowercase().starts_with("aws:") {
        return Err(invalid(
            "Tag.Key",
            &t.key,
            "Tag keys starting with 'aws:' are reserved for internal use.",
        ));
    }
    Ok(())
}

/// A VPC security group name: 1–255 characters of the group charset, not `sg-…`.
pub fn group_name(name: &str) -> Result<(), AwsError> {
    text("GroupName", name)?;
    length("GroupName", name, 1, 255)?;
    group_charset("GroupName", name)?;
    if name.to_ascii_lowercase().starts_with("sg-") {
        return Err(invalid(
            "GroupName",
            name,
            "Group names may not be in the format sg-*.",
        ));
    }
    Ok(())
}

/// A security group's description: 0–255 characters of the group charset.
pub fn group_description(d: &str) -> Result<(), AwsError> {
    text("GroupDescription", d)?;
    length("GroupDescription", d, 0, 255)?;
    group_charset("GroupDescription", d)
}

/// A rule's description (`IpPermissions.N.IpRanges.M.Description` and the like).
pub fn rule_description(param: &str, d: &str) -> Result<(), AwsError> {
    text(param, d)?;
    length(param, d, 0, 255)?;
    group_charset(param, d)
}

/// A key pair name: 1–255 ASCII characters, no leading or trailing spaces.
pub fn key_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() {
        return Err(AwsError::missing("KeyName"));
    }
    text("KeyName", name)?;
    length("KeyName", name, 1, 255)?;
    if !name.is_ascii() {
        return Err(invalid(
            "KeyName",
            name,
            "Character sets beyond ASCII are not supported.",
        ));
    }
    if name.trim() != name {
        return Err(invalid(
            "KeyName",
            name,
            "Leading and trailing spaces are not allowed.",
        ));
    }
    Ok(())
}

/// An AMI name: 3–128 characters of letters, numbers and `()[] ./-'@_`.
pub fn image_name(name: &str) -> Result<(), AwsError> {
    text("Name", name)?;
    if name.chars().count() < 3 || name.chars().count() > 128 {
        return Err(AwsError::invalid(format!(
            "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_' (got '{}')",
            shown(name)
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c))
    {
        return Err(AwsError::invalid(format!(
            "Invalid AMI name '{}'",
            shown(name)
        )));
    }
    Ok(())
}

/// An AMI description: 0–255 characters.
pub fn image_description(d: &str) -> Result<(), AwsError> {
    text("Description", d)?;
    length("Description", d, 0, 255)
}

/// A ClientToken: up to 64 ASCII characters.
pub fn client_token(token: &str) -> Result<(), AwsError> {
    text("ClientToken", token)?;
    if token.len() > 64 || !token.is_ascii() {
        return Err(AwsError::invalid_value("ClientToken", token));
    }
    Ok(())
}

/// An id of the given prefix in short or long hex form, else `code` (`InvalidInstanceID.Malformed`
/// and the like) with AWS's message.
pub fn id(value: &str, prefix: &str, code: &'static str) -> Result<(), AwsError> {
    if super::ids::well_formed(value, prefix) {
        return Ok(());
    }
    Err(AwsError::new(
        code,
        format!(
            "Invalid id: \"{}\" (expecting \"{prefix}-...\")",
            shown(value)
        ),
    ))
}

/// User data from the wire: base64 of at most [`MAX_USER_DATA`] bytes.
pub fn user_data(b64: &str) -> Result<Vec<u8>, AwsError> {
    let cleaned: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    if cleaned.len() > MAX_USER_DATA.div_ceil(3) * 4 + 4 {
        return Err(too_much_user_data(cleaned.len() / 4 * 3));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|_| AwsError::invalid("Invalid BASE64 encoding of user data."))?;
    if raw.len() > MAX_USER_DATA {
        return Err(too_much_user_data(raw.len()));
    }
    Ok(raw)
}

fn too_much_user_data(n: usize) -> AwsError {
    AwsError::invalid(format!(
        "User data is limited to {MAX_USER_DATA} bytes (got {n} bytes)."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        Tag {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn tags_at_the_edges() {
        assert!(tag(&t(&"k".repeat(128), &"v".repeat(256))).is_ok());
        assert!(tag(&t(&"k".repeat(129), "")).is_err());
        assert!(tag(&t("k", &"v".repeat(257))).is_err());
        assert!(tag(&t("", "v")).is_err());
        assert!(tag(&t("AWS:x", "v")).is_err());
        let e = tag(&t("k", "a\u{1}b")).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert!(
            e.message.contains("Tag.Value") && e.message.contains("a\\x01b"),
            "{}",
            e.message
        );
        assert!(tag(&t("Name", "한글 ok")).is_ok());
    }

    #[test]
    fn group_names_and_descriptions() {
        assert!(group_name("web-1 (prod) #2").is_ok());
        assert!(group_name(&"g".repeat(255)).is_ok());
        assert!(group_name(&"g".repeat(256)).is_err());
        assert!(group_name("sg-123").is_err());
        assert!(
            group_name("a\u{1}b")
                .unwrap_err()
                .message
                .contains("GroupName")
        );
        assert!(group_name("caf\u{e9}").is_err());
        assert!(group_description("").is_ok());
        assert!(group_description("a<b").is_err());
        assert!(rule_description("Description", "ssh from home").is_ok());
        assert!(rule_description("Description", "tab\there").is_err());
    }

    #[test]
    fn key_names_ids_and_shown_values() {
        assert!(key_name("my key.pem").is_ok());
        assert!(key_name(" padded").is_err());
        assert!(key_name("키").is_err());
        assert!(key_name(&"k".repeat(256)).is_err());
        assert!(id("i-0123abcd", "i", "InvalidInstanceID.Malformed").is_ok());
        let e = id("i-xyz\u{0}", "i", "InvalidInstanceID.Malformed").unwrap_err();
        assert_eq!(e.code, "InvalidInstanceID.Malformed");
        assert!(!e.message.contains('\u{0}'));
        assert_eq!(shown(&"x".repeat(300)).chars().count(), SHOWN_CHARS + 1);
        assert!(user_data(&"A".repeat(40_000)).is_err());
    }
}
