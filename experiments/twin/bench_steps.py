"""PyTorch-in-Python twins of the three steps that `nrf bench` times in Rust.

Each function below mirrors its Rust counterpart operation for operation, so that the two
timings differ only by the language around libtorch:

- ``train_step``: nrf_models::train::train_step with nrf_models::Sgd (momentum 0.9, Nesterov,
  weight decay 5e-4), cross-entropy, forward + backward + update, then ``loss.item()`` and the
  number of correct predictions (the Rust step reads both back as well).
- ``pgd``: nrf_attacks::pgd with the L2 threat model and the untargeted cross-entropy objective
  (input gradient, finite checks, normalised step, projection onto the ball, clamp to [0, 1]; one
  extra forward pass for the final objective; last iterate).
- ``pgd`` with the representation-matching objective ``-||g(z) - g(x)||^2`` and the unconstrained
  threat model (normalised step, clamp), cosine step sizes, as nrf_features::repmatch.

The model is nrf_models::Arch::FmnistCnn with the identity input normalisation that
nrf_models::ModelSpec::new gives (it is still applied: the Rust model subtracts and divides too).
Weights and inputs (for the timings too) are filled by the same deterministic pseudo-random
formulas as in experiments/src/bench/steps.rs, so both sides time the same numbers and `check` lets the
Rust side confirm that both compute the same results.

Usage:
  python bench_steps.py [--reps N] [--warmup N] [--threads 1,2] [--batch 128]   # own table
  python bench_steps.py --serve   # line-delimited JSON on stdin/stdout (used by `nrf bench`)

In serve mode the first output line is a hello: {"ok": true, "torch": ..., "python": ...} or
{"ok": false, "error": ...} when torch cannot be imported. Each request line is a JSON object:
  {"cmd": "time", "row": ROW, "threads": T, "warmup": W, "reps": N, "batch": B, "pgd_steps": S}
    -> {"times_ms": [...]}   (milliseconds per step: a PGD run of S steps counts as S steps)
  {"cmd": "check", "batch": B, "pgd_steps": S} -> {"check": {...}}
and any failure answers {"error": "..."}.
"""

import json
import math
import sys
import time

ROWS = ("train_step", "pgd_l2_step", "rep_match_step")

# Hyper-parameters shared with experiments/src/bench/mod.rs.
LR = 0.05
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
PGD_EPS = 1.0
PGD_STEP_FACTOR = 2.5
REP_STEP_START = 0.2
REP_STEP_END = 0.002
GRAD_NORM_EPS = 1e-12
IN_SHAPE = (1, 28, 28)
CLASSES = 10

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    IMPORT_ERROR = None
except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
    IMPORT_ERROR = f"cannot import torch with {sys.executable}: {e!r}"


def det_uniform(n, seed):
    """frac(43758.5453 * sin(12.9898 * (j + 1) + 78.233 * seed)) for j in 0..n, in float64, as
    float32 (bench/steps.rs `det_uniform`)."""
    v = torch.sin((torch.arange(n, dtype=torch.float64) + 1.0) * 12.9898 + seed * 78.233) * 43758.5453
    return (v - v.floor()).to(torch.float32)


