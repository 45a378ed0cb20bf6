//! Keys cut out by `comity peer repin`, in the sled tree `cut_out`: the
//! node's lasting memory of them. A peer's `repinned_from` in the
//! configuration goes when the peer is removed; this does not, so a stolen
//! key can never be pinned again, under any country, whatever the file says.
//!
//! Keys: the cut-out node id (32 bytes) → [`CutOut`] (bincode).

use bincode::{Decode, Encode};
use comity_protocol::{NodeId, Timestamp};

use super::{decode, encode, node_id_at, Result, Store};

/// A key cut out of a peer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CutOut {
    /// The country of the peer it was cut out of.
    pub country: String,
    /// The key pinned in its place.
    pub replaced_by: NodeId,
    pub at: Timestamp,
}

impl Store {
    /// Records `id` as cut out (made durable by the next commit). A key
    /// recorded once keeps its first record.
    pub fn record_cut_out(&self, id: &NodeId, record: &CutOut) -> Result<()> {
        if !self.cut_out.contains_key(id.0)? {
            self.cut_out.insert(id.0, encode(record)?)?;
        }
        Ok(())
    }

    /// Every key cut out so far.
    pub fn cut_out_keys(&self) -> Result<Vec<(NodeId, CutOut)>> {
        self.cut_out
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((node_id_at(&k, 0)?, decode(&k, &v)?))
            })
            .collect()
    }
}
