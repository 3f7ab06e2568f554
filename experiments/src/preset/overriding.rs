use super::Preset;
use anyhow::{bail, Context, Result};
use std::ops::Range;
use toml_edit::{DocumentMut, ImDocument, Item, Key, Table, TableLike, Value};

/// The comment on each line an override changed.
const MARK: &str = "# --set";

/// Fields that are read but never serialised (so absent from the serialised preset that
/// [`check_read`] compares the overrides with).
const NOT_SERIALISED: [&str; 3] = ["train_std.seeds", "train_rob.seeds", "fresh.seeds"];

/// Whether override `keys = value` sets a field that the preset writes only when it differs
/// from its default (so that the cache keys of presets without it stay as they were) to that
/// default: `model.precision = "f32"`, or a training section's `resized_crop = false`,
/// `color_jitter`, `rotate_deg` or `lighting` = 0. Such an override is read, though the
/// serialised preset does not show it.
fn sets_a_default(keys: &[String], value: &Value) -> bool {
    let train_field = |names: &[&str]| {
        matches!(keys, [section, field]
            if ["train_std", "train_rob", "fresh"].contains(&section.as_str())
                && names.contains(&field.as_str()))
    };
    let amounts = ["color_jitter", "rotate_deg", "lighting"];
    match value {
        Value::Boolean(b) => !*b.value() && train_field(&["resized_crop"]),
        Value::Integer(i) => *i.value() == 0 && train_field(&amounts),
        Value::Float(f) => *f.value() == 0.0 && train_field(&amounts),
        Value::String(s) => s.value() == "f32" && keys == ["model", "precision"],
        _ => false,
    }
}

/// One `KEY=VALUE`: the dotted key's parts and the value (TOML, else the string VALUE).
pub(super) fn parse(text: &str) -> Result<(Vec<String>, Value)> {
    let Some((key, raw)) = text.split_once('=') else {
        bail!("--set {text}: expected KEY=VALUE with a dotted KEY, e.g. --set rep_match.n=64");
    };
    let keys: Vec<String> = Key::parse(key.trim())
        .ok()
        .filter(|k| !k.is_empty())
        .with_context(|| format!("--set {text}: `{key}` is not a dotted key such as rep_match.n"))?
        .iter()
        .map(|k| k.get().to_string())
        .collect();
    let value = raw
        .trim()
        .parse::<Value>()
        .unwrap_or_else(|_| Value::from(raw));
    Ok((keys, value))
}

/// `text` with every override applied in order (comments and layout kept), each changed
/// value marked, and the overrides listed in a comment at the top.
pub(super) fn apply(text: &str, origin: &str, overrides: &[String]) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("preset {origin}: invalid TOML"))?;
    for o in overrides {
        let (keys, value) = parse(o)?;
        let note = match was(doc.as_table(), &keys) {
            None => format!("  {MARK} (new)"),
            Some(Some(v)) => format!("  {MARK} (was: {v})"),
            Some(None) => format!("  {MARK}"),
        };
        set(doc.as_table_mut(), o, &keys, value)?;
        mark(doc.as_table_mut(), &keys, &note);
    }
    let mut out = String::from("# The preset as run: the command-line overrides\n");
    for o in overrides {
        let line: String = o
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        out += &format!("#   --set {line}\n");
    }
    out += "# applied to the preset below (the values they changed are marked `# --set`).\n";
    out += &doc.to_string();
    Ok(out)
}

/// What the override of `keys` replaces, seen from the first value on its way (the value
/// itself, or the inline table holding it): None when nothing is there yet, Some(None) when
/// it is not shown on one line.
fn was(root: &Table, keys: &[String]) -> Option<Option<String>> {
    let mut t = root;
    for k in keys {
        match t.get(k)? {
            Item::Table(sub) => t = sub,
            Item::Value(v) => {
                let mut v = v.clone();
                *v.decor_mut() = Default::default();
                let s = v.to_string();
                return Some((!s.contains('\n') && s.len() <= 80).then_some(s));
            }
            _ => return Some(None),
        }
    }
    Some(None)
}

/// Sets `keys` to `value`, creating missing tables on the way; an existing value keeps its
/// place and layout.
fn set(root: &mut Table, text: &str, keys: &[String], value: Value) -> Result<()> {
    let (leaf, parents) = keys.split_last().context("an empty key")?;
    let mut table: &mut dyn TableLike = root;
    let mut inline = false;
    for (i, k) in parents.iter().enumerate() {
        if !table.contains_key(k) {
            table.insert(k, Item::Table(Table::new()));
        }
        inline = table.get(k).is_some_and(Item::is_inline_table);
        table = table
            .get_mut(k)
            .and_then(Item::as_table_like_mut)
            .with_context(|| {
                format!(
                    "--set {text}: `{}` is not a table, so it has no field `{}`",
                    keys[..=i].join("."),
                    keys[i + 1]
                )
            })?;
    }
    match table.get_mut(leaf) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        _ => {
            table.insert(leaf, Item::Value(value));
            if inline {
                // Re-space `{ a = 1, b = 2 }` (a table of its own keeps its comments).
                table.fmt();
            }
        }
    }
    Ok(())
}

