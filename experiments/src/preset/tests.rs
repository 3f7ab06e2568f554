use super::*;
use nrf_attacks::Distance;
use nrf_models::{Arch, Init, Precision};
use std::path::PathBuf;

fn sets(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The error of loading `smoke` with `overrides`, with its whole chain.
fn err(overrides: &[&str]) -> String {
    let e = Preset::load_with_overrides("smoke", &sets(overrides))
        .expect_err("the overrides should be refused");
    format!("{e:#}")
}

#[test]
fn no_overrides_is_the_file_unchanged() {
    let (p, text) = Preset::load_with_overrides("smoke", &[]).unwrap();
    assert_eq!(text, BUILTIN[0].1);
    assert!(p.overrides.is_empty());
    // `overrides` is not a preset field.
    let text = format!("overrides = [\"seed=1\"]\n{}", BUILTIN[0].1);
    let e = format!("{:#}", Preset::parse(&text, "x").unwrap_err());
    assert!(e.contains("unknown field `overrides`"), "{e}");
}

#[test]
fn nested_keys_are_set() {
    let o = sets(&[
        "rep_match.n=64",
        "train_std.epochs=1",
        "model.arch.type=resnet18",
        "model.arch.width=8",
        "train_rob.attack.steps=1",
        "extras.enabled=false",
        "eval.l2_eps=[0.25, 0.5]",
        "relabel.eps=2",
    ]);
    let (p, text) = Preset::load_with_overrides("smoke", &o).unwrap();
    assert_eq!(p.rep_match.n, 64);
    assert_eq!(p.train_std.epochs, 1);
    assert_eq!(p.model.arch, Arch::ResNet18 { width: 8 });
    assert_eq!(p.train_rob.attack.as_ref().unwrap().steps, 1);
    assert_eq!(p.train_rob.attack.as_ref().unwrap().eps, 1.0);
    assert!(!p.extras.enabled);
    assert_eq!(p.eval.l2_eps, vec![0.25, 0.5]);
    assert_eq!(p.relabel.eps, 2.0);
    assert_eq!(p.overrides, o);
    // Untouched values stay.
    assert_eq!(p.rep_match.steps, 40);
    assert_eq!(p.train_rob.epochs, 4);
    // The effective text is the preset as run: it parses to the same values, keeps the
    // file's comments, lists the overrides and marks what they changed.
    let again = Preset::parse(&text, "effective").unwrap();
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&p).unwrap()
    );
    assert!(text.contains("#   --set rep_match.n=64\n"), "{text}");
    assert!(text.contains("n = 64  # --set (was: 300)"), "{text}");
    assert!(text.contains("# first 2000 training images"), "{text}");
    assert!(
        text.contains(r#"# --set (was: { type = "fmnist_cnn" })"#),
        "{text}"
    );
    // The same key twice: the last wins, the mark still names the file's value.
    let (p, text) =
        Preset::load_with_overrides("smoke", &sets(&["rep_match.n=64", "rep_match.n=32"])).unwrap();
    assert_eq!(p.rep_match.n, 32);
    assert!(text.contains("n = 32  # --set (was: 300)"), "{text}");
}

#[test]
fn new_keys_and_sections_are_created() {
    // smoke has no `eval.curve_n`, no `data.max_per_class` and no [theory] section.
    let o = sets(&[
        "eval.curve_n=500",
        "data.max_per_class=7",
        "theory.skip=true",
    ]);
    let (p, text) = Preset::load_with_overrides("smoke", &o).unwrap();
    assert_eq!(p.eval.curve_n, 500);
    assert_eq!(p.data.max_per_class, Some(7));
    assert!(p.theory.skip);
    assert!(text.contains("curve_n = 500  # --set (new)"), "{text}");
    assert!(text.contains("[theory]"), "{text}");
    // A new key in an inline table.
    let o = sets(&["model.arch.type=mlp", "model.arch.hidden=[8]"]);
    let (p, text) = Preset::load_with_overrides("smoke", &o).unwrap();
    assert_eq!(p.model.arch, Arch::Mlp { hidden: vec![8] });
    assert!(
        text.contains(
            r#"arch = { type = "mlp", hidden = [8] }  # --set (was: { type = "fmnist_cnn" })"#
        ),
        "{text}"
    );
    // A preset without [extras]: `extras.figure3_n` creates the section.
    let cut = BUILTIN[0].1.find("[extras]").unwrap();
    let base = &BUILTIN[0].1[..cut];
    let (p, text) =
        Preset::parse_with_overrides(base, "cut", &sets(&["extras.figure3_n=100"])).unwrap();
    assert_eq!(p.extras.figure3_n, Some(100));
    assert!(!p.extras.enabled);
    assert!(text.contains("[extras]"), "{text}");
}

