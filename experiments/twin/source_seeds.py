"""A source model's seed-to-seed spread in nrf and in the twin, under one evaluator.

The twin comparison (`cargo xtask twin`) trains each source model once a side, so a difference
between nrf's C_std and the twin's is one draw against one draw. This trains the model under
master seeds 0..K-1 on both sides -- nrf with `nrf train --model M --set seed=k --save`, the
very model `nrf reproduce --set seed=k` trains, and the twin with its own `train_model` from the
same preset and the same stage seed -- and evaluates every one of them with the twin's
evaluator (PGD-20 with a random start, the ever-fooled rule, the same attack seed) on the same
test images, so that the only thing that differs is the training. It then says whether the two
sides' means differ beyond their seeds' spread (Welch's t interval).

Usage:
  python source_seeds.py --nrf target/release/nrf --preset fashion-mnist --out DIR
                         [--model C_std] [--seeds 5] [--threads 2] [--eps 0.5 1.0]
                         [--test-n 10000] [--set key=value ...]
Writes DIR/source_seeds.json and DIR/source_seeds.md; each model's weights stay in DIR
(nrf_<model>_s<k>.safetensors/.json, twin_<model>_s<k>.pt), each with its evaluation
(<side>_<model>_s<k>.eval.json), and a rerun reuses them, so a study can be extended with --seeds
and an interrupted one resumes.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from nrf_torch import load_model  # noqa: E402
from twin_compare import student_t95  # noqa: E402
from twin_data import load_data, load_preset, stage_seed  # noqa: E402
from twin_stages import (build_model, log, robust_accuracy, standard_accuracy,  # noqa: E402
                         train_model)

def mean_sd(xs):
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return m, sd


def welch(a, b):
    """Difference of means b - a with its Welch 95% interval half-width and degrees of freedom
    (NaN when a side has fewer than two values)."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    if len(a) < 2 or len(b) < 2:
        return mb - ma, float("nan"), float("nan")
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return mb - ma, 0.0, float("inf")
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    # at the whole degrees of freedom below df (the conservative side)
    return mb - ma, student_t95(max(math.floor(df), 1)) * se, df


def evaluate(model, x, y, eps_list, seed):
    out = {"std": standard_accuracy(model, x, y, 1000)}
    for eps in eps_list:
        torch.manual_seed(seed)
        out[f"L2 {eps:g}"] = robust_accuracy(model, x, y, "L2", eps, 20, 2.5, 1000)
    return out


def nrf_model(a, k, stem):
    """Master seed k's model trained by nrf (reused if its files are there)."""
    if not Path(f"{stem}.safetensors").exists():
        # all of --threads in one process (workers=1): the run's model up to the last bits
        cmd = [a.nrf, "train", "--preset", a.preset, "--model", a.model, "--set", f"seed={k}",
               "--set", f"threads={a.threads}", "--set", "workers=1", "--eval-eps", "0.5",
               "--robust-n", "100", "--save", stem] + [x for s in a.set for x in ("--set", s)]
        log(f"nrf {a.model} seed {k}: {' '.join(cmd)}")
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        log(f"nrf {a.model} seed {k}: trained in {time.perf_counter() - t:.0f} s")
    return load_model(stem)


