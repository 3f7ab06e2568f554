//! Deterministic, seeded shuffling, mini-batching and fixed random subsets.
//!
//! All randomness comes from ChaCha8 (`rand_chacha`), seeded with `seed`; the epoch selects the
//! ChaCha stream, so each (seed, epoch) pair has its own independent order. Results depend only
//! on ChaCha's output, not on the version of `rand`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};
use crate::rng::partial_shuffle;

/// A ChaCha8 generator for `(seed, stream)`: the generator every seeded function here uses.
/// Handy for callers that want the same kind of reproducible stream.
pub fn seeded_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A permutation of `0..n` that depends only on `(seed, epoch)`.
pub fn shuffled_indices(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = seeded_rng(seed, epoch);
    let mut v: Vec<usize> = (0..n).collect();
    partial_shuffle(&mut v, n, &mut rng);
    v
}

/// `k` distinct indices drawn uniformly from `0..n`, in draw order, fixed by `seed`.
///
/// `random_subset(n, k, seed)` is a prefix of `random_subset(n, k + 1, seed)`, so growing a
/// subset keeps the examples already chosen. Use a seed of its own (not the training seed)
/// for a fixed evaluation subset. Fails when `k > n`.
pub fn random_subset(n: usize, k: usize, seed: u64) -> Result<Vec<usize>> {
    if k > n {
        return Err(DataError::invalid(
            "random_subset: k",
            format!("cannot draw {k} distinct indices from {n}"),
        ));
    }
    // Its own stream, so that a subset never coincides with an epoch order of the same seed.
    let mut rng = seeded_rng(seed, u64::MAX);
    let mut v: Vec<usize> = (0..n).collect();
    partial_shuffle(&mut v, k, &mut rng);
    v.truncate(k);
    Ok(v)
}

/// Consecutive chunks of `indices` of `batch_size` (the last one may be shorter).
///
/// # Panics
///
/// When `batch_size` is 0 (a configuration error that callers should reject earlier).
pub fn batches(indices: &[usize], batch_size: usize) -> Batches<'_> {
    assert!(
        batch_size > 0,
        "nrf_data::batch::batches: batch_size must be positive"
    );
    Batches {
        rest: indices,
        batch_size,
        drop_last: false,
    }
}

/// Like [`batches`], but without a final partial batch.
///
/// # Panics
///
/// When `batch_size` is 0.
pub fn full_batches(indices: &[usize], batch_size: usize) -> Batches<'_> {
    assert!(
        batch_size > 0,
        "nrf_data::batch::full_batches: batch_size must be positive"
    );
    Batches {
        rest: indices,
        batch_size,
        drop_last: true,
    }
}

/// `(start, len)` of the consecutive batches of `batch_size` rows that cover the rows `0..n`
/// (the last one may be shorter; none when `n <= 0`), in order: the spans to `narrow` a
/// tensor's first dimension by. `i64` like a tensor's sizes.
///
/// # Panics
///
/// When `batch_size` is not positive (callers reject it earlier, or clamp it to 1).
pub fn spans(n: i64, batch_size: i64) -> impl ExactSizeIterator<Item = (i64, i64)> {
    assert!(
        batch_size > 0,
        "nrf_data::batch::spans: batch_size must be positive"
    );
    let count = if n > 0 {
        (n + batch_size - 1) / batch_size
    } else {
        0
    };
    (0..count as usize).map(move |b| {
        let lo = b as i64 * batch_size;
        (lo, batch_size.min(n - lo))
    })
}

/// The iterator returned by [`batches`] and [`full_batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    rest: &'a [usize],
    batch_size: usize,
    drop_last: bool,
}

impl<'a> Iterator for Batches<'a> {
    type Item = &'a [usize];

    fn next(&mut self) -> Option<&'a [usize]> {
        if self.rest.is_empty() || (self.drop_last && self.rest.len() < self.batch_size) {
            return None;
        }
        let take = self.batch_size.min(self.rest.len());
        let (head, tail) = self.rest.split_at(take);
        self.rest = tail;
        Some(head)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.drop_last {
            self.rest.len() / self.batch_size
        } else {
            self.rest.len().div_ceil(self.batch_size)
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_deterministic_and_depends_on_seed_and_epoch() {
        let a = shuffled_indices(100, 1, 0);
        assert_eq!(a, shuffled_indices(100, 1, 0));
        assert_ne!(a, shuffled_indices(100, 1, 1));
        assert_ne!(a, shuffled_indices(100, 2, 0));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert!(shuffled_indices(0, 1, 0).is_empty());
        assert_eq!(shuffled_indices(1, 1, 0), vec![0]);
    }

    #[test]
    fn shuffle_is_roughly_uniform() {
        // Position of element 0 over many epochs: each of 4 positions about 1/4 of the time.
        let mut counts = [0usize; 4];
        for epoch in 0..4000 {
            let p = shuffled_indices(4, 9, epoch)
                .iter()
                .position(|&i| i == 0)
                .unwrap();
            counts[p] += 1;
        }
        for c in counts {
            assert!((850..1150).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn subset_is_distinct_fixed_and_prefix_stable() {
        let s = random_subset(1000, 100, 5).unwrap();
        assert_eq!(s.len(), 100);
        let mut d = s.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 100);
        assert!(s.iter().all(|&i| i < 1000));
        assert_eq!(s, random_subset(1000, 100, 5).unwrap());
        assert_ne!(s, random_subset(1000, 100, 6).unwrap());
        assert_eq!(&random_subset(1000, 101, 5).unwrap()[..100], &s[..]);
        assert_eq!(random_subset(10, 10, 3).unwrap().len(), 10);
        assert!(random_subset(10, 0, 3).unwrap().is_empty());
        let e = random_subset(10, 11, 3).unwrap_err().to_string();
        assert!(e.contains("random_subset") && e.contains("11"), "{e}");
    }

    #[test]
    fn batches_cover_everything_in_order() {
        let idx: Vec<usize> = (0..10).collect();
        let b: Vec<&[usize]> = batches(&idx, 4).collect();
        assert_eq!(b, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7][..], &[8, 9][..]]);
        assert_eq!(batches(&idx, 4).len(), 3);
        let f: Vec<&[usize]> = full_batches(&idx, 4).collect();
        assert_eq!(f.len(), 2);
        assert_eq!(full_batches(&idx, 4).len(), 2);
        assert_eq!(batches(&idx, 10).count(), 1);
        assert_eq!(batches(&[], 3).count(), 0);
    }

    #[test]
    fn spans_cover_the_rows_in_order() {
        assert_eq!(
            spans(7, 3).collect::<Vec<_>>(),
            vec![(0, 3), (3, 3), (6, 1)]
        );
        assert_eq!(spans(7, 3).len(), 3);
        assert_eq!(spans(6, 3).collect::<Vec<_>>(), vec![(0, 3), (3, 3)]);
        assert_eq!(spans(2, 10).collect::<Vec<_>>(), vec![(0, 2)]);
        assert_eq!(spans(0, 3).count(), 0);
        assert_eq!(spans(-1, 3).count(), 0);
    }

    #[test]
    #[should_panic(expected = "batch_size must be positive")]
    fn zero_span_size_panics_clearly() {
        let _ = spans(4, 0);
    }

    #[test]
    #[should_panic(expected = "batch_size must be positive")]
    fn zero_batch_size_panics_clearly() {
        let _ = batches(&[1, 2], 0);
    }
}
