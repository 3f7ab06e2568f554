//! Evaluation of a trained model: accuracy, robust accuracy on the PGD grid (sliced in shard
//! jobs), and the attack ensemble.
use super::{Ctx, Ensembled, EvalLevel, Evaluated};
use crate::preset::{EnsembleSection, EvalSection};
use anyhow::{bail, Result};
use nrf_attacks::{ensemble_evaluation, evaluate_grid, EnsembleAttack, L2};
use nrf_features::chunks::{self, Shard, SliceWritten};
use nrf_models::Classifier;
use nrf_results::{EvalChecks, ModelResult, RobustPoint};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

/// The results' robust points of a grid evaluation (after its gradient-masking warnings).
/// The PGD grid's points as they are, after logging the gradient-masking warnings of
/// [`nrf_attacks::sanity_check`].
pub fn robust_points(evals: Vec<RobustPoint>) -> Vec<RobustPoint> {
    for w in nrf_attacks::sanity_check(&evals) {
        tracing::warn!("gradient-masking check: {w}");
    }
    evals
}

impl Ctx {
    /// Standard accuracy on the whole real test set.
    pub fn standard_accuracy(&self, model: &dyn Classifier) -> f64 {
        nrf_models::accuracy(
            model,
            &self.test_x,
            &self.test_y,
            self.preset.eval.batch_size as i64,
        )
    }

    /// Evaluates the model `result` describes, whose weights have the key `key`: stage
    /// `eval:<name>` at `level` and, after a full evaluation, `ensemble:<name>` when the preset
    /// has an `[eval] ensemble` and the model's robustness decides a claim
    /// ([`super::claims_robustness`]); fills in `result`'s accuracies, checks and wall time.
    pub(super) fn evaluate_into(
        &mut self,
        result: &mut ModelResult,
        key: &str,
        level: EvalLevel,
    ) -> Result<()> {
        let name = result.name.clone();
        let (evaluated, full) = self.eval_stage(&name, key, level)?;
        let (ensemble, checks) = match (full, self.preset.eval.ensemble.clone()) {
            (true, Some(ens)) if super::claims_robustness(result.role) => {
                self.ensemble_stage(&name, key, &ens)?
            }
            _ => (Vec::new(), None),
        };
        result.std_acc = evaluated.std_acc;
        result.robust = evaluated.robust;
        result.ensemble = ensemble;
        result.checks = checks;
        result.wall_s += evaluated.wall_s;
        Ok(())
    }

    /// The stage `ensemble:<name>`: [`attack_ensemble`] of the trained model `name` on the
    /// evaluation subset, libtorch's generator seeded with the stage's seed. Cached on the
    /// weights' key and the evaluation settings.
    pub(super) fn ensemble_stage(
        &mut self,
        name: &str,
        train_key: &str,
        ens: &EnsembleSection,
    ) -> Result<(Vec<RobustPoint>, Option<EvalChecks>)> {
        let e = self.preset.eval.clone();
        let key = (train_key, "ensemble", &e);
        let stage = format!("ensemble:{name}");
        let (out, _) = self.stage(&stage, &key, |ctx, _| {
            let start = Instant::now();
            let model = ctx.load_classifier(name)?;
            tch::manual_seed(ctx.preset.stage_seed(&stage) as i64);
            let out = attack_ensemble(
                model.as_ref(),
                &ctx.robust_x,
                &ctx.robust_y,
                &e,
                ens,
                &stage,
            )?;
            // The stage's time includes loading the model.
            Ok(Ensembled {
                wall_s: start.elapsed().as_secs_f64(),
                ..out
            })
        })?;
        Ok((vec![out.point], Some(out.checks)))
    }