#[test]
fn unknown_keys_are_errors_naming_them() {
    let e = err(&["rep_match.n=64", "rep_match.nn=64"]);
    assert!(e.contains("--set rep_match.nn=64"), "{e}");
    assert!(e.contains("unknown field `nn`"), "{e}");
    assert!(
        !e.contains("rep_match.n=64 "),
        "only the culprit is named: {e}"
    );
    // An override that a later one of the same key replaced is not blamed.
    let e = err(&["rep_match.n=64", "rep_match.n=abc"]);
    assert!(e.contains("preset smoke: --set rep_match.n=abc:"), "{e}");
    let e = err(&["nosuch.key=1"]);
    assert!(e.contains("--set nosuch.key=1"), "{e}");
    assert!(e.contains("unknown field `nosuch`"), "{e}");
    let e = err(&["train_rob.attack.nrom=\"l2\""]);
    assert!(e.contains("--set train_rob.attack.nrom"), "{e}");
    // A key serde would silently ignore (fmnist_cnn takes no width) is refused too.
    let e = err(&["model.arch.width=8"]);
    assert!(e.contains("model.arch.width"), "{e}");
    let e = err(&["model.arch={ type = \"fmnist_cnn\", width = 8 }"]);
    assert!(e.contains("model.arch.width"), "{e}");
    // Going into a value that is not a table.
    let e = err(&["seed.x=1"]);
    assert!(e.contains("`seed` is not a table"), "{e}");
    // `fresh.seeds` is read although never serialised: no false alarm.
    let (p, _) = Preset::load_with_overrides("smoke", &sets(&["fresh.seeds=3"])).unwrap();
    assert_eq!(p.fresh_seeds(), 3);
}

#[test]
fn bad_values_are_errors_naming_the_key() {
    let e = err(&["rep_match.n=abc"]);
    assert!(e.contains("--set rep_match.n=abc"), "{e}");
    assert!(e.contains("invalid type"), "{e}");
    let e = err(&["train_std.epochs=1.5"]);
    assert!(e.contains("--set train_std.epochs=1.5"), "{e}");
    let e = err(&["model.arch.type=resnet99"]);
    assert!(e.contains("--set model.arch.type=resnet99"), "{e}");
    // Values serde accepts but validate() refuses: validate's message names the field.
    let e = err(&["rep_match.n=0"]);
    assert!(e.contains("`rep_match.n`"), "{e}");
    assert!(e.contains("--set rep_match.n=0"), "{e}");
    let e = err(&["eval.headline_eps=0.75"]);
    assert!(e.contains("`eval.headline_eps`"), "{e}");
    let e = err(&["train_rob.schedule=linear"]);
    assert!(e.contains("`train_rob.schedule`"), "{e}");
    let e = err(&["extras.figure3_seeds=0"]);
    assert!(e.contains("`extras.figure3_seeds`"), "{e}");
}