if IMPORT_ERROR is None:

    class FmnistCnn(nn.Module):
        """conv3x3(1->16) - ReLU - conv3x3(16->32, s2) - ReLU - conv3x3(32->64, s2) - ReLU -
        fc(3136->256) - ReLU = g(x) - fc(256->10), as nrf_models::arch::FmnistCnn."""

        def __init__(self, in_shape=IN_SHAPE, classes=CLASSES):
            super().__init__()
            c, h, w = in_shape
            h = ((h + 1) // 2 + 1) // 2
            w = ((w + 1) // 2 + 1) // 2
            self.c1 = nn.Conv2d(c, 16, 3, stride=1, padding=1)
            self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.c3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.fc1 = nn.Linear(64 * h * w, 256)
            self.fc2 = nn.Linear(256, classes)
            self.register_buffer("mean", torch.zeros(1, c, 1, 1))
            self.register_buffer("std", torch.ones(1, c, 1, 1))

        def forward_rep(self, x):
            x = (x - self.mean) / self.std
            # contiguous before the last ReLU, as nrf (twin_stages.FmnistCnn says why)
            h = F.relu(self.c3(F.relu(self.c2(F.relu(self.c1(x))))).contiguous())
            rep = F.relu(self.fc1(h.flatten(1)))
            return self.fc2(rep), rep

        def forward(self, x):
            return self.forward_rep(x)[0]

    def det_model():
        """The model with deterministic weights: uniform in +-1/sqrt(fan_in) (bench/steps.rs `det_init`)."""
        model = FmnistCnn()
        params = dict(model.named_parameters())
        with torch.no_grad():
            for k, name in enumerate(sorted(params)):
                p = params[name]
                w = params[name[: -len("bias")] + "weight"] if name.endswith("bias") else p
                fan_in = w.numel() // w.shape[0]
                v = (det_uniform(p.numel(), 10.0 + k) * 2.0 - 1.0) * (1.0 / math.sqrt(fan_in))
                p.copy_(v.view_as(p))
        return model

    def det_inputs(batch):
        """(x, y, x0): images in [0, 1], labels, start images (as bench/steps.rs `Steps::new`)."""
        n = batch * IN_SHAPE[0] * IN_SHAPE[1] * IN_SHAPE[2]
        shape = (batch,) + IN_SHAPE
        x = det_uniform(n, 1.0).view(shape)
        x0 = det_uniform(n, 2.0).view(shape)
        y = (det_uniform(batch, 3.0) * CLASSES).floor().to(torch.int64)
        return x, y, x0

    def train_step(model, opt, x, y):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        correct = logits.argmax(-1).eq(y).sum().item()
        return loss.item(), correct

    def per_example_norm(t):
        return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), 2.0, dim=1)

    def per_example(v, like):
        return v.view([-1] + [1] * (like.dim() - 1))

    def l2_step(x, grad, step_size):
        return x + grad / (per_example(per_example_norm(grad), grad) + GRAD_NORM_EPS) * step_size

    def l2_project(eps):
        def project(x, center):
            delta = x - center
            factor = (per_example_norm(delta).clamp_min(1e-30).reciprocal() * eps).clamp_max(1.0)
            return (center + delta * per_example(factor, x)).clamp(0.0, 1.0)

        return project

    def box_project(x, center):
        return x.clamp(0.0, 1.0)

    def check(obj, grad, t):
        bad = (~torch.isfinite(obj)).sum().item()
        if bad > 0:
            raise ValueError(f"objective is NaN or infinite at iterate {t} for {bad} example(s)")
        if grad is not None and (~torch.isfinite(grad)).any().item():
            raise ValueError(f"gradient is NaN or infinite at iterate {t}")

    def pgd(project, center, start, steps, step_size, objective):
        """Projected gradient ascent, last iterate (nrf_attacks::pgd with use_best = false)."""
        n = center.shape[0]
        center = center.detach()
        start_objective = None
        with torch.no_grad():
            x = project(start, center)
        for t in range(steps):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                obj = objective(xg)
                (grad,) = torch.autograd.grad(obj.sum(), [xg])
            obj = obj.detach()
            if obj.shape != (n,):
                raise ValueError(f"objective shape {tuple(obj.shape)}, expected ({n},)")
            check(obj, grad, t)
            if start_objective is None:
                start_objective = obj.clone()
            with torch.no_grad():
                x = project(l2_step(x, grad, step_size(t)), center)
        with torch.no_grad():
            obj = objective(x).detach()
        check(obj, None, steps)
        return x.clone(), obj.clone()

    def cosine(start, end, steps):
        def at(t):
            if steps <= 1:
                return start
            s = min(t, steps - 1) / (steps - 1)
            return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * s))

        return at

    class Steps:
        """The three timed computations on one batch (as bench/steps.rs `Steps`)."""

        def __init__(self, batch, pgd_steps):
            self.pgd_steps = pgd_steps
            self.train_model = det_model()
            self.attack_model = det_model()
            self.opt = torch.optim.SGD(
                self.train_model.parameters(),
                lr=LR,
                momentum=MOMENTUM,
                nesterov=True,
                weight_decay=WEIGHT_DECAY,
            )
            self.x, self.y, self.x0 = det_inputs(batch)
            with torch.no_grad():
                self.target_rep = self.attack_model.forward_rep(self.x)[1]

        def train(self):
            return train_step(self.train_model, self.opt, self.x, self.y)

        def pgd_l2(self):
            model, y = self.attack_model, self.y
            step = PGD_STEP_FACTOR * PGD_EPS / self.pgd_steps
            return pgd(
                l2_project(PGD_EPS),
                self.x,
                self.x,
                self.pgd_steps,
                lambda t: step,
                lambda z: F.cross_entropy(model(z), y, reduction="none"),
            )

        def rep_match(self):
            model, target = self.attack_model, self.target_rep

            def objective(z):
                rep = model.forward_rep(z)[1]
                n = rep.shape[0]
                return -(rep.reshape(n, -1) - target.reshape(n, -1)).square().sum(1)

            return pgd(
                box_project,
                self.x0,
                self.x0,
                self.pgd_steps,
                cosine(REP_STEP_START, REP_STEP_END, self.pgd_steps),
                objective,
            )

        def run(self, row):
            if row == "train_step":
                self.train()
            elif row == "pgd_l2_step":
                self.pgd_l2()
            elif row == "rep_match_step":
                self.rep_match()
            else:
                raise ValueError(f"unknown row {row!r} (known: {', '.join(ROWS)})")

        def per_call(self, row):
            """Steps per call of `run(row)`."""
            return 1 if row == "train_step" else self.pgd_steps

    def check_values(batch, pgd_steps):
        """Numbers that the Rust side recomputes: both must agree when the computations match."""
        s = Steps(batch, pgd_steps)
        loss1, correct1 = s.train()
        loss2, _ = s.train()
        _, pgd_obj = s.pgd_l2()
        _, rep_obj = s.rep_match()
        return {
            "train_loss_1": loss1,
            "train_correct_1": correct1,
            "train_loss_2": loss2,
            "pgd_objective_mean": pgd_obj.double().mean().item(),
            "rep_match_objective_mean": rep_obj.double().mean().item(),
        }


