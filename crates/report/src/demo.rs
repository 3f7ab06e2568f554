//! A small fake results directory, for tests, the example and trying the report out.
//! Every number in it is invented (preset "demo"); none is a result.
use crate::grid::{image_grid, GridCell, GridRow};
use crate::io::write_json_atomic;
use crate::plot::scatter_plot;
use crate::results::*;
use crate::verdict::ModelKind;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

fn synthetic_image(seed: usize) -> Vec<f32> {
    // A 28x28 grey blob whose position and size depend on `seed`.
    let (cx, cy) = (8.0 + (seed * 7 % 12) as f32, 8.0 + (seed * 5 % 12) as f32);
    let r = 5.0 + (seed % 4) as f32;
    (0..28 * 28)
        .map(|i| {
            let (y, x) = ((i / 28) as f32, (i % 28) as f32);
            let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
            (1.0 - (d / r).powi(2)).clamp(0.0, 1.0)
        })
        .collect()
}

fn model(
    name: &str,
    role: ModelRole,
    trained_on: &str,
    std_acc: f64,
    rob: [f64; 5],
    adversarial: Option<&str>,
) -> ModelResult {
    let epochs = (1..=6)
        .map(|e| {
            let t = e as f64 / 6.0;
            EpochMetrics {
                epoch: e,
                lr: 0.05 * (1.0 - t),
                train_loss: 1.5 * (1.0 - 0.8 * t),
                train_acc: (std_acc + 0.08 * t).min(1.0) * (0.6 + 0.4 * t),
                test_acc: Some(std_acc * (0.7 + 0.3 * t.sqrt())),
                wall_s: 3.0,
            }
        })
        .collect();
    let mut robust: Vec<RobustPoint> = [0.25, 0.5, 1.0, 2.0]
        .iter()
        .zip(rob)
        .map(|(eps, acc)| RobustPoint {
            norm: "L2".into(),
            eps: *eps,
            acc,
            steps: 20,
            n: 1000,
            attack: None,
        })
        .collect();
    robust.push(RobustPoint {
        norm: "Linf".into(),
        eps: 0.1,
        acc: rob[4],
        steps: 20,
        n: 1000,
        attack: None,
    });
    ModelResult {
        name: name.into(),
        role,
        arch: "fmnist_cnn".into(),
        trained_on: trained_on.into(),
        train_size: if trained_on == "D" { 60000 } else { 10000 },
        adversarial: adversarial.map(str::to_string),
        epochs,
        curve_n: Some(2000),
        std_acc,
        test_size: 10000,
        robust,
        ensemble: Vec::new(),
        checks: None,
        final_train_acc: Some((std_acc + 0.06).min(1.0)),
        wall_s: 18.0,
        seeds: Vec::new(),
        seed_summary: None,
    }
}

/// `m` with a second (invented) seed whose accuracies are `m`'s shifted by `shift`.
fn with_second_seed(mut m: ModelResult, shift: f64) -> ModelResult {
    let seed0 = SeedRun {
        seed: 0,
        train_seed: 11,
        std_acc: m.std_acc,
        ensemble: Vec::new(),
        robust: m.robust.clone(),
    };
    let seed1 = SeedRun {
        seed: 1,
        train_seed: 12,
        std_acc: (m.std_acc + shift).clamp(0.0, 1.0),
        ensemble: Vec::new(),
        robust: m
            .robust
            .iter()
            .map(|p| RobustPoint {
                acc: (p.acc + shift).clamp(0.0, 1.0),
                ..p.clone()
            })
            .collect(),
    };
    m.set_seeds(vec![seed0, seed1]);
    m
}

/// The demo models (invented numbers; `on_D_R` has two seeds).
pub fn demo_models() -> Vec<ModelResult> {
    vec![
        model(
            "C_std",
            ModelRole::Main(ModelKind::Std),
            "D",
            0.915,
            [0.35, 0.08, 0.0, 0.0, 0.01],
            None,
        ),
        model(
            "C_rob",
            ModelRole::Main(ModelKind::Rob),
            "D",
            0.83,
            [0.78, 0.72, 0.55, 0.2, 0.6],
            Some("L2 PGD eps=1.0, 7 steps"),
        ),
        with_second_seed(
            model(
                "on_D_R",
                ModelRole::Main(ModelKind::DR),
                "D_R",
                0.78,
                [0.62, 0.45, 0.2, 0.03, 0.3],
                None,
            ),
            0.012,
        ),
        model(
            "on_D_NR",
            ModelRole::Main(ModelKind::DNR),
            "D_NR",
            0.80,
            [0.2, 0.03, 0.0, 0.0, 0.0],
            None,
        ),
        model(
            "on_D_rand",
            ModelRole::Main(ModelKind::DRand),
            "D_rand",
            0.55,
            [0.05, 0.0, 0.0, 0.0, 0.0],
            None,
        ),
        model(
            "on_D_det",
            ModelRole::Main(ModelKind::DDet),
            "D_det",
            0.31,
            [0.02, 0.0, 0.0, 0.0, 0.0],
            None,
        ),
        model(
            "on_D_det_eps2",
            ModelRole::Variant(ModelKind::DDet),
            "D_det_eps2",
            0.47,
            [0.03, 0.0, 0.0, 0.0, 0.0],
            None,
        ),
        model(
            "on_control",
            ModelRole::Main(ModelKind::Control),
            "D_control",
            0.87,
            [0.3, 0.06, 0.0, 0.0, 0.01],
            None,
        ),
    ]
}

