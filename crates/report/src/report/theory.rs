//! The theory section: rendered from the typed [`TheorySummary`] of `theory/theory.json` and the
//! figures under `theory/`.
use super::{title, Ctx};
use crate::doc::{Block, DocSection, DocTable, Status};
use crate::paper::fmt_num;
use crate::results::theory::{
    CirclesResults, ConstrainedRow, McEstimate, RunConfig, TheorySummary, Thm1Results, Thm2Results,
    Thm3Results,
};
use crate::theory_figures::THEORY_FIGURES;

/// Captions of the figures [`crate::theory_figures::draw_theory_figures`] writes.
const CAPTIONS: [&str; 4] = [
    "Figure 4: the ε-constrained robust MLE (solid) against Theorem 2's closed form at the matched λ (dashed), per ε, and how Σ_ε and μ_ε change with ε.",
    "Theorem 1: loss increase under the penalty adversary against the condition number of Σ* at fixed trace (closed form and Monte Carlo).",
    "Theorem 3: alignment of the robust classifier's input gradient with μ, along Theorem 2's closed form and along the ε-constrained fits.",
    "Reviewer 2: the make_circles sample and the robust usefulness of x₁, x₂ and the radius.",
];

/// A number as the report writes every theory number: scientific below 1e-3 or from 1e6, else
/// at most 6 decimals.
fn num(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{f:.3e}")
    } else {
        fmt_num((f * 1e6).round() / 1e6)
    }
}

fn count(n: usize) -> String {
    num(n as f64)
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "—".into())
}

fn list(v: &[f64]) -> String {
    format!(
        "[{}]",
        v.iter().map(|x| num(*x)).collect::<Vec<_>>().join(", ")
    )
}

fn matrix(m: &[Vec<f64>]) -> String {
    format!(
        "[{}]",
        m.iter().map(|r| list(r)).collect::<Vec<_>>().join(", ")
    )
}

fn table(caption: &str, headers: &[&str], rows: Vec<Vec<String>>) -> DocTable {
    DocTable {
        caption: caption.into(),
        headers: headers.iter().map(|h| h.to_string()).collect(),
        rows,
        verdict_cols: vec![],
        left_align: false,
    }
}

/// A key / value table.
fn fields(caption: &str, rows: Vec<(&str, String)>) -> Block {
    Block::Table(DocTable {
        left_align: true,
        ..table(
            caption,
            &["Field", "Value"],
            rows.into_iter().map(|(k, v)| vec![k.into(), v]).collect(),
        )
    })
}

/// A table, folded away when it has more than 12 rows.
fn long(t: DocTable) -> Block {
    if t.rows.len() > 12 {
        Block::Details {
            summary: format!("{} ({} rows)", t.caption, t.rows.len()),
            body: vec![Block::Table(DocTable {
                caption: String::new(),
                ..t
            })],
        }
    } else {
        Block::Table(t)
    }
}

pub(super) fn theory_section(ctx: &mut Ctx) -> DocSection {
    let r = ctx.r;
    if r.theory.is_none() && r.theory_images.is_empty() {
        let m = ctx.miss("theory/theory.json");
        return DocSection {
            id: "theory",
            title: title("theory"),
            status: Status::Missing,
            blocks: vec![Block::Missing(m)],
        };
    }
    let mut b = vec![Block::Para("Section 4's Gaussian model: robust training keeps the mean and blends the covariance toward the identity (Figure 4), plus the numerical checks of Theorems 1–3 and reviewer 2's make_circles question; everything below is read from `theory/` (`theory.json`: nrf-theory's `TheorySummary`).".into())];
    let mut partial = false;
    if let Some(s) = &r.theory {
        b.push(Block::Table(checks(s)));
    }
    if r.theory_images.is_empty() {
        b.push(Block::Missing("no plots under theory/".into()));
        partial = true;
    }
    b.extend(figures(&r.theory_images));
    match &r.theory {
        Some(s) => {
            b.extend(model_and_risks(s));
            b.extend(theorem1(&s.thm1));
            b.extend(theorem2(&s.thm2));
            b.extend(theorem3(&s.thm3));
            b.extend(circles(&s.circles));
            b.extend(run(s));
        }
        None => {
            let m = ctx.miss("theory/theory.json");
            b.push(Block::Missing(m));
            partial = true;
        }
    }
    DocSection {
        id: "theory",
        title: title("theory"),
        status: if partial {
            Status::Partial
        } else {
            Status::Complete
        },
        blocks: b,
    }
}

