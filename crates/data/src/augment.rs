//! CIFAR-style data augmentation on single images: random crop with zero padding
//! (torchvision `RandomCrop(size, padding=pad)` at the image's own size) and random horizontal
//! flip. Pure functions on `f32` slices of shape `[C, H, W]`; the caller passes a seeded
//! generator (e.g. [`crate::batch::seeded_rng`]) so that runs are reproducible.

use rand::RngCore;

use crate::error::{DataError, Result};
use crate::rng::uniform_below;

fn check(what: &str, img: &[f32], shape: [usize; 3]) -> Result<()> {
    let n = shape.iter().product::<usize>();
    if img.len() != n {
        return Err(DataError::invalid(
            format!("{what}: image"),
            format!("{} values for shape {shape:?} ({n} expected)", img.len()),
        ));
    }
    Ok(())
}

/// The image shifted so that output pixel `(y, x)` is input pixel `(y + dy - pad, x + dx -
/// pad)`, zero where that falls outside: a crop at offset `(dy, dx)` of the image padded by
/// `pad` zeros on each side. Needs `dy, dx <= 2 * pad`.
pub fn crop_padded(
    img: &[f32],
    shape: [usize; 3],
    pad: usize,
    dy: usize,
    dx: usize,
) -> Result<Vec<f32>> {
    check("crop_padded", img, shape)?;
    if dy > 2 * pad || dx > 2 * pad {
        return Err(DataError::invalid(
            "crop_padded: offset",
            format!("({dy}, {dx}) exceeds 2 * pad = {}", 2 * pad),
        ));
    }
    let [c, h, w] = shape;
    let mut out = vec![0f32; img.len()];
    for ch in 0..c {
        for y in 0..h {
            let sy = y + dy;
            if sy < pad || sy - pad >= h {
                continue;
            }
            let sy = sy - pad;
            for x in 0..w {
                let sx = x + dx;
                if sx < pad || sx - pad >= w {
                    continue;
                }
                out[(ch * h + y) * w + x] = img[(ch * h + sy) * w + sx - pad];
            }
        }
    }
    Ok(out)
}

/// A random crop with zero padding `pad`: offsets uniform in `0..=2 * pad` each.
pub fn random_crop<R: RngCore + ?Sized>(
    img: &[f32],
    shape: [usize; 3],
    pad: usize,
    rng: &mut R,
) -> Result<Vec<f32>> {
    let dy = uniform_below(rng, 2 * pad as u64 + 1) as usize;
    let dx = uniform_below(rng, 2 * pad as u64 + 1) as usize;
    crop_padded(img, shape, pad, dy, dx)
}

/// The image mirrored left-right.
pub fn hflip(img: &[f32], shape: [usize; 3]) -> Result<Vec<f32>> {
    check("hflip", img, shape)?;
    let w = shape[2];
    let mut out = img.to_vec();
    if w > 0 {
        for row in out.chunks_exact_mut(w) {
            row.reverse();
        }
    }
    Ok(out)
}

/// The image mirrored left-right with probability 1/2, else unchanged.
pub fn random_hflip<R: RngCore + ?Sized>(
    img: &[f32],
    shape: [usize; 3],
    rng: &mut R,
) -> Result<Vec<f32>> {
    if uniform_below(rng, 2) == 1 {
        hflip(img, shape)
    } else {
        check("random_hflip", img, shape)?;
        Ok(img.to_vec())
    }
}

/// The standard CIFAR training augmentation: [`random_crop`] with padding `pad` (4 on CIFAR),
/// then [`random_hflip`].
pub fn crop_and_flip<R: RngCore + ?Sized>(
    img: &[f32],
    shape: [usize; 3],
    pad: usize,
    rng: &mut R,
) -> Result<Vec<f32>> {
    let cropped = random_crop(img, shape, pad, rng)?;
    random_hflip(&cropped, shape, rng)
}

