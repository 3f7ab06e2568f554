"""Trains the twin's fresh models on a constructed set from elsewhere (nrf's `data/D_NR.safetensors`,
or a set the twin kept in `OUT/work/set_<name>.pt`) and evaluates them as the twin does.

It separates the two halves of a disagreement between nrf and the twin: when the twin's models
trained on nrf's own set give nrf's numbers, the training is not the cause; the set (its source
model or its construction) is.

  python experiments/twin/train_on_set.py --preset fashion-mnist --set-file results/x/data/D_NR.safetensors \
      --label on_nrf_D_NR --seeds 3 --threads 2 --out /tmp/on_nrf_D_NR.json

With --build-from STEM (an nrf model, e.g. results/x/weights/C_std) and --kind d_nr|d_r it first
builds the set with the twin's own construction (its subset, starts and steps) from that model,
saves it as --set-file (a .pt), then trains on it: the other half, the source model's share.
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

from nrf_twin import (build_model, build_rep_match, curve_for, draws, evaluate,  # noqa: E402
                      load_data, load_preset, log, stage_seed, train_model, _mean_std)


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
    ap.add_argument("--build-from", help="nrf model stem: build the set from it first")
    ap.add_argument("--kind", choices=("d_nr", "d_r"), default="d_nr")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    p = load_preset(a.preset)
    data = load_data(p)
    d = draws(p, data)
    if a.build_from:
        from nrf_torch import load_model
        source = load_model(a.build_from)
        imgs, labels, st = build_rep_match(
            source, data.train_x, data.train_y,
            torch.as_tensor(np.asarray(d["targets"], dtype=np.int64)), d["starts"],
            p["rep_match"], f"construct:{a.kind} from {a.build_from}")
        log(f"built {a.kind} from {a.build_from}: relative error "
            f"{st['init_rel_err'].mean():.3f} -> {st['final_rel_err'].mean():.3f}")
        torch.save({"images": imgs.contiguous(), "labels": labels}, a.set_file)
    x, y = load_set(a.set_file)
    if x.shape[1:] != data.train_x.shape[1:] or x.shape[0] != y.shape[0]:
        raise ValueError(f"{a.set_file}: images {tuple(x.shape)} / labels {tuple(y.shape)} do not fit "
                         f"the preset's data {tuple(data.train_x.shape[1:])}")
    robust_idx, curve = d["robust_idx"], d["curve"]
    runs = []
    for k in range(a.seeds):
        tag = f"train:{a.label}" + (f"#{k}" if k else "")
        seed = stage_seed(p["seed"], tag)
        model = build_model(p, tuple(x.shape[1:]), data.classes, seed)
        train_model(model, x, y, p["fresh"], seed, curve_for(curve, x.shape[0]), label=tag)
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
