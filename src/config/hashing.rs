//! A fast hash for the name indexes of the parsed tree and of merged sections: std's SipHash
//! was an eighth of the time of loading a config with 500000 keys. The keys come from the
//! user's own files, so hash flooding is no concern. (The multiply-rotate of rustc's FxHash.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by names.
pub(crate) type NameMap<V> = HashMap<String, V, BuildHasherDefault<NameHasher>>;

#[derive(Default, Clone, Copy)]
pub(crate) struct NameHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl NameHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        for (slot, b) in word.iter_mut().zip(chunks.remainder()) {
            *slot = *b;
        }
        self.add(u64::from_le_bytes(word));
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_and_told_apart() {
        let mut m: NameMap<usize> = NameMap::default();
        for i in 0..10_000 {
            m.insert(format!("key{i}"), i);
        }
        m.insert(String::new(), 7);
        assert_eq!(m.len(), 10_001);
        assert_eq!(m.get("key1234"), Some(&1234));
        assert_eq!(m.get(""), Some(&7));
        assert_eq!(m.get("key10000"), None);
    }
}
