//! Loading a results directory: every file is optional; unreadable or invalid files become
//! `problems` (each naming the file) instead of aborting, so a partial run still gives a report.
use crate::io::read_json;
use crate::results::{
    ConstructedInfo, Headline, ModelResult, ModelRole, RunInfo, Section, TheorySummary,
};
use crate::verdict::{figure2_verdicts, table1_verdicts, ClaimVerdict, ModelKind};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Everything found under `results/<preset>/`.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// The results directory.
    pub dir: PathBuf,
    /// `run.json`, if present and valid.
    pub run: Option<RunInfo>,
    /// `models/*.json`, in report order by role (the main models of C_std, C_rob, on_D_R, ...,
    /// variants after their set's main model, then the extras' models, each group by name).
    pub models: Vec<ModelResult>,
    /// `datasets/*.json`, sorted by name (D_R, D_NR, D_rand, D_det first).
    pub datasets: Vec<ConstructedInfo>,
    /// `sections/*.json`: Figure 3, then the known extras in a fixed order, then others by id.
    pub sections: Vec<Section>,
    /// `theory/theory.json`: the theory's typed summary.
    pub theory: Option<TheorySummary>,
    /// Images under `theory/` (relative paths), sorted.
    pub theory_images: Vec<String>,
    /// Images under `grids/` (relative paths), sorted.
    pub grid_images: Vec<String>,
    /// Files that exist but could not be read or are invalid, with the reason.
    pub problems: Vec<String>,
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg" | "svg")
    )
}

/// Sorted visible files of `dir` (no hidden / temporary files); empty if `dir` does not exist.
pub(crate) fn list(dir: &Path, problems: &mut Vec<String>) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(format!("{}: cannot list: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_none_or(|n| n.starts_with('.') || n.ends_with(".tmp"))
        })
        .collect();
    out.sort();
    out
}

/// Images of `dir/sub` (relative paths, sorted); an SVG is skipped when a PNG / JPEG of the same
/// name exists (writers often save both).
fn images(dir: &Path, sub: &str, problems: &mut Vec<String>) -> Vec<String> {
    let files: Vec<PathBuf> = list(&dir.join(sub), problems)
        .into_iter()
        .filter(|p| is_image(p))
        .collect();
    let raster = |p: &Path| {
        ["png", "jpg", "jpeg"].iter().any(|e| {
            let q = p.with_extension(e);
            q != p && files.contains(&q)
        })
    };
    files
        .iter()
        .filter(|p| !(p.extension().and_then(|e| e.to_str()) == Some("svg") && raster(p)))
        .map(|p| rel(dir, p))
        .collect()
}

fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

fn model_order(m: &ModelResult) -> (usize, bool, String) {
    match m.role.paper() {
        Some((k, variant)) => (
            ModelKind::ALL.iter().position(|x| *x == k).unwrap_or(99),
            variant,
            m.name.clone(),
        ),
        None => (99, false, m.name.clone()),
    }
}

/// The paper's Figure 3 first, then the extras about Table 1's sets, then those about Figure 2's;
/// sections this list does not know follow, by id.
fn section_order(id: &str) -> (usize, String) {
    const ORDER: [&str; 8] = [
        "figure3",
        "eps_sensitivity",
        "train_size",
        "diversity",
        "source_vs_target",
        "cosine_ablation",
        "init_ablation",
        "overfitting",
    ];
    (
        ORDER.iter().position(|o| *o == id).unwrap_or(ORDER.len()),
        id.to_string(),
    )
}

fn dataset_order(name: &str) -> (usize, String) {
    let base = ["D_R", "D_NR", "D_rand", "D_det"];
    let i = base
        .iter()
        .position(|b| name == *b || name.strip_prefix(b).is_some_and(|r| r.starts_with('_')))
        .unwrap_or(99);
    (i, name.to_string())
}

