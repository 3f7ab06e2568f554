//! `nrf construct` and `nrf eval`: bring your own model. D_R / D_NR / D_rand / D_det built from
//! any PyTorch classifier exported with TorchScript, or from an nrf checkpoint (`nrf train
//! --save`, a run's `weights/`), with the preset's settings and the same resumable, chunked
//! machinery as the pipeline; and its standard / robust accuracy.
//!
//! Before anything is built the model is checked on real test images: a model whose accuracy is
//! near chance almost always means mismatched inputs (range, normalisation, channel order), the
//! classic silent bug, and nrf stops with a message that says so.
use crate::pipeline::{attack_ensemble, load_data, robust_points, test_subset, EVAL_SUBSET};
use crate::preset::Preset;
use anyhow::{bail, Context, Result};
use nrf_attacks::evaluate_grid;
use nrf_data::{ConstructedDataset, Dataset};
use nrf_features::relabel::{self, RelabelConfig, TargetRule};
use nrf_features::repmatch;
use nrf_features::targeted::TargetedAttack;
pub use nrf_models::ModelFormat;
use nrf_models::{
    dataset_to_tensors, Classifier, Model, RepRelu, RepSource, TorchScriptClassifier,
};
use nrf_results::uncertainty::Accuracy;
use nrf_results::{EvalChecks, RobustPoint};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

/// Test images the model is checked on before anything is built from it.
pub const CHECK_N: usize = 500;

/// A user's model file and how to feed it.
#[derive(Debug, Clone)]
pub struct ExternalModel {
    /// The file: TorchScript, or an nrf checkpoint (`.safetensors`, [`ModelFormat`]).
    pub path: PathBuf,
    /// Where the representation g(x) comes from (TorchScript only).
    pub rep: RepSource,
    /// Per-channel mean / std applied before the module (empty: inputs in [0, 1] as they are;
    /// TorchScript only: a checkpoint's spec has its own).
    pub mean: Vec<f64>,
    /// See `mean`.
    pub std: Vec<f64>,
}

/// A loaded [`ExternalModel`]: the TorchScript module, or the nrf model of a checkpoint (frozen).
pub enum LoadedModel {
    /// A TorchScript module and how it is fed.
    TorchScript(TorchScriptClassifier),
    /// An nrf model read from its checkpoint.
    Checkpoint(Model),
}

impl LoadedModel {
    /// The number of parameters.
    pub fn num_params(&self) -> Result<i64> {
        Ok(match self {
            LoadedModel::TorchScript(m) => m.num_params()?,
            LoadedModel::Checkpoint(m) => m.vs.variables().values().map(|t| t.numel() as i64).sum(),
        })
    }
}

impl Classifier for LoadedModel {
    fn forward_rep(&self, x: &tch::Tensor, train: bool) -> (tch::Tensor, tch::Tensor) {
        match self {
            LoadedModel::TorchScript(m) => m.forward_rep(x, train),
            LoadedModel::Checkpoint(m) => m.forward_rep(x, train),
        }
    }
    fn forward_rep_with(
        &self,
        x: &tch::Tensor,
        train: bool,
        relu: RepRelu,
    ) -> (tch::Tensor, tch::Tensor) {
        match self {
            LoadedModel::TorchScript(m) => m.forward_rep_with(x, train, relu),
            LoadedModel::Checkpoint(m) => m.forward_rep_with(x, train, relu),
        }
    }
    fn has_fake_relu(&self) -> bool {
        match self {
            LoadedModel::TorchScript(m) => m.has_fake_relu(),
            LoadedModel::Checkpoint(m) => m.has_fake_relu(),
        }
    }
    fn num_classes(&self) -> i64 {
        match self {
            LoadedModel::TorchScript(m) => m.num_classes(),
            LoadedModel::Checkpoint(m) => m.num_classes(),
        }
    }
    fn replica(&self) -> Option<Box<dyn Classifier + Send>> {
        match self {
            LoadedModel::TorchScript(m) => m.replica(),
            LoadedModel::Checkpoint(m) => m.replica(),
        }
    }
}