/// Issue 12, item 2: an enum-valued field refuses a bad value, naming the field and the
/// accepted spellings, both in a preset file and through `--set`.
#[test]
fn bad_enum_values_name_the_field_and_the_choices() {
    let cases: [(&str, &str, &[&str]); 12] = [
        (
            "data.dataset=imagenet",
            "data.dataset",
            &["fashion-mnist", "mnist", "cifar10", "restricted-imagenet"],
        ),
        ("model.init=xavier", "model.init", &["pytorch", "tch"]),
        ("model.precision=fp16", "model.precision", &["f32", "bf16"]),
        (
            "model.arch.type=resnet99",
            "model.arch",
            &["fmnist_cnn", "resnet18", "vgg16"],
        ),
        (
            "train_std.schedule=linear",
            "train_std.schedule",
            &["cosine", "step"],
        ),
        (
            "fresh.schedule=Cosine",
            "fresh.schedule",
            &["cosine", "step"],
        ),
        (
            "train_rob.attack.norm=l3",
            "train_rob.attack.norm",
            &["l2", "linf"],
        ),
        (
            "rep_match.distance=L2Squared",
            "rep_match.distance",
            &["l2_relative", "l2_squared", "cosine"],
        ),
        (
            "rep_match.start=zeros",
            "rep_match.start",
            &["other_image", "noise"],
        ),
        (
            "extras.independent_model=none",
            "extras.independent_model",
            &["on_control", "C_indep"],
        ),
        (
            "eval.ensemble.attacks=[\"apgd\"]",
            "eval.ensemble.attacks",
            &["apgd-ce", "apgd-t", "square"],
        ),
        (
            "extras.d_det_study.source_arch.type=x",
            "extras.d_det_study.source_arch",
            &["resnet18"],
        ),
    ];
    for (set, field, choices) in cases {
        let e = err(&[set]);
        assert!(e.contains(&format!("--set {set}")), "{set}: {e}");
        assert!(e.contains(&format!("field `{field}")), "{set}: {e}");
        for c in choices {
            assert!(e.contains(&format!("`{c}`")), "{set}: {c} not listed: {e}");
        }
    }
    // The same in a preset file, where toml's message shows only the line `norm = ...`.
    let file = |from: &str, to: &str| {
        let text = BUILTIN[0].1.replacen(from, to, 1);
        assert_ne!(text, BUILTIN[0].1, "{from}");
        format!("{:#}", Preset::parse(&text, "t").unwrap_err())
    };
    let e = file("norm = \"l2\"", "norm = \"L2\"");
    assert!(e.contains("preset field `train_rob.attack.norm`"), "{e}");
    assert!(e.contains("`l2`") && e.contains("`linf`"), "{e}");
    let e = file("start = \"other_image\"", "start = \"image\"");
    assert!(e.contains("preset field `rep_match.start`"), "{e}");
    let e = file("dataset = \"fashion-mnist\"", "dataset = \"fmnist\"");
    assert!(e.contains("preset field `data.dataset`"), "{e}");
    assert!(e.contains("`restricted-imagenet`"), "{e}");
    // Other serde errors name their field too.
    let e = file("steps = 40", "steps = -40");
    assert!(e.contains("preset field `rep_match.steps`"), "{e}");
    let e = file("[relabel]\n", "[relabel]\nnn = 1\n");
    assert!(e.contains("unknown field `nn`"), "{e}");
}

