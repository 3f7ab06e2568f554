//! The Rust side of `nrf bench --pipeline`: the stages' shared inputs ([`Inputs`]) and nrf's
//! real stage functions run on them.
use super::{PipelineConfig, Stage, SEED};
use anyhow::{anyhow, bail, Context, Result};
use nrf_attacks::{
    ensemble_evaluation, evaluate_grid, AdvTraining, ApgdConfig, ApgdLoss, AttackWork,
    EnsembleAttack, Linf, PgdConfig, ThreatModel, L2,
};
use nrf_data::Dataset;
use nrf_features::relabel::{choose_targets, RelabelConfig, TargetRule};
use nrf_features::repmatch::{choose_starts, RepMatchConfig, StartMode};
use nrf_models::train::{epoch_order, step_on_device};
use nrf_models::{
    dataset_to_tensors, images_to_tensor, Arch, BatchPerturber, Model, ModelSpec, Sgd,
};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The stages' inputs, shared by both sides.
pub(super) struct Inputs {
    pub(super) train: Dataset,
    pub(super) test_x: Tensor,
    pub(super) test_y: Tensor,
    pub(super) source: Model,
    pub(super) spec: ModelSpec,
    pub(super) rep_targets: Vec<usize>,
    pub(super) relabel_indices: Vec<usize>,
}

fn synthetic(n: usize, seed: i64) -> Dataset {
    // Class-dependent bright band plus noise: learnable, deterministic.
    tch::manual_seed(seed);
    let d = 28 * 28;
    let labels: Vec<i64> = (0..n).map(|i| (i % 10) as i64).collect();
    let noise = Tensor::rand([n as i64, d as i64], (Kind::Float, Device::Cpu)) * 0.5;
    let mut images = Vec::<f32>::try_from(&noise.view([-1])).unwrap_or_default();
    for (i, &y) in labels.iter().enumerate() {
        let lo = i * d + y as usize * 78;
        images[lo..lo + 78].iter_mut().for_each(|v| *v += 0.5);
    }
    Dataset {
        name: "synthetic".into(),
        images,
        labels,
        shape: [1, 28, 28],
        num_classes: 10,
        class_names: vec![],
    }
}

/// The examples `idx` of `d` as a new dataset.
fn pick(d: &Dataset, idx: &[usize], name: &str) -> Dataset {
    let s = d.example_size();
    let mut images = Vec::with_capacity(idx.len() * s);
    for &i in idx {
        images.extend_from_slice(d.image(i));
    }
    Dataset {
        name: name.into(),
        images,
        labels: idx.iter().map(|&i| d.labels[i]).collect(),
        shape: d.shape,
        num_classes: d.num_classes,
        class_names: d.class_names.clone(),
    }
}

