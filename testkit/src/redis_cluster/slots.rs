//! Hash slots: a key's slot as the server computes it.

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The hash slot of a key, as `CLUSTER KEYSLOT` computes it (the writer's own computation, which the cluster
/// tests thereby check against the servers).
pub fn slot_of(key: &str) -> u16 {
    slot_of_bytes(key.as_bytes())
}

/// [`slot_of`] for a key that is not UTF-8.
pub fn slot_of_bytes(key: &[u8]) -> u16 {
    topk_core::keys::hash_slot(key)
}