impl ExternalModel {
    /// The file's format ([`ModelFormat::of`]).
    pub fn format(&self) -> ModelFormat {
        ModelFormat::of(&self.path)
    }

    /// "the TorchScript model PATH" / "the nrf checkpoint PATH", for messages.
    pub fn describe(&self) -> String {
        format!("the {} {}", self.format().noun(), self.path.display())
    }

    /// The files the model is read from: the TorchScript file; a checkpoint's weights and spec.
    pub fn files(&self) -> Vec<PathBuf> {
        match self.format() {
            ModelFormat::TorchScript => vec![self.path.clone()],
            ModelFormat::Checkpoint => {
                let (st, js) = nrf_models::checkpoint::paths(&self.path.with_extension(""));
                vec![st, js]
            }
        }
    }

    /// The SHA-256 of the model file (a checkpoint's weights), and what identifies the model's
    /// content: that SHA-256 for TorchScript, a hash of a checkpoint's two files' (weights and
    /// spec). Reads each file once.
    pub fn hashes(&self) -> Result<(String, String)> {
        let shas = self
            .files()
            .iter()
            .map(|f| {
                nrf_data::store::sha256_file(f)
                    .with_context(|| format!("cannot read {}", f.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let fingerprint = match shas.as_slice() {
            [one] => one.clone(),
            _ => crate::pipeline::hash_key(&shas),
        };
        Ok((shas[0].clone(), fingerprint))
    }

    /// Where the model came from, as the metadata of what is built from it records it: the
    /// format and the file as given; for TorchScript, how it is fed.
    pub fn provenance(&self) -> serde_json::Value {
        let file = self.path.display().to_string();
        match self.format() {
            ModelFormat::TorchScript => serde_json::json!({
                "format": ModelFormat::TorchScript,
                "torchscript": file,
                "representation": self.rep.spelling(),
                "mean": self.mean,
                "std": self.std,
            }),
            ModelFormat::Checkpoint => serde_json::json!({
                "format": ModelFormat::Checkpoint,
                "checkpoint": file,
            }),
        }
    }

    /// Loads the model for images of `shape` (C, H, W) onto `device`, unchecked. A checkpoint
    /// must not be given a representation source or a normalisation (its spec has its own),
    /// and must take images of `shape`.
    pub fn load(&self, shape: [i64; 3], device: Device) -> Result<LoadedModel> {
        match self.format() {
            ModelFormat::TorchScript => Ok(LoadedModel::TorchScript(TorchScriptClassifier::load(
                &self.path,
                self.rep.clone(),
                shape,
                &self.mean,
                &self.std,
                device,
            )?)),
            ModelFormat::Checkpoint => {
                if self.rep != RepSource::Tuple || !self.mean.is_empty() || !self.std.is_empty() {
                    bail!(
                        "{}: an nrf checkpoint brings its own representation and normalisation \
                         (its spec, {}): give it no --rep / --mean / --std (in a preset's \
                         [sources], no rep / mean / std)",
                        self.path.display(),
                        self.files()[1].display()
                    );
                }
                let mut m = nrf_models::load_model(&self.path.with_extension(""), device)
                    .with_context(|| format!("loading {}", self.describe()))?;
                m.vs.freeze();
                if m.spec.in_shape != shape {
                    bail!(
                        "{}: the model takes images of shape {:?}, the data set's are {shape:?}",
                        self.path.display(),
                        m.spec.in_shape
                    );
                }
                Ok(LoadedModel::Checkpoint(m))
            }
        }
    }
}

/// The constructions `nrf construct` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Representation matching from a robust model.
    #[value(name = "d_r")]
    DR,
    /// Representation matching from a standard model.
    #[value(name = "d_nr")]
    DNr,
    /// Targeted PGD towards a random class, relabelled.
    #[value(name = "d_rand")]
    DRand,
    /// Targeted PGD towards (y + 1) mod C, relabelled.
    #[value(name = "d_det")]
    DDet,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::DR => "D_R",
            Kind::DNr => "D_NR",
            Kind::DRand => "D_rand",
            Kind::DDet => "D_det",
        }
    }
}

/// The model's accuracy on the first [`CHECK_N`] test images, and whether it passes.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCheck {
    /// Accuracy in [0, 1].
    pub acc: f64,
    /// Its 95% interval.
    pub interval: (f64, f64),
    /// Images.
    pub n: usize,
    /// 1 / classes.
    pub chance: f64,
}

