//! The paper's numbers (and public stand-ins), kept in one data file: `paper_numbers.toml`.
//!
//! Every number carries its source tag from `shared/spec/paper.md` and a [`SourceStatus`], so the
//! report can say which comparisons are against confirmed paper values and which are not.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The data file, embedded at compile time.
pub const PAPER_NUMBERS_TOML: &str = include_str!("../paper_numbers.toml");

/// How far a number can be trusted to be the paper's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    /// The paper's number, quoted by the authors' dataset release (\[CD\]).
    Confirmed,
    /// Not the paper's number but the authors' library's model of the same kind (\[RL\]).
    Proxy,
    /// A third-party replication (\[PB\]).
    Replication,
    /// From recollection of the paper, not checked (MEM).
    Unconfirmed,
}

impl SourceStatus {
    /// Human-readable label.
    pub fn label(self) -> &'static str {
        match self {
            SourceStatus::Confirmed => "confirmed",
            SourceStatus::Proxy => "proxy (authors' library, not the paper's figure)",
            SourceStatus::Replication => "third-party replication",
            SourceStatus::Unconfirmed => "unconfirmed",
        }
    }
}

/// One number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperNumber {
    /// Unique id, e.g. "fig2.cifar.D_R.std".
    pub id: String,
    /// "Figure 2", "Table 1" or "Benz et al. replication".
    pub table: String,
    /// "CIFAR-10", "Restricted ImageNet", ...
    pub dataset: String,
    /// Row key: "D_std" (standard training on D), "D_adv" (adversarial training on D), "D_R",
    /// "D_NR", "D_rand", "D_det".
    pub training_set: String,
    /// "std_acc" or "robust_acc".
    pub metric: String,
    /// Norm of the robust accuracy.
    #[serde(default)]
    pub norm: Option<String>,
    /// ε of the robust accuracy (None when the source does not say).
    #[serde(default)]
    pub eps: Option<f64>,
    /// Value in percent.
    pub value: f64,
    /// The source gives the value as approximate ("≈95%").
    #[serde(default)]
    pub approx: bool,
    /// Source tag, e.g. `"[CD]"`, `"[RL]"`, `"[PB]"`, `"MEM"`.
    pub source: String,
    /// Trust level.
    pub status: SourceStatus,
    /// Free-text note.
    #[serde(default)]
    pub note: String,
}

impl PaperNumber {
    /// Whether this is a confirmed paper number.
    pub fn is_confirmed(&self) -> bool {
        self.status == SourceStatus::Confirmed
    }

    /// The value formatted as in the source, e.g. "84%", "≈95%", "95.25%".
    pub fn value_text(&self) -> String {
        format!(
            "{}{}%",
            if self.approx { "≈" } else { "" },
            fmt_num(self.value)
        )
    }

    /// Short metric label, e.g. "std" or "robust (L2 ε=0.25)".
    pub fn metric_text(&self) -> String {
        if self.metric == "robust_acc" {
            let norm = self.norm.as_deref().unwrap_or("?");
            match self.eps {
                Some(e) => format!("robust ({norm} ε={})", fmt_num(e)),
                None => format!("robust ({norm}, ε not stated)"),
            }
        } else {
            "std".to_string()
        }
    }
}

/// Formats a number without trailing zeros (84.0 → "84", 95.25 → "95.25").
pub(crate) fn fmt_num(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaperFile {
    number: Vec<PaperNumber>,
}

/// Parses and checks a paper-numbers TOML text (the format of `paper_numbers.toml`).
pub fn parse_paper_numbers(text: &str) -> Result<Vec<PaperNumber>> {
    let file: PaperFile = toml::from_str(text).context("parsing paper numbers TOML")?;
    let mut ids = BTreeSet::new();
    for n in &file.number {
        if !ids.insert(n.id.clone()) {
            bail!("paper numbers: duplicate id {:?}", n.id);
        }
        if !n.value.is_finite() || !(0.0..=100.0).contains(&n.value) {
            bail!(
                "paper numbers: {}: value {} is not a percentage",
                n.id,
                n.value
            );
        }
        match n.metric.as_str() {
            "std_acc" => {}
            "robust_acc" => {
                if n.norm.is_none() {
                    bail!("paper numbers: {}: robust_acc needs a norm", n.id);
                }
            }
            m => bail!("paper numbers: {}: unknown metric {m:?}", n.id),
        }
        let expected = match n.source.as_str() {
            "[CD]" => SourceStatus::Confirmed,
            "[RL]" => SourceStatus::Proxy,
            "[PB]" => SourceStatus::Replication,
            "MEM" => SourceStatus::Unconfirmed,
            s => bail!("paper numbers: {}: unknown source tag {s:?}", n.id),
        };
        if n.status != expected {
            bail!(
                "paper numbers: {}: source {} must have status {:?}, not {:?}",
                n.id,
                n.source,
                expected,
                n.status
            );
        }
    }
    Ok(file.number)
}

/// All numbers of the embedded `paper_numbers.toml` (parsed once).
pub fn paper_numbers() -> Result<&'static [PaperNumber]> {
    static CELL: OnceLock<std::result::Result<Vec<PaperNumber>, String>> = OnceLock::new();
    match CELL.get_or_init(|| parse_paper_numbers(PAPER_NUMBERS_TOML).map_err(|e| format!("{e:#}")))
    {
        Ok(v) => Ok(v.as_slice()),
        Err(e) => bail!("embedded paper_numbers.toml is invalid: {e}"),
    }
}

