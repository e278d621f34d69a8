//! Per-flow vectors a tick hands out with its snapshot, taken back once every holder let
//! go, so the next tick writes into memory already mapped.
//!
//! A big vector made fresh every tick is a fresh `mmap` whose pages the kernel faults in
//! and zeroes one at a time; a vector kept in use costs nothing of the kind. And most ticks
//! change few rows of a big table, so rewriting every row would be most of a tick: a
//! vector lent with the last snapshot is edited in place when nobody else holds it, or the
//! one lent before it is brought up to date (the last tick's edit, then this one's), as the
//! collector does its table. (The measurements behind this: BENCHMARKS.md, "Notes moved
//! from the code".)

use std::sync::Arc;

/// Rows a tick changed in a per-row vector, by their positions after it (ascending):
/// the rows new to it, and every row written (the new ones among them).
#[derive(Debug)]
struct Edit {
    inserted: Vec<usize>,
    written: Vec<usize>,
}

/// How a spare vector is behind the current one.
#[derive(Debug)]
enum Behind {
    /// Every row may differ (the current one was rewritten whole).
    Whole,
    /// By one edit.
    Edit(Edit),
}

/// The vector lent with the last snapshot, and the one lent before it with how it is
/// behind (not kept while the last one is edited in place: nobody else holds it).
#[derive(Debug)]
pub struct Lent<T> {
    current: Arc<Vec<T>>,
    spare: Option<(Arc<Vec<T>>, Behind)>,
    /// Edits that had to copy every row: both lent vectors were held, or the spare was
    /// behind by a whole rewrite.
    pub copies: u64,
}

impl<T> Default for Lent<T> {
    fn default() -> Self {
        Self {
            current: Arc::default(),
            spare: None,
            copies: 0,
        }
    }
}

impl<T: Clone + Default> Lent<T> {
    /// The rows lent last.
    pub fn current(&self) -> &[T] {
        &self.current
    }

    /// A vector nobody else holds, its old rows still in it, for a tick that writes every
    /// row (see [`Refill`]); an empty one when both lent vectors are still held.
    pub fn take(&mut self) -> Vec<T> {
        if let Some((s, _)) = self.spare.take() {
            if let Ok(v) = Arc::try_unwrap(s) {
                return v;
            }
        }
        match Arc::try_unwrap(std::mem::take(&mut self.current)) {
            Ok(v) => v,
            Err(held) => {
                self.current = held;
                Vec::new()
            }
        }
    }

    /// Lends `v`, every row of it new; the vector lent before becomes the spare if it is
    /// still held (else it goes: nobody needs two while one is edited in place).
    pub fn lend(&mut self, v: Vec<T>) -> Arc<Vec<T>> {
        let before = std::mem::replace(&mut self.current, Arc::new(v));
        self.spare = (Arc::strong_count(&before) > 1).then_some((before, Behind::Whole));
        self.current.clone()
    }

    /// Bytes of the vectors kept (the one lent last, and the spare).
    pub fn bytes(&self) -> u64 {
        let spare = self.spare.as_ref().map_or(0, |(s, _)| s.capacity());
        crate::footprint::buffer::<T>(self.current.capacity() + spare)
    }

    /// The rows lent last, shared.
    pub fn shared(&self) -> Arc<Vec<T>> {
        self.current.clone()
    }

    /// Lends the current rows with `rows` written over them, after rows were inserted at
    /// `inserted` (positions after the edit, ascending; each also written).
    pub fn lend_edited(&mut self, inserted: Vec<usize>, rows: Vec<(usize, T)>) -> Arc<Vec<T>> {
        let in_place = Arc::get_mut(&mut self.current).is_some();
        let mut next = if in_place {
            self.spare = None;
            std::mem::take(&mut self.current)
        } else {
            self.caught_up()
        };
        let v = Arc::make_mut(&mut next);
        insert_default(v, &inserted);
        let written = rows.iter().map(|(i, _)| *i).collect();
        for (i, x) in rows {
            v[i] = x;
        }
        let before = std::mem::replace(&mut self.current, next);
        if !in_place {
            self.spare = Some((before, Behind::Edit(Edit { inserted, written })));
        }
        self.current.clone()
    }

    /// A vector nobody else holds with the current rows: the spare brought up to date, or
    /// else a copy.
    fn caught_up(&mut self) -> Arc<Vec<T>> {
        if let Some((mut s, behind)) = self.spare.take() {
            if let Some(v) = Arc::get_mut(&mut s) {
                match behind {
                    Behind::Whole => {
                        self.copies += 1;
                        v.clone_from(&self.current);
                    }
                    Behind::Edit(e) => {
                        insert_default(v, &e.inserted);
                        for i in e.written {
                            v[i] = self.current[i].clone();
                        }
                    }
                }
                return s;
            }
        }
        self.copies += 1;
        Arc::new(self.current.as_ref().clone())
    }
}

/// Inserts default rows at `at` (positions after the insertion, ascending), moving each
/// row once, from the back, in place.
pub fn insert_default<T: Default>(v: &mut Vec<T>, at: &[usize]) {
    if at.is_empty() {
        return;
    }
    let mut i = v.len();
    v.resize_with(v.len() + at.len(), T::default);
    // Rows [i, w) are defaults; an old row goes past insertion k when it would end after it.
    let mut w = v.len();
    for (k, &pos) in at.iter().enumerate().rev() {
        while i > 0 && i + k > pos {
            v.swap(i - 1, w - 1);
            i -= 1;
            w -= 1;
        }
        w -= 1;
    }
}

