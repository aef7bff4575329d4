//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// The one's complement sum of `data` as 16-bit big-endian words, folded
/// to 16 bits (not inverted).
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold(acc)
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field after one 16-bit word it covers changed from `old`
/// to `new`: HC' = ~(~HC + ~m + m') (RFC 1624, equation 3), which never
/// produces the 0x0000 that equation 2 can.
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!checksum) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(sum(&[0xff]), 0xff00);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn incremental_equals_recomputed() {
        let mut header = [
            0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 10, 1, 0, 2,
            10, 2, 0, 2,
        ];
        for ttl in [64u8, 2, 1, 255, 128] {
            header[8] = ttl;
            header[10..12].copy_from_slice(&[0, 0]);
            let c = !sum(&header);
            header[10..12].copy_from_slice(&c.to_be_bytes());
            let old = u16::from_be_bytes([header[8], header[9]]);
            header[8] = ttl - 1;
            let new = u16::from_be_bytes([header[8], header[9]]);
            let updated = update(c, old, new);
            header[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(updated, !sum(&header), "ttl {ttl}");
        }
    }
}
