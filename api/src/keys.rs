//! Voucher API keys: `vk_live_` (spends the voucher) or `vk_test_` (the sandbox and the free
//! test allowance), then 64 hex characters (32 random bytes). Only a SHA-256 hash and a short
//! prefix are stored; a fast hash is right here because the key is random and long, unlike a
//! password, and the proxy checks it on every request.

use rand::RngCore;
use sha2::{Digest, Sha256};

pub const LIVE_PREFIX: &str = "vk_live_";
pub const TEST_PREFIX: &str = "vk_test_";
const PREFIX_CHARS: usize = 12;

pub struct MintedKey {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

pub fn mint(test_mode: bool) -> MintedKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mode = if test_mode { TEST_PREFIX } else { LIVE_PREFIX };
    let secret = format!("{mode}{}", hex::encode(bytes));
    MintedKey {
        prefix: secret[..PREFIX_CHARS].to_string(),
        hash: hash(&secret),
        secret,
    }
}

pub fn hash(secret: &str) -> String {
    hash_bytes(secret.as_bytes())
}

pub fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `s` has a key's shape; anything else is refused without a look-up.
pub fn looks_like_key(s: &str) -> bool {
    s.strip_prefix(LIVE_PREFIX)
        .or_else(|| s.strip_prefix(TEST_PREFIX))
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A new time-ordered identifier (UUID v7), as text or as a typed id (`VoucherId`, …).
pub fn new_id<T: From<String>>() -> T {
    T::from(uuid::Uuid::now_v7().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_are_unique_well_formed_and_hashed() {
        let a = mint(false);
        let b = mint(false);
        assert_ne!(a.secret, b.secret);
        assert!(looks_like_key(&a.secret));
        assert_eq!(a.hash, hash(&a.secret));
        assert!(a.secret.starts_with(&a.prefix));
        assert!(a.secret.starts_with(LIVE_PREFIX));
        assert!(mint(true).secret.starts_with(TEST_PREFIX));
        assert!(looks_like_key(&mint(true).secret));
        assert!(!looks_like_key("vk_live_short"));
        assert!(!looks_like_key(&format!("vk_prod_{}", "0".repeat(64))));
    }
}
