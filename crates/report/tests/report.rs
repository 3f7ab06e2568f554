//! End-to-end tests of the report on fake results directories.
use base64::Engine;
use nrf_report::demo::write_demo_results;
use nrf_report::results::RunInfo;
use nrf_report::{
    read_json, summary_markdown, write_json_atomic, write_report, Verdict, SECTION_TITLES,
};
use std::path::Path;

/// Every `data:image/...;base64,...` URI of the HTML, decoded to bytes.
fn data_uris(html: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("src=\"data:") {
        rest = &rest[i + 10..];
        let end = rest.find('"').unwrap();
        let uri = &rest[..end];
        let (mime, b64) = uri.split_once(";base64,").expect("base64 data URI");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("valid base64");
        out.push((mime.to_string(), bytes));
        rest = &rest[end..];
    }
    out
}

/// Every image path referenced as ![..](path) in the markdown.
fn md_images(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = md;
    while let Some(i) = rest.find("![") {
        rest = &rest[i + 2..];
        let close = rest.find("](").unwrap();
        rest = &rest[close + 2..];
        let end = rest.find(')').unwrap();
        out.push(rest[..end].replace("%20", " "));
        rest = &rest[end..];
    }
    out
}

fn check_images(dir: &Path, html: &str, md: &str) -> (usize, usize) {
    let uris = data_uris(html);
    for (mime, bytes) in &uris {
        assert_eq!(mime, "image/png");
        image::load_from_memory(bytes).expect("embedded image decodes");
    }
    let paths = md_images(md);
    for p in &paths {
        let full = dir.join(p);
        assert!(full.exists(), "{p} referenced in report.md does not exist");
        image::open(&full).unwrap_or_else(|e| panic!("{p} does not decode: {e}"));
    }
    (uris.len(), paths.len())
}

#[test]
fn complete_run_gives_a_complete_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_demo_results(dir).unwrap();
    let s = write_report(dir).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert_eq!(s.html, dir.join("report.html"));
    for (id, title) in SECTION_TITLES {
        assert!(
            html.contains(&format!("<section id=\"{id}\">\n<h2>{title}</h2>")),
            "HTML lacks section {title}"
        );
        assert!(
            md.contains(&format!("\n## {title}\n")),
            "markdown lacks section {title}"
        );
    }
    assert!(s.sections_missing.is_empty(), "{:?}", s.sections_missing);
    assert!(s.missing.is_empty(), "{:?}", s.missing);
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert!(
        !html.contains("class=\"missing\""),
        "a complete run shows a missing box"
    );
    // 6 report plots (figure 2, table 1, robust L2, robust Linf, training, the run's timeline)
    // + 4 grids + the theory's 4 figures + section.
    assert_eq!(s.plots.len(), 6, "{:?}", s.plots);
    let (n_html, n_md) = check_images(dir, &html, &md);
    assert_eq!(n_html, 15);
    assert_eq!(n_md, 15);
    // Self-contained: no reference to a file on disk.
    assert!(!html.contains("src=\"plots/") && !html.contains("<link"));
    // Verdict badges, paper numbers with their source tags, and the theory / section tables.
    assert!(html.contains("<span class=\"badge v-holds\">holds</span>"));
    assert!(html.contains("std 84%, robust (L2 ε=0.25) 48% [CD]"));
    assert!(html.contains("(MEM, unconfirmed)"));
    assert!(html.contains("Closed-form Σ_r vs numerical minimisation"));
    assert!(html.contains("transfer rate rise together"));
    // The theory's checks are a table with pass / fail badges; the SVG twin of a PNG is not
    // shown twice.
    assert!(html.contains("thm2_closed_form_matches_numerical"));
    assert!(html.contains("<span class=\"badge v-not\">does not hold</span>"));
    assert!(!html.contains("image/svg+xml"));
    assert!(md.contains("| F2a |") || md.contains("| F2a:"));
    // F2a-F2c, F2d (the demo has a clean control), T1a-T1c, and the demo's section verdict.
    assert_eq!(s.verdicts.len(), 8);
    assert!(
        md.contains("| F2d |"),
        "no F2d row (D_R vs the same-size clean control)"
    );
    assert!(
        s.verdicts
            .iter()
            .all(|v| v.verdict != Verdict::Undetermined),
        "{:#?}",
        s.verdicts
    );
    // Writing again replaces the files and leaves no temporary file behind.
    write_report(dir).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn partial_run_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_demo_results(dir).unwrap();
    std::fs::remove_file(dir.join("models/on_D_R.json")).unwrap();
    std::fs::remove_file(dir.join("datasets/D_NR.json")).unwrap();
    std::fs::remove_dir_all(dir.join("theory")).unwrap();
    std::fs::remove_dir_all(dir.join("sections")).unwrap();
    std::fs::write(dir.join("models/on_D_det.json"), "{ not json").unwrap();
    let mut run: RunInfo = read_json(dir.join("run.json")).unwrap();
    run.finished = None;
    run.missing = vec!["train:on_D_R".into(), "train:on_D_det".into()];
    run.stages.push(nrf_report::results::StageInfo {
        name: "train:on_D_R".into(),
        status: nrf_report::results::StageStatus::Failed,
        wall_s: 3.0,
        started: None,
        worker: None,
        key: "abc".into(),
        message: Some("out of memory".into()),
    });
    write_json_atomic(dir.join("run.json"), &run).unwrap();

    let s = write_report(dir).unwrap();
    let html = std::fs::read_to_string(&s.html).unwrap();
    let md = std::fs::read_to_string(&s.markdown).unwrap();
    for text in [&html, &md] {
        assert!(text.contains("not computed yet: models/on_D_R.json"));
        assert!(text.contains("not computed yet: datasets/D_NR.json"));
        assert!(text.contains("not computed yet: theory/theory.json"));
        assert!(text.contains("no further experiments yet"));
        assert!(text.contains("train:on_D_R") && text.contains("train:on_D_det"));
        assert!(
            text.contains("models/on_D_det.json"),
            "the unreadable file is named"
        );
    }
    assert!(html.contains("class=\"missing\""));
    assert!(
        s.missing.contains(&"models/on_D_R.json".to_string()),
        "{:?}",
        s.missing
    );
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("models/on_D_det.json")),
        "{:?}",
        s.problems
    );
    assert!(s
        .sections_missing
        .contains(&"Theory (Section 4, Figure 4)".to_string()));
    assert!(s
        .sections_missing
        .contains(&"Further experiments".to_string()));
    assert!(s.sections_partial.iter().any(|t| t.starts_with("Figure 2")));
    assert!(
        s.sections_partial.iter().any(|t| t.starts_with("Table 1")),
        "{:?}",
        s.sections_partial
    );
    let f2a = s.verdicts.iter().find(|v| v.id == "F2a").unwrap();
    assert_eq!(f2a.verdict, Verdict::Undetermined);
    let t1b = s.verdicts.iter().find(|v| v.id == "T1b").unwrap();
    assert_eq!(t1b.verdict, Verdict::Undetermined);
    assert_eq!(t1b.evidence, "could not be read: models/on_D_det.json");
    assert!(
        !s.missing.contains(&"models/on_D_det.json".to_string()),
        "present but unreadable is not missing"
    );
    // The variant on_D_det_eps2 is still judged.
    assert!(s
        .verdicts
        .iter()
        .any(|v| v.id == "T1b[on_D_det_eps2]" && v.verdict == Verdict::Holds));
    check_images(dir, &html, &md);

    let summary = summary_markdown(dir).unwrap();
    assert!(summary.contains("### Figure 2") && summary.contains("### Table 1"));
    assert!(summary.contains("Incomplete run"));
    assert!(summary.contains("undetermined"));
}

