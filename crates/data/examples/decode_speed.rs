//! How much the parallel decode of an image folder gains: writes a synthetic JPEG folder
//! (2,000 images of 128x128 in 4 classes) to a temporary directory, then times
//! `load_image_folder` on rayon pools of 1 and 2 threads, 3 runs each (interleaved, after one
//! warm-up run), and prints the medians and their ratio.
//!
//! `cargo run --release -p nrf-data --example decode_speed [images] [side] [size]`

use std::time::Instant;

use image::{Rgb, RgbImage};
use nrf_data::load_image_folder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(std::env::args()
            .nth(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (images, side, size) = (arg(1, 2_000)?, arg(2, 128)? as u32, arg(3, 112)?);
    let classes = 4;
    let dir = tempfile::tempdir()?;
    for i in 0..images {
        let class = dir.path().join(format!("class{}", i % classes));
        std::fs::create_dir_all(&class)?;
        let seed = i as u32;
        // Smooth gradients plus texture, so that the JPEGs are neither trivial nor noise.
        let img = RgbImage::from_fn(side, side, |x, y| {
            let t = (x * 3 + y * 5 + seed * 7) & 0xff;
            let v =
                (x.wrapping_mul(31) ^ y.wrapping_mul(17) ^ seed.wrapping_mul(2_654_435_761)) & 0x3f;
            Rgb([t as u8, (t + v) as u8, (255 - t + v / 2) as u8])
        });
        img.save(class.join(format!("{i:05}.jpg")))?;
    }
    let bytes: u64 = walk_size(dir.path())?;
    println!(
        "{images} JPEGs of {side}x{side} in {classes} classes ({:.1} MB), decoded to {size}x{size}; \
         {} CPUs available",
        bytes as f64 / 1e6,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let pools = [1usize, 2].map(|k| rayon::ThreadPoolBuilder::new().num_threads(k).build());
    let [one, two] = pools;
    let (one, two) = (one?, two?);
    // Warm-up (page cache, allocator), and the two pools must give the same dataset.
    let a = one.install(|| load_image_folder(dir.path(), size, None))?;
    let b = two.install(|| load_image_folder(dir.path(), size, None))?;
    assert!(
        a.images == b.images && a.labels == b.labels,
        "pools disagree"
    );
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (k, pool) in [&one, &two].into_iter().enumerate() {
            let start = Instant::now();
            let ds = pool.install(|| load_image_folder(dir.path(), size, None))?;
            times[k].push(start.elapsed().as_secs_f64());
            assert_eq!(ds.labels.len(), images);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let t1 = median(&mut times[0]);
    let t2 = median(&mut times[1]);
    println!("1 thread : median {t1:.3} s of {:?}", times[0]);
    println!("2 threads: median {t2:.3} s of {:?}", times[1]);
    println!(
        "2-thread / 1-thread time: {:.2} (speed-up {:.2}x); {:.0} vs {:.0} images/s",
        t2 / t1,
        t1 / t2,
        images as f64 / t1,
        images as f64 / t2
    );
    Ok(())
}

fn walk_size(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            walk_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