/// Writes a complete fake results directory (run.json, models, datasets with grids, theory,
/// one extra section) under `dir`. Numbers are invented.
pub fn write_demo_results(dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    write_json_atomic(dir.join("run.json"), &demo_run_info())?;
    for m in demo_models() {
        write_json_atomic(dir.join("models").join(format!("{}.json", m.name)), &m)?;
    }
    write_demo_datasets(dir)?;
    write_demo_theory(dir)?;
    write_demo_section(dir)?;
    Ok(())
}

/// When the demo run started: 2025-01-01 00:00 UTC.
const DEMO_START: u64 = 1_735_689_600;

/// The demo run.json: preset "demo", an invented machine and eight stages.
fn demo_run_info() -> RunInfo {
    let config = "# demo preset (fake)\n[data]\nname = \"fashion-mnist\"\nnum_classes = 10\n\n[eval]\nheadline_eps = 0.5\nl2_eps = [0.25, 0.5, 1.0, 2.0]\nlinf_eps = [0.1]\n";
    let stages: Vec<StageInfo> = [
        "data",
        "train:C_std",
        "train:C_rob",
        "construct:D_R",
        "construct:D_NR",
        "construct:D_rand",
        "construct:D_det",
        "train:on_D_R",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| StageInfo {
        name: n.to_string(),
        status: if i % 3 == 0 {
            StageStatus::Cached
        } else {
            StageStatus::Done
        },
        wall_s: 12.5 * (i + 1) as f64,
        // Two workers taking turns, each stage starting a minute after the one before.
        started: Some(format!("unix:{}", DEMO_START + 60 * i as u64)),
        worker: Some(format!("{}/2", i % 2 + 1)),
        key: format!("{:016x}", 0x9e3779b97f4a7c15u64.wrapping_mul(i as u64 + 1)),
        message: None,
    })
    .collect();
    let mut versions = BTreeMap::new();
    versions.insert("tch".to_string(), "0.26.0".to_string());
    RunInfo {
        preset: "demo".into(),
        config_toml: config.into(),
        seed: 1234,
        machine: MachineInfo {
            hostname: "demo-host".into(),
            os: "linux x86_64".into(),
            cpu: "demo CPU".into(),
            cpus: 2,
            torch_threads: 2,
            device: "cpu".into(),
        },
        torch_version: "2.13.0".into(),
        nrf_version: env!("CARGO_PKG_VERSION").into(),
        crate_versions: versions,
        started: format!("unix:{DEMO_START}"),
        finished: Some("2025-01-01T00:40:00Z".into()),
        stages,
        total_wall_s: 2400.0,
        missing: vec![],
        headline_eps: Some(0.5),
        num_classes: Some(10),
    }
}

/// Writes the four demo datasets' JSON files under `dir/datasets` and their grids under
/// `dir/grids`.
fn write_demo_datasets(dir: &Path) -> Result<()> {
    let datasets = [
        (
            "D_R",
            "robust_features",
            "C_rob",
            None,
            None,
            Some((0.95, 0.12)),
        ),
        (
            "D_NR",
            "non_robust_features",
            "C_std",
            None,
            None,
            Some((0.97, 0.05)),
        ),
        (
            "D_rand",
            "random_target",
            "C_std",
            Some(1.0),
            Some(0.93),
            None,
        ),
        (
            "D_det",
            "deterministic_target",
            "C_std",
            Some(1.0),
            Some(0.91),
            None,
        ),
    ];
    for (i, (name, method, src, eps, success, rel)) in datasets.into_iter().enumerate() {
        let grid = format!("grids/{name}.png");
        let rows = demo_grid_rows(i, rel.is_some());
        image_grid(dir.join(&grid), &rows, [1, 28, 28], 3)?;
        let info = ConstructedInfo {
            name: name.into(),
            method: method.into(),
            source_model: src.into(),
            n: 10000,
            epsilon: eps,
            steps: if rel.is_some() { 300 } else { 100 },
            step_size: if rel.is_some() { 0.2 } else { 0.1 },
            success_rate: success,
            init_rel_err: rel.map(|r| r.0),
            final_rel_err: rel.map(|r| r.1),
            mean_dist_to_x: Some(if rel.is_some() { 2.1 } else { 0.98 }),
            mean_dist_to_x0: rel.map(|_| 7.5),
            grid: Some(grid),
            file: Some(format!("datasets/{name}.safetensors")),
            wall_s: 95.0,
        };
        write_json_atomic(dir.join("datasets").join(format!("{name}.json")), &info)?;
    }
    Ok(())
}