impl Inputs {
    pub(super) fn new(cfg: &PipelineConfig, notes: &mut Vec<String>) -> Result<(Inputs, String)> {
        let (train_full, test_full, data) = match cfg.data_dir.as_deref().filter(|d| d.exists()) {
            Some(dir) => (
                nrf_data::idx::load_fashion_mnist(dir, nrf_data::Split::Train)?,
                nrf_data::idx::load_fashion_mnist(dir, nrf_data::Split::Test)?,
                "fashion-mnist".to_string(),
            ),
            None => {
                notes.push(format!(
                    "Fashion-MNIST not found ({}): synthetic images (a class-dependent band plus noise); the timings are still representative, the result values are not",
                    cfg.data_dir
                        .as_ref()
                        .map_or("no folder given".into(), |d| d.display().to_string())
                ));
                (
                    synthetic(cfg.train_images(), 1),
                    synthetic(cfg.test_images(), 2),
                    "synthetic".to_string(),
                )
            }
        };
        if train_full.shape != [1, 28, 28] {
            bail!(
                "bench --pipeline: expects 1x28x28 images, got {:?}",
                train_full.shape
            );
        }
        let n_train = cfg.train_images().min(train_full.len());
        let n_test = cfg.test_images().min(test_full.len());
        let mut ti = epoch_order(train_full.len(), SEED, 0);
        ti.truncate(n_train);
        let mut si = epoch_order(test_full.len(), SEED, 1);
        si.truncate(n_test);
        let train = pick(&train_full, &ti, "bench/train");
        let test = pick(&test_full, &si, "bench/test");
        let (test_x, test_y) = dataset_to_tensors(&test, Device::Cpu);
        let spec = ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], train.num_classes as i64);
        // The attack stages' source model: one epoch of standard training on the whole
        // training set (untimed), so that it classifies like a trained model (which decides how
        // many examples robust evaluation attacks).
        let mut source = Model::new(&spec, Device::Cpu, SEED as i64)?;
        nrf_models::train(
            &mut source,
            &train_full,
            &cfg.train_config(1),
            None,
            None,
            None,
        )
        .context("training the source model of the attack stages")?;
        let source_acc = nrf_models::accuracy(&source, &test_x, &test_y, 500);
        eprintln!(
            "nrf bench --pipeline: source model: 1 epoch on {} images, accuracy {source_acc:.3} on the test subset",
            train_full.len()
        );
        let rep_targets = (0..cfg.rep_images.min(train.len())).collect();
        let relabel_indices = (0..cfg.relabel_images.min(train.len())).collect();
        Ok((
            Inputs {
                train,
                test_x,
                test_y,
                source,
                spec,
                rep_targets,
                relabel_indices,
            },
            data,
        ))
    }

    pub(super) fn rep_config(&self, cfg: &PipelineConfig) -> RepMatchConfig {
        RepMatchConfig {
            steps: cfg.rep_steps,
            step_start: 0.2,
            step_end: 0.002,
            batch_size: cfg.rep_batch,
            distance: nrf_attacks::Distance::L2Squared,
            start: StartMode::OtherImage,
            seed: SEED,
            relu: nrf_models::RepRelu::Fake,
        }
    }

    pub(super) fn relabel_config(&self, cfg: &PipelineConfig) -> RelabelConfig {
        RelabelConfig {
            rule: TargetRule::Random,
            eps: cfg.relabel_eps,
            steps: cfg.relabel_steps,
            step_size: cfg.relabel_step,
            batch_size: cfg.relabel_batch,
            seed: SEED,
        }
    }

    /// Writes what the Python side reads (see experiments/twin/bench_stages.py).
    pub(super) fn write_for_python(&self, cfg: &PipelineConfig, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let write = |name: &str, bytes: &[u8]| {
            nrf_data::store::write_atomic(dir.join(name), bytes)
                .with_context(|| format!("writing {}", dir.join(name).display()))
        };
        write("train_x.f32", &f32s(&self.train.images))?;
        write("train_y.i64", &i64s(&self.train.labels))?;
        write(
            "test_x.f32",
            &f32s(&nrf_models::tensor_to_vec(&self.test_x)?),
        )?;
        write(
            "test_y.i64",
            &i64s(&Vec::<i64>::try_from(&self.test_y.contiguous())?),
        )?;
        let vars = self.source.vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        let (mut blob, mut manifest) = (Vec::new(), Vec::new());
        for name in names {
            let t = &vars[name];
            manifest.push(serde_json::json!([name, t.size(), blob.len()]));
            blob.extend(nrf_models::tensor_to_vec(t)?);
        }
        write("weights.f32", &f32s(&blob))?;
        write("weights.json", serde_json::to_string(&manifest)?.as_bytes())?;
        let rep = self.rep_config(cfg);
        let starts = choose_starts(&self.rep_targets, self.train.len(), rep.seed);
        let rc = self.relabel_config(cfg);
        let ys: Vec<i64> = self
            .relabel_indices
            .iter()
            .map(|&i| self.train.labels[i])
            .collect();
        let targets = choose_targets(&ys, self.train.num_classes as i64, rc.rule, rc.seed);
        let indices = serde_json::json!({
            "rep_targets": self.rep_targets,
            "rep_starts": starts,
            "relabel_indices": self.relabel_indices,
            "relabel_targets": targets,
        });
        write("indices.json", indices.to_string().as_bytes())
    }
}

