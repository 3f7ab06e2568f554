"""nrf vs its PyTorch twin: every Figure 2 / Table 1 number side by side, with a verdict.

  python nrf_twin.py compare --nrf RESULTS --twin DIR [--out DIR]

RESULTS is an nrf results folder (models/<name>.json, run.json; the schema of
crates/report/src/results/), DIR holds the twin's twin.json; comparison.md and comparison.json
go to --out (default DIR). The preset values in nrf's run.json are checked against the twin's:
a difference is listed at the top of comparison.md and makes the exit status 3.

The rule, per row (a model's standard accuracy, or its robust accuracy at one norm and eps): a
two-sided test at 95% of "the two sides' means are equal", calibrated for the few seeds a row has:
  SE^2 = se_nrf^2 + se_twin^2 + s^2 * (1/k_nrf + 1/k_twin)
  agree  <=>  |nrf - twin| <= c * SE,   c = max(2, t95(df))
where se = sqrt(p (1 - p) / n) is the binomial standard error of an accuracy p measured on n test
images (each side draws its own test subset), k a side's number of seeds, a side's value its mean
over them, and s the pooled seed-to-seed standard deviation of the two sides (under "equal" both
sides have the same seed distribution): s^2 = sum over sides of (k - 1) * sd^2, over
k_nrf + k_twin - 2 degrees of freedom (0 when both sides have one seed: the row says "no spread").
t95(df) is Student's t 97.5% quantile at the Welch-Satterthwaite degrees of freedom of SE (the
binomial parts known exactly): df = (k_nrf + k_twin - 2) * SE^4 / (s^2 (1/k_nrf + 1/k_twin))^2
(t interpolated in 1/df between whole df, as nrf's margins); 2 is nrf's own margin rule
(nrf_results::uncertainty) where the spread is well known. When the two sides are the same, a
row disagrees by chance with probability 4.6-5.9% from 3 seeds a side on and up to 7.8% at 2
(where the degrees of freedom come from a 2-seed spread), over binomial-dominated to
seed-dominated rows (simulated, Gaussian seeds; the summary says how many chance disagreements
5% makes). Before session 25 the rule was
|nrf - twin| <= 2 sqrt(se_nrf^2 + se_twin^2 + max(sd)^2), which took one seed's spread for the
mean's and a 2-seed spread as known: up to 12.7% chance disagreements per row at 2 seeds a side,
0.1% (no power) at 8.

nrf's seeds are read, when its results carry several, from a list under `seeds`, `per_seed` or
`runs` in models/<name>.json (objects with `std_acc` and `robust`, as the twin writes them), or
from files models/<name>_seed<k>.json / <name>@<k>.json / <name>#<k>.json next to it (then
models/<name>.json is one more seed).
"""

import argparse
import json
import math
import re
import sys
import tomllib
from pathlib import Path

from twin_data import PresetError, comparable, preset_differences, preset_from_text

# The Figure 2 / Table 1 models, in the order of the paper's figure and table.
ORDER = ("C_std", "C_rob", "on_D_R", "on_D_NR", "on_control", "on_D_rand", "on_D_det")
RULE = ("agree <=> |nrf - twin| <= c * SE; SE^2 = se_nrf^2 + se_twin^2 + s^2 (1/k_nrf + "
        "1/k_twin); se = sqrt(p(1-p)/n) (binomial, n test images); k = seeds; s = the pooled "
        "seed-to-seed standard deviation of both sides (k_nrf + k_twin - 2 degrees of freedom; 0 "
        "when both sides have one seed); c = max(2, Student's t 97.5% quantile at the "
        "Welch-Satterthwaite degrees of freedom of SE): a 95% two-sided test, ~5% chance "
        "disagreements per row (up to ~8% at 2 seeds a side)")
# Chance disagreements per row under the rule when nrf and the twin agree.
FALSE_ALARM = 0.05
# Student's t 97.5% quantiles for 1..30 degrees of freedom (nrf_results::uncertainty::student_t95).
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
       2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
       2.052, 2.048, 2.045, 2.042)
Z95 = 1.959963984540054
SEED_LIST_KEYS = ("seeds", "per_seed", "runs")
SEED_FILE = re.compile(r"(?:_seed|@|#)(\d+)")


