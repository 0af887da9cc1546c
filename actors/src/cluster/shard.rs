//! Shards: a key's shard is fixed by its bytes, the same on every node and version.

use sha2::{Digest, Sha256};

/// How many shards objectives and OAuth profiles are spread over. Fixed: every node
/// must agree on it, and a lease row exists per shard.
pub const SHARDS: u32 = 64;

/// The shard of an objective id or a profile id.
pub fn shard_of(key: &[u8]) -> u32 {
    let digest = Sha256::digest(key);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Pinned (SHA-256's first four bytes, big-endian, mod 64): a node of another
        // version must put a key in the same shard.
        assert_eq!(shard_of(b"objective-1"), 14);
        assert_eq!(shard_of(b"p1"), 60);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2000 {
            let s = shard_of(format!("o-{i}").as_bytes());
            assert!(s < SHARDS);
            seen.insert(s);
        }
        assert_eq!(seen.len(), SHARDS as usize, "2000 keys reach every shard");
    }
}
