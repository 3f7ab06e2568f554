//! A tiny document model rendered to both self-contained HTML and GitHub markdown.
use crate::verdict::Verdict;
use base64::Engine;
use std::fmt::Write;
use std::path::Path;

/// Inline text: `code` spans and **bold** are recognised; everything else is literal.
pub(crate) type Text = String;

#[derive(Debug, Clone)]
pub(crate) struct DocTable {
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Columns whose cells hold verdicts ("holds" or "F2a: holds; F2c: partly").
    pub verdict_cols: Vec<usize>,
    /// Never right-align numeric-looking cells (key / value tables).
    pub left_align: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Block {
    Para(Text),
    /// Something is not there yet; shown in a highlighted box.
    Missing(Text),
    /// Something went wrong (unreadable file, failed stage or plot); shown in a red box.
    Problem(Text),
    Table(DocTable),
    /// An image under the results dir (relative path) with a caption.
    Image {
        rel: String,
        caption: String,
    },
    Pre(String),
    List(Vec<Text>),
    /// Collapsible block.
    Details {
        summary: String,
        body: Vec<Block>,
    },
    Heading(Text),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Complete,
    Partial,
    Missing,
}

#[derive(Debug, Clone)]
pub(crate) struct DocSection {
    pub id: &'static str,
    pub title: String,
    pub status: Status,
    pub blocks: Vec<Block>,
}

pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Inline markup to HTML: escapes, then `code` and **bold**.
pub(crate) fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            for (j, b) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    let _ = write!(out, "<strong>{}</strong>", esc(b));
                } else {
                    out.push_str(&esc(b));
                }
            }
        }
    }
    out
}

/// Cell text for markdown tables: no pipes or newlines.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

/// GitHub's heading anchor for `title`.
pub(crate) fn slug(title: &str) -> String {
    title
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c)
            } else if c == ' ' {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Holds => "v-holds",
        Verdict::Partly => "v-partly",
        Verdict::DoesNotHold => "v-not",
        Verdict::Inconclusive => "v-inc",
        Verdict::Undetermined | Verdict::NotApplicable => "v-und",
    }
}

fn verdict_md(v: Verdict) -> &'static str {
    match v {
        Verdict::Holds => "✅ holds",
        Verdict::Partly => "🟡 partly",
        Verdict::DoesNotHold => "❌ does not hold",
        Verdict::Inconclusive => "🔷 inconclusive",
        Verdict::Undetermined => "⚪ undetermined",
        Verdict::NotApplicable => "n/a",
    }
}

/// One part of a verdict cell: its prefix ("F2a: "), the verdict (or the raw text when it is
/// none) and a trailing note such as "(m = +1.0 ± 3.2 points)".
type VerdictPart = (String, Result<Verdict, String>, String);

/// Splits a verdict cell "F2a: holds (m = +11.4 ± 3.1 points); F2c: partly" into its parts.
fn verdict_parts(cell: &str) -> Vec<VerdictPart> {
    cell.split("; ")
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (body, note) = match p.split_once(" (") {
                Some((b, n)) if p.ends_with(')') => (b, format!("({n}")),
                _ => (p, String::new()),
            };
            let parsed = match body.rsplit_once(": ") {
                Some((id, v)) => Verdict::parse(v).map(|v| (format!("{id}: "), v)),
                None => Verdict::parse(body).map(|v| (String::new(), v)),
            };
            match parsed {
                Some((prefix, v)) => (prefix, Ok(v), note),
                None => (String::new(), Err(p.to_string()), String::new()),
            }
        })
        .collect()
}

pub(crate) fn verdict_badge_html(v: Verdict) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        verdict_class(v),
        v.as_str()
    )
}

fn looks_numeric(s: &str) -> bool {
    // A value with its interval, "49.0% [44.6, 53.4]", is a number too.
    let s = match s.trim().split_once(" [") {
        Some((v, rest)) if rest.ends_with(']') && !rest.contains('[') => v,
        _ => s,
    };
    let t = s
        .trim()
        .trim_end_matches('%')
        .trim_end_matches(" s")
        .trim_start_matches(['+', '−', '-']);
    !t.is_empty() && t.parse::<f64>().is_ok()
}

