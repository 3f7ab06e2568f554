//! Presets: every hyper-parameter of a reproduction in one TOML file, with units in comments.
//! Unknown keys and bad values are errors that name the field. Enum-valued fields are typed
//! (serde refuses a bad value, listing the accepted spellings); what `validate` checks is ranges.
mod builtin;
mod extras;
/// The `--set KEY=VALUE` machinery of [`Preset::load_with_overrides`].
mod overriding;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

pub use builtin::BUILTIN;
pub use extras::{
    DDetStudy, ExtrasSection, IndependentModel, SourceModel, SourcesSection, TheorySection,
};
pub use sections::{
    AttackSection, DataSection, DatasetName, EnsembleMember, EnsembleSection, EvalSection,
    ModelSection, RelabelSection, RepMatchSection, Schedule, TrainSection,
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use validate::{check, check_name, positive};

/// A whole reproduction's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    /// Master seed; every stage derives its own seed from it and records it.
    pub seed: u64,
    /// libtorch CPU threads (0 = leave libtorch's default). A process with more than one runs
    /// an attack's blocks of rows on as many replica workers (`nrf_models::replicas`), with the
    /// results of one thread per row.
    #[serde(default)]
    pub threads: i32,
    /// Worker processes on a CPU (default 1): `threads` is split between them, and they share
    /// the pipeline's stages (see [`crate::workers`]); the results do not depend on it.
    #[serde(default = "one")]
    pub workers: usize,
    pub data: DataSection,
    pub model: ModelSection,
    pub train_std: TrainSection,
    pub train_rob: TrainSection,
    pub eval: EvalSection,
    pub rep_match: RepMatchSection,
    pub relabel: RelabelSection,
    pub fresh: TrainSection,
    /// `[fresh_by_set]`: where the fresh models of one kind of constructed set train otherwise
    /// than `[fresh]` says (the paper's CIFAR recipe, \[PB\]: lr 0.01 for D_NR and D_rand, no
    /// augmentation for D_det). Keyed by the set's kind (`D_R`, `D_NR`, `D_rand`, `D_det`); a
    /// variant (`D_det_eps2`, `D_R_cos`) takes its kind's ([`Preset::fresh_for`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fresh_by_set: BTreeMap<String, FreshOverride>,
    #[serde(default)]
    pub theory: TheorySection,
    #[serde(default)]
    pub extras: ExtrasSection,
    /// Bring your own model: TorchScript files in place of the trained C_std / C_rob as the
    /// source models of the constructions (absent = both trained from the preset, as the paper).
    #[serde(default, skip_serializing_if = "SourcesSection::is_empty")]
    pub sources: SourcesSection,
    /// The command-line overrides (`--set KEY=VALUE`) applied by
    /// [`Preset::load_with_overrides`], as given; recorded in run.json's `overrides`. Not a
    /// preset field (a preset file that has it is rejected) and in no cache key: stage keys
    /// come from the values the overrides set.
    #[serde(skip)]
    pub overrides: Vec<String>,
}

fn one() -> usize {
    1
}

/// The constructed sets' kinds a `[fresh_by_set]` entry may name.
pub const FRESH_SET_KINDS: [&str; 4] = ["D_R", "D_NR", "D_rand", "D_det"];

/// One `[fresh_by_set]` entry: the `[fresh]` fields it replaces (absent: as `[fresh]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshOverride {
    /// Learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Random-crop padding (0: no crop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_pad: Option<i64>,
    /// `false`: no augmentation at all (crop, flip, jitter, rotation, lighting); `true`: as
    /// `[fresh]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<bool>,
}

impl Preset {
    /// The `[fresh]` section the models trained on set `set` use: `[fresh]` with the
    /// `[fresh_by_set]` entry of its kind applied, the entry named `set` or, for a variant, the
    /// longest one that `set` continues with `_` (`D_det_eps2` takes `D_det`'s, `D_NR` is not a
    /// variant of `D_R`).
    pub fn fresh_for(&self, set: &str) -> TrainSection {
        let mut fresh = self.fresh.clone();
        let entry = self
            .fresh_by_set
            .iter()
            .filter(|(kind, _)| {
                set == kind.as_str()
                    || set
                        .strip_prefix(kind.as_str())
                        .is_some_and(|rest| rest.starts_with('_'))
            })
            .max_by_key(|(kind, _)| kind.len());
        if let Some((_, o)) = entry {
            if let Some(lr) = o.lr {
                fresh.lr = lr;
            }
            if let Some(pad) = o.crop_pad {
                fresh.crop_pad = pad;
            }
            if o.augment == Some(false) {
                fresh.crop_pad = 0;
                fresh.resized_crop = false;
                fresh.color_jitter = 0.0;
                fresh.rotate_deg = 0.0;
                fresh.lighting = 0.0;
            }
        }
        fresh
    }
}