impl Results {
    /// Reads `dir`. Fails only when `dir` is not a readable directory; anything wrong inside
    /// is recorded in `problems`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Results> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            bail!(
                "results directory {} does not exist or is not a directory",
                dir.display()
            );
        }
        let mut r = Results {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        let run_path = dir.join("run.json");
        if run_path.exists() {
            match read_json::<RunInfo>(&run_path).and_then(|run| run.validate().map(|_| run)) {
                Ok(run) => r.run = Some(run),
                Err(e) => r.problems.push(format!("run.json: {e:#}")),
            }
        }
        let mut problems = Vec::new();
        for p in list(&dir.join("models"), &mut problems) {
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let name = rel(dir, &p);
            match read_json::<ModelResult>(&p) {
                Ok(m) => match m.validate() {
                    Ok(()) => r.models.push(m),
                    Err(e) => problems.push(format!("{name}: {e:#}")),
                },
                Err(e) => problems.push(format!("{name}: {e:#}")),
            }
        }
        for p in list(&dir.join("datasets"), &mut problems) {
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let name = rel(dir, &p);
            match read_json::<ConstructedInfo>(&p) {
                Ok(d) => match d.validate() {
                    Ok(()) => r.datasets.push(d),
                    Err(e) => problems.push(format!("{name}: {e:#}")),
                },
                Err(e) => problems.push(format!("{name}: {e:#}")),
            }
        }
        for p in list(&dir.join("sections"), &mut problems) {
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match read_json::<Section>(&p) {
                Ok(s) => r.sections.push(s),
                Err(e) => problems.push(format!("{}: {e:#}", rel(dir, &p))),
            }
        }
        let theory_json = dir.join("theory").join("theory.json");
        if theory_json.exists() {
            match read_json::<TheorySummary>(&theory_json) {
                Ok(v) => r.theory = Some(v),
                Err(e) => problems.push(format!("theory/theory.json: {e:#}")),
            }
        }
        r.theory_images = images(dir, "theory", &mut problems);
        r.grid_images = images(dir, "grids", &mut problems);
        // Duplicate names (two files claiming the same model) are reported, the first kept.
        let mut seen = std::collections::BTreeSet::new();
        r.models.retain(|m| {
            let fresh = seen.insert(m.name.clone());
            if !fresh {
                problems.push(format!(
                    "models/: two files define model {:?}; the first is used",
                    m.name
                ));
            }
            fresh
        });
        r.models.sort_by_key(model_order);
        r.sections.sort_by_key(|s| section_order(&s.id));
        r.datasets.sort_by_key(|d| dataset_order(&d.name));
        r.problems.extend(problems);
        Ok(r)
    }

    /// The model named `name`.
    pub fn model(&self, name: &str) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The main model of the paper's set `k` (by its role, whatever its name).
    pub fn main_model(&self, k: ModelKind) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.role == ModelRole::Main(k))
    }

    /// The dataset named `name`.
    pub fn dataset(&self, name: &str) -> Option<&ConstructedInfo> {
        self.datasets.iter().find(|d| d.name == name)
    }

    /// Headline threat model (see [`RunInfo::resolved_headline`]); None without run.json.
    pub fn headline(&self) -> Option<Headline> {
        self.run.as_ref().and_then(|r| r.resolved_headline())
    }

    /// Number of classes and its source (see [`RunInfo::resolved_num_classes`]).
    pub fn num_classes(&self) -> (usize, &'static str) {
        match &self.run {
            Some(r) => r.resolved_num_classes(),
            None => (10, "assumed (run.json missing)"),
        }
    }

    /// Figure 2 claims.
    pub fn figure2_verdicts(&self) -> Vec<ClaimVerdict> {
        self.explain(figure2_verdicts(
            &self.models,
            self.headline().as_ref(),
            self.num_classes().0,
        ))
    }

    /// Table 1 claims.
    pub fn table1_verdicts(&self) -> Vec<ClaimVerdict> {
        self.explain(table1_verdicts(
            &self.models,
            self.headline().as_ref(),
            self.num_classes().0,
        ))
    }

    /// A model file that exists but could not be used is not "not computed yet".
    fn explain(&self, mut v: Vec<ClaimVerdict>) -> Vec<ClaimVerdict> {
        for c in &mut v {
            let Some(list) = c.evidence.strip_prefix("not computed yet: ") else {
                continue;
            };
            let (bad, absent): (Vec<&str>, Vec<&str>) = list
                .split(", ")
                .partition(|rel| self.dir.join(rel).exists());
            if bad.is_empty() {
                continue;
            }
            let mut parts = Vec::new();
            if !absent.is_empty() {
                parts.push(format!("not computed yet: {}", absent.join(", ")));
            }
            parts.push(format!("could not be read: {}", bad.join(", ")));
            c.evidence = parts.join("; ");
        }
        v
    }
}
