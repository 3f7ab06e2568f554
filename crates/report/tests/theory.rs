//! The theory's typed summary: written by `write_theory`, read back by the report unchanged, and
//! rendered as the report's theory section (its numbers, its checks, its four figures).

use nrf_report::demo::demo_theory_config;
use nrf_report::results::TheorySummary;
use nrf_report::{write_report, write_theory, Results};

fn assert_close(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-13 * x.abs().max(y.abs()),
                "{path}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_close(p, q, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (k, p) in x {
                assert_close(p, &y[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

fn section(text: &str, start: &str, end: &str) -> String {
    let a = text.find(start).expect("section start");
    let b = text[a..].find(end).map_or(text.len(), |b| a + b);
    text[a..b].to_string()
}

#[test]
fn typed_theory_summary_round_trips_and_is_rendered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = nrf_theory::run_with(5, &demo_theory_config()).unwrap();
    let written = write_theory(&dir.join("theory"), out.clone()).unwrap();
    // The summary as written: the computed one plus the files and the drawing time.
    assert_eq!(written.checks, out.summary.checks);
    assert_eq!(written.thm2, out.summary.thm2);
    assert_eq!(
        written.files,
        [
            "figure4.png",
            "thm1_vulnerability.png",
            "thm3_alignment.png",
            "circles_usefulness.png",
            "theory.json"
        ]
    );
    assert_eq!(written.section_seconds.last().unwrap().0, "plots");
    for f in &written.files {
        let len = std::fs::metadata(dir.join("theory").join(f)).unwrap().len();
        assert!(len > 1000, "{f}: {len} bytes");
    }

    // JSON round trip, through the report's loader.
    let r = Results::load(dir).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let back: &TheorySummary = r.theory.as_ref().expect("theory.json read");
    // serde_json's float parsing may differ from the written value in the last ulp.
    assert_close(
        &serde_json::to_value(back).unwrap(),
        &serde_json::to_value(&written).unwrap(),
        "$",
    );
    assert_eq!(back.risks.len(), written.risks.len());
    assert_eq!(back.thm1.rows[0].mc_closed_form.n, 2_000);

    // The theory section renders the typed tables: checks, the risk table, Theorem 2's fits.
    let s = write_report(dir).unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let md = std::fs::read_to_string(&s.markdown).unwrap();
    let theory = section(&md, "## Theory", "\n## ");
    for c in &written.checks {
        assert!(
            theory.contains(&format!("| {} |", c.name)),
            "check {}",
            c.name
        );
    }
    let first = &written.risks[0];
    assert!(
        theory.contains(&format!("| {} | 0 |", first.classifier)),
        "risk table"
    );
    // A closed-form risk, written as every theory number is (at most 6 decimals).
    let cf = format!("{:.6}", first.closed_form);
    let cf = cf.trim_end_matches('0');
    assert!(theory.contains(cf), "closed-form risk {cf} not shown");
    let fit = &written.thm2.constrained[1];
    assert!(theory.contains(
        &format!("| {} | [{:.6}", fit.eps, fit.mu[0])
            .trim_end_matches('0')
            .to_string()
    ));
    for img in [
        "theory/figure4.png",
        "theory/thm1_vulnerability.png",
        "theory/thm3_alignment.png",
        "theory/circles_usefulness.png",
    ] {
        assert!(theory.contains(&format!("]({img})")), "{img} not shown");
    }
    // A theory.json that is not a TheorySummary is a problem naming the file, not a table.
    std::fs::write(dir.join("theory/theory.json"), r#"{"checks": []}"#).unwrap();
    let r = Results::load(dir).unwrap();
    assert!(r.theory.is_none());
    assert!(
        r.problems.iter().any(|p| p.contains("theory/theory.json")),
        "{:?}",
        r.problems
    );
}