def twin_model(a, preset, data, k, path):
    """Master seed k's model trained by the twin (reused if its file is there)."""
    section = preset["train_std" if a.model == "C_std" else "train_rob"]
    model = build_model(preset, tuple(data.train_x.shape[1:]), data.classes,
                        stage_seed(k, f"train:{a.model}"))
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        t = time.perf_counter()
        train_model(model, data.train_x, data.train_y, section,
                    stage_seed(k, f"train:{a.model}"), label=f"twin {a.model} seed {k}")
        tmp = path.with_suffix(".pt.tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
        log(f"twin {a.model} seed {k}: trained in {time.perf_counter() - t:.0f} s")
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nrf", required=True, help="the nrf binary")
    ap.add_argument("--preset", default="fashion-mnist")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", choices=["C_std", "C_rob"], default="C_std")
    ap.add_argument("--seeds", type=int, default=5, help="master seeds 0..K-1 (default 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.5])
    ap.add_argument("--test-n", type=int, default=10000, help="test images evaluated")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    if a.seeds < 2:
        ap.error("--seeds must be at least 2 (a spread needs two)")
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {"nrf": [], "twin": []}
    for k in range(a.seeds):
        preset = load_preset(a.preset, a.set + [f"seed={k}"])
        data = load_data(preset)
        x, y = data.test_x[:a.test_n], data.test_y[:a.test_n]
        for side in ("nrf", "twin"):
            if side == "nrf":
                m = nrf_model(a, k, str(out / f"nrf_{a.model}_s{k}"))
            else:
                m = twin_model(a, preset, data, k, out / f"twin_{a.model}_s{k}.pt")
            # The evaluation is kept beside the weights, for the settings it was made with.
            cache = out / f"{side}_{a.model}_s{k}.eval.json"
            setting = {"eps": a.eps, "test_n": int(x.shape[0]), "attack_seed": 1}
            old = json.loads(cache.read_text()) if cache.exists() else {}
            if old.get("setting") == setting:
                r = old["result"]
            else:
                t = time.perf_counter()
                r = evaluate(m, x, y, a.eps, 1)
                log(f"{side} {a.model} seed {k}: {json.dumps(r)} "
                    f"({time.perf_counter() - t:.0f} s)")
                tmp = cache.with_suffix(".tmp")
                tmp.write_text(json.dumps({"setting": setting, "result": r}))
                os.replace(tmp, cache)
            rows[side].append({"seed": k, **r})
    keys = ["std"] + [f"L2 {e:g}" for e in a.eps]
    summary = {}
    for key in keys:
        nv, tv = [r[key] for r in rows["nrf"]], [r[key] for r in rows["twin"]]
        d, half, df = welch(nv, tv)
        summary[key] = {"nrf": mean_sd(nv), "twin": mean_sd(tv), "twin_minus_nrf": d,
                        "ci95_half": half, "welch_df": df,
                        "verdict": "differ" if abs(d) > half else "agree within the seeds' spread"}
    doc = {"preset": a.preset, "model": a.model, "seeds": a.seeds, "threads": a.threads,
           "test_n": int(x.shape[0]), "evaluator": "twin PGD-20, random start, step 2.5 eps/20, "
           "ever-fooled, attack seed 1, batch 1000", "overrides": a.set, "per_seed": rows,
           "summary": summary}
    tmp = out / "source_seeds.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out / "source_seeds.json")
    lines = [f"# {a.model}: nrf against the twin over master seeds 0-{a.seeds - 1}", "",
             f"Preset `{a.preset}`{' with ' + ', '.join(a.set) if a.set else ''}; every model "
             f"evaluated by the twin's evaluator on the first {x.shape[0]} test images "
             f"({doc['evaluator']}). Accuracies in %.", "",
             "| seed | " + " | ".join(f"nrf {k} | twin {k}" for k in keys) + " |",
             "|---|" + "---:|---:|" * len(keys)]
    for rn, rt in zip(rows["nrf"], rows["twin"]):
        lines.append(f"| {rn['seed']} | " + " | ".join(
            f"{100 * rn[k]:.1f} | {100 * rt[k]:.1f}" for k in keys) + " |")
    lines += ["", "| accuracy | nrf mean (sd) | twin mean (sd) | twin - nrf, 95% (Welch) | verdict |",
              "|---|---:|---:|---:|---|"]
    for k in keys:
        s = summary[k]
        lines.append(f"| {k} | {100 * s['nrf'][0]:.1f} ({100 * s['nrf'][1]:.1f}) | "
                     f"{100 * s['twin'][0]:.1f} ({100 * s['twin'][1]:.1f}) | "
                     f"{100 * s['twin_minus_nrf']:+.1f} ± {100 * s['ci95_half']:.1f} | "
                     f"{s['verdict']} |")
    (out / "source_seeds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