_STEPS = {}


def time_row(row, threads, warmup, reps, batch, pgd_steps):
    """Milliseconds per step of `row`, one value per repetition after `warmup` untimed ones."""
    if row not in ROWS:
        raise ValueError(f"unknown row {row!r} (known: {', '.join(ROWS)})")
    if threads < 1 or reps < 0 or warmup < 0 or batch < 1 or pgd_steps < 1:
        raise ValueError("threads, batch and pgd_steps must be >= 1, reps and warmup >= 0")
    torch.set_num_threads(threads)
    key = (batch, pgd_steps)
    if key not in _STEPS:
        _STEPS[key] = Steps(batch, pgd_steps)
    s = _STEPS[key]
    per = s.per_call(row)
    for _ in range(warmup):
        s.run(row)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        s.run(row)
        out.append((time.perf_counter() - t0) * 1000.0 / per)
    return out


def hello():
    if IMPORT_ERROR is not None:
        return {"ok": False, "error": IMPORT_ERROR, "python": sys.version.split()[0], "executable": sys.executable}
    return {
        "ok": True,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "default_threads": torch.get_num_threads(),
    }


def serve():
    out = sys.stdout

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    h = hello()
    send(h)
    if not h["ok"]:
        return 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                break
            if cmd == "time":
                times = time_row(
                    req["row"], int(req["threads"]), int(req["warmup"]), int(req["reps"]),
                    int(req["batch"]), int(req["pgd_steps"]),
                )
                send({"times_ms": times, "threads": torch.get_num_threads()})
            elif cmd == "check":
                torch.set_num_threads(int(req.get("threads", 1)))
                send({"check": check_values(int(req["batch"]), int(req["pgd_steps"]))})
            else:
                send({"error": f"unknown command {cmd!r}"})
        except Exception as e:  # noqa: BLE001 - reported to the Rust side
            send({"error": f"{type(e).__name__}: {e}"})
    return 0


def standalone(argv):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="store_true", help="JSON protocol on stdin/stdout")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--pgd-steps", type=int, default=10)
    a = ap.parse_args(argv)
    if a.serve:
        return serve()
    if IMPORT_ERROR is not None:
        print(IMPORT_ERROR, file=sys.stderr)
        return 1
    print(f"torch {torch.__version__}, batch {a.batch}, median of {a.reps} after {a.warmup} warm-up")
    print("| row | threads | Python ms |")
    print("|---|---:|---:|")
    for row in ROWS:
        for t in (int(v) for v in a.threads.split(",")):
            ms = sorted(time_row(row, t, a.warmup, a.reps, a.batch, a.pgd_steps))
            mid = len(ms) // 2
            med = ms[mid] if len(ms) % 2 else 0.5 * (ms[mid - 1] + ms[mid])
            print(f"| {row} | {t} | {med:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(standalone(sys.argv[1:]))