/// The enum fields serialise as the preset files spell them (stage keys and saved presets
/// compare serialised presets): every shipped preset's value, and each default.
#[test]
fn enum_fields_serialise_as_the_files_spell_them() {
    let paths = [
        "data.dataset",
        "model.init",
        "train_std.schedule",
        "train_rob.schedule",
        "fresh.schedule",
        "train_rob.attack.norm",
        "rep_match.distance",
        "rep_match.start",
    ];
    let at = |v: &serde_json::Value, path: &str| {
        path.split('.')
            .try_fold(v, |v, k| v.get(k))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    for (name, text) in BUILTIN {
        let (p, _) = Preset::load(name).unwrap();
        let serialised = serde_json::to_value(&p).unwrap();
        let file = serde_json::to_value(text.parse::<toml::Table>().unwrap()).unwrap();
        for path in paths {
            let (s, f) = (at(&serialised, path), at(&file, path));
            assert!(s.is_string(), "{name} {path}: {s}");
            assert!(
                f.is_null() || f == s,
                "{name} {path}: file {f}, serialised {s}"
            );
        }
    }
    // The defaults of `rep_match.distance` / `start` and `model.init`.
    let text = BUILTIN[0]
        .1
        .replacen("distance = \"l2_squared\"\n", "", 1)
        .replacen("start = \"other_image\"\n", "", 1)
        .replacen("init = \"pytorch\"", "", 1);
    let p = serde_json::to_value(Preset::parse(&text, "t").unwrap()).unwrap();
    assert_eq!(at(&p, "rep_match.distance"), "l2_squared");
    assert_eq!(at(&p, "rep_match.start"), "other_image");
    assert_eq!(at(&p, "model.init"), "pytorch");
    for d in [
        DatasetName::FashionMnist,
        DatasetName::Mnist,
        DatasetName::Cifar10,
        DatasetName::RestrictedImagenet,
    ] {
        assert_eq!(serde_json::json!(d), d.as_str());
        assert_eq!(d.as_str().parse::<DatasetName>().unwrap(), d);
    }
    let e = "imagenet".parse::<DatasetName>().unwrap_err().to_string();
    assert!(e.contains("`fashion-mnist`"), "{e}");
}

/// `model.precision`: f32 by default and left out of the serialised preset (so an f32 preset's
/// stage keys are those from before the field); bf16 for any architecture; a bad value refused,
/// naming the field.
#[test]
fn precision_is_f32_unless_set_and_bf16_for_any_architecture() {
    let (p, _) = Preset::load_with_overrides("smoke", &[]).unwrap();
    assert_eq!(p.model.precision, Precision::F32);
    let json = serde_json::to_value(&p).unwrap();
    assert!(json["model"].get("precision").is_none(), "{json}");
    let (p, _) = Preset::load_with_overrides("smoke", &sets(&["model.precision=bf16"])).unwrap();
    assert_eq!(p.model.precision, Precision::Bf16);
    assert_eq!(
        serde_json::to_value(&p).unwrap()["model"]["precision"],
        "bf16"
    );
    let (p, _) = Preset::load_with_overrides(
        "smoke",
        &sets(&[
            "model.precision=bf16",
            "model.arch={ type = \"mlp\", hidden = [32] }",
        ]),
    )
    .unwrap();
    assert_eq!(p.model.precision, Precision::Bf16);
    let e = err(&["model.precision=\"f16\""]);
    assert!(e.contains("model.precision") && e.contains("f16"), "{e}");
}

#[test]
fn values_are_toml_else_strings() {
    let o = sets(&[
        "model.init=tch",
        "rep_match.distance=\"cosine\"",
        "name=smoke-small",
        "data.dir=/tmp/some where",
        "extras.independent_model=C_indep",
        "seed=7",
        "relabel.step_size=1e-1",
    ]);
    let (p, _) = Preset::load_with_overrides("smoke", &o).unwrap();
    assert_eq!(p.model.init, Init::Tch);
    assert_eq!(p.rep_match.distance, Distance::Cosine);
    assert_eq!(p.name, "smoke-small");
    assert_eq!(p.data.dir, Some(PathBuf::from("/tmp/some where")));
    assert_eq!(p.extras.independent_model, IndependentModel::CIndep);
    assert_eq!(p.seed, 7);
    assert_eq!(p.relabel.step_size, 0.1);
    // A bare word is a string, so a number field refuses it naming the key.
    let e = err(&["seed=seven"]);
    assert!(e.contains("--set seed=seven"), "{e}");
}

#[test]
fn malformed_sets_are_errors() {
    let e = err(&["rep_match.n"]);
    assert!(e.contains("--set rep_match.n: expected KEY=VALUE"), "{e}");
    let e = err(&["=5"]);
    assert!(e.contains("not a dotted key"), "{e}");
    let e = err(&["rep_match..n=5"]);
    assert!(e.contains("not a dotted key"), "{e}");
}

// Issue 16, item 7: values that were never validated.

#[test]
fn gamma_must_be_in_zero_one() {
    for v in ["-0.1", "0", "nan", "inf", "2"] {
        let e = err(&["train_std.schedule=step", &format!("train_std.gamma={v}")]);
        assert!(e.contains("`train_std.gamma`"), "{v}: {e}");
    }
    let e = err(&["fresh.gamma=-1"]);
    assert!(e.contains("`fresh.gamma`") && e.contains("(0, 1]"), "{e}");
    Preset::load_with_overrides("smoke", &sets(&["train_std.gamma=1"])).unwrap();
}

#[test]
fn milestones_must_increase_within_training() {
    let step = "train_std.schedule=step";
    let e = err(&[step, "train_std.milestones=[3, 1]"]);
    assert!(
        e.contains("`train_std.milestones`") && e.contains("increasing"),
        "{e}"
    );
    let e = err(&[step, "train_std.milestones=[2, 2]"]);
    assert!(e.contains("increasing"), "{e}");
    // smoke trains 4 epochs: a milestone at 4 or later never takes effect.
    let e = err(&[step, "train_std.milestones=[2, 4]"]);
    assert!(e.contains("epoch 4 is not within training"), "{e}");
    assert!(e.contains("train_std.milestones=[]"), "{e}");
    let e = err(&[step, "train_std.milestones=[0]"]);
    assert!(e.contains("epoch 0"), "{e}");
    // Milestones are the step schedule's.
    let e = err(&["train_std.milestones=[2]"]);
    assert!(e.contains("only the \"step\" schedule"), "{e}");
    Preset::load_with_overrides("smoke", &sets(&[step, "train_std.milestones=[1, 3]"])).unwrap();
    // The shipped presets are valid, and shrinking cifar10's epochs names the milestones.
    for (name, _) in BUILTIN {
        Preset::load(name).unwrap();
    }
    let e = format!(
        "{:#}",
        Preset::load_with_overrides("cifar10", &sets(&["train_std.epochs=2"])).unwrap_err()
    );
    assert!(
        e.contains("`train_std.milestones`") && e.contains("epoch 50"),
        "{e}"
    );
}

#[test]
fn mean_and_std_are_checked_naming_the_field() {
    let e = err(&["model.mean=[0.5]", "model.std=[0.0]"]);
    assert!(e.contains("`model.std`") && e.contains("positive"), "{e}");
    let e = err(&["model.mean=[0.5]", "model.std=[-1.0]"]);
    assert!(e.contains("`model.std`"), "{e}");
    let e = err(&["model.mean=[nan]", "model.std=[1.0]"]);
    assert!(e.contains("`model.mean`"), "{e}");
    let e = err(&["model.mean=[0.5]"]);
    assert!(
        e.contains("`model.std`: missing while `model.mean` is set"),
        "{e}"
    );
    let e = err(&["model.std=[0.5]"]);
    assert!(
        e.contains("`model.mean`: missing while `model.std` is set"),
        "{e}"
    );
    let e = err(&["model.mean=[0.5, 0.5]", "model.std=[0.5]"]);
    assert!(e.contains("model.mean has 2, model.std 1"), "{e}");
    let e = err(&["model.mean=[]", "model.std=[]"]);
    assert!(e.contains("model.mean / model.std"), "{e}");
    // Against the data's channels (checked when the data is read).
    let (p, _) = Preset::load_with_overrides(
        "smoke",
        &sets(&["model.mean=[0.5, 0.5, 0.5]", "model.std=[0.2, 0.2, 0.2]"]),
    )
    .unwrap();
    let e = p
        .model
        .check_channels(1, "fashion-mnist/train")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`model.mean`") && e.contains("3 values"), "{e}");
    assert!(e.contains("fashion-mnist/train have 1 channel"), "{e}");
    p.model.check_channels(3, "x").unwrap();
}

#[test]
fn sources_name_model_files_typed_and_checked() {
    // No preset names one, and an empty [sources] serialises to nothing (no cache key or
    // recorded preset changes).
    for (name, text) in BUILTIN {
        let p = Preset::parse(text, name).unwrap();
        assert!(p.sources.is_empty(), "{name}");
        assert!(!toml::to_string(&p).unwrap().contains("sources"), "{name}");
    }
    let off = ["extras.enabled=false"];
    let with = |more: &[&str]| -> Preset {
        let v: Vec<&str> = off.iter().chain(more).copied().collect();
        Preset::load_with_overrides("smoke", &sets(&v)).unwrap().0
    };
    let p = with(&["sources.c_rob.model=robust.pt"]);
    let s = p.sources.c_rob.as_ref().unwrap();
    assert_eq!(s.model, PathBuf::from("robust.pt"));
    assert_eq!(s.rep, nrf_models::RepSource::Tuple);
    assert!(s.mean.is_empty() && s.std.is_empty());
    assert!(p.sources.c_std.is_none());
    assert_eq!(p.sources.named().len(), 1);
    let p = with(&[
        "sources.c_std.model=std.pt",
        "sources.c_std.rep=method:features",
        "sources.c_std.mean=[0.286]",
        "sources.c_std.std=[0.353]",
    ]);
    let s = p.sources.of("C_std").unwrap();
    assert_eq!(s.rep, nrf_models::RepSource::Method("features".into()));
    assert_eq!((s.mean.clone(), s.std.clone()), (vec![0.286], vec![0.353]));
    // Serialised as written (run.json's preset, `--set` checks).
    let back = toml::to_string(&p).unwrap();
    assert!(back.contains("rep = \"method:features\""), "{back}");

    let e = err(&["extras.enabled=false", "sources.c_rob.modle=x.pt"]);
    assert!(e.contains("modle"), "{e}");
    let e = err(&["extras.enabled=false", "sources.c_mid.model=x.pt"]);
    assert!(e.contains("c_mid"), "{e}");
    let e = err(&[
        "extras.enabled=false",
        "sources.c_rob.model=x.pt",
        "sources.c_rob.rep=layer4",
    ]);
    assert!(
        e.contains("sources.c_rob.rep") && e.contains("method:<name>"),
        "{e}"
    );
    let e = err(&[
        "extras.enabled=false",
        "sources.c_rob.model=x.pt",
        "sources.c_rob.mean=[0.5]",
    ]);
    assert!(
        e.contains("`sources.c_rob.mean / sources.c_rob.std`"),
        "{e}"
    );
    let e = err(&[
        "extras.enabled=false",
        "sources.c_rob.model=x.pt",
        "sources.c_rob.mean=[0.5]",
        "sources.c_rob.std=[0.0]",
    ]);
    assert!(e.contains("`sources.c_rob.std`"), "{e}");
    // An nrf checkpoint (`.safetensors`) brings its own representation and normalisation.
    let p = with(&["sources.c_std.model=runs/C_std.safetensors"]);
    let s = p.sources.of("C_std").unwrap();
    assert_eq!(
        nrf_models::ModelFormat::of(&s.model),
        nrf_models::ModelFormat::Checkpoint
    );
    assert_eq!(
        nrf_models::ModelFormat::of(std::path::Path::new("std.pt")),
        nrf_models::ModelFormat::TorchScript
    );
    for extra in [
        "sources.c_std.rep=method:features",
        "sources.c_std.mean=[0.5]",
    ] {
        let e = err(&[
            "extras.enabled=false",
            "sources.c_std.model=C_std.safetensors",
            "sources.c_std.std=[0.5]",
            extra,
        ]);
        assert!(
            e.contains("`sources.c_std.rep / sources.c_std.mean / sources.c_std.std`")
                && e.contains("nrf checkpoint"),
            "{e}"
        );
    }
    // The extras run with named sources (experiments/tests/torchscript_sources.rs).
    let p = Preset::load_with_overrides("smoke", &sets(&["sources.c_rob.model=x.pt"]));
    assert!(p.unwrap().0.extras.enabled);
}

#[test]
fn name_must_be_a_folder_name() {
    for bad in ["", " ", "a/b", "../up", "..", ".", "a\\b", "x\ny", " lead"] {
        let text = BUILTIN[0]
            .1
            .replacen("name = \"smoke\"", &format!("name = {bad:?}"), 1);
        let e = format!("{:#}", Preset::parse(&text, "t").unwrap_err());
        assert!(e.contains("`name`"), "{bad:?}: {e}");
    }
    for good in ["smoke-2", "my run", "a.b"] {
        let text = BUILTIN[0]
            .1
            .replacen("name = \"smoke\"", &format!("name = {good:?}"), 1);
        Preset::parse(&text, "t").unwrap();
    }
}

#[test]
fn a_results_folder_of_another_preset_is_refused() {
    let (smoke, _) = Preset::load("smoke").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r");
    // Absent or empty: fine.
    smoke.check_results_folder(&results).unwrap();
    std::fs::create_dir(&results).unwrap();
    smoke.check_results_folder(&results).unwrap();
    let run = |preset: &str, toml: &str| {
        let v = serde_json::json!({ "preset": preset, "config_toml": toml });
        std::fs::write(results.join("run.json"), v.to_string()).unwrap();
    };
    run("smoke", BUILTIN[0].1);
    smoke.check_results_folder(&results).unwrap();
    run("cifar10", BUILTIN[3].1);
    let e = smoke
        .check_results_folder(&results)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&results.display().to_string()), "{e}");
    assert!(
        e.contains("preset \"cifar10\"") && e.contains("not of preset \"smoke\""),
        "{e}"
    );
    assert!(
        e.contains("--results DIR") && e.contains("start afresh"),
        "{e}"
    );
    // Same name, other data set.
    run("smoke", &BUILTIN[0].1.replace("fashion-mnist", "mnist"));
    let e = smoke
        .check_results_folder(&results)
        .unwrap_err()
        .to_string();
    assert!(e.contains("on data set \"mnist\""), "{e}");
    std::fs::write(results.join("run.json"), "{ garbage").unwrap();
    let e = smoke
        .check_results_folder(&results)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an nrf run record"), "{e}");
    // A file given as the folder.
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let e = smoke.check_results_folder(&file).unwrap_err().to_string();
    assert!(e.contains("is a file, not a folder"), "{e}");
}

