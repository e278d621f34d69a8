//! What the monitor's per-flow structures hold, by what holds them: the benchmark's
//! account of resident memory (the monitor itself never needs it).

/// Bytes by holder, largest first once sorted by the caller.
pub type Footprint = Vec<(&'static str, u64)>;

/// What glibc's malloc takes for a block of `size` bytes: its 8-byte header, rounded up to
/// 16, at least 32 (none for an empty buffer, which allocates nothing).
pub fn block(size: usize) -> u64 {
    if size == 0 {
        return 0;
    }
    ((size as u64 + 8).div_ceil(16) * 16).max(32)
}

/// The block of a vector's or deque's buffer.
pub fn buffer<T>(capacity: usize) -> u64 {
    block(capacity * std::mem::size_of::<T>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_as_glibc_does() {
        assert_eq!(block(0), 0);
        assert_eq!(block(1), 32);
        assert_eq!(block(24), 32);
        assert_eq!(block(25), 48);
        assert_eq!(buffer::<u64>(4), 48);
    }
}
