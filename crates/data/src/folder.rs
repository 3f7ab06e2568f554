//! Image folders (one sub-folder per class, as torchvision's `ImageFolder`) and Restricted
//! ImageNet.
//!
//! Class folders are the sub-directories of the root, sorted by name; a folder's position in
//! that order is its class index (torchvision's `class_to_idx`). The images of a class are the
//! files below its folder (recursively) whose extension is `png`, `jpg` or `jpeg` (any case),
//! sorted by path; other files and hidden files are ignored. Each image is decoded with the
//! `image` crate (by content, not by extension), converted to RGB, resized so that its shorter
//! side is `size` (bilinear), centre-cropped to `size x size`, and scaled to `[0, 1]`. Restricted
//! ImageNet's test images are resized to [`imagenet_test_resize`]`(size)` first (256 for 224),
//! as the paper's code's `TEST_TRANSFORMS_IMAGENET` (Resize(256), CenterCrop(224)).

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::ImageReader;
use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::{Dataset, Split};

/// The Restricted ImageNet super-classes, by new label: inclusive ranges of ImageNet class
/// indices (positions in the sorted WordNet-id folder list). From the robustness library's
/// `RESTRICTED_IMAGNET_RANGES`; 203 ImageNet classes in all.
pub const RESTRICTED_IMAGENET_RANGES: [(usize, usize); 9] = [
    (151, 268),
    (281, 285),
    (30, 32),
    (33, 37),
    (80, 100),
    (365, 382),
    (389, 397),
    (118, 121),
    (300, 319),
];

/// The names of the Restricted ImageNet super-classes, by new label.
pub const RESTRICTED_IMAGENET_CLASSES: [&str; 9] = [
    "dog", "cat", "frog", "turtle", "bird", "primate", "fish", "crab", "insect",
];

/// The Restricted ImageNet label of ImageNet class `imagenet_index`, or `None` when that class
/// belongs to no super-class.
pub fn restricted_imagenet_label(imagenet_index: usize) -> Option<usize> {
    RESTRICTED_IMAGENET_RANGES
        .iter()
        .position(|&(lo, hi)| (lo..=hi).contains(&imagenet_index))
}

/// The class folders of an image-folder root: sub-directory names, sorted.
pub fn class_folders(root: impl AsRef<Path>) -> Result<Vec<String>> {
    let root = root.as_ref();
    let entries = std::fs::read_dir(root).map_err(|e| DataError::io(root, "list directory", e))?;
    let mut classes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(root, "list directory", e))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|n| {
            DataError::format(root, format!("class folder name {n:?} is not UTF-8"))
        })?;
        if name.starts_with('.') {
            continue;
        }
        classes.push(name);
    }
    classes.sort();
    Ok(classes)
}