/// Issue 16, item 5: the preset parser on arbitrary and mutated text never panics and
/// answers quickly (the `fuzz/` workspace's `preset` target runs the same under libFuzzer).
#[test]
fn arbitrary_preset_text_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let start = std::time::Instant::now();
    let mut cases = 0;
    while cases < 400 && start.elapsed().as_secs_f64() < 4.0 {
        let base = BUILTIN[rng.gen_range(0..BUILTIN.len())].1.as_bytes();
        let mut b: Vec<u8> = match rng.gen_range(0..3) {
            0 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
            _ => base.to_vec(),
        };
        for _ in 0..rng.gen_range(0..6) {
            if b.is_empty() {
                break;
            }
            let i = rng.gen_range(0..b.len());
            match rng.gen_range(0..4) {
                0 => b[i] = rng.gen(),
                1 => b[i] = b"0123456789-.=[]{}\"\n ,"[rng.gen_range(0..21)],
                2 => {
                    b.truncate(i);
                }
                _ => {
                    let j = rng.gen_range(0..b.len());
                    let chunk = b[j..(j + 40).min(b.len())].to_vec();
                    b.splice(i..i, chunk);
                }
            }
        }
        let text = String::from_utf8_lossy(&b);
        let one = std::time::Instant::now();
        let _ = parse_fuzz_input(&text);
        assert!(one.elapsed().as_secs_f64() < 1.0, "slow on {text:?}");
        cases += 1;
    }
    assert!(cases >= 50, "only {cases} cases in the time");
}