/// Inserts `items` at `at` (positions after the insertion, ascending), moving only the
/// rows from the first insertion on.
pub fn insert_rows<T>(v: &mut Vec<T>, at: &[usize], items: Vec<T>) {
    let Some(&first) = at.first() else { return };
    let tail = v.split_off(first.min(v.len()));
    v.reserve(tail.len() + items.len());
    let (mut tail, mut items) = (tail.into_iter(), items.into_iter());
    let mut next = at.iter().peekable();
    loop {
        let x = if next.next_if(|&&p| p == v.len()).is_some() {
            items.next()
        } else {
            tail.next()
        };
        match x {
            Some(x) => v.push(x),
            None => break,
        }
    }
    v.extend(items);
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

    use proptest::prelude::*;

    /// Rows inserted at `at` (positions after), the plain way.
    fn inserted(old: &[u32], at: &[usize], items: &[u32]) -> Vec<u32> {
        let mut v = old.to_vec();
        for (&p, &x) in at.iter().zip(items) {
            v.insert(p, x);
        }
        v
    }

    /// Positions after inserting `m` rows into `n`: any `m` of the `n + m`, ascending.
    fn positions() -> impl Strategy<Value = (usize, Vec<usize>)> {
        (0usize..12, 0usize..6).prop_flat_map(|(n, m)| {
            let m = m.min(n + m);
            (
                Just(n),
                prop::sample::subsequence((0..n + m).collect::<Vec<_>>(), m),
            )
        })
    }

    proptest! {
        #[test]
        fn inserting_rows_puts_each_where_it_was_asked(
            (n, at) in positions(),
        ) {
            let old: Vec<u32> = (0..n as u32).collect();
            let items: Vec<u32> = (0..at.len() as u32).map(|k| 100 + k).collect();
            let want = inserted(&old, &at, &items);
            let mut v = old.clone();
            insert_rows(&mut v, &at, items.clone());
            prop_assert_eq!(&v, &want);
            let mut d = old.clone();
            insert_default(&mut d, &at);
            let zeros = vec![0; at.len()];
            prop_assert_eq!(d, inserted(&old, &at, &zeros));
        }

        /// Whoever holds which lent vectors, every lent one is the rows as edited so far.
        #[test]
        fn lent_vectors_follow_every_edit(
            steps in prop::collection::vec((positions(), any::<u8>(), 0u8..4), 1..12),
        ) {
            let mut lent: Lent<u32> = Lent::default();
            let mut model: Vec<u32> = Vec::new();
            let mut held: Vec<Arc<Vec<u32>>> = Vec::new();
            for (k, ((_, at), seed, hold)) in steps.into_iter().enumerate() {
                // Positions drawn for any length, clamped to this one (still ascending).
                let at: Vec<usize> = at.into_iter().enumerate()
                    .map(|(i, p)| p.min(model.len() + i)).collect();
                let items = vec![0; at.len()];
                model = inserted(&model, &at, &items);
                let rows: Vec<(usize, u32)> = (0..model.len())
                    .filter(|i| at.contains(i) || (*i as u8 ^ seed).is_multiple_of(3))
                    .map(|i| (i, 1000 * k as u32 + i as u32))
                    .collect();
                for &(i, x) in &rows {
                    model[i] = x;
                }
                let a = if seed % 5 == 0 {
                    lent.lend(model.clone())
                } else {
                    lent.lend_edited(at, rows)
                };
                prop_assert_eq!(a.as_ref(), &model);
                prop_assert_eq!(lent.current(), &model[..]);
                // 0: nothing held (headless); 1: the UI holds the last; 2: it holds two.
                match hold {
                    0 => held.clear(),
                    1 => held = vec![a],
                    _ => {
                        held.push(a);
                        if held.len() > 2 {
                            held.remove(0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_unheld_vector_is_edited_in_place_and_a_held_one_never() {
        let mut lent: Lent<u32> = Lent::default();
        let a = lent.lend(vec![1, 2, 3]);
        let addr = a.as_ptr();
        drop(a);
        let b = lent.lend_edited(vec![], vec![(1, 20)]);
        assert_eq!(
            (b.as_ptr(), b.as_ref()),
            (addr, &vec![1, 20, 3]),
            "in place"
        );
        // The UI holds `b`: the next tick is written elsewhere, and `b` stays as shown.
        let c = lent.lend_edited(vec![0], vec![(0, 7)]);
        assert_eq!(b.as_ref(), &vec![1, 20, 3]);
        assert_eq!(c.as_ref(), &vec![7, 1, 20, 3]);
        drop(b);
        // `b` let go: it is caught up (last edit and this one) rather than copied.
        let d = lent.lend_edited(vec![], vec![(3, 30)]);
        assert_eq!((d.as_ptr(), d.as_ref()), (addr, &vec![7, 1, 20, 30]));
        drop(c);
        let whole = lent.take();
        assert_eq!(whole, vec![7, 1, 20, 3], "the spare, as it was lent");
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
