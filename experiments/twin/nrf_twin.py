"""nrf's fidelity twin: every Figure 2 / Table 1 stage of `nrf reproduce`, in PyTorch-in-Python.

It reads the same preset TOML as nrf (experiments/presets/*.toml, parsed by
experiments/src/preset.rs) and runs the same stages with the same model, initialisation, data,
batch sizes, schedules and attack steps, so that its numbers can be put next to nrf's
(`cargo xtask twin`). The comparison is statistical: the twin draws its own random subsets,
start images, targets, shuffles and attack starts from its own seeded generators (it never tries
to reproduce nrf's ChaCha8 streams bit for bit). See README.md next to this file.

Files: twin_data.py (presets, seeds, IDX data), twin_stages.py (models, PGD, training,
evaluation, constructions), twin_compare.py (nrf vs twin), and this one (the pipeline and the
command line; it re-exports the stage functions below, so `import nrf_twin` is enough).

Command line:
  python nrf_twin.py --preset P --out DIR [--seeds N] [--source-seeds K] [--threads T]
                     [--device cpu|cuda|auto] [--no-channels-last] [--set key=value ...] [--fresh]
      runs the pipeline and writes DIR/twin.json (progress lines with rate and ETA on stderr).
      An interrupted run resumes: first-seed weights and constructed sets live in DIR/work/
      and are reused when DIR/twin.json was made with the same settings (--fresh: start over).
      The seed counts may differ from the previous run's: with more seeds only the missing
      ones are trained (how a disagreement on a fresh model is settled with more seeds).
      P is a preset file or the name of a built-in preset (experiments/presets/<P>.toml).
      --set takes a dotted key and a TOML value, e.g. --set rep_match.n=100 --set model.init=tch.
  python nrf_twin.py compare --nrf RESULTS --twin DIR [--out DIR]
      writes DIR/comparison.md and DIR/comparison.json (see twin_compare.py).
  python nrf_twin.py resolve --preset P
      prints the preset's name and, on a second line, its file (used by `cargo xtask twin`).

Stages as functions (for `nrf bench --pipeline`, which imports this module; every tensor is a
float32 image batch [N, C, H, W] in [0, 1] or an int64 label vector [N] on one device):
  load_preset(path_or_name, overrides=()) -> dict      the preset with nrf's defaults filled in
  load_data(preset, device="cpu") -> Data               train_x, train_y, test_x, test_y, classes
  build_model(preset, in_shape, classes, seed, device="cpu", channels_last=True) -> Classifier
      model(x) returns (logits, representation g(x)); init from preset["model"]["init"]
  train_model(model, x, y, section, seed, eval_set=None, label="model") -> list of epoch dicts
      section: a [train_std] / [train_rob] / [fresh] table; adversarial when it has `attack`
  standard_accuracy(model, x, y, batch_size) -> float
  robust_accuracy(model, x, y, norm, eps, steps, step_factor, batch_size) -> float
  evaluate(model, data, preset, robust_idx, seed) -> (std_acc, [robust points])
  build_rep_match(model, train_x, train_y, targets, starts, rep_match) -> (images, labels, stats)
  build_relabel(model, train_x, train_y, indices, targets, eps, steps, step_size, batch_size)
      -> (images, labels, stats)
  run_pipeline(preset, out_dir, seeds=3, source_seeds=1, device="cpu", channels_last=True)
      -> the twin.json dict
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from twin_data import (  # noqa: E402  (re-exported: the stage API is importable from here)
    Data, PresetError, comparable, eps_tag, load_data, load_preset, preset_differences,
    preset_from_text, resolve_preset, stage_seed)
from twin_stages import (  # noqa: E402
    Box, Classifier, FmnistCnn, L2Ball, LinfBall, Mlp, build_model, build_rep_match,
    build_relabel, choose_starts, cosine_step, crop_flip, evaluate, frozen, log, lr_at, pgd,
    pgd_attack, random_subset, rep_distance, robust_accuracy, standard_accuracy, tch_init_,
    threat_for, train_model, _fmt_s)

__all__ = [
    "Box", "Classifier", "Data", "FmnistCnn", "L2Ball", "LinfBall", "Mlp", "PresetError",
    "comparable", "preset_differences", "preset_from_text",
    "build_model", "build_relabel", "build_rep_match", "choose_starts", "cosine_step",
    "crop_flip", "curve_for", "draws", "eps_tag", "evaluate", "frozen", "load_data",
    "load_preset", "lr_at", "pgd",
    "pgd_attack", "random_subset", "rep_distance", "resolve_preset", "robust_accuracy",
    "run_pipeline", "stage_seed", "standard_accuracy", "tch_init_", "threat_for", "train_model",
]

# Version of the twin.json layout.
TWIN_VERSION = 1
# Seeds per fresh model when neither --seeds nor the preset's `[fresh] seeds` says: enough for a
# seed spread.
DEFAULT_SEEDS = 3


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

def _mean_std(values):
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def _write_json(path, obj):
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class Pipeline:
    """Runs the stages and keeps twin.json up to date after each."""

    def __init__(self, preset, out_dir, seeds, source_seeds, device, channels_last, fresh=False):
        self.p, self.out, self.device, self.cl = preset, Path(out_dir), device, channels_last
        self.seeds, self.source_seeds = seeds, source_seeds
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = self.out / "work"
        self.work.mkdir(exist_ok=True)
        self.t0 = time.perf_counter()
        self.doc = {
            "twin_version": TWIN_VERSION, "preset": preset["name"], "preset_path": preset["_path"],
            "overrides": preset["_overrides"], "init": preset["model"]["init"],
            "arch": preset["model"]["arch"], "seeds": seeds, "source_seeds": source_seeds,
            "threads": torch.get_num_threads(), "device": str(device),
            "channels_last": channels_last, "torch": torch.__version__,
            "python": sys.version.split()[0], "headline_eps": preset["eval"]["headline_eps"],
            "preset_effective": comparable(preset),
            "note": "random subsets, starts, targets, shuffles and attack starts are the twin's "
                    "own draws (seeded), not nrf's: compare statistically",
            "models": {}, "datasets": {}, "timings": {}, "finished": False,
        }
        self.resumed = self._resume() if not fresh else False

    # What decides the numbers: a previous twin.json is resumed only when all of it is equal.
    # The seed counts are not among them: a model's seed k is the same run whatever the count
    # (its seed comes from the tag `train:<name>#k`), so a resumed run with more seeds trains
    # only the missing ones, and one with fewer uses the first ones (`model`).
    _RESUME_KEYS = ("twin_version", "preset_effective", "init", "arch", "channels_last",
                    "headline_eps")

    def _resume(self):
        """Picks up a previous run in the same folder: its finished models and constructed sets
        (weights and images in work/) are reused; a run with other settings is refused."""
        path = self.out / "twin.json"
        if not path.exists():
            return False
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: unreadable ({e}); move it away or pass --fresh") from e
        differ = [k for k in self._RESUME_KEYS if old.get(k) != self.doc.get(k)]
        if differ:
            raise ValueError(f"{path} was made with other settings ({', '.join(differ)} differ); "
                             "pass --fresh to start over or choose another --out")
        self.doc["models"], self.doc["datasets"] = old.get("models", {}), old.get("datasets", {})
        self.doc["timings"] = old.get("timings", {})
        log(f"resuming {path}: {len(self.doc['models'])} models and "
            f"{len(self.doc['datasets'])} constructed sets done")
        return True

    def _saved(self, name, obj):
        tmp = self.work / f"{name}.pt.tmp"
        torch.save(obj, tmp)
        os.replace(tmp, self.work / f"{name}.pt")

    def _load(self, name):
        path = self.work / f"{name}.pt"
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # a torn or foreign file: recompute rather than trust it
            log(f"{path}: unreadable ({e}); recomputing")
            return None

    def save(self):
        self.doc["total_wall_s"] = time.perf_counter() - self.t0
        _write_json(self.out / "twin.json", self.doc)

    def timed(self, stage, fn):
        log(f"{stage}: running")
        t = time.perf_counter()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.doc["timings"][stage] = time.perf_counter() - t
        log(f"{stage}: done in {_fmt_s(self.doc['timings'][stage])}")
        return out

    def model(self, name, trained_on, x, y, section, n_seeds):
        """Trains `name` with n_seeds seeds and evaluates each; returns the first seed's model.
        Seeds a previous run in this folder finished are reused: with more seeds now only the
        missing ones are trained; with fewer the first n_seeds are used (the others are kept
        in twin.json under `per_seed_unused`, not lost)."""
        p, data = self.p, self.data
        done = self.doc["models"].get(name, {})
        runs = list(done.get("per_seed", [])) + list(done.get("per_seed_unused", []))
        first = None
        if runs:
            state = self._load(f"model_{name}")
            if state is None:  # the first seed's weights are gone: train everything again
                runs = []
            else:
                first = build_model(p, tuple(x.shape[1:]), data.classes, 0, self.device, self.cl)
                first.load_state_dict(state)
                log(f"{name}: {min(len(runs), n_seeds)} of {n_seeds} seed(s) reused from the "
                    "previous run")
        if first is not None and len(done.get("per_seed", [])) == n_seeds:
            return first
        for k in range(len(runs), n_seeds):
            tag = f"train:{name}" + (f"#{k}" if k else "")
            seed = stage_seed(p["seed"], tag)
            model = build_model(p, tuple(x.shape[1:]), data.classes, seed, self.device, self.cl)
            curve = curve_for(self.curve, x.shape[0])
            hist = self.timed(tag, lambda: train_model(model, x, y, section, seed,
                                                       curve, label=tag))
            train_acc = standard_accuracy(model, x, y, p["eval"]["batch_size"])
            ev = "eval:" + tag[len("train:"):]
            std_acc, robust = self.timed(ev, lambda: evaluate(
                model, data, p, self.robust_idx, stage_seed(p["seed"], ev)))
            head = next(r["acc"] for r in robust
                        if r["norm"] == "L2" and abs(r["eps"] - p["eval"]["headline_eps"]) < 1e-9)
            log(f"{name} seed {k}: test accuracy {std_acc:.4f}, L2 eps "
                f"{p['eval']['headline_eps']} robust accuracy {head:.4f}")
            runs.append({"seed": seed, "std_acc": std_acc, "robust": robust,
                         "final_train_acc": train_acc, "epochs": hist})
            if first is None:
                first = model
                self._saved(f"model_{name}", model.state_dict())
        used, unused = runs[:n_seeds], runs[n_seeds:]
        std_m, std_s = _mean_std([r["std_acc"] for r in used])
        robust = []
        for i, pt in enumerate(used[0]["robust"]):
            m, s = _mean_std([r["robust"][i]["acc"] for r in used])
            robust.append({**pt, "acc": m, "spread": s})
        self.doc["models"][name] = {
            "name": name, "trained_on": trained_on, "train_size": int(x.shape[0]),
            "adversarial": section["attack"], "std_acc": std_m, "std_acc_spread": std_s,
            "test_size": int(data.test_x.shape[0]), "robust": robust, "per_seed": used,
            **({"per_seed_unused": unused} if unused else {})}
        self.save()
        return first

    def _reused_set(self, name):
        """A constructed set of the previous run (images, labels), or None."""
        if name not in self.doc["datasets"]:
            return None
        saved = self._load(f"set_{name}")
        if saved is None:
            return None
        log(f"construct:{name}: reused from the previous run")
        return saved["images"], saved["labels"]

    def _store_set(self, name, imgs, labels):
        """Keeps a constructed set in work/ (for resuming, and for training other
        implementations on the twin's own sets) and records it in twin.json."""
        self._saved(f"set_{name}", {"images": imgs.contiguous(), "labels": labels})
        self.save()
        return imgs, labels

    def run(self):
        p = self.p
        self.data = data = self.timed("load_data", lambda: load_data(p, self.device))
        n_train = data.train_x.shape[0]
        dev = self.device
        idx = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=dev)  # noqa: E731
        d = draws(p, data, dev)
        self.robust_idx, self.curve = d["robust_idx"], d["curve"]
        c_std = self.model("C_std", "D", data.train_x, data.train_y, p["train_std"],
                           self.source_seeds)
        c_rob = self.model("C_rob", "D", data.train_x, data.train_y, p["train_rob"],
                           self.source_seeds)
        rm, rl = p["rep_match"], p["relabel"]
        subset, targets, starts = d["subset"], d["targets"], d["starts"]
        sets = {}
        for name, source, model in (("D_NR", "C_std", c_std), ("D_R", "C_rob", c_rob)):
            sets[name] = self._reused_set(name)
            if sets[name] is not None:
                continue
            imgs, labels, st = self.timed(f"construct:{name}", lambda: build_rep_match(
                model, data.train_x, data.train_y, idx(targets), starts, rm, f"construct:{name}"))
            self.doc["datasets"][name] = {
                "source_model": source, "n": len(targets),
                **{f"{'mean_' if k.startswith('dist') else ''}{k}": st[k].mean().item()
                   for k in st}}
            sets[name] = self._store_set(name, imgs, labels)
        for name in ("D_R", "D_NR"):
            self.model(f"on_{name}", name, *sets[name], p["fresh"], self.seeds)
        ctl = idx(targets)
        self.model("on_control", "D_control", data.train_x.index_select(0, ctl),
                   data.train_y.index_select(0, ctl), p["fresh"], self.seeds)
        rel_idx = idx(subset[:rl["n"]])
        ys = data.train_y.index_select(0, rel_idx)
        specs = [(rl["eps"], rl["step_size"], "")] + [
            (e, rl["step_size"] * e / rl["eps"], f"_eps{eps_tag(e)}") for e in rl["extra_eps"]]
        for eps, step, suffix in specs:
            for rule in ("rand", "det"):
                name = f"D_{rule}{suffix}"
                if rule == "det":
                    t = (ys + 1) % data.classes
                else:
                    rng = np.random.default_rng(stage_seed(p["seed"], f"targets:{name}"))
                    t = idx(rng.integers(0, data.classes, size=len(rel_idx)))
                reused = self._reused_set(name)
                if reused is not None:
                    self.model(f"on_{name}", name, *reused, p["fresh"], self.seeds)
                    continue
                imgs, labels, st = self.timed(f"construct:{name}", lambda: build_relabel(
                    c_std, data.train_x, data.train_y, rel_idx, t, eps, rl["steps"], step,
                    rl["batch_size"], f"construct:{name}"))
                self.doc["datasets"][name] = {
                    "source_model": "C_std", "n": len(rel_idx), "epsilon": eps, "step_size": step,
                    "success_rate": st["success"].mean().item(),
                    "mean_dist_to_x": st["dist_to_x"].mean().item(),
                    "target_equals_label": (st["source_label"] == t).float().mean().item()}
                self._store_set(name, imgs, labels)
                self.model(f"on_{name}", name, imgs, labels, p["fresh"], self.seeds)
        self.doc["finished"] = True
        self.doc["resumed"] = self.resumed
        self.save()
        return self.doc