/// Puts `note` after the first value on the way to `keys` (a line of its own in the file),
/// unless an earlier override marked it already.
fn mark(root: &mut Table, keys: &[String], note: &str) {
    let mut t = root;
    for k in keys {
        match t.get_mut(k) {
            Some(Item::Table(sub)) => t = sub,
            Some(Item::Value(v)) => {
                let marked = v
                    .decor()
                    .suffix()
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| s.trim_start().starts_with(MARK));
                if !marked {
                    v.decor_mut().set_suffix(note);
                }
                return;
            }
            _ => return,
        }
    }
}

/// The overrides (as `--set KEY=VALUE`) whose key or value lies at `span` of the effective
/// preset `text`, where deserialising it failed; not those a later override replaced.
pub(super) fn blame(text: &str, span: Option<Range<usize>>, overrides: &[String]) -> Vec<String> {
    let (Some(span), Ok(doc)) = (span, ImDocument::parse(text)) else {
        return vec![];
    };
    let keys: Vec<Option<Vec<String>>> = overrides
        .iter()
        .map(|o| parse(o).ok().map(|(k, _)| k))
        .collect();
    // Set again later (the key or a table above it): not what the preset holds.
    let replaced = |i: usize, k: &[String]| {
        keys[i + 1..]
            .iter()
            .flatten()
            .any(|later| k.starts_with(later))
    };
    overrides
        .iter()
        .zip(&keys)
        .enumerate()
        .filter(|(i, (_, k))| {
            k.as_ref().is_some_and(|k| {
                !replaced(*i, k)
                    && spans(doc.as_table(), k)
                        .iter()
                        .any(|s| s.start <= span.end && span.start <= s.end)
            })
        })
        .map(|(_, (o, _))| format!("--set {o}"))
        .collect()
}

/// The spans of the keys on the way to `keys` and of its value.
fn spans(root: &Table, keys: &[String]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut t: &dyn TableLike = root;
    for (i, k) in keys.iter().enumerate() {
        let Some((key, item)) = t.get_key_value(k) else {
            break;
        };
        out.extend(key.span());
        match item.as_table_like() {
            Some(sub) if i + 1 < keys.len() => t = sub,
            _ => {
                out.extend(item.span());
                break;
            }
        }
    }
    out
}

/// Errors when an override set a key that the deserialised preset does not hold, i.e. that
/// serde ignored (a field of another architecture `type` than the one chosen, say).
pub(super) fn check_read(p: &Preset, overrides: &[String]) -> Result<()> {
    let Ok(read) = toml::Value::try_from(p) else {
        return Ok(());
    };
    for o in overrides {
        let (keys, value) = parse(o)?;
        if NOT_SERIALISED.contains(&keys.join(".").as_str()) || sets_a_default(&keys, &value) {
            continue;
        }
        let mut at = &read;
        for (i, k) in keys.iter().enumerate() {
            match at.get(k.as_str()) {
                Some(v) => at = v,
                None => bail!(
                    "--set {o}: the preset has no field `{}` (the table it is in ignores \
                         it, e.g. a field that the chosen architecture `type` does not take)",
                    keys[..=i].join(".")
                ),
            }
        }
        if let Some(sub) = unread(&value, at) {
            bail!(
                "--set {o}: the preset has no field `{}.{sub}` (the table it is in ignores \
                     it, e.g. a field that the chosen architecture `type` does not take)",
                keys.join(".")
            );
        }
    }
    Ok(())
}

/// The first key of `set` (a value an override set) that `read` (the value the preset
/// holds there) lacks, as a dotted path below it.
fn unread(set: &Value, read: &toml::Value) -> Option<String> {
    match (set, read) {
        (Value::InlineTable(t), toml::Value::Table(r)) => {
            t.iter().find_map(|(k, v)| match r.get(k) {
                None => Some(k.to_string()),
                Some(rv) => unread(v, rv).map(|p| format!("{k}.{p}")),
            })
        }
        (Value::Array(a), toml::Value::Array(r)) => a
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(i, (v, rv))| unread(v, rv).map(|p| format!("{i}.{p}"))),
        _ => None,
    }
}
