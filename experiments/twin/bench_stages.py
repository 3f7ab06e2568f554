"""The Python side of `nrf bench --pipeline`: whole pipeline stages of nrf's fidelity twin
(nrf_twin's stage functions, with their loops, batching and bookkeeping), timed on request.

`nrf bench --pipeline` (experiments/src/bench/pipeline/) starts this file as
`python bench_stages.py --serve` and speaks line-delimited JSON on stdin/stdout. It first writes
the stage inputs into a folder, so that both sides work on the same images and the same model:

  train_x.f32 / train_y.i64, test_x.f32 / test_y.i64   images [N, C, H, W] in [0, 1], labels
  weights.f32 + weights.json                           the source model of the attack stages
                                                        (FmnistCnn; names c1.weight, ... as nrf)
  indices.json                                          rep-matching targets and starts,
                                                        relabel indices and targets

Protocol (one JSON object per line):
  hello (first line out): {"ok": true, "python": ..., "torch": ...} or {"ok": false, "error": ...}
  {"cmd": "setup", "dir": DIR, "in_shape": [C, H, W], "classes": K}  -> {"ok": true}
      (reads the inputs, then warms up: a few training steps and attack steps of a fresh model
      in both memory formats, so that the first timed stage does not pay for first calls)
  {"cmd": "stage", "stage": NAME, "threads": T, "channels_last": B, "params": {...}}
      -> {"wall_s": s, "peak_rss_kb": kb, "rss_reset": bool, "result": {...}}
     NAME is train_std, train_rob (params: the [train_*] section, "n", "curve_n", "seed"),
     rep_match (params: the [rep_match] section, "n"), relabel (params: "n", "eps", "steps",
     "step_size", "batch_size"), robust_eval (params: "n", "grid": [[norm, eps], ...],
     "steps", "step_factor", "batch_size", "seed") or ensemble (params: "n", "eps", "steps",
     "seed": torchattacks' APGD-CE, then its APGD-T on the examples still robust, as
     AutoAttack runs them; the parameters frozen).
  {"cmd": "quit"}
Any failure answers {"error": "..."}.

Peak RSS: /proc/self/clear_refs is written "5" before each stage (Linux: resets the peak), so
VmHWM after the stage is the stage's peak; rss_reset says whether that worked (otherwise the
value is the process's peak so far).
"""

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

try:
    import numpy as np
    import torch

    import nrf_twin

    IMPORT_ERROR = None
except Exception as e:  # noqa: BLE001 - any import failure means "no twin here"
    IMPORT_ERROR = f"cannot import torch / numpy / nrf_twin with {sys.executable}: {e!r}"


