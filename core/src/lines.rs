//! The `<video id> <count>\n` line format: log entries, the minutes' append-only buckets and the sealed minutes
//! all hold counts this way. Video ids never hold a space or a newline (`VideoId`), so nothing needs escaping,
//! and Lua reads the same lines with one pattern (`redis/lua/leaders.lua`).

use std::fmt::Write;

/// `<video id> <count>\n` per pair, in the order given.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let mut out = String::new();
    for (video, n) in pairs {
        let _ = writeln!(out, "{video} {n}");
    }
    out
}

/// Each line of `text` as its video id and its count's text, or `Err(line)` for a line that has no space.
/// The caller decides how strict to be with what it finds.
pub fn split(text: &str) -> impl Iterator<Item = Result<(&str, &str), &str>> {
    text.split_terminator('\n')
        .map(|line| line.split_once(' ').ok_or(line))
}

/// The `(video, count)` pairs of `text`, skipping a malformed line rather than failing the whole text: for
/// text only topk writes (sealed minutes).
pub fn decode(text: &str) -> impl Iterator<Item = (&str, u64)> {
    split(text).filter_map(|line| {
        let (video, count) = line.ok()?;
        Some((video, count.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(pairs in proptest::collection::vec(("[A-Za-z0-9_.:-]{1,64}", 0u64..u64::MAX), 0..50)) {
            let text = encode(pairs.iter().map(|(v, n)| (v.as_str(), *n)));
            let back: Vec<(String, u64)> = decode(&text).map(|(v, n)| (v.to_owned(), n)).collect();
            prop_assert_eq!(back, pairs);
        }
    }

    #[test]
    fn a_line_without_a_space_is_named() {
        let lines: Vec<_> = split("a 1\nbad\nb 2\n").collect();
        assert_eq!(lines, vec![Ok(("a", "1")), Err("bad"), Ok(("b", "2"))]);
        assert_eq!(
            decode("a 1\nbad\nb x\nb 2\n").collect::<Vec<_>>(),
            vec![("a", 1), ("b", 2)]
        );
    }
}
