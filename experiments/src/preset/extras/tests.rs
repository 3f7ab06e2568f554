//! The `[extras]` section of the presets: validation by field name, the built-in presets'
//! switches, `[fresh] seeds`.
use crate::preset::{IndependentModel, Preset, BUILTIN};

fn smoke_with_extras(extras: &str) -> anyhow::Result<Preset> {
    let text = BUILTIN.iter().find(|p| p.0 == "smoke").unwrap().1;
    let base = &text[..text.find("[extras]").unwrap()];
    Preset::parse(&format!("{base}[extras]\n{extras}\n"), "test")
}

#[test]
fn extras_preset_fields_are_validated_by_name() {
    let err = |e: &str| format!("{:#}", smoke_with_extras(e).unwrap_err());
    assert!(err("enabled = true\nfigure3 = true\nfigure3_archs = [{ type = \"fmnist_cnn\" }, { type = \"mlp\", hidden = [8] }]").contains("extras.figure3_archs"));
    assert!(
        err("figure3_archs = [{ type = \"fmnist_cnn\" }, { type = \"fmnist_cnn\" }]")
            .contains("listed twice")
    );
    assert!(err("eps_sensitivity = [0.5, -1.0]").contains("extras.eps_sensitivity"));
    assert!(err("eps_sensitivity = [0.5, 0.5]").contains("listed twice"));
    assert!(err("independent_model = \"C_std\"").contains("independent_model"));
    assert!(err("diversiti = true").contains("diversiti"));
    assert!(err("figure3_n = 5").contains("extras.figure3_n"));
    let p = smoke_with_extras("enabled = true").unwrap();
    assert!(!p.extras.figure3 && p.extras.eps_sensitivity.is_empty());
    assert_eq!(p.extras.independent_model, IndependentModel::OnControl);
}

#[test]
fn builtin_presets_switch_extras_as_documented() {
    for (name, _) in BUILTIN {
        Preset::load(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    // The smoke preset (the end-to-end test) runs every extra.
    let smoke = Preset::load("smoke").unwrap().0.extras;
    assert!(smoke.enabled && smoke.figure3 && smoke.diversity && smoke.source_vs_target);
    assert!(smoke.overfitting && smoke.cosine_ablation && !smoke.eps_sensitivity.is_empty());
    assert!(smoke.train_sizes.len() >= 2);
    // The default and the full preset run every extra (issue 8: in the default run's report).
    for name in ["fashion-mnist", "fashion-mnist-full"] {
        let e = Preset::load(name).unwrap().0.extras;
        assert!(
            e.enabled && e.overfitting && e.diversity && e.source_vs_target,
            "{name}"
        );
        assert!(
            e.figure3 && e.figure3_archs.len() >= 4 && e.cosine_ablation,
            "{name}"
        );
        assert!(
            e.eps_sensitivity.len() >= 3 && e.train_sizes.len() >= 3,
            "{name}"
        );
    }
}

#[test]
fn fresh_seeds_default_to_one_and_are_validated_by_name() {
    let text = BUILTIN.iter().find(|p| p.0 == "smoke").unwrap().1;
    // The smoke preset trains every Figure 2 / Table 1 fresh model twice.
    let smoke = Preset::parse(text, "smoke").unwrap();
    assert_eq!(smoke.fresh_seeds(), 2);
    // Absent (presets written before seeds existed): 1.
    let without = text.replace("seeds = 2", "");
    assert_ne!(without, text);
    let p = Preset::parse(&without, "test").unwrap();
    assert_eq!((p.fresh.seeds, p.fresh_seeds()), (None, 1));
    // Every built-in preset parses with at least one seed.
    for (name, _) in BUILTIN {
        assert!(Preset::load(name).unwrap().0.fresh_seeds() >= 1, "{name}");
    }
    let err = |t: String| format!("{:#}", Preset::parse(&t, "test").unwrap_err());
    assert!(err(text.replace("seeds = 2", "seeds = 0")).contains("fresh.seeds"));
    assert!(err(text.replace("seeds = 2", "seeds = -1")).contains("seeds"));
    let in_std = without.replacen("[train_std]\n", "[train_std]\nseeds = 3\n", 1);
    assert!(err(in_std).contains("train_std.seeds"));
    // Not in any cache key: the fresh section serialises the same with and without it.
    assert_eq!(
        serde_json::to_string(&smoke.fresh).unwrap(),
        serde_json::to_string(&p.fresh).unwrap()
    );
}