    /// Standard accuracy on the whole test set and robust accuracy on the evaluation subset.
    pub fn evaluate(&self, model: &dyn Classifier) -> Result<(f64, Vec<RobustPoint>)> {
        let e = &self.preset.eval;
        let std_acc = self.standard_accuracy(model);
        let grid = e.grid()?;
        let evals = evaluate_grid(
            model,
            &self.robust_x,
            &self.robust_y,
            &grid,
            e.batch_size,
            self.progress,
        )?;
        Ok((std_acc, robust_points(evals)))
    }

    /// The evaluation subset's batches of `[eval] batch_size` (the units of an evaluation's
    /// shard slices).
    fn eval_batches(&self) -> (usize, usize) {
        let n = self.robust_y.size()[0] as usize;
        let bs = self.preset.eval.batch_size.max(1);
        (n, n.div_ceil(bs))
    }

    /// Shard `shard` of [`Ctx::evaluate`]'s robust-accuracy grid: the robust mask of the shard's
    /// batches at every grid point (`[rows, grid points]`, uint8), stored as the shard's slice
    /// in `work`; returns [`SliceWritten`]. A slice already stored is checked and kept.
    fn evaluate_slice(
        &self,
        model: &dyn Classifier,
        work: &Path,
        shard: Shard,
    ) -> Result<SliceWritten> {
        let (n, n_batches) = self.eval_batches();
        if let Some(path) = chunks::check_existing_slice(work, shard, n_batches)? {
            return Ok(SliceWritten {
                shard,
                path,
                computed: 0,
            });
        }
        let e = &self.preset.eval;
        let grid = e.grid()?;
        let batches = shard.range(n_batches);
        let rows = nrf_attacks::batch_rows(n, e.batch_size, batches.clone());
        let masks = nrf_attacks::evaluate_grid_slice(
            model,
            &self.robust_x,
            &self.robust_y,
            &grid,
            e.batch_size,
            batches.clone(),
            self.progress,
        )?;
        let robust = if masks.is_empty() {
            Tensor::zeros([rows.len() as i64, 0], (tch::Kind::Uint8, Device::Cpu))
        } else {
            Tensor::stack(&masks, 1).to_kind(tch::Kind::Uint8)
        };
        let unit_rows: Vec<i64> = batches
            .clone()
            .map(|b| nrf_attacks::batch_rows(n, e.batch_size, b..b + 1).len() as i64)
            .collect();
        let tensors = if rows.is_empty() {
            Vec::new()
        } else {
            vec![("robust".to_string(), robust)]
        };
        let path = chunks::write_slice(
            work,
            shard,
            batches.clone(),
            n_batches,
            &unit_rows,
            batches.len(),
            tensors,
        )?;
        Ok(SliceWritten {
            shard,
            path,
            computed: batches.len(),
        })
    }

    /// [`Ctx::evaluate`], from the shard slices in `work` when there are any (all of them must
    /// be: see [`chunks::merge_slices`]); equal to the whole-set evaluation bit for bit on CPU.
    fn evaluate_or_merge(
        &self,
        model: &dyn Classifier,
        work: &Path,
        what: &str,
    ) -> Result<(f64, Vec<RobustPoint>)> {
        let (n, n_batches) = self.eval_batches();
        let Some(merged) = chunks::merge_slices(work, n_batches, what)? else {
            return self.evaluate(model);
        };
        let grid = self.preset.eval.grid()?;
        let robust = merged.get("robust")?;
        if robust.size() != [n as i64, grid.len() as i64] {
            bail!(
                "{what}: the merged slices hold robust masks of shape {:?}, expected [{n}, {}]",
                robust.size(),
                grid.len()
            );
        }
        tracing::info!("{what}: merged {} shard slices", merged.shards);
        let std_acc = self.standard_accuracy(model);
        let evals = grid
            .iter()
            .enumerate()
            .map(|(g, (threat, cfg))| {
                let count = robust
                    .select(1, g as i64)
                    .to_kind(tch::Kind::Int64)
                    .sum(tch::Kind::Int64)
                    .int64_value(&[]);
                // As the whole-set evaluation: robust rows over rows.
                let acc = if n == 0 { 0.0 } else { count as f64 / n as f64 };
                tracing::info!(
                    norm = threat.name(),
                    eps = threat.eps(),
                    steps = cfg.steps,
                    acc,
                    "robust accuracy"
                );
                RobustPoint {
                    norm: threat.name().to_string(),
                    eps: threat.eps(),
                    acc,
                    steps: cfg.steps,
                    n,
                    attack: None,
                }
            })
            .collect();
        Ok((std_acc, robust_points(evals)))
    }