def curve_for(curve, n_train):
    """The per-epoch curve of a model trained on n_train images, as nrf's
    `EvalSection::curve_images`: the first min(curve_n, ceil(0.3 n_train)) images of the curve
    set (`draws`), at most a tenth of its epoch's training work, at least one."""
    x, y = curve
    k = max(1, min(x.shape[0], math.ceil(0.3 * n_train)))
    return x[:k], y[:k]


def draws(p, data, device="cpu"):
    """The pipeline's seeded draws, one place for every script that must match it: the robust
    evaluation subset (`robust_idx`), the per-epoch curve set (`curve`: images, labels), the
    construction subset (`subset`, a list), D_R / D_NR's targets (its first rep_match.n) and their
    start images (`starts`, a tensor)."""
    n_train, n_test = data.train_x.shape[0], data.test_x.shape[0]
    idx = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
    robust_idx = idx(random_subset(n_test, min(p["eval"]["robust_n"], n_test),
                                   stage_seed(p["seed"], "eval-subset")))
    cn = p["eval"]["curve_n"]
    # A random order even for the whole test set (curve_n = 0), as nrf: a model on few images
    # measures the first images of it (`curve_for`).
    cidx = idx(random_subset(n_test, min(cn, n_test) if cn else n_test,
                             stage_seed(p["seed"], "curve-subset")))
    rm, rl = p["rep_match"], p["relabel"]
    subset = random_subset(n_train, min(max(rm["n"], rl["n"]), n_train),
                           stage_seed(p["seed"], "construct-subset"))
    targets = subset[:rm["n"]]
    starts = idx(choose_starts(targets, n_train, stage_seed(p["seed"], "rep-match-starts")))
    return {"robust_idx": robust_idx,
            "curve": (data.test_x.index_select(0, cidx), data.test_y.index_select(0, cidx)),
            "subset": subset, "targets": targets, "starts": starts}


