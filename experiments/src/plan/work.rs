//! The work of one stage (image-passes, [`Passes`]) and the walk's bookkeeping ([`Builder`]):
//! each stage once, its passes as the pipeline module that runs it would do them.
use super::StagePlan;
use crate::preset::{Preset, TrainSection};
use nrf_models::flops::Cost;
use nrf_models::Arch;
use nrf_results::ModelRole;
use std::collections::BTreeMap;

/// Image-passes of a stage.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Passes {
    pub(super) fwd: f64,
    pub(super) train_bwd: f64,
    pub(super) input_bwd: f64,
}

impl Passes {
    pub(super) fn scaled(self, k: f64) -> Passes {
        Passes {
            fwd: self.fwd * k,
            train_bwd: self.train_bwd * k,
            input_bwd: self.input_bwd * k,
        }
    }
    pub(super) fn plus(self, o: Passes) -> Passes {
        Passes {
            fwd: self.fwd + o.fwd,
            train_bwd: self.train_bwd + o.train_bwd,
            input_bwd: self.input_bwd + o.input_bwd,
        }
    }
    pub(super) fn flops(&self, c: &Cost) -> f64 {
        self.fwd * c.forward_flops()
            + self.train_bwd * c.train_backward_flops()
            + self.input_bwd * c.input_backward_flops()
    }
    /// `n` images × `steps` attack steps (forward + input gradient each).
    pub(super) fn attack(n: usize, steps: usize) -> Passes {
        let k = (n * steps) as f64;
        Passes {
            fwd: k,
            train_bwd: 0.0,
            input_bwd: k,
        }
    }
    pub(super) fn forward(n: usize) -> Passes {
        Passes {
            fwd: n as f64,
            ..Passes::default()
        }
    }
}

/// The stages as the pipeline would run them, each once.
pub(super) struct Builder<'a> {
    pub(super) p: &'a Preset,
    pub(super) test_n: usize,
    /// Models whose `eval:` stage is a full one (robust accuracy too).
    full_evals: std::collections::BTreeSet<String>,
    pub(super) stages: Vec<(StagePlan, Passes, Arch)>,
    /// Stage name -> index (a stage the run shares is counted once).
    seen: BTreeMap<String, usize>,
    /// The source model file (`[sources]`, "C_std" / "C_rob") the stages pushed now run
    /// on ([`Builder::on_source`]); None: the preset's own architecture.
    source: Option<String>,
    /// The part of the run the stages pushed now belong to ([`Builder::in_part`]).
    part: &'static str,
}