/// The Rust side of one stage; returns a few result values and, for robust evaluation, the work.
pub(super) fn run_rust_stage(
    stage: Stage,
    cfg: &PipelineConfig,
    inp: &Inputs,
    scratch: &Path,
) -> Result<(serde_json::Value, Option<AttackWork>)> {
    let curve = (cfg.curve_n > 0).then(|| {
        let n = (cfg.curve_n as i64).min(inp.test_x.size()[0]);
        (inp.test_x.narrow(0, 0, n), inp.test_y.narrow(0, 0, n))
    });
    let curve = curve.as_ref().map(|(x, y)| (x, y));
    match stage {
        Stage::TrainStd | Stage::TrainRob => {
            let (n, epochs) = match stage {
                Stage::TrainStd => (cfg.std_images, cfg.std_epochs),
                _ => (cfg.rob_images, cfg.rob_epochs),
            };
            let data = pick(
                &inp.train,
                &(0..n.min(inp.train.len())).collect::<Vec<_>>(),
                "bench",
            );
            let adv = match stage {
                Stage::TrainRob => Some(AdvTraining::new(
                    Box::new(L2::new(cfg.rob_eps)?),
                    PgdConfig::new(cfg.rob_steps, 2.5 * cfg.rob_eps / cfg.rob_steps as f64)
                        .with_random_start(true)
                        .with_use_best(true),
                )?),
                _ => None,
            };
            let mut model = Model::new(&inp.spec, Device::Cpu, SEED as i64)?;
            let h = nrf_models::train(
                &mut model,
                &data,
                &cfg.train_config(epochs),
                adv.as_ref().map(|a| a as &dyn BatchPerturber),
                curve,
                Some(&scratch.join("ckpt")),
            )?;
            let last = h.last().ok_or_else(|| anyhow!("no epoch trained"))?;
            Ok((
                serde_json::json!({"train_loss": last.train_loss, "train_acc": last.train_acc}),
                None,
            ))
        }
        Stage::RepMatch => {
            let r = nrf_features::repmatch::build(
                &inp.source,
                &inp.train,
                &inp.rep_targets,
                &inp.rep_config(cfg),
                Device::Cpu,
                &scratch.join("chunks"),
                false,
            )?;
            Ok((
                serde_json::json!({"final_rel_err": r.summary.final_rel_err}),
                None,
            ))
        }
        Stage::Relabel => {
            let r = nrf_features::relabel::build(
                &inp.source,
                &inp.train,
                &inp.relabel_indices,
                &inp.relabel_config(cfg),
                Device::Cpu,
                &scratch.join("chunks"),
                false,
            )?;
            Ok((
                serde_json::json!({"success_rate": r.summary.success_rate}),
                None,
            ))
        }
        Stage::RobustEval => {
            let n = (cfg.eval_images as i64).min(inp.test_x.size()[0]);
            let (x, y) = (inp.test_x.narrow(0, 0, n), inp.test_y.narrow(0, 0, n));
            let mut grid: Vec<(Box<dyn ThreatModel>, PgdConfig)> = Vec::new();
            for (norm, eps) in cfg.grid() {
                let threat: Box<dyn ThreatModel> = match norm {
                    "L2" => Box::new(L2::new(eps)?),
                    _ => Box::new(Linf::new(eps)?),
                };
                grid.push((threat, PgdConfig::eval(eps, cfg.eval_steps)));
            }
            tch::manual_seed(SEED as i64);
            let evals = evaluate_grid(&inp.source, &x, &y, &grid, cfg.eval_batch, false)?;
            Ok((
                serde_json::json!({"acc": evals.iter().map(|e| e.acc).collect::<Vec<_>>()}),
                None,
            ))
        }
        Stage::Ensemble => {
            let (x, y) = inp.ensemble_images(cfg);
            let r = ensemble_evaluation(
                &inp.source,
                &x,
                &y,
                &L2::new(cfg.ens_eps)?,
                &inp.ensemble_attacks(cfg),
                cfg.eval_batch,
            )?;
            // Robust accuracy after APGD-CE, then after APGD-T (the stage's result).
            let after: Vec<f64> = r.after.iter().map(|(_, acc)| *acc).collect();
            Ok((
                serde_json::json!({"clean": r.clean_acc, "after": after, "acc": r.acc}),
                None,
            ))
        }
    }
}