/// Loads the model for `data`'s image shape and checks it on the first [`CHECK_N`] images of
/// `test`: fails when the upper end of the accuracy's 95% interval is below twice chance.
pub fn load_checked(
    m: &ExternalModel,
    test: &Dataset,
    device: Device,
) -> Result<(LoadedModel, ModelCheck)> {
    load_checked_with(m, test, device, "with --mean / --std")
}

/// [`load_checked`] whose near-chance message says where the normalisation is given (`how`,
/// e.g. "with --mean / --std").
pub fn load_checked_with(
    m: &ExternalModel,
    test: &Dataset,
    device: Device,
    how: &str,
) -> Result<(LoadedModel, ModelCheck)> {
    let [c, h, w] = test.shape;
    let model = m.load([c as i64, h as i64, w as i64], device)?;
    let classes = model.num_classes();
    if classes != test.num_classes as i64 {
        bail!(
            "{}: the model has {classes} outputs but the data set {} has {} classes",
            m.path.display(),
            test.name,
            test.num_classes
        );
    }
    let n = CHECK_N.min(test.len());
    let sub = test.subset(&(0..n).collect::<Vec<_>>());
    let (x, y) = dataset_to_tensors(&sub, device);
    let acc = nrf_models::accuracy(&model, &x, &y, 250);
    let a = Accuracy::single(acc, n);
    let i = a.interval();
    let check = ModelCheck {
        acc,
        interval: (i.lo, i.hi),
        n,
        chance: 1.0 / classes as f64,
    };
    if i.hi < 2.0 * check.chance {
        let cause = match m.format() {
            ModelFormat::Checkpoint => {
                "a checkpoint of a model trained on another data set, or not trained".to_string()
            }
            ModelFormat::TorchScript => format!(
                "the usual cause is an input mismatch: nrf feeds images in [0, 1] ({}); give the \
                 model's normalisation {how} if it does not normalise itself, and check the \
                 channel order and image size ({c}x{h}x{w})",
                if m.mean.is_empty() {
                    "unnormalised".to_string()
                } else {
                    format!("normalised with mean {:?} / std {:?}", m.mean, m.std)
                }
            ),
        };
        bail!(
            "{}: accuracy {:.1}% [{:.1}, {:.1}] on the first {n} test images of {} is near chance \
             ({:.1}%): {cause}.",
            m.path.display(),
            100.0 * acc,
            100.0 * i.lo,
            100.0 * i.hi,
            test.name,
            100.0 * check.chance,
        );
    }
    Ok((model, check))
}

/// What `nrf construct` did.
#[derive(Debug, Serialize)]
pub struct Constructed {
    /// The construction.
    pub kind: Kind,
    /// The model's check.
    pub check: ModelCheck,
    /// Images built.
    pub n: usize,
    /// `<out>/<name>.safetensors`.
    pub file: PathBuf,
    /// The construction's summary (relative representation error before / after, or the attack
    /// success rate and distances).
    pub summary: serde_json::Value,
    /// Seconds.
    pub wall_s: f64,
}

/// One construction's inputs: the preset, the source model, the training images and the indices
/// of those built from, the device and the chunk directory (`out/work/<name>`).
struct Build<'a> {
    preset: &'a Preset,
    classifier: &'a LoadedModel,
    kind: Kind,
    train_set: &'a Dataset,
    indices: &'a [usize],
    device: Device,
    work: &'a Path,
}