impl Preset {
    /// Parses and validates a preset; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Preset> {
        let p: Preset = toml::from_str(text).map_err(|e| {
            let what = match field_at(text, e.span()) {
                Some(f) => format!("preset {origin}: in preset field `{f}`"),
                None => format!("preset {origin}: invalid TOML or unknown/ill-typed field"),
            };
            anyhow::Error::new(e).context(what)
        })?;
        p.validate().with_context(|| format!("preset {origin}"))?;
        Ok(p)
    }

    /// A built-in preset by name, or a TOML file by path. Returns the preset and its text.
    pub fn load(name_or_path: &str) -> Result<(Preset, String)> {
        Preset::load_with_overrides(name_or_path, &[])
    }

    /// [`Preset::load`] with command-line overrides (`nrf reproduce --set KEY=VALUE`): each
    /// `KEY=VALUE` sets the dotted key (`rep_match.n`, `model.arch.width`) in the preset's TOML
    /// document before it is deserialised and validated, so an override is checked exactly as
    /// the same value in the file (an unknown key or a bad value is an error naming the key).
    /// VALUE is a TOML value; what is not valid TOML is taken as a string (`model.init=tch`),
    /// as `experiments/twin/twin_data.py` does. A missing table on the way is created
    /// (`extras.figure3_n` without an `[extras]` section). A key the preset does not read
    /// (say `model.arch.width` with `type = "fmnist_cnn"`, which serde would ignore) is an
    /// error too.
    ///
    /// Returns the preset, with [`Preset::overrides`] set, and the effective preset text: the
    /// file's text unchanged without overrides; with them, the same document (comments kept)
    /// with the overrides applied, each changed line marked `# --set (was: ...)` and the list
    /// of overrides in a comment at the top. That text is what run.json's `config_toml`
    /// records, so it always holds the values the run used.
    pub fn load_with_overrides(
        name_or_path: &str,
        overrides: &[String],
    ) -> Result<(Preset, String)> {
        let (text, origin) =
            if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
                (text.to_string(), name_or_path.to_string())
            } else {
                let path = Path::new(name_or_path);
                if !path.exists() {
                    let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                    bail!(
                        "no preset named {name_or_path:?} (built in: {}) and no such file",
                        names.join(", ")
                    );
                }
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading preset {}", path.display()))?;
                (text, path.display().to_string())
            };
        Preset::parse_with_overrides(&text, &origin, overrides)
    }

    /// [`Preset::load_with_overrides`] of a preset's text; `origin` names it in errors.
    pub fn parse_with_overrides(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> Result<(Preset, String)> {
        if overrides.is_empty() {
            return Ok((Preset::parse(text, origin)?, text.to_string()));
        }
        let effective = overriding::apply(text, origin, overrides)?;
        let with = overrides
            .iter()
            .map(|o| format!("--set {o}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut p: Preset = match toml::from_str(&effective) {
            Ok(p) => p,
            Err(e) => {
                let to_blame = overriding::blame(&effective, e.span(), overrides);
                let what = if to_blame.is_empty() {
                    format!("preset {origin} with {with}")
                } else {
                    format!("preset {origin}: {}", to_blame.join(" "))
                };
                let field = match field_at(&effective, e.span()) {
                    Some(f) => format!("in preset field `{f}`"),
                    None => "unknown or ill-typed field".into(),
                };
                return Err(anyhow::Error::new(e).context(format!(
                    "{what}: {field} (the line shown is in the preset with the overrides applied)"
                )));
            }
        };
        overriding::check_read(&p, overrides).with_context(|| format!("preset {origin}"))?;
        p.validate()
            .with_context(|| format!("preset {origin} with {with}"))?;
        p.overrides = overrides.to_vec();
        Ok((p, effective))
    }

    /// Checks every value; errors name the field.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        check(
            self.threads >= 0,
            "threads",
            format!("must be >= 0, got {}", self.threads),
        )?;
        check(
            (1..=64).contains(&self.workers),
            "workers",
            format!("must be between 1 and 64, got {}", self.workers),
        )?;
        self.train_std.validate("train_std")?;
        self.train_rob.validate("train_rob")?;
        check(
            self.train_rob.attack.is_some(),
            "train_rob.attack",
            "the robust model needs an attack section".into(),
        )?;
        self.fresh.validate("fresh")?;
        for kind in self.fresh_by_set.keys() {
            check(
                FRESH_SET_KINDS.contains(&kind.as_str()),
                &format!("fresh_by_set.{kind}"),
                format!(
                    "not a kind of constructed set (one of {})",
                    FRESH_SET_KINDS.join(", ")
                ),
            )?;
            let pad = self.fresh_by_set[kind].crop_pad;
            check(
                pad.is_none_or(|p| p >= 0),
                &format!("fresh_by_set.{kind}.crop_pad"),
                format!("must be >= 0, got {}", pad.unwrap_or(0)),
            )?;
            self.fresh_for(kind)
                .validate(&format!("fresh_by_set.{kind}"))?;
        }
        check(
            self.fresh.seeds.is_none_or(|n| n >= 1),
            "fresh.seeds",
            format!("must be at least 1, got {}", self.fresh.seeds.unwrap_or(0)),
        )?;
        for (s, section) in [
            ("train_std", &self.train_std),
            ("train_rob", &self.train_rob),
        ] {
            check(
                section.seeds.is_none(),
                &format!("{s}.seeds"),
                "only the [fresh] section trains several seeds".into(),
            )?;
        }
        let e = &self.eval;
        check(
            e.robust_n >= 1,
            "eval.robust_n",
            "must be at least 1".into(),
        )?;
        check(e.steps >= 1, "eval.steps", "must be at least 1".into())?;
        check(
            e.batch_size >= 1,
            "eval.batch_size",
            "must be at least 1".into(),
        )?;
        positive(e.step_factor, "eval.step_factor")?;
        check(
            !e.l2_eps.is_empty(),
            "eval.l2_eps",
            "needs at least one radius".into(),
        )?;
        for v in e.l2_eps.iter().chain(&e.linf_eps) {
            positive(*v, "eval.l2_eps / eval.linf_eps")?;
        }
        check(
            e.l2_eps.contains(&e.headline_eps),
            "eval.headline_eps",
            format!(
                "{} must be one of eval.l2_eps {:?}",
                e.headline_eps, e.l2_eps
            ),
        )?;
        if let Some(ens) = &e.ensemble {
            ens.validate()?;
        }
        let r = &self.rep_match;
        check(r.n >= 1, "rep_match.n", "must be at least 1".into())?;
        check(r.steps >= 1, "rep_match.steps", "must be at least 1".into())?;
        check(
            r.batch_size >= 1,
            "rep_match.batch_size",
            "must be at least 1".into(),
        )?;
        positive(r.step_start, "rep_match.step_start")?;
        check(
            r.step_end >= 0.0 && r.step_end <= r.step_start,
            "rep_match.step_end",
            format!("must be in [0, step_start], got {}", r.step_end),
        )?;
        let l = &self.relabel;
        check(l.n >= 1, "relabel.n", "must be at least 1".into())?;
        check(l.steps >= 1, "relabel.steps", "must be at least 1".into())?;
        check(
            l.batch_size >= 1,
            "relabel.batch_size",
            "must be at least 1".into(),
        )?;
        positive(l.eps, "relabel.eps")?;
        positive(l.step_size, "relabel.step_size")?;
        for v in &l.extra_eps {
            positive(*v, "relabel.extra_eps")?;
        }
        self.model.validate()?;
        self.extras.validate()?;
        self.sources.validate()?;
        Ok(())
    }

    /// Checks the results folder before anything is loaded or written: it is a folder (or does
    /// not exist yet), and when it holds a run.json that run is of this preset (same `name`
    /// and `data.dataset`): a folder is one preset's results, which the stage cache, run.json
    /// and the report would otherwise mix. The message says how to proceed.
    pub fn check_results_folder(&self, results: &Path) -> Result<()> {
        if results.exists() && !results.is_dir() {
            bail!(
                "--results {}: is a file, not a folder: give a folder for the results",
                results.display()
            );
        }
        let run = results.join("run.json");
        if !run.exists() {
            return Ok(());
        }
        let how = format!(
            "give this run another folder (--results DIR), or move {} away (or delete it) to \
             start afresh there",
            results.display()
        );
        let text = std::fs::read_to_string(&run)
            .with_context(|| format!("reading {} (the run this folder holds)", run.display()))?;
        let Ok(old) = serde_json::from_str::<serde_json::Value>(&text) else {
            bail!(
                "{} is not an nrf run record (not JSON), so {} may hold something else: {how}",
                run.display(),
                results.display()
            );
        };
        let old_name = old.get("preset").and_then(|v| v.as_str()).unwrap_or("");
        let old_dataset = old
            .get("config_toml")
            .and_then(|v| v.as_str())
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| t.get("data")?.get("dataset")?.as_str().map(str::to_string));
        if old_name != self.name {
            bail!(
                "{} holds the results of preset {old_name:?} (its run.json), not of preset {:?}: \
                 {how}",
                results.display(),
                self.name
            );
        }
        if let Some(d) = old_dataset.filter(|d| d != self.data.dataset.as_str()) {
            bail!(
                "{} holds the results of preset {:?} on data set {d:?} (its run.json), but this \
                 preset {:?} uses {:?}: {how}",
                results.display(),
                self.name,
                self.name,
                self.data.dataset
            );
        }
        Ok(())
    }

    /// Seeds of each fresh model of Figure 2 / Table 1 (`[fresh] seeds`, default 1).
    pub fn fresh_seeds(&self) -> usize {
        self.fresh.seeds.unwrap_or(1).max(1)
    }

    /// Seeds of each of Figure 3's own models (`extras.figure3_seeds`, default `[fresh] seeds`).
    pub fn figure3_seeds(&self) -> usize {
        self.extras
            .figure3_seeds
            .unwrap_or_else(|| self.fresh_seeds())
            .max(1)
    }

    /// A seed for `stage`, derived from the master seed.
    pub fn stage_seed(&self, stage: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stage.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        (h ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1
    }
}