class CompareError(RuntimeError):
    """Missing or unreadable inputs; the message says what to run."""


def _load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CompareError(f"cannot read {path}: {e}") from e


def _eq(a, b):
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1.0)


def _robust_at(doc, norm, eps):
    for r in doc.get("robust") or []:
        if r.get("norm", "").lower() == norm.lower() and _eq(float(r["eps"]), eps):
            return r
    return None


def nrf_seeds(models_dir, name, doc):
    """The per-seed result dicts of nrf's model `name` (one element for a one-seed run)."""
    for key in SEED_LIST_KEYS:
        v = doc.get(key)
        if isinstance(v, list) and v and all(isinstance(r, dict) and "std_acc" in r for r in v):
            return v
    extra = []
    for f in sorted(models_dir.glob(f"{name}*.json")):
        m = SEED_FILE.fullmatch(f.stem[len(name):])
        if m:
            extra.append((int(m.group(1)), _load(f)))
    return [doc] + [d for _, d in sorted(extra, key=lambda t: t[0])]


def _stats(values, n):
    """(mean, binomial se at the mean, seed std or None, number of seeds) of accuracies."""
    k = len(values)
    mean = sum(values) / k
    se = math.sqrt(max(mean * (1.0 - mean), 0.0) / n) if n > 0 else float("nan")
    spread = (math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1)) if k > 1 else None)
    return mean, se, spread, k


def student_t95(df):
    """Student's t 97.5% quantile at whole `df` (>= 1) degrees of freedom: tabulated to 30, then
    the Cornish-Fisher expansion around Z95 (as nrf_results::uncertainty::student_t95)."""
    if df <= 30:
        return T95[int(df) - 1]
    z = Z95
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df)


def t95_at(df):
    """student_t95 at a fractional df (>= 1): linear in 1/df between the whole numbers around it
    (as nrf_results::uncertainty's margins)."""
    df = max(df, 1.0)
    lo = math.floor(df)
    a = student_t95(lo)
    if df == lo or lo >= 1e9:
        return a
    b = student_t95(lo + 1)
    return a + (b - a) * (1.0 / lo - 1.0 / df) / (1.0 / lo - 1.0 / (lo + 1))


def tolerance(se_a, se_b, sd_a, k_a, sd_b, k_b):
    """(tolerance, pooled seed sd or None, critical value c, degrees of freedom or None) of the
    difference of two means (the module's rule): c * SE, SE^2 = se_a^2 + se_b^2 +
    s^2 (1/k_a + 1/k_b), s the pooled seed sd, c = max(2, t95(Welch-Satterthwaite df))."""
    dof = (k_a - 1) + (k_b - 1)
    binom = se_a ** 2 + se_b ** 2
    if dof == 0:
        return 2.0 * math.sqrt(binom), None, 2.0, None
    pooled = ((k_a - 1) * (sd_a or 0.0) ** 2 + (k_b - 1) * (sd_b or 0.0) ** 2) / dof
    seed_part = pooled * (1.0 / k_a + 1.0 / k_b)
    var = binom + seed_part
    if seed_part <= 0.0:
        return 2.0 * math.sqrt(var), 0.0, 2.0, None
    df = max(dof, dof * var ** 2 / seed_part ** 2)
    c = max(2.0, t95_at(df))
    return c * math.sqrt(var), math.sqrt(pooled), c, df


def _metric(runs, metric, fallback_n):
    """Values and n of `metric` ("std" or (norm, eps)) over seed runs; None if absent."""
    vals, n = [], fallback_n
    for r in runs:
        if metric == "std":
            if r.get("std_acc") is None:
                return None
            vals.append(float(r["std_acc"]))
            n = int(r.get("test_size") or n or 0)
        else:
            pt = _robust_at(r, *metric)
            if pt is None:
                return None
            vals.append(float(pt["acc"]))
            n = int(pt.get("n") or n or 0)
    return vals, n