impl Build<'_> {
    /// D_R / D_NR by representation matching with the preset's `[rep_match]`: the stored set
    /// and the construction's summary.
    fn rep_match(&self) -> Result<(ConstructedDataset, serde_json::Value)> {
        let (kind, name) = (self.kind, self.kind.name());
        let cfg = crate::figure2::rep_config_of(self.preset, "rep-match-starts");
        let built = repmatch::build(
            self.classifier,
            self.train_set,
            self.indices,
            &cfg,
            self.device,
            self.work,
            true,
        )?;
        let s = &built.summary;
        tracing::info!(
            "{name}: relative representation error {:.3} -> {:.3}",
            s.init_rel_err,
            s.final_rel_err
        );
        let method = crate::figure2::rep_method(kind == Kind::DR);
        let stored =
            crate::figure2::rep_stored(name, method, self.train_set, self.indices, &built, &cfg)?;
        Ok((stored, serde_json::to_value(s)?))
    }

    /// D_rand / D_det by targeted PGD with the preset's `[relabel]`: the stored set and the
    /// construction's summary.
    fn relabel(&self) -> Result<(ConstructedDataset, serde_json::Value)> {
        let (kind, name) = (self.kind, self.kind.name());
        let r = &self.preset.relabel;
        let cfg = RelabelConfig {
            rule: if kind == Kind::DRand {
                TargetRule::Random
            } else {
                TargetRule::Deterministic
            },
            eps: r.eps,
            steps: r.steps,
            step_size: r.step_size,
            batch_size: r.batch_size,
            seed: self.preset.stage_seed(&format!("targets:{name}")),
        };
        let built = relabel::build(
            self.classifier,
            self.train_set,
            self.indices,
            &cfg,
            self.device,
            self.work,
            true,
        )?;
        let s = &built.summary;
        tracing::info!(
            "{name}: attack success {:.3}, mean L2 distance {:.3}",
            s.success_rate,
            s.mean_dist_to_x
        );
        let stored = crate::table1::relabel_stored(
            name,
            self.train_set,
            self.indices,
            &built,
            &cfg,
            &TargetedAttack::default(),
        )?;
        Ok((stored, serde_json::to_value(s)?))
    }
}

/// The file in a build's work folder that records what its chunks were built from.
const WORK_KEY: &str = "key.json";

