//! IMDSv2 session tokens: random, with a TTL, kept in a bounded map per served instance.
//!
//! A token is 40 random bytes in base64 (56 characters, like AWS's). Issuing evicts expired
//! tokens first and, when the map is still full, the token closest to expiry, so a tenant
//! asking for tokens in a loop cannot grow the daemon's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;

/// Longest TTL a client may ask for (6 hours).
pub const MAX_TTL_SECONDS: u64 = 21_600;
/// Most live tokens kept per instance.
pub const MAX_TOKENS: usize = 1024;

/// The tokens of one instance.
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: Mutex<HashMap<String, Instant>>,
}

/// Parses the `X-aws-ec2-metadata-token-ttl-seconds` header value (1..=21600).
pub fn parse_ttl(value: Option<&str>) -> Option<u64> {
    let ttl: u64 = value?.trim().parse().ok()?;
    (1..=MAX_TTL_SECONDS).contains(&ttl).then_some(ttl)
}

impl TokenStore {
    /// Issues a token valid for `ttl` from `now`.
    pub fn issue_at(&self, ttl: Duration, now: Instant) -> String {
        let mut bytes = [0u8; 40];
        rand::rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, expiry| *expiry > now);
        if tokens.len() >= MAX_TOKENS
            && let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, expiry)| **expiry)
                .map(|(t, _)| t.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(token.clone(), now + ttl);
        token
    }

    /// Issues a token valid for `ttl` from now.
    pub fn issue(&self, ttl: Duration) -> String {
        self.issue_at(ttl, Instant::now())
    }

    /// Whether `token` is known and not expired at `now`.
    pub fn valid_at(&self, token: &str, now: Instant) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).is_some_and(|expiry| *expiry > now)
    }

    /// Whether `token` is valid now.
    pub fn valid(&self, token: &str) -> bool {
        self.valid_at(token, Instant::now())
    }

    /// Live and expired tokens currently held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no token is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_bounds() {
        assert_eq!(parse_ttl(Some("21600")), Some(21600));
        assert_eq!(parse_ttl(Some(" 1 ")), Some(1));
        for bad in [
            Some("0"),
            Some("21601"),
            Some("-5"),
            Some("abc"),
            Some(""),
            None,
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_expire_and_are_bounded() {
        let store = TokenStore::default();
        let t0 = Instant::now();
        let token = store.issue_at(Duration::from_secs(10), t0);
        assert_eq!(token.len(), 56);
        assert!(store.valid_at(&token, t0 + Duration::from_secs(9)));
        assert!(!store.valid_at(&token, t0 + Duration::from_secs(10)));
        assert!(!store.valid_at("nope", t0));
        for _ in 0..MAX_TOKENS + 10 {
            store.issue_at(Duration::from_secs(100), t0);
        }
        assert_eq!(store.len(), MAX_TOKENS);
        // Expired tokens go first.
        store.issue_at(Duration::from_secs(1), t0 + Duration::from_secs(200));
        assert_eq!(store.len(), 1);
    }
}