#[test]
fn the_curve_costs_at_most_a_tenth_of_an_epoch() {
    let mut e = Preset::load("fashion-mnist").unwrap().0.eval;
    assert_eq!(e.curve_n, 2000);
    // (test images, training images) -> the curve's test images.
    for ((test_n, train_n), k) in [
        ((10_000, 60_000), 2000),
        ((10_000, 10_000), 2000),
        ((10_000, 6_667), 2000),
        ((10_000, 6_666), 2000),
        ((10_000, 6_600), 1980),
        ((10_000, 3_000), 900),
        ((10_000, 1_000), 300),
        ((1_000, 60_000), 1000),
        ((10_000, 1), 1),
        ((10_000, 0), 1),
    ] {
        assert_eq!(
            e.curve_images(test_n, train_n),
            k,
            "{test_n} test, {train_n} train"
        );
    }
    e.curve_n = 0; // the whole test set, still capped
    assert_eq!(e.curve_images(10_000, 60_000), 10_000);
    assert_eq!(e.curve_images(10_000, 10_000), 3000);
}

/// The curve is measured every epoch while it takes at most a fifth of a test image per
/// training image, else every k-th epoch, the fewest that keep it at that on average.
#[test]
fn the_curve_of_a_small_training_set_skips_epochs() {
    let every = EvalSection::curve_every;
    // (curve images, training images) -> every how many epochs.
    for ((curve, train_n), k) in [
        ((2000, 60_000), 1), // C_std, C_rob
        ((2000, 10_000), 1), // the Figure 2 / Table 1 fresh models: their keys are unchanged
        ((2000, 9_999), 2),
        ((2000, 6_667), 2),
        ((900, 3_000), 2), // Figure 3, the D_det study
        ((300, 1_000), 2), // the train-size extra
        ((10_000, 10_000), 5),
        ((1, 1), 5),
        ((0, 0), 1),
    ] {
        assert_eq!(every(curve, train_n), k, "{curve} curve, {train_n} train");
    }
}