/// Makes `work` the folder of the build whose inputs hash to `key`: a new or empty folder gets
/// the key; a folder with the same key is resumed; a folder holding another build's chunks (other
/// model, settings, images or data), or chunks of unknown origin, is an error naming it, since
/// resuming from it would mix two builds into one set.
fn claim_work_folder(work: &Path, key: &str) -> Result<()> {
    let key_file = work.join(WORK_KEY);
    let recorded = match std::fs::read_to_string(&key_file) {
        Ok(text) => Some(
            serde_json::from_str::<String>(&text)
                .with_context(|| format!("{}: not a build key", key_file.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", key_file.display())),
    };
    match recorded {
        Some(k) if k == key => return Ok(()),
        Some(_) => bail!(
            "{} holds the chunks of another build (another model, other settings or other \
             images); remove it to start over, or give another --out",
            work.display()
        ),
        None => {}
    }
    let has_files = std::fs::read_dir(work)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if has_files {
        bail!(
            "{} holds files of a build that recorded no {WORK_KEY} (an older nrf): remove it to \
             start over, or give another --out",
            work.display()
        );
    }
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    nrf_data::atomic::write_atomic(&key_file, serde_json::to_string(key)?.as_bytes())
        .with_context(|| format!("writing {}", key_file.display()))?;
    Ok(())
}

/// Builds `kind` from the first `n` images of a random subset of the training set (the preset's
/// seed, as the pipeline draws it) with the preset's `[rep_match]` / `[relabel]` settings, into
/// `out` (chunks under `out/work/<name>`, so an interrupted build resumes).
pub fn construct(
    preset: &Preset,
    model: &ExternalModel,
    kind: Kind,
    data_dir: Option<&Path>,
    out: &Path,
    n: Option<usize>,
) -> Result<Constructed> {
    let start = std::time::Instant::now();
    if preset.threads > 0 {
        tch::set_num_threads(preset.threads);
    }
    let device = Device::cuda_if_available();
    let (train_set, test) = load_data(preset, data_dir)?;
    let (classifier, check) = load_checked(model, &test, device)?;
    tracing::info!(
        "{}: accuracy {:.1}% on the first {} test images (chance {:.1}%)",
        model.path.display(),
        100.0 * check.acc,
        check.n,
        100.0 * check.chance
    );
    let name = kind.name();
    let default_n = match kind {
        Kind::DR | Kind::DNr => preset.rep_match.n,
        Kind::DRand | Kind::DDet => preset.relabel.n,
    };
    let n = n.unwrap_or(default_n).min(train_set.len());
    if n == 0 {
        bail!("nrf construct: --n must be at least 1");
    }
    let indices =
        nrf_data::batch::random_subset(train_set.len(), n, preset.stage_seed("construct-subset"))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let work = out.join("work").join(name);
    let (sha, fingerprint) = model.hashes()?;
    // What the chunks under `work` depend on: an interrupted build resumes only with all of it.
    let settings = match kind {
        Kind::DR | Kind::DNr => serde_json::to_value(&preset.rep_match)?,
        Kind::DRand | Kind::DDet => serde_json::to_value(&preset.relabel)?,
    };
    let key = crate::pipeline::hash_key(&(
        fingerprint,
        model.rep.spelling(),
        &model.mean,
        &model.std,
        name,
        &indices,
        &settings,
        crate::pipeline::dataset_fingerprint(&train_set),
    ));
    claim_work_folder(&work, &key)?;
    let build = Build {
        preset,
        classifier: &classifier,
        kind,
        train_set: &train_set,
        indices: &indices,
        device,
        work: &work,
    };
    let (mut stored, summary) = match kind {
        Kind::DR | Kind::DNr => build.rep_match()?,
        Kind::DRand | Kind::DDet => build.relabel()?,
    };
    let meta = &mut stored.metadata;
    meta.source_model_sha256 = Some(sha);
    let mut provenance = model.provenance();
    provenance["check_accuracy"] = check.acc.into();
    meta.extra.insert("source_model".into(), provenance);
    let (file, _) = nrf_data::save_constructed(out.join(name), &stored)?;
    Ok(Constructed {
        kind,
        check,
        n,
        file,
        summary,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// How `nrf eval` runs.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// The name the random draws are seeded by (PGD's random starts: `eval:<name>`; the
    /// ensemble: `ensemble:<name>`), as a run seeds its model of that name: a run whose C_std is
    /// this file (`[sources]`) and `nrf eval --name C_std` on the same preset give the same
    /// numbers. `None`: the file's stem.
    pub name: Option<String>,
    /// Also run the preset's `[eval] ensemble` (when it has one) and its gradient-masking checks.
    pub ensemble: bool,
}

/// A robust accuracy of `nrf eval` (as a run records it: norm, eps, acc, steps, n and, for the
/// ensemble, its attacks) with its 95% Wilson interval over the `n` images.
#[derive(Debug, Clone, Serialize)]
pub struct RobustAcc {
    /// The accuracy, its threat model and attack, as in `models/<name>.json`.
    #[serde(flatten)]
    pub point: RobustPoint,
    /// Its 95% Wilson interval.
    pub interval: (f64, f64),
}

impl RobustAcc {
    fn new(point: RobustPoint) -> Self {
        let i = Accuracy::single(point.acc, point.n).interval();
        RobustAcc {
            point,
            interval: (i.lo, i.hi),
        }
    }
}

/// The attack ensemble's part of `nrf eval`.
#[derive(Debug, Clone, Serialize)]
pub struct EnsembleEval {
    /// Robust accuracy under the whole ensemble (worst case per example).
    pub robust: RobustAcc,
    /// Per attack in order: its description and the robust accuracy after it.
    pub after: Vec<(String, f64)>,
    /// The gradient-masking checks.
    pub checks: EvalChecks,
    /// The checks' flags, one sentence each; empty when every check passes.
    pub flags: Vec<String>,
}

/// What `nrf eval` measured.
#[derive(Debug, Serialize)]
pub struct Evaluated {
    /// The model's check (the first [`CHECK_N`] test images; none for a model nrf trained
    /// itself, `nrf fresh`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<ModelCheck>,
    /// The name the random draws were seeded by ([`EvalOptions::name`]).
    pub name: String,
    /// Standard accuracy on the whole test set.
    pub std_acc: f64,
    /// Its 95% Wilson interval.
    pub std_acc_interval: (f64, f64),
    /// Test images.
    pub test_size: usize,
    /// Robust accuracy at every point of the preset's `[eval]` PGD grid, on the run's
    /// evaluation subset: `robust_n` random test images, the same a run of this preset
    /// evaluates its models on (its `eval-subset` seed).
    pub robust: Vec<RobustAcc>,
    /// The preset's `[eval] ensemble` at `headline_eps` on the same images, with the
    /// gradient-masking checks (None: the preset has none, or `--no-ensemble`).
    pub ensemble: Option<EnsembleEval>,
    /// Seconds.
    pub wall_s: f64,
}

impl Evaluated {
    /// The numbers as a markdown table, with the checks' flags below it.
    pub fn markdown(&self) -> String {
        let pct = |a: f64| format!("{:.1}%", 100.0 * a);
        let row = |what: String, attack: &str, acc: f64, (lo, hi): (f64, f64), n: usize| {
            format!(
                "| {what} | {attack} | {} [{:.1}, {:.1}] | {n} |\n",
                pct(acc),
                100.0 * lo,
                100.0 * hi
            )
        };
        let mut out = format!(
            "| {} | attack | accuracy [95% interval] | images |\n|---|---|---|---|\n",
            self.name
        );
        out += &row(
            "standard".into(),
            "-",
            self.std_acc,
            self.std_acc_interval,
            self.test_size,
        );
        let rows = self
            .robust
            .iter()
            .chain(self.ensemble.iter().map(|e| &e.robust));
        for r in rows {
            let p = &r.point;
            let what = format!("{} eps {}", p.norm, p.eps);
            let attack = p
                .attack
                .clone()
                .unwrap_or_else(|| format!("PGD-{}", p.steps));
            out += &row(what, &attack, p.acc, r.interval, p.n);
        }
        if let Some(e) = &self.ensemble {
            let c = &e.checks;
            out += &format!(
                "\nGradient-masking checks at {} eps {}: PGD-{} {}, an unbounded attack ({} steps) \
                 {}",
                c.norm,
                c.eps,
                c.more_steps,
                pct(c.more_steps_acc),
                c.unbounded_steps,
                pct(c.unbounded_acc)
            );
            if let Some(sq) = c.square_acc {
                out += &format!(", Square alone ({} queries) {}", c.square_queries, pct(sq));
            }
            out += &format!(", two passes' logits differ by {:.1e}: ", c.output_spread);
            if e.flags.is_empty() {
                out += "none raised.\n";
            } else {
                out += "raised:\n";
                for f in &e.flags {
                    out += &format!("- {f}\n");
                }
            }
        }
        out
    }
}

/// Standard accuracy, the preset's PGD grid and (with `opts.ensemble`) its attack ensemble with
/// the gradient-masking checks for an external model, on the images a run of the preset
/// evaluates its own models on.
pub fn eval(
    preset: &Preset,
    model: &ExternalModel,
    data_dir: Option<&Path>,
    opts: &EvalOptions,
) -> Result<Evaluated> {
    let start = std::time::Instant::now();
    if preset.threads > 0 {
        tch::set_num_threads(preset.threads);
    }
    let device = Device::cuda_if_available();
    let (_, test) = load_data(preset, data_dir)?;
    let (classifier, check) = load_checked(model, &test, device)?;
    let name = opts.name.clone().unwrap_or_else(|| {
        model
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let mut e = evaluate(preset, &classifier, &test, device, &name, opts.ensemble)?;
    e.check = Some(check);
    e.wall_s = start.elapsed().as_secs_f64();
    Ok(e)
}

/// Standard accuracy on the whole `test` set, the preset's PGD grid on the run's evaluation
/// subset and (with `ensemble`, when the preset has one) its attack ensemble with the
/// gradient-masking checks, of `classifier`, its random draws seeded as a run seeds model
/// `name` (`eval:<name>`, `ensemble:<name>`): what a run records for a model of that name.
pub fn evaluate(
    preset: &Preset,
    classifier: &dyn Classifier,
    test: &Dataset,
    device: Device,
    name: &str,
    ensemble: bool,
) -> Result<Evaluated> {
    let start = std::time::Instant::now();
    let e = &preset.eval;
    let (x, y) = dataset_to_tensors(test, device);
    let (rx, ry) = test_subset(preset, &x, &y, e.robust_n, EVAL_SUBSET)?;
    // Seeded as a run seeds its stages `eval:<name>` and `ensemble:<name>`.
    tch::manual_seed(preset.stage_seed(&format!("eval:{name}")) as i64);
    let std_acc = nrf_models::accuracy(classifier, &x, &y, e.batch_size as i64);
    let grid = e.grid()?;
    let robust = robust_points(evaluate_grid(
        classifier,
        &rx,
        &ry,
        &grid,
        e.batch_size,
        true,
    )?);
    let ensemble = match (&e.ensemble, ensemble) {
        (Some(ens), true) => {
            let label = format!("ensemble:{name}");
            tch::manual_seed(preset.stage_seed(&label) as i64);
            let out = attack_ensemble(classifier, &rx, &ry, e, ens, &label)?;
            Some(EnsembleEval {
                robust: RobustAcc::new(out.point),
                flags: out.checks.flags(),
                after: out.after,
                checks: out.checks,
            })
        }
        _ => None,
    };
    let i = Accuracy::single(std_acc, test.len()).interval();
    Ok(Evaluated {
        check: None,
        name: name.to_string(),
        std_acc,
        std_acc_interval: (i.lo, i.hi),
        test_size: test.len(),
        robust: robust.into_iter().map(RobustAcc::new).collect(),
        ensemble,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build's work folder is resumed only by the same build: another key, or chunks of
    /// unknown origin, are an error naming the folder; an empty folder is claimed.
    #[test]
    fn a_work_folder_is_resumed_only_by_the_build_that_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work/D_R");
        claim_work_folder(&work, "aaaa").unwrap();
        std::fs::write(work.join("chunk_00000.safetensors"), b"x").unwrap();
        claim_work_folder(&work, "aaaa").unwrap();
        let e = claim_work_folder(&work, "bbbb").unwrap_err().to_string();
        assert!(e.contains("work/D_R") && e.contains("another model"), "{e}");
        std::fs::remove_file(work.join(WORK_KEY)).unwrap();
        let e = claim_work_folder(&work, "aaaa").unwrap_err().to_string();
        assert!(e.contains("recorded no key.json"), "{e}");
        let empty = dir.path().join("work/D_det");
        std::fs::create_dir_all(&empty).unwrap();
        claim_work_folder(&empty, "cccc").unwrap();
        assert!(empty.join(WORK_KEY).exists());
    }
}
