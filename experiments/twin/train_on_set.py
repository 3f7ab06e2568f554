"""Trains the twin's fresh models on a constructed set from elsewhere (nrf's `data/D_NR.safetensors`,
or a set the twin kept in `OUT/work/set_<name>.pt`) and evaluates them as the twin does.

It separates the two halves of a disagreement between nrf and the twin: when the twin's models
trained on nrf's own set give nrf's numbers, the training is not the cause; the set (its source
model or its construction) is.

  python experiments/twin/train_on_set.py --preset fashion-mnist --set-file results/x/data/D_NR.safetensors \
      --label on_nrf_D_NR --seeds 3 --threads 2 --out /tmp/on_nrf_D_NR.json
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "python"))

from nrf_twin import (build_model, evaluate, load_data, load_preset, log,  # noqa: E402
                      random_subset, stage_seed, train_model, _mean_std)


def load_set(path):
    path = Path(path)
    if path.suffix == ".safetensors":
        from nrf_torch import load_constructed
        ds, _ = load_constructed(str(path))
        return ds.tensors[0].float(), ds.tensors[1].long()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved["images"].float(), saved["labels"].long()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="train_on_set.py")
    ap.add_argument("--preset", required=True)
    ap.add_argument("--set-file", required=True, help="nrf .safetensors set or twin set_<name>.pt")
    ap.add_argument("--label", required=True, help="model name (seeds as in the twin: train:<label>#k)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    p = load_preset(a.preset)
    data = load_data(p)
    x, y = load_set(a.set_file)
    if x.shape[1:] != data.train_x.shape[1:] or x.shape[0] != y.shape[0]:
        raise ValueError(f"{a.set_file}: images {tuple(x.shape)} / labels {tuple(y.shape)} do not fit "
                         f"the preset's data {tuple(data.train_x.shape[1:])}")
    n_test = data.test_x.shape[0]
    robust_idx = torch.as_tensor(random_subset(n_test, min(p["eval"]["robust_n"], n_test),
                                               stage_seed(p["seed"], "eval-subset")))
    cn = p["eval"]["curve_n"]
    cidx = torch.as_tensor(random_subset(n_test, min(cn, n_test), stage_seed(p["seed"], "curve-subset"))
                           if cn else np.arange(n_test))
    curve = (data.test_x.index_select(0, cidx), data.test_y.index_select(0, cidx))
    runs = []
    for k in range(a.seeds):
        tag = f"train:{a.label}" + (f"#{k}" if k else "")
        seed = stage_seed(p["seed"], tag)
        model = build_model(p, tuple(x.shape[1:]), data.classes, seed)
        train_model(model, x, y, p["fresh"], seed, curve, label=tag)
        std_acc, robust = evaluate(model, data, p, robust_idx, stage_seed(p["seed"], "eval:" + tag[6:]))
        head = next(r["acc"] for r in robust
                    if r["norm"] == "L2" and abs(r["eps"] - p["eval"]["headline_eps"]) < 1e-9)
        log(f"{a.label} seed {k}: test accuracy {std_acc:.4f}, headline robust accuracy {head:.4f}")
        runs.append({"seed": seed, "std_acc": std_acc, "robust": robust, "headline": head})
    m, s = _mean_std([r["headline"] for r in runs])
    sm, ss = _mean_std([r["std_acc"] for r in runs])
    out = {"set_file": str(a.set_file), "label": a.label, "n": int(x.shape[0]),
           "std_acc": sm, "std_acc_spread": ss, "headline_robust": m, "headline_spread": s,
           "per_seed": runs}
    Path(a.out).write_text(json.dumps(out, indent=1))
    log(f"{a.label}: test {sm:.4f} ± {ss:.4f}, robust {m:.4f} ± {s:.4f} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
