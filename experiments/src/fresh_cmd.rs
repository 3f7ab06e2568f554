//! `nrf fresh`: the preset's fresh models trained on a constructed data set given as a file (a
//! run's `data/D_R.safetensors`, `nrf construct`'s output, a set imported from elsewhere), every
//! seed trained and evaluated as a run trains and evaluates its fresh models, so that a set built
//! outside a run is judged on the same footing as the run's own.
//!
//! With `--name on_D_R` on the set a run stored as `data/D_R` and the run's preset, the models
//! are the run's `on_D_R` (seed 0) and `on_D_R~s<k>`, bit for bit on the CPU: the same section
//! (`[fresh]` with the `[fresh_by_set]` entry of the set's name), spec, stage seeds
//! (`train:<name>`, `eval:<name>`, `ensemble:<name>`) and libtorch threads (one worker's).
use crate::construct_cmd::{evaluate, Evaluated};
use crate::pipeline::{load_data, model_spec};
use crate::preset::Preset;
use anyhow::{bail, Context, Result};
use nrf_data::Dataset;
use nrf_models::{save_model, train, BatchPerturber, Model};
use nrf_results::uncertainty::Accuracy;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

/// What `nrf fresh` is asked for, beyond the preset.
#[derive(Debug, Clone)]
pub struct FreshRequest {
    /// The constructed set (`STEM.safetensors` with `STEM.json`, as `save_constructed` writes
    /// them).
    pub data: PathBuf,
    /// The set's name for the `[fresh_by_set]` entry (default: the name stored in the file).
    pub set_name: Option<String>,
    /// The models' name, which their seeds derive from (default `on_<set name>`).
    pub name: Option<String>,
    /// Seeds (default the preset's `[fresh] seeds`).
    pub seeds: Option<usize>,
    /// Also the preset's `[eval] ensemble` on every seed.
    pub ensemble: bool,
    /// A folder to save every seed's weights into (`<name>`, `<name>~s<k>`).
    pub save: Option<PathBuf>,
    /// The test set's folder in place of the preset's `data.dir`.
    pub data_dir: Option<PathBuf>,
}

/// The set the models were trained on.
#[derive(Debug, Serialize)]
pub struct SetInfo {
    /// The file.
    pub file: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// The name stored in it.
    pub stored_name: String,
    /// The name whose `[fresh_by_set]` entry was applied.
    pub name: String,
    /// Images.
    pub n: usize,
    /// How it was built (`metadata.method`).
    pub method: String,
}

/// One seed's model.
#[derive(Debug, Serialize)]
pub struct FreshSeed {
    /// `<name>` for seed 0, `<name>~s<k>` after it (the run's names).
    pub name: String,
    /// Its training seed (`train:<name>`).
    pub train_seed: u64,
    /// Accuracy on its own training set after training.
    pub final_train_acc: f64,
    /// Its evaluation, as `nrf eval --name <name>` gives it.
    pub eval: Evaluated,
    /// Saved weights (`--save`).
    pub saved: Option<PathBuf>,
}

/// A number over the seeds.
#[derive(Debug, Serialize)]
pub struct OverSeeds {
    /// What it is: "standard", "L2 eps 0.5 (PGD-20)", ...
    pub what: String,
    /// Every seed's value in [0, 1].
    pub values: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (0 for one seed).
    pub sd: f64,
    /// The mean's 95% interval, binomial over the images and widened by the seed spread as the
    /// report's (Student's t for few seeds; [`Accuracy::interval`]).
    pub interval: (f64, f64),
    /// Images each value is measured on.
    pub n: usize,
}

impl OverSeeds {
    /// The values as the report's [`Accuracy`].
    pub fn accuracy(&self) -> Accuracy {
        Accuracy::with_seeds(&self.values, self.n)
    }
}

