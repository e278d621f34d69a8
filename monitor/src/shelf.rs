//! Per-flow vectors a tick hands out with its snapshot, taken back once every holder let
//! go, so the next tick writes into memory already mapped.
//!
//! At a million flows a tick's health list is 150 MB. Made fresh every tick, it was a new
//! `mmap` whose first touch faulted in a page at a time: ~95 ms of a 255 ms judging tick
//! went to the kernel handing out zeroed pages (`perf`: `exc_page_fault`,
//! `clear_page_erms`). Huge pages cut the faults but, on a VM whose balloon takes freed
//! memory back (free page reporting), made some ticks three times slower; glibc with `mmap`
//! off doubled the resident memory after minutes. A vector kept in use costs neither.

use std::{collections::VecDeque, sync::Arc};

/// The vectors lent out with the last few snapshots, newest last.
#[derive(Debug)]
pub struct Shelf<T> {
    lent: VecDeque<Arc<Vec<T>>>,
}

/// How many lent vectors the shelf follows: the terminal UI holds the snapshot it shows
/// until the next one arrives, so the one lent two ticks ago is free again by now.
const FOLLOWED: usize = 2;

impl<T> Default for Shelf<T> {
    fn default() -> Self {
        Self {
            lent: VecDeque::new(),
        }
    }
}

impl<T> Shelf<T> {
    /// A vector nobody else holds any more, with its old contents (the caller overwrites
    /// them, see [`Refill`]), or an empty one.
    pub fn take(&mut self) -> Vec<T> {
        let free = self.lent.iter().position(|a| Arc::strong_count(a) == 1);
        free.and_then(|i| self.lent.remove(i))
            .and_then(|a| Arc::try_unwrap(a).ok())
            .unwrap_or_default()
    }

    /// Shares `v` with a snapshot, and follows it to take it back later.
    pub fn lend(&mut self, v: Vec<T>) -> Arc<Vec<T>> {
        let a = Arc::new(v);
        if self.lent.len() == FOLLOWED {
            self.lent.pop_front();
        }
        self.lent.push_back(a.clone());
        a
    }
}

/// A vector rewritten row by row from the start: rows it had are overwritten in place
/// (one pass, no clearing pass first), rows past its end are pushed.
pub struct Refill<T> {
    v: Vec<T>,
    len: usize,
}

/// `v` made ready for `n` rows: room reserved, or given back when it is far bigger than
/// needed (a table that shrank from a million flows should not keep their memory).
pub fn fit<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    if v.capacity() > 2 * n.max(1024) {
        v.truncate(n);
        v.shrink_to(n);
    }
    v.reserve(n.saturating_sub(v.len()));
    v
}

impl<T> Refill<T> {
    /// Rewrites `v`, about to hold `n` rows (see [`fit`]).
    pub fn new(v: Vec<T>, n: usize) -> Self {
        Self {
            v: fit(v, n),
            len: 0,
        }
    }

    /// Writes the next row.
    pub fn push(&mut self, x: T) {
        match self.v.get_mut(self.len) {
            Some(slot) => *slot = x,
            None => self.v.push(x),
        }
        self.len += 1;
    }

    /// The rows written so far (old rows past them are dropped).
    pub fn finish(mut self) -> Vec<T> {
        self.v.truncate(self.len);
        self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_comes_back_once_its_snapshot_is_dropped() {
        let mut shelf = Shelf::default();
        let a = shelf.lend(vec![1u32, 2, 3]);
        let addr = a.as_ptr();
        assert!(shelf.take().is_empty(), "still held: a new vector");
        drop(a);
        let back = shelf.take();
        assert_eq!((back.as_ptr(), back.len()), (addr, 3), "the same memory");
        assert!(shelf.take().is_empty(), "taken once");
    }

    #[test]
    fn the_ui_holding_one_snapshot_leaves_the_other_free() {
        let mut shelf: Shelf<u8> = Shelf::default();
        let mut shown = shelf.lend(vec![0; 10]);
        for tick in 1..6u8 {
            let mut v = shelf.take();
            if tick > 1 {
                assert_eq!(v.len(), 10, "tick {tick}: the vector of two ticks ago");
            }
            v.clear();
            v.resize(10, tick);
            shown = shelf.lend(v);
        }
        assert_eq!(shown[0], 5);
        assert!(shelf.lent.len() <= FOLLOWED);
    }

    #[test]
    fn refill_overwrites_then_grows_or_truncates() {
        let mut r = Refill::new(vec![9, 9, 9], 2);
        r.push(1);
        r.push(2);
        assert_eq!(r.finish(), vec![1, 2]);
        let mut r = Refill::new(vec![9], 3);
        for x in 1..=3 {
            r.push(x);
        }
        assert_eq!(r.finish(), vec![1, 2, 3]);
    }

    #[test]
    fn a_vector_far_too_big_gives_memory_back_and_one_too_small_makes_room() {
        let big = fit(vec![0u64; 1 << 20], 5000);
        assert!(big.capacity() < 10_000, "capacity {}", big.capacity());
        let small = fit(vec![0u64; 10], 5000);
        assert!(small.capacity() >= 5000 && small.len() == 10);
        let near = fit(vec![0u64; 9000], 5000);
        assert_eq!(near.len(), 9000, "within twice the rows: kept as it is");
    }
}