/// Architecture sizes libtorch would abort on (negative, zero, absurd) and an APGD restart count
/// that cannot be allocated are refused when the preset is read, naming the field.
#[test]
fn sizes_that_would_abort_libtorch_are_refused_naming_the_field() {
    for (set, field, what) in [
        (
            "model.arch={type = \"resnet18\", width = -8}",
            "model.arch",
            "width -8 is not in 1..=1024",
        ),
        (
            "model.arch={type = \"mlp\", hidden = [64, 0]}",
            "model.arch",
            "hidden size 0",
        ),
        (
            "model.arch={type = \"densenet\", growth = 12, blocks = []}",
            "model.arch",
            "at least one dense block",
        ),
        (
            "extras.figure3_archs=[{type = \"fmnist_cnn\"}, {type = \"vgg16\", width = 100000}, \
             {type = \"mlp\", hidden = [16]}]",
            "extras.figure3_archs",
            "width 100000",
        ),
        (
            "extras.d_det_study.source_arch={type = \"resnet18\", width = 0}",
            "extras.d_det_study.source_arch",
            "width 0",
        ),
        (
            "eval.ensemble.restarts=1000000000000000000",
            "eval.ensemble.restarts",
            "1..=1000",
        ),
    ] {
        let e = err(&[set]);
        assert!(e.contains(&format!("preset field `{field}`")), "{set}: {e}");
        assert!(e.contains(what), "{set}: {e}");
    }
    // The sizes that are fine stay fine.
    for a in [
        Arch::ResNet18 { width: 1 },
        Arch::Vgg16 { width: 1024 },
        Arch::Mlp { hidden: vec![] },
        Arch::DenseNet {
            growth: 32,
            blocks: vec![6, 12, 24, 16],
        },
    ] {
        a.validate().unwrap();
    }
}

