//! Section `init_ablation`: how much of D_R's transferred robustness depends on how the fresh
//! model's weights start. The fresh models of Figure 2 (on D_R, on D_NR, on the clean control) are
//! trained again, from the same sets with the same recipe, under the other initialisation than the
//! preset's `model.init`: PyTorch's defaults (the paper's code) vs tch's (conv / linear weights
//! ~2.45x wider, conv biases 0). Measured first in a PyTorch twin: with tch's scheme the D_R model
//! lost its edge over the clean control.

/// The id of this extra's section (`sections/init_ablation.json`) and job (`extras:init_ablation`).
pub const ID: &str = "init_ablation";
use super::stats::{points, Accuracy, Margin};
use super::{read_model, write_section};
use crate::figure2::{construct_rep, control_set, rep_config, Sources};
use crate::pipeline::{Ctx, ModelJob, TrainingSet};
use anyhow::Result;
use nrf_data::Dataset;
use nrf_models::Init;
use nrf_report::plot::{bar_plot_with_errors, PlotOptions};
use nrf_results::{ModelKind, Verdict};
use nrf_results::{ModelResult, ModelRole, Section, Table, Varies};

/// The initialisation the ablation trains with: the one the preset does not use.
pub fn other(init: Init) -> Init {
    match init {
        Init::Pytorch => Init::Tch,
        Init::Tch => Init::Pytorch,
    }
}

/// Name of the ablation's model on `set` ("D_R", "D_NR", "control") under `init`.
pub fn model_name(init: Init, set: &str) -> String {
    format!("init_{}_on_{set}", init.label())
}

/// Words for the robust-accuracy margin of the D_R model over the control (the one rule of
/// [`nrf_results::uncertainty`]: binomial errors and, for models trained with several seeds,
/// their seed spread): decided either way it is a difference, else it is not distinguishable
/// from noise.
fn margin_words(margin: &Margin) -> String {
    let m = margin.m;
    let sign = if m >= 0.0 { "+" } else { "-" };
    let what = match margin.verdict() {
        Verdict::Holds => "more robust than",
        Verdict::DoesNotHold => "less robust than",
        _ => "within noise of",
    };
    format!(
        "{what} the clean control ({sign}{} ± {} points)",
        points(m.abs()),
        points(margin.se)
    )
}

/// The models of one initialisation: (init, models on D_R, D_NR, the clean control).
type Group<'a> = (Init, &'a [ModelResult]);

/// Figure 2's three models (on D_R, on D_NR, on the clean control) trained again, fully
/// evaluated, under initialisation `alt`, in that order.
fn alt_models(ctx: &mut Ctx, src: &Sources, alt: Init) -> Result<Vec<ModelResult>> {
    let cfg = rep_config(ctx, "rep-match-starts");
    // Cached: the keys of Figure 2's sets (nothing is rebuilt).
    let (c_std, c_rob) = (src.c_std(ctx)?, src.c_rob(ctx)?);
    let k_nr = construct_rep(ctx, "D_NR", "C_std", &c_std, &src.subset, &cfg)?;
    let k_r = construct_rep(ctx, "D_R", "C_rob", &c_rob, &src.subset, &cfg)?;
    let fresh = ctx.preset.fresh.clone();
    let d_r = ctx.load_constructed("D_R")?.dataset;
    let d_nr = ctx.load_constructed("D_NR")?.dataset;
    let (control, k_c) = control_set(ctx, src);
    let worker = ctx.cache.mode.worker;
    // Figure 2's three models, fully evaluated, with the other initialisation.
    let mut train = |set: &str, kind, name: &str, data: &Dataset, key: &str| {
        let role = ModelRole::Extra {
            set: kind,
            varies: Varies::Init,
        };
        let set = TrainingSet {
            name: set,
            data,
            key,
        };
        let job =
            ModelJob::new(&ctx.preset, model_name(alt, name), role, set, &fresh).with_init(alt);
        ctx.model_stage(&job).map(|m| m.result)
    };
    // In the worker's order: on two workers both train them.
    let models = vec![
        ("D_R", ModelKind::DR, "D_R", &d_r, &k_r),
        ("D_NR", ModelKind::DNR, "D_NR", &d_nr, &k_nr),
        ("D_control", ModelKind::Control, "control", &control, &k_c),
    ];
    crate::workers::map_in_order(worker, models, |(set, kind, name, data, key)| {
        train(set, kind, name, data, key)
    })
}

