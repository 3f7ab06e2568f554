//! The data: the loaded training / test sets, their fingerprint, and the stored constructed sets.
use super::Ctx;
use crate::preset::{DatasetName, Preset};
use anyhow::{bail, Context, Result};
use nrf_data::{Dataset, Split};
use nrf_results::ConstructedInfo;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub(crate) fn dataset_fingerprint(d: &Dataset) -> String {
    let mut h = Sha256::new();
    h.update(d.name.as_bytes());
    for v in &d.images {
        h.update(v.to_le_bytes());
    }
    for l in &d.labels {
        h.update(l.to_le_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Loads the preset's dataset (`data_dir` overrides the preset's directory).
pub fn load_data(p: &Preset, data_dir: Option<&Path>) -> Result<(Dataset, Dataset)> {
    let dir: PathBuf = match (data_dir, &p.data.dir) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(d)) => d.clone(),
        (None, None) => bail!(
            "preset {}: dataset {} needs --data-dir (no data.dir in the preset)",
            p.name,
            p.data.dataset
        ),
    };
    let load = |split| -> Result<Dataset> {
        Ok(match p.data.dataset {
            DatasetName::FashionMnist => nrf_data::idx::load_fashion_mnist(&dir, split)?,
            DatasetName::Mnist => nrf_data::idx::load_mnist(&dir, split)?,
            DatasetName::Cifar10 => nrf_data::cifar::load_cifar10(&dir, split)?,
            DatasetName::RestrictedImagenet => {
                let size = p.data.image_size.unwrap_or(224);
                nrf_data::folder::load_restricted_imagenet(&dir, split, size, p.data.max_per_class)?
            }
        })
    };
    // The install hint only when files are missing (not for a damaged or unreadable file).
    let hint = |e: &anyhow::Error| {
        let missing = e
            .downcast_ref::<nrf_data::DataError>()
            .is_some_and(nrf_data::DataError::is_not_found);
        if missing && p.data.dataset == DatasetName::FashionMnist {
            " (install it with: apt-get install -y dataset-fashion-mnist)"
        } else {
            ""
        }
    };
    let mut train = load(Split::Train).map_err(|e| {
        let context = format!(
            "loading the {} training set from {}{}",
            p.data.dataset,
            dir.display(),
            hint(&e)
        );
        e.context(context)
    })?;
    let mut test = load(Split::Test).map_err(|e| {
        let context = format!(
            "loading the {} test set from {}{}",
            p.data.dataset,
            dir.display(),
            hint(&e)
        );
        e.context(context)
    })?;
    // The two splits must go together, and the model's normalisation must fit the images.
    let (train_src, test_src) = if p.data.dataset == DatasetName::RestrictedImagenet {
        (dir.join("train"), dir.join("val"))
    } else {
        (dir.clone(), dir.clone())
    };
    nrf_data::check_splits(&train, &train_src, &test, &test_src)?;
    p.model
        .check_channels(train.shape[0], &train.name)
        .with_context(|| format!("preset {}", p.name))?;
    if p.data.train_limit > 0 && p.data.train_limit < train.len() {
        train = train.subset(&(0..p.data.train_limit).collect::<Vec<_>>());
    }
    if p.data.test_limit > 0 && p.data.test_limit < test.len() {
        test = test.subset(&(0..p.data.test_limit).collect::<Vec<_>>());
    }
    Ok((train, test))
}

impl Ctx {
    /// Stores a constructed dataset under `data/<name>` and its summary under `datasets/<name>.json`.
    pub fn store_constructed(
        &self,
        ds: &nrf_data::store::ConstructedDataset,
        info: &ConstructedInfo,
    ) -> Result<()> {
        let (st, js) =
            nrf_data::store::save_constructed(self.path(&format!("data/{}", info.name)), ds)?;
        // The data and its side file are what later stages read (the summary is the report's,
        // and records a wall time: listing it would make the stage record differ between two
        // runs with the same results).
        self.cache.outputs.note(st);
        self.cache.outputs.note(js);
        self.write_dataset_info(info)
    }

    /// Writes `datasets/<name>.json`, the summary of a constructed set: by the stage that builds
    /// it, and again from its record when the stage is cached (a run writes every result file
    /// of its configuration: [`super::cache::StageCache::set_aside_stale`]).
    pub fn write_dataset_info(&self, info: &ConstructedInfo) -> Result<()> {
        self.cache
            .write_result(&format!("datasets/{}.json", info.name), info)
    }

    /// Loads a constructed dataset stored by [`Ctx::store_constructed`].
    pub fn load_constructed(&self, name: &str) -> Result<nrf_data::store::ConstructedDataset> {
        Ok(nrf_data::store::load_constructed(
            self.path(&format!("data/{name}")),
        )?)
    }
}
