//! Random helpers whose output depends only on the raw `u64` stream of the generator, so that
//! seeded results do not change with the version of `rand` (whose `gen_range` and `shuffle`
//! may change values between minor versions).

use rand::RngCore;

/// A uniform integer in `0..bound` (`bound > 0`), by rejection sampling on `u64`.
pub(crate) fn uniform_below<R: RngCore + ?Sized>(rng: &mut R, bound: u64) -> u64 {
    debug_assert!(bound > 0);
    // Largest multiple of `bound` that fits in u64's range: reject draws at or above it.
    let zone = u64::MAX - (u64::MAX - bound + 1) % bound;
    loop {
        let v = rng.next_u64();
        if v <= zone {
            return v % bound;
        }
    }
}

/// Fisher-Yates shuffle of the first `k` positions of `v` (the whole slice when `k >= len`):
/// afterwards `v[..k]` is a uniform random `k`-subset in random order. The first `k`
/// positions are the same whatever larger `k` is used with the same generator state.
pub(crate) fn partial_shuffle<T, R: RngCore + ?Sized>(v: &mut [T], k: usize, rng: &mut R) {
    let n = v.len();
    for i in 0..k.min(n.saturating_sub(1)) {
        let j = i + uniform_below(rng, (n - i) as u64) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn uniform_below_stays_in_range_and_hits_every_value() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            let v = uniform_below(&mut rng, 7) as usize;
            seen[v] += 1;
        }
        for (v, &c) in seen.iter().enumerate() {
            assert!(c > 800 && c < 1200, "value {v} drawn {c} times out of 7000");
        }
        assert_eq!(uniform_below(&mut rng, 1), 0);
    }

    #[test]
    fn partial_shuffle_is_a_permutation() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut v: Vec<usize> = (0..50).collect();
        partial_shuffle(&mut v, 50, &mut rng);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
    }
}