fn table_html(t: &DocTable, out: &mut String) {
    if !t.caption.is_empty() {
        let _ = writeln!(out, "<p class=\"caption\">{}</p>", inline_html(&t.caption));
    }
    out.push_str("<div class=\"table-wrap\"><table>\n<thead><tr>");
    for h in &t.headers {
        let _ = write!(out, "<th>{}</th>", inline_html(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for i in 0..t.headers.len().max(row.len()) {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            if t.verdict_cols.contains(&i) {
                out.push_str("<td class=\"verdict\">");
                for (prefix, v, note) in verdict_parts(cell) {
                    match v {
                        Ok(v) if note.is_empty() => {
                            let _ =
                                write!(out, "<div>{}{}</div>", esc(&prefix), verdict_badge_html(v));
                        }
                        Ok(v) => {
                            let _ = write!(
                                out,
                                "<div>{}{} <span class=\"margin\">{}</span></div>",
                                esc(&prefix),
                                verdict_badge_html(v),
                                esc(&note)
                            );
                        }
                        Err(raw) => {
                            let _ = write!(out, "<div>{}</div>", inline_html(&raw));
                        }
                    }
                }
                out.push_str("</td>");
            } else if cell.starts_with("not computed yet") || cell.starts_with("missing") {
                let _ = write!(out, "<td class=\"miss\">{}</td>", inline_html(cell));
            } else if !t.left_align && looks_numeric(cell) {
                let _ = write!(out, "<td class=\"num\">{}</td>", inline_html(cell));
            } else {
                let _ = write!(out, "<td>{}</td>", inline_html(cell).replace('\n', "<br>"));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

fn table_md(t: &DocTable, out: &mut String) {
    if !t.caption.is_empty() {
        let _ = writeln!(out, "*{}*\n", t.caption.replace('*', "\\*"));
    }
    let n = t
        .headers
        .len()
        .max(t.rows.iter().map(Vec::len).max().unwrap_or(0));
    let head: Vec<String> = (0..n)
        .map(|i| md_cell(t.headers.get(i).map(String::as_str).unwrap_or("")))
        .collect();
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(n.max(1)));
    for row in &t.rows {
        let cells: Vec<String> = (0..n)
            .map(|i| {
                let c = row.get(i).map(String::as_str).unwrap_or("");
                if t.verdict_cols.contains(&i) {
                    let parts: Vec<String> = verdict_parts(c)
                        .into_iter()
                        .map(|(p, v, note)| match v {
                            Ok(v) if note.is_empty() => format!("{p}{}", verdict_md(v)),
                            Ok(v) => format!("{p}{} {note}", verdict_md(v)),
                            Err(raw) => raw,
                        })
                        .collect();
                    md_cell(&parts.join("; "))
                } else {
                    md_cell(c)
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// Renders a table as markdown (for [`crate::summary_markdown`]).
pub(crate) fn table_markdown(t: &DocTable) -> String {
    let mut s = String::new();
    table_md(t, &mut s);
    s
}

fn mime(rel: &str) -> &'static str {
    let l = rel.to_ascii_lowercase();
    if l.ends_with(".svg") {
        "image/svg+xml"
    } else if l.ends_with(".jpg") || l.ends_with(".jpeg") {
        "image/jpeg"
    } else {
        "image/png"
    }
}

/// Reads an image under `dir` and checks that it decodes. Err: why not.
pub(crate) fn load_image(dir: &Path, rel: &str) -> Result<Vec<u8>, String> {
    if rel.split(['/', '\\']).any(|c| c == "..") || Path::new(rel).is_absolute() {
        return Err(format!(
            "image path {rel:?} must be relative and stay inside the results directory"
        ));
    }
    let bytes = match std::fs::read(dir.join(rel)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("not computed yet: {rel}"));
        }
        Err(e) => return Err(format!("cannot read {rel}: {e}")),
    };
    if mime(rel) == "image/svg+xml" {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_string();
        if !(head.contains("<svg") || head.trim_start().starts_with("<?xml")) {
            return Err(format!("{rel} is not an SVG file"));
        }
        return Ok(bytes);
    }
    image::load_from_memory(&bytes).map_err(|e| format!("{rel} cannot be decoded: {e}"))?;
    Ok(bytes)
}

fn blocks_html(dir: &Path, blocks: &[Block], out: &mut String) {
    for b in blocks {
        match b {
            Block::Para(t) => {
                let _ = writeln!(out, "<p>{}</p>", inline_html(t));
            }
            Block::Missing(t) => {
                let _ = writeln!(
                    out,
                    "<div class=\"missing\"><strong>Missing:</strong> {}</div>",
                    inline_html(t)
                );
            }
            Block::Problem(t) => {
                let _ = writeln!(
                    out,
                    "<div class=\"missing problem\"><strong>Problem:</strong> {}</div>",
                    inline_html(t)
                );
            }
            Block::Table(t) => table_html(t, out),
            Block::Image { rel, caption } => match load_image(dir, rel) {
                Ok(bytes) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    let _ = writeln!(
                        out,
                        "<figure><img src=\"data:{};base64,{b64}\" alt=\"{}\"><figcaption>{} <span class=\"path\">({})</span></figcaption></figure>",
                        mime(rel),
                        esc(caption),
                        inline_html(caption),
                        esc(rel)
                    );
                }
                Err(why) => {
                    let _ = writeln!(
                        out,
                        "<div class=\"missing\"><strong>Missing image:</strong> {}</div>",
                        inline_html(&why)
                    );
                }
            },
            Block::Pre(t) => {
                let _ = writeln!(out, "<pre>{}</pre>", esc(t));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    let _ = writeln!(out, "<li>{}</li>", inline_html(i));
                }
                out.push_str("</ul>\n");
            }
            Block::Details { summary, body } => {
                let _ = writeln!(out, "<details><summary>{}</summary>", inline_html(summary));
                blocks_html(dir, body, out);
                out.push_str("</details>\n");
            }
            Block::Heading(t) => {
                let _ = writeln!(out, "<h3 id=\"{}\">{}</h3>", esc(&slug(t)), inline_html(t));
            }
        }
    }
}

fn blocks_md(dir: &Path, blocks: &[Block], out: &mut String) {
    for b in blocks {
        match b {
            Block::Para(t) => {
                let _ = writeln!(out, "{t}\n");
            }
            Block::Missing(t) => {
                let _ = writeln!(out, "> **Missing:** {t}\n");
            }
            Block::Problem(t) => {
                let _ = writeln!(out, "> **Problem:** {t}\n");
            }
            Block::Table(t) => table_md(t, out),
            Block::Image { rel, caption } => match load_image(dir, rel) {
                Ok(_) => {
                    let _ = writeln!(
                        out,
                        "![{}]({})\n\n*{}*\n",
                        caption.replace(['[', ']'], ""),
                        rel.replace(' ', "%20"),
                        caption.replace('*', "\\*")
                    );
                }
                Err(why) => {
                    let _ = writeln!(out, "> **Missing image:** {why}\n");
                }
            },
            Block::Pre(t) => {
                let fence = if t.contains("```") { "````" } else { "```" };
                let _ = writeln!(out, "{fence}\n{}\n{fence}\n", t.trim_end());
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(out, "- {}", i.replace('\n', " "));
                }
                out.push('\n');
            }
            Block::Details { summary, body } => {
                let _ = writeln!(out, "<details><summary>{}</summary>\n", esc(summary));
                blocks_md(dir, body, out);
                out.push_str("</details>\n\n");
            }
            Block::Heading(t) => {
                let _ = writeln!(out, "### {t}\n");
            }
        }
    }
}

const CSS: &str = r#"
:root { --fg:#1f2328; --muted:#59636e; --border:#d1d9e0; --alt:#f6f8fa; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:#fff; line-height:1.55;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; font-size:16px; }
main { max-width:1180px; margin:0 auto; padding:28px 36px 96px; }
h1 { font-size:2em; margin:0 0 .2em; }
h2 { font-size:1.5em; border-bottom:1px solid var(--border); padding-bottom:.3em; margin-top:2.4em; }
h3 { font-size:1.15em; margin-top:1.8em; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
p.meta { color:var(--muted); margin-top:0; }
nav.toc { background:var(--alt); border:1px solid var(--border); border-radius:8px; padding:10px 24px; margin:20px 0; }
nav.toc h2 { border:0; margin:.4em 0; font-size:1.1em; }
nav.toc ol { margin:.3em 0 .6em; padding-left:1.4em; columns:2; column-gap:40px; }
nav.toc li { margin:2px 0; break-inside:avoid; }
.tag { font-size:11.5px; border-radius:9px; padding:0 7px; margin-left:6px; font-weight:600; }
.tag-partial { background:#fff8c5; color:#7d4e00; } .tag-missing { background:#ffebe9; color:#a40e26; }
.table-wrap { overflow-x:auto; margin:6px 0 22px; }
table { border-collapse:collapse; font-size:14px; }
p.caption { color:var(--muted); font-weight:600; margin:14px 0 4px; font-size:14px; }
th, td { border:1px solid var(--border); padding:6px 10px; text-align:left; vertical-align:top; }
th { background:var(--alt); font-weight:600; }
tbody tr:nth-child(even) td { background:#fbfcfd; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.miss { color:#9a6700; font-style:italic; }
td.verdict div { white-space:nowrap; margin:1px 0; }
.badge { display:inline-block; padding:1px 9px; border-radius:10px; font-size:12.5px; font-weight:600; }
.v-holds { background:#dafbe1; color:#116329; } .v-partly { background:#fff8c5; color:#7d4e00; }
.v-not { background:#ffebe9; color:#a40e26; } .v-und { background:#eef1f4; color:#59636e; }
.v-inc { background:#ddf4ff; color:#0a3069; } td.verdict .margin { color:var(--muted); font-size:12.5px; }
.missing { border-left:4px solid #d4a72c; background:#fff8c5; padding:8px 14px; margin:12px 0; border-radius:4px; }
.missing.problem { border-left-color:#cf222e; background:#ffebe9; }
figure { margin:18px 0; }
figure img { max-width:100%; height:auto; border:1px solid var(--border); border-radius:6px; }
figcaption { color:var(--muted); font-size:14px; margin-top:4px; } figcaption .path { font-family:monospace; font-size:12px; }
pre { background:var(--alt); padding:12px 14px; overflow:auto; font-size:13px; border-radius:6px; max-height:520px; border:1px solid var(--border); }
code { background:var(--alt); padding:.1em .35em; border-radius:4px; font-size:88%; }
details { margin:10px 0; } summary { cursor:pointer; color:var(--accent); }
"#;

fn status_tag(s: Status) -> &'static str {
    match s {
        Status::Complete => "",
        Status::Partial => " <span class=\"tag tag-partial\">partial</span>",
        Status::Missing => " <span class=\"tag tag-missing\">missing</span>",
    }
}

/// The full HTML page.
pub(crate) fn render_html(dir: &Path, title: &str, meta: &str, sections: &[DocSection]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n<p class=\"meta\">{}</p>\n",
        esc(title),
        esc(title),
        inline_html(meta)
    );
    out.push_str("<nav class=\"toc\"><h2>Contents</h2><ol>\n");
    for s in sections {
        let _ = writeln!(
            out,
            "<li><a href=\"#{}\">{}</a>{}</li>",
            s.id,
            esc(&s.title),
            status_tag(s.status)
        );
    }
    out.push_str("</ol></nav>\n");
    for s in sections {
        let _ = writeln!(out, "<section id=\"{}\">\n<h2>{}</h2>", s.id, esc(&s.title));
        blocks_html(dir, &s.blocks, &mut out);
        out.push_str("</section>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The full markdown document.
pub(crate) fn render_markdown(
    dir: &Path,
    title: &str,
    meta: &str,
    sections: &[DocSection],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n\n{meta}\n\n## Contents\n");
    for s in sections {
        let tag = match s.status {
            Status::Complete => "",
            Status::Partial => " *(partial)*",
            Status::Missing => " *(missing)*",
        };
        let _ = writeln!(out, "- [{}](#{}){tag}", s.title, slug(&s.title));
    }
    out.push('\n');
    for s in sections {
        let _ = writeln!(out, "## {}\n", s.title);
        blocks_md(dir, &s.blocks, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_slug() {
        assert_eq!(
            inline_html("a `x<y` **b** <c>"),
            "a <code>x&lt;y</code> <strong>b</strong> &lt;c&gt;"
        );
        assert_eq!(slug("Robust accuracy vs ε"), "robust-accuracy-vs-ε");
        assert_eq!(slug("Figure 2: D_R, D_NR"), "figure-2-d_r-d_nr");
        let p = verdict_parts("F2a: holds; F2c: does not hold");
        assert_eq!(p[1].1, Ok(Verdict::DoesNotHold));
        assert!(verdict_parts("—")[0].1.is_err());
        let p = verdict_parts("F2d: inconclusive (m = -0.6 ± 3.2 points); F2c: holds");
        assert_eq!(p[0].0, "F2d: ");
        assert_eq!(p[0].1, Ok(Verdict::Inconclusive));
        assert_eq!(p[0].2, "(m = -0.6 ± 3.2 points)");
        assert_eq!(p[1].2, "");
        // A parenthesis that is not after a verdict stays raw text.
        assert!(verdict_parts("reference (C_std)")[0].1.is_err());
        assert!(looks_numeric("49.0% [44.6, 53.4]") && looks_numeric("12.5%"));
        assert!(!looks_numeric(
            "49.0% ± 1.3 [44.4, 53.6] (seeds 48.1, 49.9)"
        ));
    }
}