#[test]
fn invalid_values_and_bad_image_paths_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_demo_results(dir).unwrap();
    let mut m: serde_json::Value = read_json(dir.join("models/C_rob.json")).unwrap();
    m["std_acc"] = serde_json::json!(1.5);
    write_json_atomic(dir.join("models/C_rob.json"), &m).unwrap();
    let mut sec: serde_json::Value = read_json(dir.join("sections/figure3.json")).unwrap();
    sec["images"] = serde_json::json!(["../outside.png", "sections/none.png"]);
    write_json_atomic(dir.join("sections/figure3.json"), &sec).unwrap();
    std::fs::write(dir.join("grids/broken.png"), b"not a png").unwrap();
    let s = write_report(dir).unwrap();
    let html = std::fs::read_to_string(&s.html).unwrap();
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("models/C_rob.json") && p.contains("std_acc")),
        "{:?}",
        s.problems
    );
    assert!(html.contains("must be relative and stay inside the results directory"));
    assert!(html.contains("not computed yet: sections/none.png"));
    assert!(html.contains("grids/broken.png cannot be decoded"));
    check_images(dir, &html, &std::fs::read_to_string(&s.markdown).unwrap());
}

#[test]
fn empty_and_absent_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let s = write_report(tmp.path()).unwrap();
    assert!(s.missing.contains(&"run.json".to_string()));
    assert!(s.plots.is_empty());
    let html = std::fs::read_to_string(&s.html).unwrap();
    for (_, title) in SECTION_TITLES {
        assert!(html.contains(&format!("<h2>{title}</h2>")));
    }
    assert!(s
        .verdicts
        .iter()
        .all(|v| v.verdict == Verdict::Undetermined));
    assert!(write_report(tmp.path().join("nope")).is_err());
    assert!(summary_markdown(tmp.path().join("nope")).is_err());
}

/// The demo's `on_D_R` has two seeds: every table shows intervals, the seeds' values, the seed
/// table and the margins ± SE; the plots draw error bars.
#[test]
fn report_shows_intervals_seeds_and_margins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_demo_results(dir).unwrap();
    let s = write_report(dir).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let summary = summary_markdown(dir).unwrap();
    for text in [&md, &summary] {
        // Mean ± sd over seeds, the interval widened by the spread, every seed.
        assert!(
            text.contains("| `on_D_R` | 78.6% ± 0.8 [75.7, 81.6] (seeds 78.0, 79.2) |"),
            "{text}"
        );
        // A single-seed model: its Wilson interval on 10,000 test images.
        assert!(text.contains("| `C_std` | 91.5% [90.9, 92.0] |"), "{text}");
        // Verdicts carry their deciding margin ± SE; the rule is stated.
        assert!(text.contains("holds (m = +"), "{text}");
        assert!(
            text.contains("m > c SE") && text.contains("Wilson") && text.contains("Student's t"),
            "{text}"
        );
    }
    assert!(md.contains("Seed-to-seed spread") && md.contains("| Seed 1 |"));
    assert!(md.contains("| `on_D_R` | L2 ε=0.5 | 45.6% ± 0.8 |"), "{md}");
    assert!(md.contains("inconclusive"));
    // The F2a verdict uses the seed spread: its SE is larger than without seeds.
    let f2a = s.verdicts.iter().find(|v| v.id == "F2a").unwrap();
    let m = f2a.margin.unwrap();
    assert!(
        m.m > m.critical() * m.se && f2a.verdict == Verdict::Holds,
        "{f2a:?}"
    );
    assert!(
        f2a.evidence.contains("(seeds 45.0, 46.2)"),
        "{}",
        f2a.evidence
    );
}