    /// The stage `eval:<name>` of the trained model `name` (training key `train_key`) at
    /// `level`: the result and whether it is a full evaluation. Its robust-accuracy grid is
    /// sharded in shard jobs ([`Mode::shard`]) and merged from their slices by the next run.
    pub(super) fn eval_stage(
        &mut self,
        name: &str,
        train_key: &str,
        level: EvalLevel,
    ) -> Result<(Evaluated, bool)> {
        // A standard-only request is met by a full evaluation of the same weights, so extras
        // that reuse a Figure 2 / Table 1 model never replace its robust numbers.
        let eval_name = format!("eval:{name}");
        // The ensemble is its own stage: adding one to a preset does not redo the PGD grid.
        let eval_cfg = EvalSection {
            ensemble: None,
            ..self.preset.eval.clone()
        };
        let full_key = (train_key, EvalLevel::Full, &eval_cfg);
        let std_key = (train_key, EvalLevel::Standard, eval_cfg.batch_size);
        let reuse = match level {
            EvalLevel::Standard => self.cache.cached::<Evaluated>(&eval_name, &full_key),
            EvalLevel::Full => None,
        };
        // A standard-only request met by a full evaluation keeps the full results, the
        // ensemble's included (its stage is then cached too).
        let full = level == EvalLevel::Full || reuse.is_some();
        let evaluated = match reuse {
            Some((e, _, _)) => {
                tracing::info!("{eval_name}: cached (full evaluation)");
                e
            }
            None => {
                let run = |ctx: &mut Ctx, work: &Path| -> Result<Evaluated> {
                    let start = Instant::now();
                    // PGD's random starts from the stage's own seed: the same numbers whether
                    // or not training ran first.
                    let model = ctx.load_classifier(name)?;
                    tch::manual_seed(ctx.preset.stage_seed(&format!("eval:{name}")) as i64);
                    let model = model.as_ref();
                    let (std_acc, robust) = match (level, ctx.cache.mode.shard) {
                        // A shard job: the shard's slice of the grid, merged by a later run.
                        (EvalLevel::Full, Some(shard)) => {
                            return Err(ctx.evaluate_slice(model, work, shard)?.into())
                        }
                        (EvalLevel::Full, None) => {
                            ctx.evaluate_or_merge(model, work, &format!("eval:{name}"))?
                        }
                        (EvalLevel::Standard, _) => (ctx.standard_accuracy(model), Vec::new()),
                    };
                    Ok(Evaluated {
                        std_acc,
                        robust,
                        wall_s: start.elapsed().as_secs_f64(),
                    })
                };
                match level {
                    EvalLevel::Full => self.stage(&eval_name, &full_key, run)?.0,
                    EvalLevel::Standard => self.stage(&eval_name, &std_key, run)?.0,
                }
            }
        };
        Ok((evaluated, full))
    }

    /// The full evaluation of the trained model `name` (training key `train_key`), as
    /// [`Ctx::model_stage`] runs it; in a shard job its slice (the error [`SliceWritten`]).
    pub fn evaluate_stage(&mut self, name: &str, train_key: &str) -> Result<()> {
        self.eval_stage(name, train_key, EvalLevel::Full)
            .map(|_| ())
    }
}