def run_pipeline(preset, out_dir, seeds=3, source_seeds=1, device="cpu", channels_last=True,
                 fresh=False):
    """Every Figure 2 / Table 1 stage of `preset` (from load_preset); writes out_dir/twin.json
    and returns its contents. A previous run in out_dir with the same settings is resumed (its
    finished models and sets, kept in out_dir/work/, are reused) unless `fresh`."""
    dev = torch.device(device)
    return Pipeline(preset, out_dir, seeds, source_seeds, dev, channels_last, fresh).run()


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        from twin_compare import main as compare_main
        return compare_main(argv[1:])
    if argv[:1] == ["resolve"]:
        ap = argparse.ArgumentParser(prog="nrf_twin.py resolve")
        ap.add_argument("--preset", required=True)
        a = ap.parse_args(argv[1:])
        p = load_preset(a.preset)
        print(p["name"])
        print(Path(p["_path"]).resolve())
        return 0
    ap = argparse.ArgumentParser(prog="nrf_twin.py",
                                 description="nrf's Figure 2 / Table 1 pipeline in PyTorch")
    ap.add_argument("--preset", required=True, help="preset file or built-in name")
    ap.add_argument("--out", required=True, help="output folder (twin.json)")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds per fresh model (default: the preset's `fresh.seeds`, else "
                         f"{DEFAULT_SEEDS})")
    ap.add_argument("--source-seeds", type=int, default=1,
                    help="seeds for C_std and C_rob (the first builds the datasets; default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: the preset's `threads`; 0 = torch's)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, or auto (default cpu)")
    ap.add_argument("--no-channels-last", action="store_true",
                    help="keep the convolutions in NCHW (default: channels-last)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a preset value (dotted key, TOML value); repeatable")
    ap.add_argument("--fresh", action="store_true",
                    help="start over even when OUT holds a resumable run with the same settings")
    a = ap.parse_args(argv)
    preset = load_preset(a.preset, a.set)
    if a.seeds is None:
        a.seeds = int(preset["fresh"].get("seeds", DEFAULT_SEEDS))
    if a.seeds < 1 or a.source_seeds < 1:
        ap.error("--seeds and --source-seeds must be at least 1")
    threads = preset["threads"] if a.threads is None else a.threads
    if threads > 0:
        torch.set_num_threads(threads)
    device = a.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"preset {preset['name']} ({preset['_path']}), init {preset['model']['init']}, "
        f"{torch.get_num_threads()} threads, {device}, seeds {a.seeds}")
    run_pipeline(preset, a.out, a.seeds, a.source_seeds, device, not a.no_channels_last, a.fresh)
    log(f"wrote {Path(a.out) / 'twin.json'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (PresetError, FileNotFoundError, ValueError) as e:
        print(f"nrf_twin: error: {e}", file=sys.stderr)
        sys.exit(2)