def compare_row(model, metric, nrf_runs, twin_model, nrf_test_size=0):
    """One comparison row (a dict) of `model` at `metric` ("std" or (norm, eps)); nrf_runs are
    nrf's seeds (None: nrf lacks the model), nrf_test_size the n of its standard accuracy."""
    label = "std acc" if metric == "std" else f"{metric[0]} eps {metric[1]:g}"
    row = {"model": model, "metric": label}
    twin_runs = twin_model.get("per_seed") or [twin_model]
    fallback = {"test_size": twin_model.get("test_size", 0)}
    t = _metric(twin_runs, metric, fallback["test_size"])
    if nrf_runs is None or t is None:
        row["verdict"] = "missing in nrf" if nrf_runs is None else "missing in the twin"
        return row
    nv = _metric(nrf_runs, metric, nrf_test_size)
    if nv is None:
        row["verdict"] = "missing in nrf"
        return row
    if nv[1] <= 0 or t[1] <= 0:
        row["verdict"] = "unknown n"
        return row
    nm, nse, nsp, nk = _stats(*nv)
    tm, tse, tsp, tk = _stats(*t)
    tol, pooled, crit, df = tolerance(nse, tse, nsp, nk, tsp, tk)
    diff = nm - tm
    row.update({
        "nrf": nm, "nrf_se": nse, "nrf_spread": nsp, "nrf_seeds": nk, "nrf_n": nv[1],
        "twin": tm, "twin_se": tse, "twin_spread": tsp, "twin_seeds": tk, "twin_n": t[1],
        "spread": pooled or 0.0, "spread_known": pooled is not None, "critical": crit, "df": df,
        "diff": diff, "tolerance": tol,
        "verdict": "agree" if abs(diff) <= tol else "disagree",
    })
    return row


def _nrf_init(nrf_dir):
    """The initialisation nrf's run used, from run.json's preset text, and where it came from."""
    run = nrf_dir / "run.json"
    if not run.is_file():
        return None, "no run.json"
    doc = _load(run)
    try:
        cfg = tomllib.loads(doc.get("config_toml") or "")
    except tomllib.TOMLDecodeError:
        return None, "run.json's preset is not valid TOML"
    init = cfg.get("model", {}).get("init")
    if init is None:
        return None, "run.json's preset has no [model] init (nrf before that setting used tch's)"
    return init, "run.json [model] init"


def _preset_check(run, twin, nrf_dir):
    """(differences, how checked): nrf's preset (run.json) vs the twin's, on what the numbers
    depend on. run.json's `config_toml` is the preset as nrf ran it, its `--set` overrides (listed
    in run.json's `overrides`) already applied, so it is read as it is."""
    text = run.get("config_toml")
    if not text or "preset_effective" not in twin:
        return [], "not checked (no preset text in run.json or twin.json)"
    try:
        nrf_p = comparable(preset_from_text(text, f"{nrf_dir}/run.json"))
    except PresetError as e:
        return [], f"not checked: {e}"
    diffs = preset_differences(nrf_p, twin["preset_effective"])
    return [{"key": k, "nrf": a, "twin": b} for k, a, b in diffs], "checked"