fn is_image_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    !hidden && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// The image files below `dir` (recursively), sorted by path.
pub fn image_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.as_ref().to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| DataError::io(&d, "list directory", e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| DataError::io(&d, "list directory", e))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if is_image_file(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes one image file and returns it as `[3, size, size]` RGB in `[0, 1]`: shorter side
/// resized to `size` (bilinear), then centre-cropped. Fails with
/// [`DataError::UnreadableImage`] naming the file when it cannot be decoded.
pub fn load_image(path: impl AsRef<Path>, size: usize) -> Result<Vec<f32>> {
    let path = path.as_ref();
    if size == 0 {
        return Err(DataError::invalid("load_image: size", "must be positive"));
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read image", e))?;
    decode_image(path, &bytes, size)
}

/// The largest image side [`decode_image`] accepts (pixels), and the most memory the decoder
/// may allocate: far above any ImageNet photograph, low enough that a forged header cannot make
/// decoding take minutes or gigabytes.
pub const MAX_IMAGE_SIDE: u32 = 1 << 14;
/// See [`MAX_IMAGE_SIDE`].
pub const MAX_IMAGE_ALLOC: u64 = 1 << 30;

/// [`load_image`] of an image file's content (JPEG or PNG, told by its first bytes, else by
/// `path`'s extension); `path` names it in errors. Never panics: any byte string gives the
/// image or [`DataError::UnreadableImage`].
pub fn decode_image(path: impl AsRef<Path>, bytes: &[u8], size: usize) -> Result<Vec<f32>> {
    let cropped = decode_cropped(path.as_ref(), bytes, size, size)?;
    let mut out = vec![0f32; 3 * size * size];
    write_planes(&cropped, &mut out);
    Ok(out)
}

/// [`load_image`] into `out` (`3 * size * size` values), which [`decode_all`] hands each file
/// as its slot of the dataset's buffer, so no per-image vector is kept.
fn load_image_into(path: &Path, resize: usize, size: usize, out: &mut [f32]) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read image", e))?;
    let cropped = decode_cropped(path, &bytes, resize, size)?;
    write_planes(&cropped, out);
    Ok(())
}

/// The shorter side Restricted ImageNet's test images are resized to before their centre crop
/// of `size`: `size * 256 / 224`, rounded (the paper's code: Resize(256), CenterCrop(224)).
pub fn imagenet_test_resize(size: usize) -> usize {
    (size * 256 + 112) / 224
}

/// Decodes, resizes (shorter side to `resize`, at least `size`) and centre-crops: the
/// `size x size` RGB image.
fn decode_cropped(
    path: &Path,
    bytes: &[u8],
    resize: usize,
    size: usize,
) -> Result<image::RgbImage> {
    if size == 0 {
        return Err(DataError::invalid("load_image: size", "must be positive"));
    }
    let resize = resize.max(size);
    let unreadable = |reason: String| DataError::UnreadableImage {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes));
    if let Ok(format) = image::ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let mut reader = reader
        .with_guessed_format()
        .map_err(|e| DataError::io(path, "read image", e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| unreadable(e.to_string()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(unreadable(format!("image has size {w}x{h}")));
    }
    let s = resize as u64;
    let short = w.min(h) as u64;
    // Shorter side -> resize, keeping the aspect ratio (rounded, never below resize).
    let nw = ((w as u64 * s + short / 2) / short).max(s);
    let nh = ((h as u64 * s + short / 2) / short).max(s);
    if nw.max(nh) > u32::MAX as u64 || nw.saturating_mul(nh).saturating_mul(3) > MAX_IMAGE_ALLOC {
        return Err(unreadable(format!(
            "a {w}x{h} image resized to {nw}x{nh} (shorter side {resize}) would exceed {MAX_IMAGE_ALLOC} bytes"
        )));
    }
    let (nw, nh) = (nw as u32, nh as u32);
    let resized = if (nw, nh) == (w, h) {
        img
    } else {
        imageops::resize(&img, nw, nh, FilterType::Triangle)
    };
    let size32 = size as u32;
    let x0 = (nw - size32) / 2;
    let y0 = (nh - size32) / 2;
    Ok(imageops::crop_imm(&resized, x0, y0, size32, size32).to_image())
}

/// Writes a square RGB image into `out` as three planes (`[3, side, side]`) in `[0, 1]`.
fn write_planes(img: &image::RgbImage, out: &mut [f32]) {
    let plane = (img.width() * img.height()) as usize;
    debug_assert_eq!(out.len(), 3 * plane);
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px[c] as f32 / 255.0;
        }
    }
}