/// The dotted key (`train_rob.attack.norm`) of the innermost field of preset `text` at `span`,
/// where deserialising it failed: toml's message shows the line but not the whole key.
fn field_at(text: &str, span: Option<Range<usize>>) -> Option<String> {
    use toml_edit::{ImDocument, Item, TableLike};
    fn within(table: &dyn TableLike, span: &Range<usize>) -> Option<Vec<String>> {
        let holds =
            |s: Option<Range<usize>>| s.is_some_and(|s| s.start <= span.start && span.end <= s.end);
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let mut path = vec![name.to_string()];
            match item {
                // A table of its own: search its fields (its header is its key).
                Item::Table(t) => {
                    if let Some(sub) = within(t, span) {
                        path.extend(sub);
                        return Some(path);
                    }
                    if holds(key.span()) || holds(t.span()) {
                        return Some(path);
                    }
                }
                Item::Value(v) if holds(key.span()) || holds(v.span()) => {
                    if let Some(sub) = v.as_inline_table().and_then(|t| within(t, span)) {
                        path.extend(sub);
                    }
                    return Some(path);
                }
                _ => {}
            }
        }
        None
    }
    let doc = ImDocument::parse(text).ok()?;
    within(doc.as_table(), &span?).map(|p| p.join("."))
}

/// What the preset fuzz target runs on one input: `text` as a preset, then, if its first line
/// is `# --set K=V; K=V`, with those overrides. Never panics (an `Err` is fine).
pub fn parse_fuzz_input(text: &str) -> Result<()> {
    let _ = Preset::parse(text, "fuzz");
    let sets: Vec<String> = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# --set "))
        .map(|l| l.split(';').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    if !sets.is_empty() {
        let (p, effective) = Preset::parse_with_overrides(text, "fuzz", &sets)?;
        // The effective text parses to the same preset.
        let again = Preset::parse(&effective, "fuzz-effective")?;
        anyhow::ensure!(
            serde_json::to_value(&again)? == serde_json::to_value(&p)?,
            "the effective preset text differs from the preset it records"
        );
    }
    Ok(())
}
