//! What a model is in the experiments ([`ModelRole`]): the typed role the report places and
//! judges models by, never their names.
use crate::verdict::ModelKind;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::ModelResult;

/// What a model is in the experiments: the one row of one of the paper's training sets in
/// Figure 2 / Table 1, a variant of such a row, or a model of an extra experiment. Written by
/// the producer that trains the model (`nrf-experiments`), read by the report, which places and
/// judges models by it and never by their names. In JSON: `{"main": "d_r"}`,
/// `{"variant": "d_det"}`, `{"extra": {"set": "d_det", "varies": "eps"}}`, `"other"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    /// The model of Figure 2 / Table 1 for its set (`C_std`, `C_rob`, `on_D_R`, `on_D_NR`,
    /// `on_D_rand`, `on_D_det`, `on_control`): what the claims are decided on.
    Main(ModelKind),
    /// Another Table 1 / Figure 2 model on a variant of the set (`on_D_det_eps2`: D_det at a
    /// further radius of `relabel.extra_eps`): listed after its set's row, with claims of its
    /// own (T1a / T1b for D_rand / D_det variants).
    Variant(ModelKind),
    /// A model an extra experiment trains for itself: not in Figure 2 / Table 1. `set` is the
    /// paper's set (or training) it stands in for, `varies` what the extra changes.
    Extra {
        /// The paper's set or training the model stands in for.
        set: ModelKind,
        /// What the extra changes from the paper's recipe.
        varies: Varies,
    },
    /// Outside the paper's experiments, role unknown: only a model read from a file written
    /// before `role` existed whose name is not one of the paper's (`legacy_role`, the fallback
    /// for such files). Producers never write it.
    Other,
}

impl ModelRole {
    /// The paper's set and whether the model is a variant, for a Figure 2 / Table 1 model; None
    /// for the extras' models.
    pub fn paper(self) -> Option<(ModelKind, bool)> {
        match self {
            ModelRole::Main(k) => Some((k, false)),
            ModelRole::Variant(k) => Some((k, true)),
            ModelRole::Extra { .. } | ModelRole::Other => None,
        }
    }
}

/// What an extra experiment's model changes from the paper's recipe ([`ModelRole::Extra`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Varies {
    /// The L2 radius of the targeted attack that builds D_rand / D_det (`eps_sensitivity`,
    /// models `es_*`), or of the adversarial training of a source model (`d_det_study`'s
    /// slightly robust source `dd_C_rob_eps*`).
    Eps,
    /// The number of training images (`train_size`, models `ts_*`).
    TrainSize,
    /// The architecture (`figure3`, models `f3_*`; `d_det_study`'s larger source model
    /// `dd_C_std_*`).
    Architecture,
    /// The distance of D_R's representation matching, cosine or squared L2
    /// (`cosine_ablation`, models `cos_*`).
    Distance,
    /// The weight initialisation (`init_ablation`, models `init_*`).
    Init,
    /// How D_det is built: source model, attack, loss, radius (`d_det_study`, models
    /// `dd_on_*`).
    Construction,
    /// The training images: as many as the control, none a target or start image of D_R /
    /// D_NR (`diversity` / `source_vs_target`'s independent model `C_indep`).
    HeldOutImages,
}

/// The role of a model read from a `models/<name>.json` written before [`ModelResult::role`]
/// existed, from its name by the naming convention of those runs: the paper's names
/// ([`ModelKind::base_name`]) are its main models, a paper name followed by `_<suffix>` a
/// variant (`on_D_det_eps2`), and every other name (the extras' own models, which carried a
/// prefix such as `f3_`, `es_`, `ts_`, `cos_`) [`ModelRole::Other`]. Used only when such a file
/// is read ([`ModelResultFile`]); everything written since records its role.
pub(super) fn legacy_role(name: &str) -> ModelRole {
    for k in ModelKind::ALL {
        let base = k.base_name();
        if name == base {
            return ModelRole::Main(k);
        }
        if let Some(rest) = name.strip_prefix(base) {
            if rest.starts_with('_') && rest.len() > 1 {
                return ModelRole::Variant(k);
            }
        }
    }
    ModelRole::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeds::tests::seeded_model;
    use crate::ModelResult;

    #[test]
    fn roles_are_written_and_old_files_get_theirs_from_the_name() {
        let mut m = seeded_model(&[(0.78, 0.49)]);
        m.name = "es_on_D_det_eps4".into();
        m.role = ModelRole::Extra {
            set: ModelKind::DDet,
            varies: Varies::Eps,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["role"],
            serde_json::json!({"extra": {"set": "d_det", "varies": "eps"}})
        );
        let back: ModelResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
        // The recorded role wins over the name, both ways.
        for (name, role, json) in [
            (
                "on_D_R",
                ModelRole::Extra {
                    set: ModelKind::DR,
                    varies: Varies::Distance,
                },
                serde_json::json!({"extra": {"set": "d_r", "varies": "distance"}}),
            ),
            (
                "anything",
                ModelRole::Main(ModelKind::DNR),
                serde_json::json!({"main": "d_nr"}),
            ),
            (
                "det_far",
                ModelRole::Variant(ModelKind::DDet),
                serde_json::json!({"variant": "d_det"}),
            ),
        ] {
            let mut v = serde_json::to_value(&m).unwrap();
            v["name"] = name.into();
            v["role"] = json;
            let read: ModelResult = serde_json::from_value(v).unwrap();
            assert_eq!(read.role, role, "{name}");
        }
        // A file written before `role` existed: the legacy naming convention, at reading only.
        let old_role = |name: &str| {
            let mut v = serde_json::to_value(&m).unwrap();
            v.as_object_mut().unwrap().remove("role");
            v["name"] = name.into();
            serde_json::from_value::<ModelResult>(v).unwrap().role
        };
        assert_eq!(old_role("on_D_R"), ModelRole::Main(ModelKind::DR));
        assert_eq!(old_role("C_rob"), ModelRole::Main(ModelKind::Rob));
        assert_eq!(old_role("on_control"), ModelRole::Main(ModelKind::Control));
        assert_eq!(old_role("on_D_NR"), ModelRole::Main(ModelKind::DNR));
        assert_eq!(old_role("on_D_rand"), ModelRole::Main(ModelKind::DRand));
        assert_eq!(
            old_role("on_D_det_eps2"),
            ModelRole::Variant(ModelKind::DDet)
        );
        assert_eq!(old_role("on_D_R_noise"), ModelRole::Variant(ModelKind::DR));
        for other in [
            "on_D_",
            "on_D_R~s1",
            "resnet",
            "es_on_D_det_eps4",
            "f3_mlp_on_D_det",
        ] {
            assert_eq!(old_role(other), ModelRole::Other, "{other}");
        }
        // Unknown roles are errors, not silently "other".
        let mut v = serde_json::to_value(&m).unwrap();
        v["role"] = serde_json::json!({"main": "d_x"});
        assert!(serde_json::from_value::<ModelResult>(v).is_err());
    }
}