/// The section's table: one row per model of each group (`sets` names their sets), its test
/// accuracy and its robust accuracy at each radius of `eval.l2_eps`; `base` is the preset's
/// initialisation.
fn table(ctx: &Ctx, base: Init, groups: &[Group<'_>], sets: &[&str]) -> Table {
    let l2_eps = &ctx.preset.eval.l2_eps;
    let robust_n = ctx.preset.eval.robust_n.min(ctx.test.len());
    let mut headers: Vec<String> = ["trained on", "initialisation", "model", "test acc"]
        .map(String::from)
        .to_vec();
    headers.extend(l2_eps.iter().map(|e| format!("robust L2 eps={e}")));
    let mut rows = Vec::new();
    for &(init, models) in groups {
        for (set, m) in sets.iter().zip(models) {
            let mut r = vec![
                set.to_string(),
                init.label().to_string(),
                m.name.clone(),
                m.std_accuracy().text(),
            ];
            r.extend(l2_eps.iter().map(|&e| {
                m.robust_accuracy("L2", e)
                    .map(|a| a.text())
                    .unwrap_or("—".into())
            }));
            rows.push(r);
        }
    }
    Table {
        caption: format!(
            "Fresh standard models (the preset's `fresh` recipe) on Figure 2's sets under each \
             initialisation; robust accuracy on {robust_n} test images (L2 PGD, the preset's \
             evaluation), with 95% intervals (several seeds: mean ± sd over seeds). `{}` is the \
             preset's initialisation.",
            base.label()
        ),
        headers,
        rows,
    }
}

/// The section's plot, `plots/init_ablation.png`: each group's robust accuracy (`robust`, at L2
/// `eps`) per set, with 95% intervals. Returns its path under the results dir.
fn plot(
    ctx: &Ctx,
    groups: &[Group<'_>],
    sets: &[&str],
    robust: impl Fn(&ModelResult) -> Accuracy,
    eps: f64,
) -> Result<&'static str> {
    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
    let mut errors: Vec<Vec<(f64, f64)>> = Vec::new();
    for &(init, models) in groups {
        series.push((
            format!("{} init", init.label()),
            models.iter().map(|m| robust(m).value).collect(),
        ));
        errors.push(
            models
                .iter()
                .map(|m| {
                    let i = robust(m).interval();
                    (i.lo, i.hi)
                })
                .collect(),
        );
    }
    let plot = "plots/init_ablation.png";
    let cats: Vec<String> = sets.iter().map(|s| format!("on {s}")).collect();
    bar_plot_with_errors(
        ctx.path(plot),
        &format!("Robust accuracy (L2 eps={eps}) by initialisation (95% intervals)"),
        "robust accuracy",
        &cats,
        &series,
        &errors,
        &PlotOptions::accuracy(),
    )?;
    Ok(plot)
}

/// Trains the three models under the other initialisation, writes `sections/init_ablation.json`
/// and `plots/init_ablation.png`.
pub fn run(ctx: &mut Ctx, src: &Sources) -> Result<()> {
    let base = ctx.preset.model.init;
    let alt = other(base);
    let alt_models = alt_models(ctx, src, alt)?;
    let base_models = [
        read_model(ctx, "on_D_R")?,
        read_model(ctx, "on_D_NR")?,
        read_model(ctx, "on_control")?,
    ];
    let sets = ["D_R", "D_NR", "control"];
    let eps = ctx.preset.eval.headline_eps;
    let robust = |m: &ModelResult| {
        m.robust_accuracy("L2", eps)
            .unwrap_or_else(|| Accuracy::single(f64::NAN, 0))
    };
    let groups: [Group; 2] = [(base, &base_models[..]), (alt, &alt_models[..])];
    let table = table(ctx, base, &groups, &sets);
    let plot = plot(ctx, &groups, &sets, robust, eps)?;
    let finding = finding(
        (base, &base_models[0], &base_models[2]),
        (alt, &alt_models[0], &alt_models[2]),
        robust,
        eps,
    );
    let section = Section {
        id: ID.into(),
        title: "Initialisation: PyTorch's defaults vs tch's".into(),
        claim: "Not in the paper. The paper's code is PyTorch with its default initialisation; \
                tch (the Rust binding nrf trains with) initialises conv and linear weights ~2.45x \
                wider and conv biases at 0. Does the D_R model's robustness — and its edge over a \
                model trained on the same number of clean images — depend on that choice?"
            .into(),
        finding,
        verdict: Verdict::NotApplicable,
        tables: vec![table],
        images: vec![plot.into()],
    };
    write_section(ctx, &section)
}

/// The finding sentence from (init, D_R model, control model) under both initialisations.
fn finding(
    base: (Init, &ModelResult, &ModelResult),
    alt: (Init, &ModelResult, &ModelResult),
    robust: impl Fn(&ModelResult) -> Accuracy,
    eps: f64,
) -> String {
    let part = |(init, on_r, control): (Init, &ModelResult, &ModelResult)| {
        let margin = Margin::between(&robust(on_r), &robust(control));
        format!(
            "under {} initialisation the D_R model reaches {} robust accuracy (L2 PGD, eps={eps}), \
             {}",
            init.label(),
            robust(on_r).text(),
            margin_words(&margin)
        )
    };
    let change_margin = Margin::between(&robust(base.1), &robust(alt.1));
    let (d, se) = (change_margin.m, change_margin.se);
    let change = if change_margin.verdict() != Verdict::Inconclusive {
        format!(
            "switching the initialisation changes the D_R model's robust accuracy by {}{} ± {} \
             points",
            if d >= 0.0 { "-" } else { "+" },
            points(d.abs()),
            points(se)
        )
    } else {
        format!(
            "the D_R model's robust accuracy does not change beyond noise between the two \
             initialisations ({} ± {} points)",
            points(-d),
            points(se)
        )
    };
    let mut s = format!("{}; {}; {change}.", part(base), part(alt));
    // F2d compares the same models under the attack ensemble, which the other initialisation's
    // models do not get: here both initialisations are measured with the same attack (PGD).
    if !base.1.ensemble.is_empty() {
        s.push_str(
            " Both under PGD: Figure 2's F2d decides on the attack ensemble, which only the \
             preset's own models get.",
        );
    }
    if let Some(c) = s.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_swaps() {
        assert_eq!(other(Init::Pytorch), Init::Tch);
        assert_eq!(other(Init::Tch), Init::Pytorch);
        assert_eq!(model_name(Init::Tch, "D_R"), "init_tch_on_D_R");
    }

    /// A model on `set` with robust accuracy `acc` at L2 0.5 (PGD, 1,000 images), and the same
    /// under the attack ensemble when `ensemble`.
    fn model(set: ModelKind, acc: f64, ensemble: bool) -> ModelResult {
        let point = |attack: Option<String>| nrf_results::RobustPoint {
            norm: "L2".into(),
            eps: 0.5,
            acc,
            steps: 20,
            n: 1000,
            attack,
        };
        ModelResult {
            name: format!("on_{set:?}"),
            role: ModelRole::Main(set),
            arch: "fmnist_cnn".into(),
            trained_on: format!("{set:?}"),
            train_size: 10_000,
            adversarial: None,
            epochs: vec![],
            curve_n: None,
            std_acc: 0.85,
            test_size: 10_000,
            robust: vec![point(None)],
            ensemble: if ensemble {
                vec![point(Some("PGD + APGD".into()))]
            } else {
                Vec::new()
            },
            checks: None,
            final_train_acc: Some(1.0),
            wall_s: 1.0,
            seeds: vec![],
            seed_summary: None,
        }
    }

    #[test]
    fn the_finding_names_the_attack_it_compares_under() {
        let robust = |m: &ModelResult| m.robust_accuracy("L2", 0.5).unwrap();
        for ensemble in [true, false] {
            let (r, c) = (
                model(ModelKind::DR, 0.49, ensemble),
                model(ModelKind::Control, 0.42, ensemble),
            );
            let (tr, tc) = (
                model(ModelKind::DR, 0.40, false),
                model(ModelKind::Control, 0.38, false),
            );
            let f = finding((Init::Pytorch, &r, &c), (Init::Tch, &tr, &tc), robust, 0.5);
            assert!(f.starts_with("Under pytorch initialisation"), "{f}");
            assert!(f.contains("robust accuracy (L2 PGD, eps=0.5)"), "{f}");
            // The note on F2d's attack only where the preset's models have the ensemble.
            assert_eq!(
                f.contains("F2d decides on the attack ensemble"),
                ensemble,
                "{f}"
            );
        }
    }

    #[test]
    fn margin_words_follow_noise() {
        let words = |m, se| margin_words(&Margin::known(m, se));
        assert!(words(0.10, 0.02).starts_with("more robust"));
        assert!(words(-0.10, 0.02).starts_with("less robust"));
        assert!(words(0.03, 0.02).starts_with("within noise"));
        // Three seeds whose spread dominates: 2.6 SE is not enough (t95 at 2 df is 4.30).
        let seeds = Accuracy::with_seeds(&[0.52, 0.56, 0.60], 100_000);
        let m = Margin::between(&seeds, &Accuracy::single(0.50, 100_000));
        assert!(m.m > 2.0 * m.se && m.critical() > 4.0, "{m:?}");
        assert!(margin_words(&m).starts_with("within noise"), "{m:?}");
    }
}
