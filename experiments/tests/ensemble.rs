//! `[eval] ensemble`: parsed into typed attacks, validated with the field's name, and absent
//! from the PGD evaluation's cache key (adding an ensemble does not redo the PGD grid).
use nrf_experiments::preset::{EnsembleMember, Preset, BUILTIN};

/// The smoke preset without its `ensemble` line.
fn smoke_text() -> String {
    let text = BUILTIN.iter().find(|p| p.0 == "smoke").unwrap().1;
    text.lines()
        .filter(|l| !l.starts_with("ensemble ="))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn with_eval_line(line: &str) -> String {
    let text = smoke_text();
    assert!(text.contains("[eval]\n"));
    text.replacen("[eval]\n", &format!("[eval]\n{line}\n"), 1)
}

#[test]
fn ensemble_parses_into_typed_attacks() {
    let p = Preset::parse(
        &with_eval_line(r#"ensemble = { attacks = ["apgd-ce", "apgd-t"], steps = 50 }"#),
        "test",
    )
    .unwrap();
    let e = p.eval.ensemble.expect("ensemble");
    assert_eq!(
        e.attacks,
        vec![EnsembleMember::ApgdCe, EnsembleMember::ApgdT]
    );
    assert_eq!((e.steps, e.targets, e.restarts), (50, 9, 1));
    let attacks = e.attacks();
    assert_eq!(attacks.len(), 2);
    assert!(
        attacks[1].describe().contains("APGD-T(9 targets) 50 steps"),
        "{}",
        attacks[1].describe()
    );
    assert_eq!(e.square_queries, 1000);
    // Absent: PGD only, and the [eval] section serialises as before (no cache key changes).
    let plain = Preset::parse(&smoke_text(), "smoke").unwrap();
    assert!(plain.eval.ensemble.is_none());
    assert!(!serde_json::to_string(&plain.eval)
        .unwrap()
        .contains("ensemble"));
}

#[test]
fn bad_ensembles_name_the_field() {
    let err = |line: &str| {
        format!(
            "{:#}",
            Preset::parse(&with_eval_line(line), "test").unwrap_err()
        )
    };
    assert!(err(r#"ensemble = { attacks = ["apgd-xx"] }"#).contains("apgd-xx"));
    assert!(err(r#"ensemble = { attacks = [] }"#).contains("eval.ensemble.attacks"));
    assert!(err(r#"ensemble = { attacks = ["apgd-ce", "apgd-ce"] }"#).contains("twice"));
    assert!(
        err(r#"ensemble = { attacks = ["apgd-ce"], steps = 0 }"#).contains("eval.ensemble.steps")
    );
    assert!(err(r#"ensemble = { attacks = ["apgd-t"], targets = 0 }"#)
        .contains("eval.ensemble.targets"));
    assert!(err(r#"ensemble = { attacks = ["apgd-ce"], stepz = 3 }"#).contains("stepz"));
    assert!(
        err(r#"ensemble = { attacks = ["square"], square_queries = 0 }"#)
            .contains("eval.ensemble.square_queries")
    );
}
