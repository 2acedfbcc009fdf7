//! The sealed-minute form: a closed minute's counts packed into one Redis string of `<video> <views>\n` lines
//! ([`crate::lines`]).
//!
//! The day window's tail holds 1,440 minutes per partition for 24 hours; as hashes they would cost ~56 bytes a
//! video, as these lines about 11 (a short id, a space, a few digits, a newline). Video ids never hold a space
//! or a newline (`VideoId`), so the format needs no escaping. `lua/seal.lua` writes it and `lua/leaders.lua`
//! reads it with the same pattern; this module is the Rust side (restores, snapshots, the benchmark).

/// Packs `(video, views)` pairs; pairs with no views are left out.
pub fn encode<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    crate::lines::encode(counts.into_iter().filter(|(_, views)| *views > 0))
}

/// Unpacks a blob; a malformed line (never written by topk) is skipped rather than failing the whole minute.
pub fn decode(blob: &str) -> impl Iterator<Item = (&str, u64)> {
    crate::lines::decode(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(pairs in proptest::collection::vec(("[A-Za-z0-9_.:-]{1,64}", 1u64..u64::MAX / 2), 0..50)) {
            let blob = encode(pairs.iter().map(|(v, n)| (v.as_str(), *n)));
            let back: Vec<(String, u64)> = decode(&blob).map(|(v, n)| (v.to_owned(), n)).collect();
            prop_assert_eq!(back, pairs);
        }

        #[test]
        fn decoding_garbage_never_panics(blob in ".*") {
            let _ = decode(&blob).count();
        }
    }

    #[test]
    fn a_short_id_costs_about_eleven_bytes() {
        assert_eq!(encode([("v123456", 3), ("v7", 0)]), "v123456 3\n");
    }
}