impl<'a> Builder<'a> {
    /// An empty walk over `p`'s run with `test_n` test images.
    pub(super) fn new(p: &'a Preset, test_n: usize) -> Builder<'a> {
        Builder {
            p,
            test_n,
            full_evals: Default::default(),
            stages: Vec::new(),
            seen: BTreeMap::new(),
            source: None,
            part: super::CORE_PART,
        }
    }

    /// Runs `push_stages` with the stages it pushes counted in the part `part` of the run (an
    /// extra's section id); a stage an earlier part pushed stays in that part.
    pub(super) fn in_part(&mut self, part: &'static str, push_stages: impl FnOnce(&mut Self)) {
        let before = std::mem::replace(&mut self.part, part);
        push_stages(self);
        self.part = before;
    }

    /// Runs `push_stages` with the stages it pushes marked as running on the source model
    /// `model` ("C_std" / "C_rob") when the preset names a model file for it
    /// (`[sources]`); their cost is then that file's, measured by [`crate::plan`].
    pub(super) fn on_source(&mut self, model: &str, push_stages: impl FnOnce(&mut Self)) {
        let before = self.source.take();
        self.source = self.p.sources.of(model).map(|_| model.to_string());
        push_stages(self);
        self.source = before;
    }

    #[allow(clippy::too_many_arguments)] // one stage's row: name, kind, model, size, words, seeds, passes
    pub(super) fn push(
        &mut self,
        name: String,
        kind: &str,
        arch: &Arch,
        images: usize,
        work: String,
        seeds: usize,
        per_seed: Passes,
    ) {
        if self.seen.contains_key(&name) {
            return;
        }
        self.seen.insert(name.clone(), self.stages.len());
        let total = per_seed.scaled(seeds as f64);
        let plan = StagePlan {
            name,
            kind: kind.into(),
            part: self.part.into(),
            arch: arch.label(),
            source: self.source.clone(),
            images,
            work,
            seeds,
            forward: total.fwd,
            train_backward: total.train_bwd,
            input_backward: total.input_bwd,
            flops: 0.0,
            seconds: 0.0,
        };
        self.stages.push((plan, total, arch.clone()));
    }

    /// `train:<name>` and `eval:<name>` (and `ensemble:<name>` for a full evaluation), as
    /// [`crate::pipeline::Ctx::model_stage`] runs them for a model of role `role` (which decides
    /// its seeds: [`crate::pipeline::seeds_for`]).
    pub(super) fn model(
        &mut self,
        name: &str,
        role: ModelRole,
        arch: &Arch,
        n: usize,
        section: &TrainSection,
        full: bool,
    ) {
        let seeds = crate::pipeline::seeds_for(role, self.p.fresh_seeds());
        self.model_seeds(name, role, arch, n, section, full, seeds);
    }

    /// [`Builder::model`] with `seeds` seeds whatever the role (an extra's own models,
    /// [`crate::pipeline::ModelJob::with_seeds`]).
    #[allow(clippy::too_many_arguments)] // Builder::model's row and the seeds
    pub(super) fn model_seeds(
        &mut self,
        name: &str,
        role: ModelRole,
        arch: &Arch,
        n: usize,
        section: &TrainSection,
        full: bool,
        seeds: usize,
    ) {
        let curve = self.p.eval.curve_images(self.test_n, n);
        let e = section.epochs;
        let step = Passes {
            fwd: 1.0,
            train_bwd: 1.0,
            input_bwd: 0.0,
        };
        let (per_image, words) = match &section.attack {
            Some(a) => (
                // k attack steps, the best iterate's forward, then the training step.
                Passes::attack(1, a.steps)
                    .plus(Passes::forward(1))
                    .plus(step),
                format!(
                    "{e} ep x (PGD-{}: {} fwd + {} bwd_x, then fwd + bwd)",
                    a.steps,
                    a.steps + 1,
                    a.steps
                ),
            ),
            None => (step, format!("{e} ep x (fwd + bwd)")),
        };
        // Per epoch: the images, and the curve's test images every `every` epochs and after
        // the last; then the final training accuracy.
        let every = crate::preset::EvalSection::curve_every(curve, n);
        let curves = e / every + usize::from(!e.is_multiple_of(every));
        let passes = per_image
            .scaled((n * e) as f64)
            .plus(Passes::forward(curve * curves))
            .plus(Passes::forward(n));
        let words = if every == 1 {
            format!("{words}; curve {curve} fwd/ep")
        } else {
            format!("{words}; curve {curve} fwd every {every} ep")
        };
        self.push(
            format!("train:{name}"),
            "train",
            arch,
            n,
            words,
            seeds,
            passes,
        );
        self.eval(name, role, arch, full, seeds);
    }

    /// `eval:<name>` (the robust-accuracy grid too when `full`), and `ensemble:<name>` for a full
    /// evaluation of a model whose robustness a claim uses
    /// ([`crate::pipeline::claims_robustness`], as the pipeline decides).
    pub(super) fn eval(
        &mut self,
        name: &str,
        role: ModelRole,
        arch: &Arch,
        full: bool,
        seeds: usize,
    ) {
        let stage = format!("eval:{name}");
        // A standard-only request after a full evaluation is met by it; a full one after a
        // standard-only one replaces it (the pipeline runs the full evaluation then).
        if let Some(&i) = self.seen.get(&stage) {
            if !full || self.full_evals.contains(name) {
                return;
            }
            self.seen.remove(&stage);
            self.stages.remove(i);
            for v in self.seen.values_mut() {
                if *v > i {
                    *v -= 1;
                }
            }
        }
        let e = &self.p.eval;
        if full {
            self.full_evals.insert(name.to_string());
        }
        let mut passes = Passes::forward(self.test_n);
        let mut words = format!("{} test fwd", self.test_n);
        let mut images = self.test_n;
        if full {
            let points = e
                .grid()
                .map(|g| g.len())
                .unwrap_or(e.l2_eps.len() + e.linf_eps.len());
            let r = e.robust_n.min(self.test_n);
            // Per grid point: the clean check, the steps, the final check.
            passes = passes.plus(
                Passes::forward(2 * r)
                    .plus(Passes::attack(r, e.steps))
                    .scaled(points as f64),
            );
            words = format!(
                "{words}; {points} eps x {r} img x PGD-{} (upper bound)",
                e.steps
            );
            images = self.test_n.max(r);
        }
        self.push(stage, "eval", arch, images, words, seeds, passes);
        if full && crate::pipeline::claims_robustness(role) {
            self.ensemble(name, arch, seeds);
        }
    }

    /// `ensemble:<name>` ([`crate::pipeline`]'s ensemble stage and its gradient-masking checks).
    pub(super) fn ensemble(&mut self, name: &str, arch: &Arch, seeds: usize) {
        let Some(ens) = self.p.eval.ensemble.clone() else {
            return;
        };
        let e = &self.p.eval;
        let r = e.robust_n.min(self.test_n);
        let mut steps = e.steps; // PGD first
        for m in &ens.attacks {
            steps += match m {
                crate::preset::EnsembleMember::ApgdCe | crate::preset::EnsembleMember::ApgdDlr => {
                    ens.steps * ens.restarts
                }
                crate::preset::EnsembleMember::ApgdT => ens.steps * ens.restarts * ens.targets,
                crate::preset::EnsembleMember::Square => 0,
            };
        }
        // Checks: PGD with 5x the steps, an unbounded attack of 100 steps, two forward passes.
        steps += 5 * e.steps + 100;
        let square = if ens.attacks.contains(&crate::preset::EnsembleMember::Square) {
            2 * ens.square_queries
        } else {
            ens.square_queries
        };
        let passes = Passes::attack(r, steps).plus(Passes::forward(r * (square + 2)));
        let words =
            format!("{r} img x {steps} attack steps + {square} Square queries (upper bound)");
        self.push(
            format!("ensemble:{name}"),
            "ensemble",
            arch,
            r,
            words,
            seeds,
            passes,
        );
    }

    /// `construct:<name>` by representation matching ([`crate::figure2::construct_rep`]) from
    /// the model `source` ("C_std" for D_NR, "C_rob" for D_R).
    pub(super) fn rep(&mut self, name: &str, n: usize, source: &str) {
        let r = &self.p.rep_match;
        let passes = Passes::attack(n, r.steps).plus(Passes::forward(3 * n));
        let words = format!("{} steps x (fwd + bwd_x) + 3 fwd", r.steps);
        let arch = self.p.model.arch.clone();
        self.on_source(source, |b| {
            b.push(
                format!("construct:{name}"),
                "construct",
                &arch,
                n,
                words,
                1,
                passes,
            )
        });
    }

    /// `construct:<name>` by targeted PGD ([`crate::table1::construct_spec`]) on C_std with the
    /// preset's steps.
    pub(super) fn relabel(&mut self, name: &str, n: usize) {
        let arch = self.p.model.arch.clone();
        let steps = self.p.relabel.steps;
        self.on_source("C_std", |b| b.targeted(name, n, &arch, steps, 1));
    }

    /// `construct:<name>` by targeted PGD of `steps` steps on a source model of architecture
    /// `arch`, its objective averaged over `copies` transformed copies of each image (EOT; 1 =
    /// the image itself).
    pub(super) fn targeted(
        &mut self,
        name: &str,
        n: usize,
        arch: &Arch,
        steps: usize,
        copies: usize,
    ) {
        let passes = Passes::attack(n, steps * copies).plus(Passes::forward(2 * n));
        let words = if copies > 1 {
            format!("{steps} steps x {copies} EOT copies x (fwd + bwd_x) + 2 fwd")
        } else {
            format!("{steps} steps x (fwd + bwd_x) + 2 fwd")
        };
        self.push(
            format!("construct:{name}"),
            "construct",
            arch,
            n,
            words,
            1,
            passes,
        );
    }
}
