//! The one keyed hash of the system: HMAC-SHA256.
//!
//! Everything the server derives, names or signs under a key goes through here: reservation
//! stream names, verification code hashes, the data keys' wrapping key and author tokens,
//! export pseudonyms, webhook keys and signatures, idempotency keys and list cursors. Its
//! outputs are stored (stream names, handles, hashes) or handed out (signatures, cursors), so
//! for given key and parts the bytes never change: parts are concatenated as given, with no
//! separator or length added here (callers that need one write it, e.g. `b":"`).
//!
//! ```
//! use domain::keyed_hash::{KeyedHash, keyed_hash};
//! let tag = keyed_hash(b"key", &[b"webhook:", b"42"]);
//! let mut hash = KeyedHash::new(b"key");
//! hash.update(b"webhook:").update(b"42");
//! assert_eq!(hash.clone().finish(), tag);
//! assert!(hash.verify(&tag));
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `parts`, concatenated, under `key` (of any length).
pub fn keyed_hash(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = KeyedHash::new(key);
    for part in parts {
        hash.update(part);
    }
    hash.finish()
}

/// An HMAC-SHA256 being computed: fed part by part, cloned to reuse a common prefix, then
/// finished or checked against a tag in constant time.
#[derive(Clone)]
pub struct KeyedHash(Hmac<Sha256>);

impl KeyedHash {
    /// A hash under `key`; HMAC takes keys of any length.
    pub fn new(key: &[u8]) -> Self {
        Self(<Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// Feeds `part` in after what was fed before.
    pub fn update(&mut self, part: &[u8]) -> &mut Self {
        self.0.update(part);
        self
    }

    /// The 32-byte tag.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into_bytes().into()
    }

    /// Whether `tag` is the whole tag, compared in constant time.
    pub fn verify(self, tag: &[u8]) -> bool {
        self.0.verify_slice(tag).is_ok()
    }

    /// Whether `tag` is the tag's first `tag.len()` bytes (1 to 32), compared in constant time:
    /// for tags cut short to save space.
    pub fn verify_prefix(self, tag: &[u8]) -> bool {
        self.0.verify_truncated_left(tag).is_ok()
    }
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_hmac_sha256_of_the_concatenated_parts() {
        // RFC 4231, test case 2.
        let tag = keyed_hash(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(tag, keyed_hash(b"Jefe", &[b"what do ya want for nothing?"]));
    }

    #[test]
    fn tags_verify_whole_or_by_prefix() {
        let tag = keyed_hash(b"k", &[b"text"]);
        let hash = || {
            let mut h = KeyedHash::new(b"k");
            h.update(b"text");
            h
        };
        assert!(hash().verify(&tag));
        assert!(!hash().verify(&tag[..16]));
        assert!(hash().verify_prefix(&tag[..12]));
        assert!(!hash().verify_prefix(&[]));
        let mut other = tag;
        other[0] ^= 1;
        assert!(!hash().verify(&other));
        assert!(!hash().verify_prefix(&other[..12]));
    }
}
