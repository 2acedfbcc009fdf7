//! Hash slots: a key's slot as the server computes it.

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The hash slot of a key, as `CLUSTER KEYSLOT` computes it: CRC16 (XMODEM) modulo 16384 of the key, or
/// of its hash tag, the part between the first `{` and the first `}` after it when that part is not empty.
pub fn slot_of(key: &str) -> u16 {
    slot_of_bytes(key.as_bytes())
}

/// [`slot_of`] for a key that is not UTF-8.
pub fn slot_of_bytes(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let len = rest.iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &rest[..len])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % SLOTS
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    }

    /// Values from `CLUSTER KEYSLOT` of redis-server 7.0.
    #[test]
    fn slot_of_matches_cluster_keyslot() {
        for (key, slot) in [
            ("P:{3}:log", 1584),
            ("P:{17}:day", 12304),
            ("foo", 12182),
            ("bar", 5061),
            ("{user1000}.following", 3443),
            ("{}x", 10595),
            ("a{}{b}", 15033),
            ("{a", 10276),
            ("x{b}y{c}", 3300),
            ("123456789", 12739),
            ("", 0),
        ] {
            assert_eq!(slot_of(key), slot, "{key}");
        }
    }
}