/// The numbers of one table / dataset / row, in file order.
pub fn select<'a>(
    numbers: &'a [PaperNumber],
    table: &str,
    dataset: &str,
    training_set: &str,
) -> Vec<&'a PaperNumber> {
    numbers
        .iter()
        .filter(|n| n.table == table && n.dataset == dataset && n.training_set == training_set)
        .collect()
}

/// A compact table cell for one row, grouped by source, e.g.
/// "std 84%, robust (L2 ε=0.25) 48% \[CD\]" or "std ≈95% (MEM, unconfirmed)". "—" when empty.
pub fn cell_text(numbers: &[&PaperNumber]) -> String {
    let mut sources: Vec<&str> = Vec::new();
    for n in numbers {
        if !sources.contains(&n.source.as_str()) {
            sources.push(&n.source);
        }
    }
    let parts: Vec<String> = sources
        .iter()
        .map(|src| {
            let group: Vec<&&PaperNumber> = numbers.iter().filter(|n| n.source == *src).collect();
            let vals: Vec<String> = group
                .iter()
                .map(|n| format!("{} {}", n.metric_text(), n.value_text()))
                .collect();
            let tag = match group[0].status {
                SourceStatus::Unconfirmed => format!("({src}, unconfirmed)"),
                SourceStatus::Proxy => format!("{src} proxy"),
                _ => src.to_string(),
            };
            format!("{} {tag}", vals.join(", "))
        })
        .collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_parses_and_has_the_key_rows() {
        let n = paper_numbers().unwrap();
        let get = |id: &str| n.iter().find(|x| x.id == id).unwrap();
        assert_eq!(get("fig2.cifar.D_R.rob").value, 48.0);
        assert!(get("fig2.cifar.D_R.rob").is_confirmed());
        assert_eq!(get("tab1.cifar.D_det.std").value, 44.0);
        assert!(!get("tab1.cifar.D.std").is_confirmed());
        assert_eq!(
            get("tab1.rimagenet.D_rand.std").status,
            SourceStatus::Unconfirmed
        );
        assert_eq!(get("pb.released.D_R.rob025").value, 46.54);
    }

    #[test]
    fn bad_files_are_rejected() {
        let ok = "[[number]]\nid='a'\ntable='T'\ndataset='d'\ntraining_set='D_R'\nmetric='std_acc'\nvalue=1.0\nsource='[CD]'\nstatus='confirmed'\n";
        assert!(parse_paper_numbers(ok).is_ok());
        let dup = format!("{ok}{ok}");
        assert!(format!("{:#}", parse_paper_numbers(&dup).unwrap_err()).contains("duplicate"));
        let bad_status = ok.replace("status='confirmed'", "status='proxy'");
        assert!(parse_paper_numbers(&bad_status).is_err());
        let bad_value = ok.replace("value=1.0", "value=150.0");
        assert!(parse_paper_numbers(&bad_value).is_err());
        let rob_without_norm = ok.replace("std_acc", "robust_acc");
        assert!(parse_paper_numbers(&rob_without_norm).is_err());
    }

    #[test]
    fn cell_text_groups_by_source() {
        let n = paper_numbers().unwrap();
        let dr = select(n, "Figure 2", "CIFAR-10", "D_R");
        assert_eq!(cell_text(&dr), "std 84%, robust (L2 ε=0.25) 48% [CD]");
        let d = select(n, "Figure 2", "CIFAR-10", "D_std");
        let t = cell_text(&d);
        assert!(
            t.contains("std ≈95%") && t.contains("(MEM, unconfirmed)"),
            "{t}"
        );
        assert!(t.contains("95.25%") && t.contains("[RL] proxy"), "{t}");
        assert_eq!(cell_text(&[]), "—");
    }
}