/// What `nrf fresh` did.
#[derive(Debug, Serialize)]
pub struct FreshResult {
    pub set: SetInfo,
    /// The models' name.
    pub name: String,
    pub epochs: usize,
    /// libtorch threads it trained with.
    pub threads: i32,
    pub seeds: Vec<FreshSeed>,
    /// Standard accuracy and every robust accuracy over the seeds.
    pub summary: Vec<OverSeeds>,
    /// The paper's numbers, and its replications', for sets of this name (any data set: for
    /// reference, comparable only at the paper's settings).
    pub paper: Vec<PaperRow>,
    pub wall_s: f64,
}

/// The paper's numbers for one table and data set, as the report's cells show them.
#[derive(Debug, Serialize)]
pub struct PaperRow {
    /// "Figure 2", "Table 1", "Benz et al. replication", ...
    pub table: String,
    /// "CIFAR-10", "CIFAR-10 (released sets)", ...
    pub dataset: String,
    /// E.g. "std 84%, robust (L2 ε=0.25) 48% \[CD\]".
    pub numbers: String,
}

/// [`PaperRow`]s of the sets named `set` ("D_R", "D_NR", "D_rand", "D_det"), in the file's order.
fn paper_rows(set: &str) -> Result<Vec<PaperRow>> {
    let all = nrf_report::paper::paper_numbers()?;
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for n in all.iter().filter(|n| n.training_set == set) {
        if !keys.contains(&(n.table.as_str(), n.dataset.as_str())) {
            keys.push((n.table.as_str(), n.dataset.as_str()));
        }
    }
    Ok(keys
        .into_iter()
        .map(|(table, dataset)| PaperRow {
            table: table.into(),
            dataset: dataset.into(),
            numbers: nrf_report::paper::cell_text(&nrf_report::paper::select(
                all, table, dataset, set,
            )),
        })
        .collect())
}

/// Reads the constructed set `file` (checked as every stored set is) and checks it against the
/// preset's test set: the same image shape and classes.
fn read_set(file: &Path, test: &Dataset) -> Result<nrf_data::ConstructedDataset> {
    let set = nrf_data::load_constructed(file)
        .with_context(|| format!("reading the constructed set {}", file.display()))?;
    let d = &set.dataset;
    if d.shape != test.shape || d.num_classes != test.num_classes {
        bail!(
            "{}: {} images of shape {:?} in {} classes, but the preset's test set {} has shape \
             {:?} and {} classes",
            file.display(),
            d.len(),
            d.shape,
            d.num_classes,
            test.name,
            test.shape,
            test.num_classes
        );
    }
    if d.is_empty() {
        bail!("{}: the set has no images", file.display());
    }
    Ok(set)
}