/// Decodes `files` (with their labels) into a [`Dataset`] of `[3, size, size]` images, each
/// resized to shorter side `resize` before its centre crop.
///
/// Files are decoded in parallel on rayon's global pool (`RAYON_NUM_THREADS` caps it, or run
/// inside [`rayon::ThreadPool::install`]), each straight into its own slot of the dataset's
/// buffer, so the result is the same, byte for byte, as decoding one file after another, and
/// memory is that buffer plus one file's decoding buffers per worker thread. When files
/// cannot be read or decoded, the error is the one of the first such file in `files`' order,
/// whatever the threads' timing (`find_map_first`: files after it are skipped, files before it
/// are all decoded).
fn decode_all(
    files: &[(PathBuf, usize)],
    resize: usize,
    size: usize,
    name: String,
    class_names: Vec<String>,
) -> Result<Dataset> {
    let per_image = 3 * size * size;
    let mut images = Vec::new();
    if !files.is_empty() {
        if size == 0 {
            return Err(DataError::invalid("load_image: size", "must be positive"));
        }
        let len = files.len().checked_mul(per_image).ok_or_else(|| {
            DataError::invalid(
                "image folder",
                format!("{} images of {per_image} values overflow", files.len()),
            )
        })?;
        check_fits_in_memory(
            &name,
            files.len(),
            size,
            class_names.len(),
            available_memory(),
        )?;
        images = vec![0f32; len];
        let first_error = images
            .par_chunks_mut(per_image)
            .zip(files.par_iter())
            .find_map_first(|(out, (path, _))| load_image_into(path, resize, size, out).err());
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let labels = files.iter().map(|&(_, label)| label as i64).collect();
    Ok(Dataset {
        name,
        images,
        labels,
        shape: [3, size, size],
        num_classes: class_names.len(),
        class_names,
    })
}

/// The memory this machine has available for new allocations, in bytes (`MemAvailable` in
/// /proc/meminfo); `None` where that cannot be read (not Linux).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Fails, before anything is decoded, when `n` images of `3 x size x size` f32 values (the
/// buffer [`decode_all`] fills) would need more than `available` bytes: an ImageNet-sized
/// folder at 224 px (~0.6 MB an image) would otherwise be killed for lack of memory after hours
/// of decoding. The error says how many images per class would take half of it.
fn check_fits_in_memory(
    name: &str,
    n: usize,
    size: usize,
    classes: usize,
    available: Option<u64>,
) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    let per_image = 3 * (size as u64).pow(2) * 4;
    let need = n as u64 * per_image;
    if need <= available {
        return Ok(());
    }
    let gb = |b: u64| b as f64 / 1e9;
    let per_class = available / 2 / per_image / classes.max(1) as u64;
    Err(DataError::invalid(
        "max_per_class",
        format!(
            "{name}: {n} images of 3x{size}x{size} take {:.1} GB as f32, more than the {:.1} GB \
             of memory available (MemAvailable); cap the images per class (a preset's \
             `data.max_per_class`: {per_class} per class would take half of it; training holds \
             a second copy) or lower `data.image_size`",
            gb(need),
            gb(available)
        ),
    ))
}

/// Loads an image folder: class = index of the sub-folder in sorted order, at most
/// `max_per_class` images per class (the first ones in path order), each `[3, size, size]`.
/// The class names are the folder names.
pub fn load_image_folder(
    dir: impl AsRef<Path>,
    size: usize,
    max_per_class: Option<usize>,
) -> Result<Dataset> {
    let dir = dir.as_ref();
    crate::check_data_dir(dir)?;
    let classes = class_folders(dir)?;
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let mut f = image_files(dir.join(class))?;
        if let Some(k) = max_per_class {
            f.truncate(k);
        }
        files.extend(f.into_iter().map(|p| (p, label)));
    }
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    decode_all(&files, size, size, name, classes)
}