def compare(nrf_dir, twin_dir):
    """The comparison as a dict (see the module docstring); raises CompareError."""
    nrf_dir, twin_dir = Path(nrf_dir), Path(twin_dir)
    twin_file = twin_dir / "twin.json"
    if not twin_file.is_file():
        raise CompareError(f"{twin_file} does not exist: run the twin first "
                           "(python nrf_twin.py --preset P --out DIR, or cargo xtask twin)")
    twin = _load(twin_file)
    models_dir = nrf_dir / "models"
    if not (models_dir / "C_std.json").is_file():
        raise CompareError(
            f"nrf's results for preset {twin.get('preset')} are not in {nrf_dir} (no "
            f"models/C_std.json): run `cargo xtask reproduce --preset {twin.get('preset')}` "
            f"(with `--results {nrf_dir}` for that folder) first")
    run = _load(nrf_dir / "run.json") if (nrf_dir / "run.json").is_file() else {}
    headline = run.get("headline_eps") or twin["headline_eps"]
    names = [m for m in ORDER if m in twin["models"]]
    names += [m for m in twin["models"] if m not in names]
    rows, further = [], []
    for name in names:
        f = models_dir / f"{name}.json"
        doc = _load(f) if f.is_file() else {}
        nrf_runs = nrf_seeds(models_dir, name, doc) if doc else None
        n_std = int(doc.get("test_size") or 0)
        tm = twin["models"][name]
        rows.append(compare_row(name, "std", nrf_runs, tm, n_std))
        rows.append(compare_row(name, ("L2", float(headline)), nrf_runs, tm, n_std))
        for pt in tm.get("robust", []):
            if not (pt["norm"] == "L2" and _eq(pt["eps"], headline)):
                further.append(compare_row(name, (pt["norm"], float(pt["eps"])), nrf_runs, tm,
                                           n_std))
    datasets = []
    for name, td in twin.get("datasets", {}).items():
        f = nrf_dir / "datasets" / f"{name}.json"
        nd = _load(f) if f.is_file() else {}
        for key in ("final_rel_err", "init_rel_err", "success_rate", "mean_dist_to_x"):
            if key in td:
                datasets.append({"set": name, "quantity": key, "nrf": nd.get(key),
                                 "twin": td[key]})
    nrf_init, init_source = _nrf_init(nrf_dir)
    mismatch, checked = _preset_check(run, twin, nrf_dir)
    judged = [r for r in rows if r["verdict"] in ("agree", "disagree")]
    return {
        "preset": twin.get("preset"), "nrf_results": str(nrf_dir), "twin_results": str(twin_dir),
        "headline_eps": headline, "rule": RULE,
        "preset_mismatch": mismatch, "preset_check": checked,
        "init": {"twin": twin.get("init"), "nrf": nrf_init, "nrf_source": init_source},
        "twin_seeds": twin.get("seeds"), "twin_source_seeds": twin.get("source_seeds"),
        "twin_finished": twin.get("finished", False),
        "summary": {"rows": len(rows), "agree": sum(r["verdict"] == "agree" for r in judged),
                    "disagree": sum(r["verdict"] == "disagree" for r in judged),
                    "missing": len(rows) - len(judged)},
        "rows": rows, "further": further, "datasets": datasets,
        "twin_timings": twin.get("timings", {}),
    }


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}"


def _side(r, side):
    if r.get(side) is None:
        return "-"
    s = f"{_pct(r[side])} ± {_pct(r[side + '_se'])}"
    if r.get(side + "_spread") is not None:
        s += f" (sd {_pct(r[side + '_spread'])}, {r[side + '_seeds']} seeds)"
    return s


