//! The hasher of the decider's maps: a multiply-and-rotate hash over machine words.
//!
//! `std`'s default (SipHash with a random key) was 4 % of the engine's instructions in a run of
//! no-op executions, most of it in [`crate::State`], whose maps hold only what one batch loads
//! (a few tasks and executions), so flooding them with colliding keys gains an attacker
//! nothing. Being keyed by nothing, the hash is also the same in every process, which keeps
//! the core's behaviour reproducible run to run.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map with [`WordHasher`].
pub(crate) type Map<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;
/// A set with [`WordHasher`].
pub(crate) type Set<K> = HashSet<K, BuildHasherDefault<WordHasher>>;

/// Folds each word in with a rotation, an xor and a multiplication by an odd constant.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WordHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash(value: impl Hash) -> u64 {
        BuildHasherDefault::<WordHasher>::default().hash_one(value)
    }

    #[test]
    fn equal_keys_hash_alike_and_near_ones_apart() {
        assert_eq!(
            hash((7_i64, "a".to_string())),
            hash((7_i64, "a".to_string()))
        );
        assert_ne!(hash(1_i64), hash(2_i64));
        // Strings end with a marker, so a tuple's fields cannot run into each other.
        assert_ne!(hash(("ab", "c")), hash(("a", "bc")));
        assert_ne!(hash("abcdefgh"), hash("abcdefgh\0"));
    }

    #[test]
    fn a_map_keyed_by_ids_and_strings_works_as_any_map() {
        let mut map: Map<(i64, String), u32> = Map::default();
        for i in 0..1000 {
            map.insert((i, format!("key {i}")), i as u32);
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.get(&(500, "key 500".to_string())), Some(&500));
        assert!(!map.contains_key(&(500, "key 501".to_string())));
    }
}