def reset_peak_rss():
    """Resets the kernel's peak-RSS mark of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_kb():
    """VmHWM of this process in KiB (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Inputs:
    """The folder written by the Rust side."""

    def __init__(self, folder, in_shape, classes):
        d = Path(folder)
        self.in_shape = tuple(in_shape)
        self.classes = classes

        def images(name):
            a = np.fromfile(d / name, dtype=np.float32)
            return torch.from_numpy(a).view(-1, *self.in_shape)

        def labels(name):
            return torch.from_numpy(np.fromfile(d / name, dtype=np.int64))

        self.train_x, self.train_y = images("train_x.f32"), labels("train_y.i64")
        self.test_x, self.test_y = images("test_x.f32"), labels("test_y.i64")
        blob = np.fromfile(d / "weights.f32", dtype=np.float32)
        self.weights = {}
        for name, shape, offset in json.loads((d / "weights.json").read_text()):
            n = int(np.prod(shape))
            self.weights[name] = torch.from_numpy(blob[offset:offset + n].copy()).view(*shape)
        self.indices = json.loads((d / "indices.json").read_text())

    def preset(self, init="pytorch"):
        """The part of a twin preset that build_model reads."""
        return {"model": {"arch": {"type": "fmnist_cnn"}, "init": init}}

    def warm_up(self):
        """A few untimed training and attack steps (allocator, thread pool, kernel selection)."""
        x, y = self.train_x[:64], self.train_y[:64]
        section = {"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "cosine",
                   "warmup": 0.0, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                   "crop_pad": 0, "milestones": [], "gamma": 0.1,
                   "attack": {"norm": "l2", "eps": 1.0, "steps": 2, "step_factor": 2.5,
                              "random_start": True}}
        for cl in (False, True):
            model = nrf_twin.build_model(self.preset(), self.in_shape, self.classes, 0,
                                         channels_last=cl)
            nrf_twin.train_model(model, x, y, section, 0, label="bench warm-up")

    def source_model(self, channels_last):
        """The Rust side's source model, loaded into the twin's FmnistCnn."""
        model = nrf_twin.build_model(self.preset(), self.in_shape, self.classes, 0,
                                     channels_last=False)
        model.net.load_state_dict(self.weights, strict=True)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model


def run_stage(inp, stage, channels_last, p):
    """Runs one stage; returns a small dict of results (to compare with the Rust side)."""
    if stage in ("train_std", "train_rob"):
        n = p["n"]
        model = nrf_twin.build_model(inp.preset(), inp.in_shape, inp.classes, p["seed"],
                                     channels_last=channels_last)
        cn = p["curve_n"]
        eval_set = (inp.test_x[:cn], inp.test_y[:cn]) if cn > 0 else None
        hist = nrf_twin.train_model(model, inp.train_x[:n], inp.train_y[:n], p["section"],
                                    p["seed"], eval_set=eval_set, label=f"bench {stage}")
        last = hist[-1]
        return {"train_loss": last["train_loss"], "train_acc": last["train_acc"]}
    model = inp.source_model(channels_last)
    ix = inp.indices
    if stage == "rep_match":
        targets = torch.tensor(ix["rep_targets"][:p["n"]], dtype=torch.int64)
        starts = torch.tensor(ix["rep_starts"][:p["n"]], dtype=torch.int64)
        _, _, stats = nrf_twin.build_rep_match(model, inp.train_x, inp.train_y, targets, starts,
                                               p["section"], label="bench rep_match")
        return {"final_rel_err": float(stats["final_rel_err"].mean())}
    if stage == "relabel":
        idx = torch.tensor(ix["relabel_indices"][:p["n"]], dtype=torch.int64)
        t = torch.tensor(ix["relabel_targets"][:p["n"]], dtype=torch.int64)
        _, _, stats = nrf_twin.build_relabel(model, inp.train_x, inp.train_y, idx, t, p["eps"],
                                             p["steps"], p["step_size"], p["batch_size"],
                                             label="bench relabel")
        return {"success_rate": float(stats["success"].mean())}
    if stage == "robust_eval":
        n = p["n"]
        torch.manual_seed(p["seed"])
        accs = [nrf_twin.robust_accuracy(model, inp.test_x[:n], inp.test_y[:n], norm, eps,
                                         p["steps"], p["step_factor"], p["batch_size"])
                for norm, eps in p["grid"]]
        return {"acc": accs}
    if stage == "ensemble":
        return ensemble(model, inp.test_x[:p["n"]], inp.test_y[:p["n"]], inp.classes, p)
    raise ValueError(f"unknown stage {stage!r}")


def ensemble(model, x, y, classes, p):
    """Robust accuracy under torchattacks' APGD-CE, then its APGD-T (every other class as a
    target) on the examples still robust: AutoAttack's flow, L2 radius p["eps"], p["steps"]
    steps each. Returns the clean accuracy and the accuracy after each attack."""
    from reference_attacks import Logits, torchattacks_modules

    APGD, APGDT, _ = torchattacks_modules()
    net = Logits(model).eval()
    for q in net.parameters():
        q.requires_grad_(False)
    common = dict(norm="L2", eps=p["eps"], steps=p["steps"], n_restarts=1, seed=p["seed"])
    with torch.no_grad():
        robust = net(x).argmax(1) == y
    clean = robust.float().mean().item()
    after = []
    for attack in (APGD(net, loss="ce", **common), APGDT(net, n_classes=classes, **common)):
        idx = robust.nonzero().squeeze(1)
        if idx.numel() > 0:
            adv = attack(x[idx], y[idx])
            with torch.no_grad():
                robust[idx] = net(adv).argmax(1) == y[idx]
        after.append(robust.float().mean().item())
    return {"clean": clean, "after": after, "acc": after[-1]}


def serve():
    out = sys.stdout

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    if IMPORT_ERROR is not None:
        send({"ok": False, "error": IMPORT_ERROR})
        return 0
    send({"ok": True, "python": sys.version.split()[0], "torch": torch.__version__})
    inp = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                break
            if cmd == "setup":
                inp = Inputs(req["dir"], req["in_shape"], req["classes"])
                inp.warm_up()
                send({"ok": True})
            elif cmd == "stage":
                if inp is None:
                    raise RuntimeError("stage before setup")
                torch.set_num_threads(int(req["threads"]))
                reset = reset_peak_rss()
                t0 = time.perf_counter()
                result = run_stage(inp, req["stage"], bool(req["channels_last"]), req["params"])
                wall = time.perf_counter() - t0
                send({"wall_s": wall, "peak_rss_kb": peak_rss_kb(), "rss_reset": reset,
                      "result": result})
            else:
                send({"error": f"unknown command {cmd!r}"})
        except Exception as e:  # noqa: BLE001 - reported to the Rust side
            send({"error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    if "--serve" not in sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(serve())