fn checks(s: &TheorySummary) -> DocTable {
    DocTable {
        verdict_cols: vec![2],
        ..table(
            "Checks: each claim with the numbers behind it.",
            &["Check", "Evidence", "Verdict"],
            s.checks
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.detail.clone(),
                        if c.passed { "holds" } else { "does not hold" }.into(),
                    ]
                })
                .collect(),
        )
    }
}

/// The known figures in their order with their captions, then any other image by its name.
fn figures(images: &[String]) -> Vec<Block> {
    let name = |rel: &str| rel.trim_start_matches("theory/").to_string();
    let mut out = Vec::new();
    for (file, caption) in THEORY_FIGURES.iter().zip(CAPTIONS) {
        if let Some(rel) = images.iter().find(|i| name(i) == *file) {
            out.push(Block::Image {
                rel: rel.clone(),
                caption: caption.into(),
            });
        }
    }
    for rel in images {
        if !THEORY_FIGURES.contains(&name(rel).as_str()) {
            out.push(Block::Image {
                rel: rel.clone(),
                caption: name(rel),
            });
        }
    }
    out
}

fn model_and_risks(s: &TheorySummary) -> Vec<Block> {
    let m = &s.model_2d;
    let risks = s
        .risks
        .iter()
        .map(|r| {
            vec![
                r.classifier.clone(),
                num(r.eps),
                num(r.closed_form),
                num(r.monte_carlo),
                num(r.std_err),
            ]
        })
        .collect();
    vec![
        Block::Heading("The 2-D model and the risk table".into()),
        fields(
            "The 2-D model of Figure 4 (also used by the risk table and Theorem 3).",
            vec![
                ("μ*", list(&m.mu)),
                ("Σ*", matrix(&m.sigma)),
                ("eigenvalues of Σ*", list(&m.sigma_eigenvalues)),
                ("rotation of the eigenbasis (radians)", num(m.rotation)),
            ],
        ),
        long(table(
            &format!(
                "Standard and ℓ2-adversarial risk of the MLE and robust classifiers: closed form vs Monte Carlo ({} test points).",
                count(s.config.risk_mc_samples)
            ),
            &["classifier", "ε", "closed form", "Monte Carlo", "s.e."],
            risks,
        )),
    ]
}

fn mc(e: &McEstimate) -> [String; 3] {
    [num(e.mean), num(e.std_err), count(e.n)]
}

fn theorem1(t: &Thm1Results) -> Vec<Block> {
    let rows = t
        .rows
        .iter()
        .map(|r| {
            let mut row = vec![
                num(r.condition_number),
                num(r.lambda),
                num(r.vulnerability),
                num(r.vulnerability_paper),
            ];
            row.extend(mc(&r.mc_closed_form));
            row.extend(mc(&r.mc_gradient_ascent));
            row.push(num(r.penalised_gain));
            row
        })
        .collect();
    vec![
        Block::Heading("Theorem 1: vulnerability grows with anisotropy".into()),
        long(table(
            &format!(
                "Loss increase under the penalty adversary, d = {}, tr Σ* = {}: closed form ½(tr[(I+(λΣ*−I)⁻¹)²] − d), the paper's form (without ½), Monte Carlo with the closed-form δ* and with gradient ascent (mean, s.e., n), and the adversary's penalised gain.",
                t.dim,
                num(t.trace)
            ),
            &[
                "κ(Σ*)",
                "λ",
                "vulnerability",
                "paper's form",
                "MC δ* mean",
                "MC δ* s.e.",
                "MC δ* n",
                "MC ascent mean",
                "MC ascent s.e.",
                "MC ascent n",
                "penalised gain",
            ],
            rows,
        )),
        fields(
            "The isotropic spectrum minimises the vulnerability at fixed trace.",
            vec![
                ("random fixed-trace spectra tried", count(t.random_spectra)),
                (
                    "of those at or above the isotropic value",
                    count(t.random_spectra_not_below_isotropic),
                ),
                (
                    "eigenvalues of the numerical minimiser",
                    list(&t.numerical_minimiser_eigenvalues),
                ),
                (
                    "its max |σᵢ − k/d|",
                    num(t.numerical_minimiser_max_dev),
                ),
            ],
        ),
    ]
}