/// The rows of dataset `i`'s demo grid: three rows of three synthetic images, captioned for
/// representation matching (`matching`) or for a targeted attack.
fn demo_grid_rows(i: usize, matching: bool) -> Vec<GridRow> {
    let captions: [&str; 3] = if matching {
        ["x (target)", "x0 (start)", "x_r"]
    } else {
        ["x", "x_adv", "δ (×5)"]
    };
    (0..3)
        .map(|r| GridRow {
            label: if matching {
                format!("label {}", (r + i) % 10)
            } else {
                format!("true {} →\ntarget {}", r, (r + 1) % 10)
            },
            cells: (0..3)
                .map(|c| GridCell {
                    pixels: synthetic_image(10 * r + c + i),
                    caption: captions[c].to_string(),
                })
                .collect(),
        })
        .collect()
}

/// Writes the theory at small sizes under `dir/theory`, with one failing check added, and an
/// SVG next to its PNGs.
fn write_demo_theory(dir: &Path) -> Result<()> {
    // The theory at small sizes (a fraction of a second), with one failing check added to show
    // how a failed check looks.
    let mut theory = nrf_theory::run_with(0, &demo_theory_config())?;
    theory.summary.checks.push(nrf_theory::Check {
        name: "demo_check_that_fails".into(),
        passed: false,
        detail: "shows how a failed check looks".into(),
    });
    crate::theory_figures::write_theory(&dir.join("theory"), theory)?;
    // Writers often save an SVG next to the PNG; the report shows the PNG only.
    crate::io::atomic_write(
        dir.join("theory").join("figure4.svg"),
        b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"></svg>",
    )?;
    Ok(())
}

/// Writes the extra demo section (Figure 3: a scatter plot and a table) under `dir/sections`.
fn write_demo_section(dir: &Path) -> Result<()> {
    scatter_plot(
        dir.join("sections").join("figure3.png"),
        "Figure 3 (demo): transfer rate vs accuracy on D_det",
        "accuracy on D when trained on D_det",
        "transfer success rate",
        &[
            (0.2, 0.3, "VGG".into()),
            (0.31, 0.42, "ResNet-18".into()),
            (0.4, 0.6, "ResNet-50".into()),
        ],
    )?;
    let section = Section {
        id: "figure3".into(),
        title: "Figure 3: transferability vs learning from non-robust features".into(),
        claim:
            "Architectures that learn more from D_det are more vulnerable to transferred attacks."
                .into(),
        finding: "Demo data: accuracy and transfer rate rise together.".into(),
        verdict: Verdict::Holds,
        tables: vec![Table {
            caption: "Per architecture (demo values)".into(),
            headers: vec![
                "Arch".into(),
                "Acc on D (trained on D_det)".into(),
                "Transfer rate".into(),
            ],
            rows: vec![
                vec!["VGG".into(), "20.0%".into(), "30.0%".into()],
                vec!["ResNet-18".into(), "31.0%".into(), "42.0%".into()],
                vec!["ResNet-50".into(), "40.0%".into(), "60.0%".into()],
            ],
        }],
        images: vec!["sections/figure3.png".into()],
    };
    write_json_atomic(dir.join("sections").join("figure3.json"), &section)?;
    Ok(())
}

/// The theory's sizes in the demo: every table and figure, computed quickly.
pub fn demo_theory_config() -> nrf_theory::RunConfig {
    nrf_theory::RunConfig {
        risk_mc_samples: 5_000,
        thm1_dim: 4,
        thm1_condition_numbers: vec![1.0, 4.0, 10.0],
        thm1_mc_samples: 2_000,
        thm1_ga_samples: 20,
        thm1_random_spectra: 20,
        thm2_cases: 4,
        fig4_samples: 200,
        fig4_eps: vec![0.0, 0.5, 1.5],
        circles_samples: 400,
        circles_noise: 0.1,
        circles_factor: 0.5,
        circles_eps: vec![0.0, 0.1, 0.2, 0.4],
    }
}
