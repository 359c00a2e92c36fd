//! Resource ids in AWS's long format (`key-` + 17 lowercase hex digits) and their validation.

use rand::Rng;

/// A new id: `prefix-` followed by 17 random lowercase hex digits.
pub fn new_id(prefix: &str) -> String {
    let n: u128 = rand::rng().random();
    format!("{prefix}-{:017x}", n & ((1u128 << 68) - 1))
}

/// Whether `id` is `prefix-` followed by 8 or 17 lowercase hex digits (short and long formats).
pub fn well_formed(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|hex| {
            (hex.len() == 8 || hex.len() == 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// A request id like AWS's: a random UUID.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_aws_shape() {
        let id = new_id("key");
        assert_eq!(id.len(), 4 + 17);
        assert!(well_formed(&id, "key"), "{id}");
        assert!(well_formed("i-0123abcd", "i"));
        assert!(!well_formed("i-0123ABCD", "i"));
        assert!(!well_formed("i-0123", "i"));
        assert!(!well_formed("ami-0123456789abcdef0", "i"));
        assert_ne!(new_id("key"), new_id("key"));
    }
}
