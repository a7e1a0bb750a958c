//! Webhook signatures: HMAC-SHA256 over `"<timestamp>.<raw body>"`, sent as
//! `X-Treehole-Signature: sha256=<hex>` with `X-Treehole-Timestamp: <unix seconds>`. Receivers
//! recompute it and refuse timestamps too far from their clock, so a captured request cannot be
//! replayed later.

use domain::keyed_hash::KeyedHash;

pub const SIGNATURE_HEADER: &str = "x-treehole-signature";
pub const TIMESTAMP_HEADER: &str = "x-treehole-timestamp";

/// The header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(keyed(key, timestamp, body).finish())
    )
}

/// Whether `header` is the signature of `body` at `timestamp`, and `timestamp` is within
/// `tolerance_secs` of `now` (compared in constant time).
pub fn verify(
    key: &[u8],
    header: &str,
    timestamp: i64,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> bool {
    if (now - timestamp).abs() > tolerance_secs {
        return false;
    }
    let Some(given) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    keyed(key, timestamp, body).verify(&given)
}

/// The MAC over `"<timestamp>.<body>"`, ready to finalise or verify.
fn keyed(key: &[u8], timestamp: i64, body: &[u8]) -> KeyedHash {
    let mut hash = KeyedHash::new(key);
    hash.update(timestamp.to_string().as_bytes())
        .update(b".")
        .update(body);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let body = br#"{"task_id":"t","status":"succeeded"}"#;
        let sig = sign(b"k", 1_700_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"k", &sig, 1_700_000_000, body, 1_700_000_100, 300));
        assert!(!verify(b"k", &sig, 1_700_000_000, body, 1_700_000_400, 300));
        assert!(!verify(
            b"other",
            &sig,
            1_700_000_000,
            body,
            1_700_000_000,
            300
        ));
        assert!(!verify(b"k", &sig, 1_700_000_001, body, 1_700_000_001, 300));
        assert!(!verify(
            b"k",
            &sig,
            1_700_000_000,
            b"{}",
            1_700_000_000,
            300
        ));
        assert!(!verify(
            b"k",
            "sha1=00",
            1_700_000_000,
            body,
            1_700_000_000,
            300
        ));
    }
}