/// `[fresh_by_set]`: the CIFAR-10 preset trains D_NR's and D_rand's models at lr 0.01 and
/// D_det's without augmentation ([PB]), variants take their kind's entry, other sets and
/// presets without the table are `[fresh]`; a wrong kind or value is an error naming it.
#[test]
fn fresh_models_train_by_their_sets_kind() {
    let p = Preset::load("cifar10").unwrap().0;
    let base = &p.fresh;
    assert_eq!((base.lr, base.crop_pad), (0.1, 4));
    let of = |set: &str| {
        let f = p.fresh_for(set);
        (f.lr, f.crop_pad)
    };
    assert_eq!(of("D_R"), (0.1, 4));
    assert_eq!(of("D_R_cos"), (0.1, 4));
    assert_eq!(of("D_NR"), (0.01, 4));
    assert_eq!(of("D_rand"), (0.01, 4));
    assert_eq!(of("D_det"), (0.1, 0));
    assert_eq!(of("D_det_eps2"), (0.1, 0));
    assert_eq!(of("D_detour"), (0.1, 4)); // not a variant: no `_` after the kind
    assert_eq!(p.fresh_for("D_det").epochs, base.epochs);
    // The paper's code's CIFAR transforms, and none at all for D_det.
    use nrf_models::augment::{Augment, Transforms};
    assert_eq!(base.augment(), Augment::Transforms(Transforms::CIFAR));
    assert_eq!(
        p.train_rob.augment(),
        Augment::Transforms(Transforms::CIFAR)
    );
    assert_eq!(p.fresh_for("D_det").augment(), Augment::None);
    assert_eq!(p.fresh_for("D_det_eps2").augment(), Augment::None);
    let rin = Preset::load("restricted-imagenet").unwrap().0;
    assert_eq!(
        rin.train_std.augment(),
        Augment::Transforms(Transforms::IMAGENET)
    );
    let fm = Preset::load("fashion-mnist").unwrap().0;
    assert!(fm.fresh_by_set.is_empty());
    assert_eq!(fm.fresh_for("D_NR").lr, fm.fresh.lr);

    let bad = |set: &str| match Preset::load_with_overrides("cifar10", &[set.to_string()]) {
        Err(e) => format!("{e:#}"),
        Ok((p, _)) => format!("{:#}", p.validate().unwrap_err()),
    };
    let e = bad("fresh_by_set.D_XX.lr=0.01");
    assert!(e.contains("fresh_by_set.D_XX"), "{e}");
    let e = bad("fresh_by_set.D_NR.lr=-1");
    assert!(e.contains("fresh_by_set.D_NR") && e.contains("lr"), "{e}");
    let e = bad("fresh_by_set.D_det.crop_pad=-2");
    assert!(e.contains("fresh_by_set.D_det.crop_pad"), "{e}");
    let e = bad("fresh.color_jitter=-0.5");
    assert!(e.contains("fresh.color_jitter"), "{e}");
    let e = bad("train_std.rotate_deg=nan");
    assert!(e.contains("train_std.rotate_deg"), "{e}");
    let e = bad("train_rob.resized_crop=true");
    assert!(e.contains("train_rob.resized_crop"), "{e}");
}

/// The augmentation fields are written only when set, so the training keys of presets without
/// them (every Fashion-MNIST model's) are what they were; setting one to its default (and
/// `model.precision` to f32, written the same way) is still an override the preset reads.
#[test]
fn augmentation_fields_leave_the_keys_of_sections_without_them_alone() {
    let p = Preset::load("fashion-mnist").unwrap().0;
    let text = serde_json::to_string(&p.train_std).unwrap();
    for field in ["resized_crop", "color_jitter", "rotate_deg", "lighting"] {
        assert!(!text.contains(field), "{field} in {text}");
    }
    let sets = [
        "train_std.color_jitter=0",
        "train_rob.resized_crop=false",
        "fresh.lighting=0.0",
        "fresh.rotate_deg=2",
        "model.precision=f32",
    ];
    let (q, _) = Preset::load_with_overrides("fashion-mnist", &sets.map(String::from)).unwrap();
    assert_eq!(q.train_std.augment(), p.train_std.augment());
    assert!(matches!(
        q.fresh.augment(),
        nrf_models::augment::Augment::Transforms(t) if t.rotate_deg == 2.0 && t.crop == nrf_models::augment::Crop::None
    ));
    let e = format!(
        "{:#}",
        Preset::load_with_overrides("fashion-mnist", &["train_std.color_jiter=0".into()])
            .unwrap_err()
    );
    assert!(e.contains("color_jiter"), "{e}");
}