def _table(rows):
    out = ["| model | number | nrf % (± se) | twin % (± se) | nrf − twin | tolerance "
           "| verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "diff" not in r:
            out.append(f"| {r['model']} | {r['metric']} | - | - | - | - | {r['verdict']} |")
            continue
        tol = _pct(r["tolerance"]) + ("" if r["spread_known"] else " (no spread)")
        if r.get("critical", 2.0) > 2.0:
            tol += f" (t {r['critical']:.2f}, {r['df']:.1f} df)"
        out.append(f"| {r['model']} | {r['metric']} | {_side(r, 'nrf')} | {_side(r, 'twin')} | "
                   f"{100 * r['diff']:+.1f} | {tol} | {r['verdict']} |")
    return out


def _mismatch_lines(c):
    if c["preset_check"] != "checked":
        return [f"Configuration: {c['preset_check']}.", ""]
    if not c["preset_mismatch"]:
        return ["Configuration: nrf's run.json and the twin used the same preset values (every "
                "table the numbers depend on).", ""]
    out = ["**WARNING: nrf and the twin ran different configurations, so the verdicts below "
           "compare different experiments:**", ""]
    for d in c["preset_mismatch"]:
        out.append(f"- `{d['key']}`: nrf {d['nrf']!r}, twin {d['twin']!r}")
    return out + [""]


def _settle_lines(c):
    """How to settle the disagreeing rows of fresh models (which rest on few seeds): more seeds
    on both sides, each resuming its run and training only the missing seeds."""
    few = sorted({r["model"] for r in c["rows"] + c["further"]
                  if r["verdict"] == "disagree" and r["model"] not in ("C_std", "C_rob")})
    if not few:
        return []
    seeds = [(r.get("nrf_seeds", 1), r.get("twin_seeds", 1))
             for r in c["rows"] if r["model"] in few]
    k_nrf, k_twin = max(k for k, _ in seeds), max(k for _, k in seeds)
    return [f"Fresh models with a disagreeing row in the tables below ({', '.join(few)}; nrf "
            f"{k_nrf}, twin {k_twin} seed(s)): a disagreement "
            "that rests on few seeds is settled with more on both sides. Both runs resume and "
            "train only the missing seeds: `nrf reproduce --preset <its preset> --results "
            f"{c['nrf_results']} --set fresh.seeds=K`, `nrf_twin.py --preset <the same> --out "
            f"{c['twin_results']} --seeds K`, then compare again. Each side also built every "
            "constructed set from one source model (C_std for D_NR, D_rand and D_det, C_rob for "
            "D_R), whose seed-to-seed spread no fresh seed can show: "
            "`experiments/twin/source_seeds.py` measures the source models' spread on both sides "
            "under one evaluator, and `experiments/twin/train_on_set.py --build-from "
            "<nrf's weights/C_std>` runs the twin's construction and training on nrf's source "
            "model.", ""]


def to_markdown(c):
    """The comparison as a markdown document."""
    s = c["summary"]
    init = c["init"]
    lines = [
        f"# nrf vs its PyTorch twin: preset {c['preset']}",
        "",
        f"nrf results: `{c['nrf_results']}`; twin: `{c['twin_results']}/twin.json` "
        f"({c['twin_seeds']} seeds per fresh model, {c['twin_source_seeds']} for C_std / C_rob"
        f"{'' if c['twin_finished'] else '; the twin run did not finish'}).",
        f"Initialisation: twin `{init['twin']}`, nrf `{init['nrf'] or 'unknown'}` "
        f"({init['nrf_source']}).",
        "",
        *_mismatch_lines(c),
        f"**{s['agree']} of {s['rows']} rows agree, {s['disagree']} disagree"
        f"{', ' + str(s['missing']) + ' missing' if s['missing'] else ''}.** "
        f"At {FALSE_ALARM:.0%} per row, {FALSE_ALARM * (s['agree'] + s['disagree']):.1f} of "
        f"these {s['agree'] + s['disagree']} rows would disagree by chance alone (on average) "
        "if nrf and the twin were the same.",
        "",
        *_settle_lines(c),
        f"Rule: {c['rule']}. Accuracies in %; ± is the binomial standard error; sd the "
        "seed-to-seed standard deviation. The twin draws its own random subsets, start images, "
        "targets and attack starts (seeded), so only statistical agreement is expected.",
        "",
        f"## Figure 2 and Table 1 (standard accuracy, robust accuracy at L2 eps "
        f"{c['headline_eps']:g})",
        "",
        *_table(c["rows"]),
    ]
    if c["further"]:
        lines += ["", "## Robust accuracy at the other radii", "", *_table(c["further"])]
    if c["datasets"]:
        lines += ["", "## Constructed sets (for information)", "",
                  "| set | quantity | nrf | twin |", "|---|---|---|---|"]
        for d in c["datasets"]:
            nrf = "-" if d["nrf"] is None else f"{d['nrf']:.3f}"
            lines.append(f"| {d['set']} | {d['quantity']} | {nrf} | {d['twin']:.3f} |")
    if c["twin_timings"]:
        total = sum(c["twin_timings"].values())
        lines += ["", f"Twin wall time: {total:.0f} s over {len(c['twin_timings'])} stages "
                  "(per stage in comparison.json)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="nrf_twin.py compare",
                                 description="nrf's Figure 2 / Table 1 numbers vs the twin's")
    ap.add_argument("--nrf", required=True, help="nrf results folder (models/, run.json)")
    ap.add_argument("--twin", required=True, help="folder with the twin's twin.json")
    ap.add_argument("--out", help="where comparison.md / .json go (default: --twin)")
    a = ap.parse_args(argv)
    try:
        c = compare(a.nrf, a.twin)
    except CompareError as e:
        print(f"nrf_twin compare: error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out or a.twin)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(c, indent=1))
    (out / "comparison.md").write_text(to_markdown(c))
    s = c["summary"]
    print(f"{s['agree']} of {s['rows']} rows agree, {s['disagree']} disagree, {s['missing']} "
          f"missing; wrote {out / 'comparison.md'} and comparison.json")
    if c["preset_mismatch"]:
        keys = ", ".join(d["key"] for d in c["preset_mismatch"])
        print(f"nrf_twin compare: error: nrf's results in {a.nrf} were made with another "
              f"configuration than the twin's ({keys}): rerun `cargo xtask reproduce` with the "
              "same preset (cached stages are kept), then the twin", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
