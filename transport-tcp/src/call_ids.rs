//! Maps keyed by call id, hashed with one multiplication rather than SipHash: every frame
//! looks its call up, and ids are small numbers. The server's map holds one connection's
//! calls, so a client choosing colliding ids slows only its own connection.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Calls by id.
pub(crate) type CallIds<V> = HashMap<u32, V, BuildHasherDefault<CallIdHasher>>;

/// 2^64 divided by the golden ratio: multiplying by it spreads consecutive ids apart.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Fibonacci hashing of a `u32`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CallIdHasher(u64);

impl Hasher for CallIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(GOLDEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_the_high_bits() {
        let tops: std::collections::HashSet<u64> = (0..128u32)
            .map(|id| {
                let mut hasher = CallIdHasher::default();
                hasher.write_u32(id);
                hasher.finish() >> 57
            })
            .collect();
        assert!(tops.len() > 64, "{} distinct top-7-bit values for 128 ids", tops.len());
    }
}