fn constrained_fit(r: &ConstrainedRow) -> Vec<String> {
    vec![
        num(r.eps),
        list(&r.mu),
        matrix(&r.sigma),
        list(&r.sigma_eigenvalues),
        num(r.condition_number),
        num(r.anisotropy),
        num(r.mu_shift_from_mle),
    ]
}

fn constrained_match(r: &ConstrainedRow) -> Vec<String> {
    vec![
        num(r.eps),
        opt(r.mean_multiplier),
        opt(r.matched_lambda),
        num(r.matched_rel_error),
        opt(r.rms_lambda),
        opt(r.rms_rel_error),
        num(r.grad_norm),
        num(r.descent_probe),
        count(r.iterations),
    ]
}

fn theorem2(t: &Thm2Results) -> Vec<Block> {
    let cases = t
        .closed_form_cases
        .iter()
        .map(|c| {
            vec![
                count(c.dim),
                num(c.condition_number),
                num(c.lambda),
                num(c.rel_error),
                num(c.objective_gap),
                count(c.iterations),
            ]
        })
        .collect();
    vec![
        Block::Heading("Theorem 2: the robust covariance".into()),
        long(table(
            &format!(
                "Closed-form Σ_r vs numerical minimisation of the penalty objective on random (Σ*, λ): largest relative Frobenius error {}, smallest objective gap J(numerical) − J(closed form) {}.",
                num(t.max_rel_error),
                num(t.min_objective_gap)
            ),
            &["d", "κ(Σ*)", "λ", "rel. error", "objective gap", "iterations"],
            cases,
        )),
        long(table(
            "ε-constrained robust MLE on the 2-D sample: the fit (Σ as rows; anisotropy ‖Σ/(trΣ/d) − I‖_F; shift ‖μ_ε − μ_MLE‖).",
            &["ε", "μ_ε", "Σ_ε", "eigenvalues", "κ(Σ_ε)", "anisotropy", "μ shift"],
            t.constrained.iter().map(constrained_fit).collect(),
        )),
        long(table(
            "ε-constrained fits against Theorem 2's closed form (λ closest to the fit and λ whose RMS perturbation is ε, with the relative errors) and the optimiser's end state (— : infinite λ at ε = 0).",
            &[
                "ε",
                "mean multiplier",
                "matched λ",
                "rel. error",
                "RMS λ",
                "rel. error (RMS λ)",
                "gradient norm",
                "descent probe",
                "iterations",
            ],
            t.constrained.iter().map(constrained_match).collect(),
        )),
    ]
}