/// Applies [`crop_and_flip`] to every image of an NCHW batch, in place.
pub fn crop_and_flip_batch<R: RngCore + ?Sized>(
    images: &mut [f32],
    shape: [usize; 3],
    pad: usize,
    rng: &mut R,
) -> Result<()> {
    let size = shape.iter().product::<usize>();
    if size == 0 || !images.len().is_multiple_of(size) {
        return Err(DataError::invalid(
            "crop_and_flip_batch: images",
            format!(
                "{} values is not a whole number of images of shape {shape:?}",
                images.len()
            ),
        ));
    }
    for img in images.chunks_exact_mut(size) {
        let out = crop_and_flip(img, shape, pad, rng)?;
        img.copy_from_slice(&out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::seeded_rng;

    fn ramp(shape: [usize; 3]) -> Vec<f32> {
        (0..shape.iter().product::<usize>())
            .map(|i| (i + 1) as f32)
            .collect()
    }

    #[test]
    fn crop_at_centre_is_identity_and_shifts_fill_zeros() {
        let shape = [2, 3, 4];
        let img = ramp(shape);
        assert_eq!(crop_padded(&img, shape, 2, 2, 2).unwrap(), img);
        // dy = 0: output row y is input row y - 2; rows 0 and 1 are padding.
        let out = crop_padded(&img, shape, 2, 0, 2).unwrap();
        for ch in 0..2 {
            for y in 0..3 {
                for x in 0..4 {
                    let v = out[(ch * 3 + y) * 4 + x];
                    let want = if y < 2 {
                        0.0
                    } else {
                        img[(ch * 3 + y - 2) * 4 + x]
                    };
                    assert_eq!(v, want, "ch {ch} y {y} x {x}");
                }
            }
        }
        // pad 1, dx = 2: everything shifted left by one column, the last column is zero.
        let out = crop_padded(&img, shape, 1, 1, 2).unwrap();
        assert_eq!(&out[..4], &[2.0, 3.0, 4.0, 0.0]);
        assert!(crop_padded(&img, shape, 1, 3, 0).is_err());
    }

    #[test]
    fn flip_reverses_rows_and_is_an_involution() {
        let shape = [1, 2, 3];
        let img = ramp(shape);
        let f = hflip(&img, shape).unwrap();
        assert_eq!(f, vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
        assert_eq!(hflip(&f, shape).unwrap(), img);
    }

    #[test]
    fn random_augmentation_is_seeded_and_varied() {
        let shape = [3, 8, 8];
        let img = ramp(shape);
        let a = crop_and_flip(&img, shape, 4, &mut seeded_rng(1, 0)).unwrap();
        let b = crop_and_flip(&img, shape, 4, &mut seeded_rng(1, 0)).unwrap();
        assert_eq!(a, b);
        let mut rng = seeded_rng(2, 0);
        let mut distinct = std::collections::HashSet::new();
        let mut flips = 0;
        for _ in 0..400 {
            let out = crop_and_flip(&img, shape, 4, &mut rng).unwrap();
            // Pixel values are preserved or zeroed; the multiset of non-zeros shrinks only.
            assert!(out.iter().all(|v| *v == 0.0 || img.contains(v)));
            distinct.insert(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            let f = random_hflip(&img, shape, &mut rng).unwrap();
            if f != img {
                flips += 1;
            }
        }
        assert!(
            distinct.len() > 50,
            "only {} distinct augmentations",
            distinct.len()
        );
        assert!((150..250).contains(&flips), "{flips} flips out of 400");
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let e = hflip(&[0.0; 5], [1, 2, 3]).unwrap_err().to_string();
        assert!(e.contains("hflip") && e.contains("5 values"), "{e}");
        let mut rng = seeded_rng(0, 0);
        assert!(random_crop(&[0.0; 5], [1, 2, 3], 1, &mut rng).is_err());
        let mut batch = vec![0.5f32; 2 * 6];
        crop_and_flip_batch(&mut batch, [1, 2, 3], 1, &mut rng).unwrap();
        assert!(crop_and_flip_batch(&mut batch[..7], [1, 2, 3], 1, &mut rng).is_err());
    }
}