impl Inputs {
    /// The ensemble stage's test images and labels.
    fn ensemble_images(&self, cfg: &PipelineConfig) -> (Tensor, Tensor) {
        let n = (cfg.ens_images as i64).min(self.test_x.size()[0]);
        (self.test_x.narrow(0, 0, n), self.test_y.narrow(0, 0, n))
    }

    /// APGD-T's target classes: every class but the true one (torchattacks' `APGDT` default).
    fn ensemble_targets(&self) -> usize {
        self.train.num_classes.max(2) - 1
    }

    /// APGD-CE, then APGD-T towards every other class, of `ens_steps` steps each.
    fn ensemble_attacks(&self, cfg: &PipelineConfig) -> Vec<EnsembleAttack> {
        let targets = self.ensemble_targets();
        [ApgdLoss::CrossEntropy, ApgdLoss::DlrTargeted { targets }]
            .into_iter()
            .map(|loss| {
                let mut c = ApgdConfig::new(loss, cfg.ens_steps);
                c.seed = SEED;
                EnsembleAttack::Apgd(c)
            })
            .collect()
    }
}

/// The APGD runs' rows of the ensemble stage, for its nominal FLOPs ([`super::report`]):
/// the clean-correct examples (APGD-CE's), plus the examples left after APGD-CE (from
/// `result`, a Rust run's) once per target class.
pub(super) fn ensemble_rows(
    cfg: &PipelineConfig,
    inp: &Inputs,
    result: &serde_json::Value,
) -> Result<u64> {
    let (_, y) = inp.ensemble_images(cfg);
    let n = y.size()[0] as f64;
    let share = |v: Option<&serde_json::Value>, what: &str| {
        (v.and_then(|v| v.as_f64()))
            .ok_or_else(|| anyhow!("the ensemble stage's result has no {what}"))
    };
    let clean = share(result.get("clean"), "clean accuracy")? * n;
    let after_ce = share(result["after"].get(0), "accuracy after APGD-CE")? * n;
    let targets = inp.ensemble_targets() as f64;
    Ok((clean + after_ce * targets).round() as u64)
}

/// The work of the robust-evaluation stage (one more, untimed, evaluation).
pub(super) fn eval_work(cfg: &PipelineConfig, inp: &Inputs) -> Result<AttackWork> {
    let n = (cfg.eval_images as i64).min(inp.test_x.size()[0]);
    let (x, y) = (inp.test_x.narrow(0, 0, n), inp.test_y.narrow(0, 0, n));
    let mut total = AttackWork::default();
    tch::manual_seed(SEED as i64);
    for (norm, eps) in cfg.grid() {
        let threat: Box<dyn ThreatModel> = match norm {
            "L2" => Box::new(L2::new(eps)?),
            _ => Box::new(Linf::new(eps)?),
        };
        let out = nrf_attacks::robust_evaluation(
            &inp.source,
            &x,
            &y,
            threat.as_ref(),
            &PgdConfig::eval(eps, cfg.eval_steps),
            cfg.eval_batch,
            false,
        )?;
        total.add(&out.work);
    }
    Ok(total)
}

/// Seconds of `steps` bare training steps on one fixed batch of the standard stage's size.
pub(super) fn bare_steps_s(cfg: &PipelineConfig, inp: &Inputs) -> Result<f64> {
    let model = Model::new(&inp.spec, Device::Cpu, SEED as i64)?;
    let mut sgd = Sgd::new(model.vs.trainable_variables(), 0.9, true, 5e-4);
    let n = cfg.std_images.min(inp.train.len());
    let bs = cfg.batch_size.min(n);
    let idx: Vec<usize> = (0..bs).collect();
    let x = images_to_tensor(&inp.train, &idx, Device::Cpu);
    let y = Tensor::from_slice(&idx.iter().map(|&i| inp.train.labels[i]).collect::<Vec<_>>());
    // Full batches only: the same number of example rows as the stage, near enough.
    let steps = cfg.std_epochs * n.div_ceil(bs);
    let t = Instant::now();
    for _ in 0..steps {
        let (loss, _) = step_on_device(&model, &mut sgd, &x, &y, 0.01, None)?;
        drop(loss);
    }
    Ok(t.elapsed().as_secs_f64())
}