/// Loads Restricted ImageNet from an ImageNet root `dir` holding `train/` and `val/`, each with
/// one folder per WordNet id (`Split::Test` reads `val/`). Folder `i` in sorted order is
/// ImageNet class `i`; classes in [`RESTRICTED_IMAGENET_RANGES`] get their super-class label,
/// the others are skipped. `max_per_class` caps the images per super-class, taken round-robin
/// over its WordNet folders (first image of each folder, then the second...), so a small cap
/// still covers many of them. Images are `[3, size, size]` (the paper uses 224): training
/// images resized to shorter side `size`, test images to [`imagenet_test_resize`]`(size)`, then
/// centre-cropped.
///
/// Fails when the split folder holds fewer than 398 class folders (the highest index used is
/// 397), since the sorted-index mapping would then be meaningless.
pub fn load_restricted_imagenet(
    dir: impl AsRef<Path>,
    split: Split,
    size: usize,
    max_per_class: Option<usize>,
) -> Result<Dataset> {
    crate::check_data_dir(dir.as_ref())?;
    let root = dir.as_ref().join(match split {
        Split::Train => "train",
        Split::Test => "val",
    });
    let classes = class_folders(&root)?;
    let needed = RESTRICTED_IMAGENET_RANGES
        .iter()
        .map(|&(_, hi)| hi + 1)
        .max()
        .unwrap_or(0);
    if classes.len() < needed {
        // ILSVRC2012's validation archive unpacks to 50,000 images in one folder.
        let loose = std::fs::read_dir(&root)
            .map(|rd| rd.flatten().filter(|e| is_image_file(&e.path())).count())
            .unwrap_or(0);
        let hint = if loose > 0 {
            format!(
                "; it holds {loose} image files directly: sort them into one folder per WordNet id \
                 (as torchvision's ImageNet or the usual valprep.sh do)"
            )
        } else {
            String::new()
        };
        return Err(DataError::format(
            &root,
            format!(
                "{} class folders, but Restricted ImageNet needs the ImageNet folder list (at least {needed}, normally 1000){hint}",
                classes.len()
            ),
        ));
    }
    // Per super-class: the file lists of its WordNet folders, in folder order.
    let mut per_class: Vec<Vec<Vec<PathBuf>>> = vec![Vec::new(); RESTRICTED_IMAGENET_RANGES.len()];
    for (index, class) in classes.iter().enumerate() {
        if let Some(label) = restricted_imagenet_label(index) {
            per_class[label].push(image_files(root.join(class))?);
        }
    }
    if per_class.iter().flatten().all(Vec::is_empty) {
        return Err(DataError::format(
            &root,
            format!(
                "no image in the {} Restricted ImageNet class folders (ImageNet classes {})",
                per_class.iter().map(Vec::len).sum::<usize>(),
                RESTRICTED_IMAGENET_RANGES
                    .iter()
                    .map(|(lo, hi)| format!("{lo}-{hi}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut files = Vec::new();
    for (label, folders) in per_class.iter().enumerate() {
        let total: usize = folders.iter().map(Vec::len).sum();
        let cap = max_per_class.map_or(total, |k| k.min(total));
        let mut taken = 0;
        let mut round = 0;
        while taken < cap {
            for folder in folders {
                if taken < cap {
                    if let Some(p) = folder.get(round) {
                        files.push((p.clone(), label));
                        taken += 1;
                    }
                }
            }
            round += 1;
        }
    }
    let resize = match split {
        Split::Train => size,
        Split::Test => imagenet_test_resize(size),
    };
    decode_all(
        &files,
        resize,
        size,
        format!("restricted-imagenet/{split}"),
        RESTRICTED_IMAGENET_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_too_large_for_memory_is_refused_before_decoding() {
        // 100,000 images of 3x224x224 f32 (602,112 bytes each) = 60.2 GB against 16 GB.
        let e = check_fits_in_memory("rin/train", 100_000, 224, 9, Some(16_000_000_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("60.2 GB") && e.contains("16.0 GB"), "{e}");
        assert!(
            e.contains("data.max_per_class") && e.contains("data.image_size"),
            "{e}"
        );
        // Half of 16 GB over 9 classes: 1476 images per class.
        assert!(e.contains("1476 per class"), "{e}");
        check_fits_in_memory("rin/train", 26_000, 224, 9, Some(16_000_000_000)).unwrap();
        check_fits_in_memory("rin/train", 10_000_000, 224, 9, None).unwrap();
        assert!(available_memory().is_none_or(|b| b > 0));
    }
}
