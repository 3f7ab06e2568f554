//! The data set's image counts and shape, as the plan needs them (without loading it).
use crate::preset::{DatasetName, Preset};
use anyhow::{Context, Result};
use std::path::Path;

/// Training images per ImageNet class on average (1,281,167 over 1,000 classes) and validation
/// images per class: Restricted ImageNet's sizes when its folders are not at hand.
const IMAGENET_TRAIN_PER_CLASS: usize = 1281;
const IMAGENET_VAL_PER_CLASS: usize = 50;

/// The images of the preset's data set: counted in the data folder when it is there, else the
/// data set's published sizes; `data.train_limit` / `test_limit` applied. Returns (train, test,
/// where from).
pub fn data_sizes(p: &Preset, data_dir: Option<&Path>) -> Result<(usize, usize, String)> {
    let dir = data_dir
        .map(Path::to_path_buf)
        .or_else(|| p.data.dir.clone());
    let (train, test, from) = match p.data.dataset {
        DatasetName::FashionMnist | DatasetName::Mnist => {
            (60_000, 10_000, "the data set's published size".to_string())
        }
        DatasetName::Cifar10 => match dir.as_deref().and_then(|d| cifar_counts(d).ok()) {
            Some((tr, te)) => (
                tr,
                te,
                format!("counted in {}", dir.unwrap_or_default().display()),
            ),
            None => (50_000, 10_000, "the data set's published size".into()),
        },
        DatasetName::RestrictedImagenet => {
            let cap = p.data.max_per_class;
            match dir.as_deref().and_then(|d| imagenet_counts(d, cap).ok()) {
                Some((tr, te)) => (
                    tr,
                    te,
                    format!("counted in {}", dir.unwrap_or_default().display()),
                ),
                None => {
                    let per_super = |per_wnid: usize| -> usize {
                        nrf_data::folder::RESTRICTED_IMAGENET_RANGES
                            .iter()
                            .map(|&(lo, hi)| {
                                let all = (hi - lo + 1) * per_wnid;
                                cap.map_or(all, |k| k.min(all))
                            })
                            .sum()
                    };
                    (
                        per_super(IMAGENET_TRAIN_PER_CLASS),
                        per_super(IMAGENET_VAL_PER_CLASS),
                        "ImageNet's average class size (1,281 train / 50 val images per WordNet id; \
                         give --data-dir to count)"
                            .into(),
                    )
                }
            }
        }
    };
    let limit = |n: usize, l: usize| if l > 0 { n.min(l) } else { n };
    Ok((
        limit(train, p.data.train_limit),
        limit(test, p.data.test_limit),
        from,
    ))
}

/// CIFAR-10 binary version: records in data_batch_1..5.bin and test_batch.bin.
fn cifar_counts(dir: &Path) -> Result<(usize, usize)> {
    let count = |split| -> Result<usize> {
        let mut n = 0;
        for f in nrf_data::cifar::cifar10_file_names(split) {
            let len = std::fs::metadata(dir.join(&f))
                .with_context(|| f.clone())?
                .len() as usize;
            n += len / nrf_data::cifar::CIFAR_RECORD_BYTES;
        }
        Ok(n)
    };
    Ok((
        count(nrf_data::Split::Train)?,
        count(nrf_data::Split::Test)?,
    ))
}

/// Restricted ImageNet: image files in the WordNet folders of the nine ranges (capped per
/// super-class as the loader caps them).
fn imagenet_counts(dir: &Path, cap: Option<usize>) -> Result<(usize, usize)> {
    let count = |sub: &str| -> Result<usize> {
        let root = dir.join(sub);
        let mut per = vec![0usize; nrf_data::folder::RESTRICTED_IMAGENET_RANGES.len()];
        for (i, class) in nrf_data::folder::class_folders(&root)?.iter().enumerate() {
            if let Some(label) = nrf_data::folder::restricted_imagenet_label(i) {
                per[label] += nrf_data::folder::image_files(root.join(class))?.len();
            }
        }
        Ok(per.iter().map(|&n| cap.map_or(n, |k| k.min(n))).sum())
    };
    Ok((count("train")?, count("val")?))
}

/// The image shape and class count of the preset's data set.
pub fn data_shape(p: &Preset) -> ([i64; 3], i64) {
    match p.data.dataset {
        DatasetName::Cifar10 => ([3, 32, 32], 10),
        DatasetName::RestrictedImagenet => {
            let s = p.data.image_size.unwrap_or(224) as i64;
            (
                [3, s, s],
                nrf_data::folder::RESTRICTED_IMAGENET_CLASSES.len() as i64,
            )
        }
        DatasetName::FashionMnist | DatasetName::Mnist => ([1, 28, 28], 10),
    }
}