/// Trains the preset's fresh models on `req.data` and evaluates them (see the module's
/// documentation).
pub fn run(preset: &Preset, req: &FreshRequest) -> Result<FreshResult> {
    let start = std::time::Instant::now();
    let device = crate::workers::model_device(preset);
    if req.seeds == Some(0) {
        bail!("--seeds must be at least 1");
    }
    let (_, test) = load_data(preset, req.data_dir.as_deref())?;
    let set = read_set(&req.data, &test)?;
    let (st, _) = nrf_data::store::constructed_paths(&req.data);
    let stored_name = set.dataset.name.clone();
    let set_name = req.set_name.clone().unwrap_or_else(|| stored_name.clone());
    let name = req.name.clone().unwrap_or_else(|| format!("on_{set_name}"));
    let section = preset.fresh_for(&set_name);
    let data = &set.dataset;
    let spec = model_spec(&preset.model, data);
    let seeds = req.seeds.unwrap_or_else(|| preset.fresh_seeds()).max(1);
    if let Some(dir) = &req.save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out = Vec::new();
    for k in 0..seeds {
        let seed_name = if k == 0 {
            name.clone()
        } else {
            format!("{name}~s{k}")
        };
        let seed = preset.stage_seed(&format!("train:{seed_name}"));
        tracing::info!(
            "{seed_name}: training on {} ({} images, {} epochs), seed {k} of {seeds}",
            req.data.display(),
            data.len(),
            section.epochs
        );
        let mut model = Model::new(&spec, device, seed as i64)?;
        let adv = section.adversary()?;
        train(
            &mut model,
            data,
            &section.config(seed, true),
            adv.as_ref().map(|a| a as &dyn BatchPerturber),
            None,
            None,
        )?;
        let saved = match &req.save {
            Some(dir) => {
                let stem = dir.join(&seed_name);
                save_model(&model, &stem)?;
                Some(stem)
            }
            None => None,
        };
        model.vs.freeze();
        let final_train_acc = {
            let (x, y) = nrf_models::dataset_to_tensors(data, Device::Cpu);
            nrf_models::accuracy_on(&model, &x, &y, preset.eval.batch_size as i64, device)
        };
        let eval = evaluate(preset, &model, &test, device, &seed_name, req.ensemble)?;
        out.push(FreshSeed {
            name: seed_name,
            train_seed: seed,
            final_train_acc,
            eval,
            saved,
        });
    }
    let paper = paper_rows(&set_name)?;
    Ok(FreshResult {
        set: SetInfo {
            sha256: nrf_data::store::sha256_file(&st)?,
            file: st,
            stored_name,
            name: set_name,
            n: data.len(),
            method: set.metadata.method.clone(),
        },
        name,
        epochs: section.epochs,
        threads: tch::get_num_threads(),
        summary: over_seeds(&out),
        seeds: out,
        paper,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// Standard accuracy and every robust accuracy of `seeds` (each seed's in the same order),
/// over the seeds.
fn over_seeds(seeds: &[FreshSeed]) -> Vec<OverSeeds> {
    let Some(first) = seeds.first() else {
        return Vec::new();
    };
    let mut rows = vec![summarise(
        "standard".into(),
        seeds.iter().map(|s| s.eval.std_acc).collect(),
        first.eval.test_size,
    )];
    for (i, r) in first.eval.robust.iter().enumerate() {
        let p = &r.point;
        rows.push(summarise(
            format!("{} eps {} (PGD-{})", p.norm, p.eps, p.steps),
            seeds.iter().map(|s| s.eval.robust[i].point.acc).collect(),
            p.n,
        ));
    }
    if let Some(e) = &first.eval.ensemble {
        let p = &e.robust.point;
        rows.push(summarise(
            format!("{} eps {} (ensemble)", p.norm, p.eps),
            (seeds.iter())
                .filter_map(|s| s.eval.ensemble.as_ref().map(|e| e.robust.point.acc))
                .collect(),
            p.n,
        ));
    }
    rows
}

fn summarise(what: String, values: Vec<f64>, n: usize) -> OverSeeds {
    let acc = Accuracy::with_seeds(&values, n);
    let i = acc.interval();
    OverSeeds {
        what,
        mean: acc.value,
        sd: acc.seed_sd().unwrap_or(0.0),
        interval: (i.lo, i.hi),
        values,
        n,
    }
}

impl FreshResult {
    /// The numbers as a markdown table: per number, the mean ± sd over seeds, its 95% interval
    /// and every seed's value, as the report shows a model trained with several seeds.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} trained on {} ({}, {} images), {} seed(s), {} epochs\n\n| number | accuracy: mean \
             ± sd [95% interval] (seeds) | images |\n|---|---|---|\n",
            self.name,
            self.set.file.display(),
            self.set.name,
            self.set.n,
            self.seeds.len(),
            self.epochs
        );
        for r in &self.summary {
            out += &format!("| {} | {} | {} |\n", r.what, r.accuracy().text(), r.n);
        }
        if !self.paper.is_empty() {
            out += &format!(
                "\nThe paper's numbers for {} (its settings, not necessarily this preset's):\n",
                self.set.name
            );
            for p in &self.paper {
                out += &format!("- {}, {}: {}\n", p.table, p.dataset, p.numbers);
            }
        }
        out
    }
}
