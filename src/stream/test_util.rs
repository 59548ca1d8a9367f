//! Helpers shared by the tests of the stream layer: a seeded generator
//! ([`Rng`]), pseudo-random payloads and fragment headers.

use super::FragmentHeader;

/// SplitMix64: a tiny deterministic generator for payloads and shuffles,
/// seeded by proptest so that failures replay.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Pseudo-random bytes, eight at a time so that multi-MiB payloads stay
/// cheap in a debug build.
pub(super) fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = vec![0u8; len];
    for word in out.chunks_mut(8) {
        let bytes = rng.next().to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
    out
}

pub(super) fn header(
    message_id: u32,
    total_len: u32,
    index: u32,
    chunk_len: u16,
) -> FragmentHeader {
    FragmentHeader {
        message_id,
        total_len,
        index,
        chunk_len,
        inner_type: 0x01,
    }
}