/// Robust accuracy of `model` on the images `x` / `y` under the `[eval] ensemble` `ens` at the
/// headline threat model (L2, `e.headline_eps`): PGD as in the grid, then every attack of the
/// ensemble on the examples still robust (worst case per example); and the gradient-masking
/// checks ([`EvalChecks`]: PGD with 5x the steps, an unbounded attack, two forward passes, the
/// black-box Square attack alone). Draws from libtorch's generator (seed it first for a
/// reproducible result); raised flags are logged as warnings prefixed with `label`. The
/// `ensemble:<name>` stage of a run and `nrf eval` both compute it.
pub fn attack_ensemble(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    e: &EvalSection,
    ens: &EnsembleSection,
    label: &str,
) -> Result<Ensembled> {
    let start = Instant::now();
    let eps = e.headline_eps;
    let threat = L2::new(eps)?;
    let pgd = e.pgd_at(eps);
    let mut attacks = vec![EnsembleAttack::Pgd(pgd)];
    attacks.extend(ens.attacks());
    let r = ensemble_evaluation(model, x, y, &threat, &attacks, e.batch_size)?;
    tracing::info!(
        "{label}: the checks (PGD-{}, an unbounded attack{})",
        5 * e.steps,
        if ens.square_queries > 0 {
            ", Square"
        } else {
            ""
        }
    );
    // Gradient-masking checks (AutoAttack's spirit): more PGD steps must not raise the robust
    // accuracy, an unbounded attack must reach ~0, the output must not be random.
    let more_steps = 5 * e.steps;
    let mut more = pgd;
    more.steps = more_steps;
    more.step_size = nrf_attacks::StepSize::Constant(e.step_factor * eps / more_steps as f64);
    let more_acc =
        nrf_attacks::robust_evaluation(model, x, y, &threat, &more, e.batch_size, false)?.acc;
    let unbounded_steps = 100;
    let unbounded =
        nrf_attacks::unbounded_attack_accuracy(model, x, y, unbounded_steps, e.batch_size)?;
    // Two passes in row blocks (`logits_by_rows`): on an accelerator a whole subset of large
    // images in one pass would need all its activations at once.
    let output_spread = {
        let a = nrf_attacks::logits_by_rows(model, x);
        let b = nrf_attacks::logits_by_rows(model, x);
        (a - b).abs().max().double_value(&[])
    };
    // The black-box check: Square alone must not beat the white-box attacks.
    let square_acc = if ens.square_queries > 0 {
        let cfg = nrf_attacks::SquareConfig::new(ens.square_queries);
        let fooled = nrf_attacks::square(model, x, y, &threat, &cfg)?.fooled;
        Some(
            1.0 - fooled
                .to_kind(tch::Kind::Double)
                .mean(tch::Kind::Double)
                .double_value(&[]),
        )
    } else {
        None
    };
    let n = y.size()[0] as usize;
    let checks = EvalChecks {
        square_queries: ens.square_queries,
        square_acc,
        norm: "L2".into(),
        eps,
        n,
        pgd_steps: e.steps,
        pgd_acc: r.after[0].1,
        more_steps,
        more_steps_acc: more_acc,
        ensemble_acc: r.acc,
        unbounded_steps,
        unbounded_acc: unbounded,
        output_spread,
    };
    for f in checks.flags() {
        tracing::warn!("{label}: {f}");
    }
    let steps: Vec<String> = r
        .after
        .iter()
        .zip(&r.fooled_by)
        .map(|((a, acc), k)| format!("{a}: {acc:.4} ({k} more fooled)"))
        .collect();
    tracing::info!("{label}: L2 eps {eps}: {}", steps.join(" -> "));
    Ok(Ensembled {
        point: RobustPoint {
            norm: "L2".into(),
            eps,
            acc: r.acc,
            steps: ens.steps,
            n,
            attack: Some(
                attacks
                    .iter()
                    .map(|a| a.describe())
                    .collect::<Vec<_>>()
                    .join(" + "),
            ),
        },
        after: r.after,
        checks,
        wall_s: start.elapsed().as_secs_f64(),
    })
}
