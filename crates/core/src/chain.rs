//! The per-tenant hash chain: `chain_hash(seq) = SHA-256(chain_hash(seq-1) ‖ leaf_hash(seq))`.

use crate::hash::Hash32;
use crate::record::Record;

/// Where a tenant's chain stands: the last seq and its chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// The last seq in the chain (0 for an empty chain).
    pub seq: i64,
    /// Its chain hash (32 zero bytes for an empty chain).
    pub hash: Hash32,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis() -> ChainHead {
        ChainHead {
            seq: 0,
            hash: Hash32::ZERO,
        }
    }

    /// The head after `record` was appended to this one.
    ///
    /// # Panics
    /// When `record` was not sealed on this head (a bug in the caller, never bad input).
    pub fn advance(&self, record: &Record) -> ChainHead {
        assert_eq!(
            record.seq,
            self.seq + 1,
            "record sealed for another position"
        );
        ChainHead {
            seq: record.seq,
            hash: Hash32::from_hex(&record.chain_hash)
                .expect("a sealed record has a valid chain hash"),
        }
    }
}

/// One link: the chain hash that follows `prev` when `leaf` is appended.
pub fn link(prev: &Hash32, leaf: &Hash32) -> Hash32 {
    Hash32::digest(&[&prev.0, &leaf.0])
}