fn theorem3(t: &Thm3Results) -> Vec<Block> {
    vec![
        Block::Heading("Theorem 3: robust gradients align with μ".into()),
        long(table(
            "cos∠(Σ_r⁻¹μ, μ) along the closed form Σ_r(λ) of Theorem 2 (— : λ = ∞, the standard MLE): the 2-D model with μ = μ*, its worst case over μ, and the worst case in the d-dimensional Theorem 1 model.",
            &["λ", "cosine", "worst case", "worst case, d-dim."],
            t.lambda_sweep
                .iter()
                .map(|r| {
                    vec![
                        opt(r.lambda),
                        num(r.cosine),
                        num(r.worst_case_cosine),
                        num(r.worst_case_cosine_high_dim),
                    ]
                })
                .collect(),
        )),
        long(table(
            &format!(
                "Along the ε-constrained fits; random μ in the d-dimensional model whose cosine grows at every λ step: {} of {}.",
                count(t.random_mu_monotone),
                count(t.random_mu_tried)
            ),
            &["ε", "cosine", "worst case"],
            t.eps_sweep
                .iter()
                .map(|r| vec![num(r.eps), num(r.cosine), num(r.worst_case_cosine)])
                .collect(),
        )),
    ]
}

fn circles(c: &CirclesResults) -> Vec<Block> {
    vec![
        Block::Heading("make_circles: usefulness of simple features".into()),
        Block::Table(table(
            &format!(
                "make_circles(n = {}, noise = {}, factor = {}): the features' normalisation.",
                count(c.n),
                num(c.noise),
                num(c.factor)
            ),
            &["feature", "mean", "std"],
            c.normalisation
                .iter()
                .map(|(f, m, s)| vec![f.clone(), num(*m), num(*s)])
                .collect(),
        )),
        long(table(
            &format!(
                "Robust usefulness γ(ε) = E[inf‖δ‖≤ε y·f(x+δ)], exact and by a numerical inner minimisation (largest difference {}).",
                num(c.max_abs_numerical_diff)
            ),
            &["feature", "ε", "exact", "numerical"],
            c.rows
                .iter()
                .map(|r| {
                    vec![
                        r.feature.clone(),
                        num(r.eps),
                        num(r.robust_usefulness),
                        opt(r.robust_usefulness_numerical),
                    ]
                })
                .collect(),
        )),
    ]
}

fn config(c: &RunConfig) -> Vec<(&'static str, String)> {
    vec![
        ("risk_mc_samples", count(c.risk_mc_samples)),
        ("thm1_dim", count(c.thm1_dim)),
        ("thm1_condition_numbers", list(&c.thm1_condition_numbers)),
        ("thm1_mc_samples", count(c.thm1_mc_samples)),
        ("thm1_ga_samples", count(c.thm1_ga_samples)),
        ("thm1_random_spectra", count(c.thm1_random_spectra)),
        ("thm2_cases", count(c.thm2_cases)),
        ("fig4_samples", count(c.fig4_samples)),
        ("fig4_eps", list(&c.fig4_eps)),
        ("circles_samples", count(c.circles_samples)),
        ("circles_noise", num(c.circles_noise)),
        ("circles_factor", num(c.circles_factor)),
        ("circles_eps", list(&c.circles_eps)),
    ]
}

fn run(s: &TheorySummary) -> Vec<Block> {
    let mut rows = vec![
        ("seed", s.seed.to_string()),
        ("wall time (s)", num(s.elapsed_s)),
    ];
    rows.extend(
        s.section_seconds
            .iter()
            .map(|(name, secs)| (name.as_str(), format!("{} s", num(*secs)))),
    );
    rows.extend(config(&s.config));
    rows.push(("files", s.files.join(", ")));
    let mut pretty = serde_json::to_string_pretty(s).unwrap_or_default();
    if pretty.len() > 30_000 {
        let cut = (0..=30_000)
            .rev()
            .find(|i| pretty.is_char_boundary(*i))
            .unwrap_or(0);
        pretty.truncate(cut);
        pretty.push_str("\n… (truncated)");
    }
    vec![
        Block::Heading("Run".into()),
        fields(
            "Seed, wall time per part and the sizes of the experiments.",
            rows,
        ),
        Block::Details {
            summary: "theory.json (pretty-printed)".into(),
            body: vec![Block::Pre(pretty)],
        },
    ]
}
