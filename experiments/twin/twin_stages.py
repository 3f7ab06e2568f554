"""The stages of nrf's fidelity twin (see nrf_twin.py): models and their initialisation,
threat models and PGD, the training loop, evaluation, and the constructed datasets. Each
function mirrors the nrf code named in its section header."""

import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from twin_data import PresetError

# Added to per-example gradient norms before dividing (nrf_attacks::threat::GRAD_NORM_EPS).
GRAD_NORM_EPS = 1e-12
# Lower bound on a perturbation's norm in the L2 projection (threat.rs), so eps / norm is finite.
PROJ_NORM_MIN = 1e-30
# Seconds between progress lines within a training epoch (host clock only, no device sync).
PROGRESS_EVERY_S = 30.0


# ---------------------------------------------------------------------------------------------
# Models (crates/models/src/arch.rs) and their initialisation
# ---------------------------------------------------------------------------------------------

class FakeReLU(torch.autograd.Function):
    """ReLU forward, identity backward: the robustness library's FakeReLU, which its
    representation inversion (`fake_relu=True`) puts at the end of g (nrf_models::RepRelu::Fake;
    written here as the library writes it, not as nrf computes it)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def rep_relu(h, fake_relu):
    """The ReLU that ends g: FakeReLU when `fake_relu`, else F.relu."""
    return FakeReLU.apply(h) if fake_relu else F.relu(h)


def autocast_forward(compute, x, fake_relu, bf16):
    """`compute(x, fake_relu)` -> (logits, g(x)); with ``bf16`` under ``torch.autocast`` in
    bfloat16, the outputs back in f32, as nrf_models::Precision::Bf16 computes them."""
    if not bf16:
        return compute(x, fake_relu)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        logits, rep = compute(x, fake_relu)
    return logits.float(), rep.float()


class FmnistCnn(nn.Module):
    """conv3x3(C->16) - ReLU - conv3x3(16->32, s2) - ReLU - conv3x3(32->64, s2) - ReLU -
    fc(->256) - ReLU = g(x) - fc(256->K). With ``bf16`` (``model.precision = "bf16"``) the
    layers run under ``torch.autocast`` in bfloat16 and the outputs come back in f32, as
    nrf_models::Precision::Bf16 computes them."""

    def __init__(self, in_shape, classes, bf16=False):
        super().__init__()
        self.bf16 = bf16
        c, h, w = in_shape
        h, w = ((h + 1) // 2 + 1) // 2, ((w + 1) // 2 + 1) // 2
        self.c1 = nn.Conv2d(c, 16, 3, stride=1, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(64 * h * w, 256)
        self.fc2 = nn.Linear(256, classes)

    def forward(self, x, fake_relu=False):
        return autocast_forward(self.layers, x, fake_relu, self.bf16)

    def layers(self, x, fake_relu=False):
        # contiguous before the last ReLU rather than in the flatten after it, as nrf: the same
        # copy, but channels-last the ReLU's backward would see two layouts (several times
        # slower; docs/performance.md, "Memory format")
        h = F.relu(self.c3(F.relu(self.c2(F.relu(self.c1(x))))).contiguous())
        rep = rep_relu(self.fc1(h.flatten(1)), fake_relu)
        return self.fc2(rep), rep


class Mlp(nn.Module):
    """Fully connected layers with ReLU; the last hidden layer is g(x). ``bf16`` as the CNN's."""

    def __init__(self, in_shape, hidden, classes, bf16=False):
        super().__init__()
        self.bf16 = bf16
        dims = [math.prod(in_shape)] + list(hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.out = nn.Linear(dims[-1], classes)

    def forward(self, x, fake_relu=False):
        return autocast_forward(self.compute, x, fake_relu, self.bf16)

    def compute(self, x, fake_relu=False):
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            last = i + 1 == len(self.layers)
            h = rep_relu(layer(h), fake_relu) if last else F.relu(layer(h))
        return self.out(h), h


class Classifier(nn.Module):
    """A network over images in [0, 1]: normalisation (x - mean) / std inside, as
    nrf_models::Model (skipped when it is the identity). Returns (logits, g(x)); with
    `fake_relu` the ReLU that ends g passes gradients unchanged (FakeReLU)."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.identity = all(m == 0.0 for m in mean) and all(s == 1.0 for s in std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x, fake_relu=False):
        if not self.identity:
            x = (x - self.mean) / self.std
        return self.net(x, fake_relu=fake_relu)


def tch_init_(module):
    """tch's defaults: conv and linear weights Kaiming-uniform with the ReLU gain (bound
    sqrt(6 / fan_in)), conv biases 0, linear biases uniform in +-1/sqrt(fan_in)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            bound = math.sqrt(6.0 / fan_in)
            with torch.no_grad():
                m.weight.uniform_(-bound, bound)
                if m.bias is not None:
                    if isinstance(m, nn.Conv2d):
                        m.bias.zero_()
                    else:
                        b = 1.0 / math.sqrt(fan_in)
                        m.bias.uniform_(-b, b)


def build_model(preset, in_shape, classes, seed, device="cpu", channels_last=True, arch=None):
    """A freshly initialised classifier for `preset["model"]` (or `arch`, a preset arch table):
    torch.nn's default initialisation, or tch's when `model.init = "tch"`. `seed` fixes it.
    `model.precision = "bf16"` runs it under autocast, as nrf runs every architecture."""
    arch = arch or preset["model"]["arch"]
    torch.manual_seed(seed)
    bf16 = preset["model"].get("precision") == "bf16"
    if arch["type"] == "fmnist_cnn":
        net = FmnistCnn(in_shape, classes, bf16=bf16)
    elif arch["type"] == "mlp":
        net = Mlp(in_shape, arch["hidden"], classes, bf16=bf16)
    else:
        raise PresetError(f"model.arch: the twin does not build {arch!r}")
    if preset["model"]["init"] == "tch":
        tch_init_(net)
    c = in_shape[0]
    mean = preset["model"].get("mean") or [0.0] * c
    std = preset["model"].get("std") or [1.0] * c
    model = Classifier(net, mean, std).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


class frozen:
    """Context: the model in evaluation mode with its parameters' requires_grad off (attacks
    need only the input gradient); restores both on exit."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.flags = [p.requires_grad for p in self.model.parameters()]
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for p, f in zip(self.model.parameters(), self.flags):
            p.requires_grad_(f)
        self.model.train(self.was_training)


# ---------------------------------------------------------------------------------------------
# Threat models and PGD (crates/attacks/src/threat.rs, pgd.rs)
# ---------------------------------------------------------------------------------------------

def _norms(t, p=2):
    """Per-example norm over all non-batch dimensions, shaped [N, 1, 1, 1] for broadcasting."""
    n = torch.linalg.vector_norm(t.reshape(t.shape[0], -1), ord=p, dim=1)
    return n.view(-1, *([1] * (t.dim() - 1)))


class L2Ball:
    """Euclidean ball of radius eps intersected with [0, 1]; normalised-gradient steps."""
    name = "L2"

    def __init__(self, eps):
        self.eps = eps

    def random_start(self, c):
        d = c[0].numel()
        direction = torch.randn_like(c)
        direction = direction / (_norms(direction) + GRAD_NORM_EPS)
        u = torch.rand((c.shape[0],) + (1,) * (c.dim() - 1), dtype=c.dtype, device=c.device)
        return (c + direction * (u.pow(1.0 / d) * self.eps)).clamp_(0.0, 1.0)

    def step(self, x, g, s):
        return x + g / (_norms(g) + GRAD_NORM_EPS) * s

    def project(self, x, c):
        delta = x - c
        factor = (self.eps / _norms(delta).clamp_min(PROJ_NORM_MIN)).clamp_max(1.0)
        return (c + delta * factor).clamp_(0.0, 1.0)


class LinfBall:
    """Box of radius eps intersected with [0, 1]; signed-gradient steps."""
    name = "Linf"

    def __init__(self, eps):
        self.eps = eps

    def random_start(self, c):
        return (c + (torch.rand_like(c) * 2.0 - 1.0) * self.eps).clamp_(0.0, 1.0)

    def step(self, x, g, s):
        return x + g.sign() * s

    def project(self, x, c):
        return (c + (x - c).clamp(-self.eps, self.eps)).clamp_(0.0, 1.0)


class Box:
    """No ball, only [0, 1] (nrf's Unconstrained): normalised-gradient (L2) steps."""
    name = "unconstrained"

    def random_start(self, c):
        return torch.rand_like(c)

    def step(self, x, g, s):
        return x + g / (_norms(g) + GRAD_NORM_EPS) * s

    def project(self, x, c):
        return x.clamp(0.0, 1.0)


def threat_for(norm, eps):
    """"l2" / "L2" or "linf" / "Linf" ball of radius eps."""
    return L2Ball(eps) if norm.lower() == "l2" else LinfBall(eps)


def cosine_step(start, end, t, steps):
    """StepSize::Cosine: `start` at t = 0, `end` at t = steps - 1."""
    if steps <= 1:
        return start
    u = min(t, steps - 1) / (steps - 1)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * u))


def pgd(objective, threat, center, start, steps, step_size, random_start=False, use_best=False,
        final_objective=True):
    """nrf_attacks::pgd with one restart: maximises `objective(x) -> [N]` by `steps` steps of
    `step_size(t)` from `start` (projected; random start around it if asked). Returns the
    per-example best iterate (the first and the last included) with `use_best`, else the last.
    `final_objective=False` skips the objective at the last iterate when nothing needs it."""
    center = center.detach()
    with torch.no_grad():
        x = threat.project(threat.random_start(start) if random_start else start, center)
    best_x = best_obj = None

    def update(x, obj):
        nonlocal best_x, best_obj
        if best_x is None:
            best_x, best_obj = x.clone(), obj.clone()
        else:
            better = obj > best_obj
            best_obj = torch.where(better, obj, best_obj)
            best_x = torch.where(better.view(-1, *([1] * (x.dim() - 1))), x, best_x)

    for t in range(steps):
        xg = x.detach().requires_grad_(True)
        obj = objective(xg)
        (grad,) = torch.autograd.grad(obj.sum(), xg)
        if use_best:
            update(x, obj.detach())
        with torch.no_grad():
            x = threat.project(threat.step(x, grad, step_size(t)), center)
    if final_objective or use_best:
        with torch.no_grad():
            obj = objective(x)
        if use_best:
            update(x, obj)
    return best_x if use_best else x


def pgd_attack(model, x, y, threat, steps, step, random_start, use_best, target=None):
    """Untargeted (maximise CE of y) or targeted (minimise CE of target) PGD on a frozen model."""
    with frozen(model):
        if target is None:
            def objective(z):
                return F.cross_entropy(model(z)[0], y, reduction="none")
        else:
            def objective(z):
                return -F.cross_entropy(model(z)[0], target, reduction="none")
        return pgd(objective, threat, x, x, steps, lambda t: step, random_start, use_best,
                   final_objective=use_best).detach()


# ---------------------------------------------------------------------------------------------
# Training (crates/models/src/train.rs, optim.rs)
# ---------------------------------------------------------------------------------------------

def lr_at(section, step, total, steps_per_epoch):
    """LrSchedule::lr_at for a [train_*] section (0-based step of `total`)."""
    lr = section["lr"]
    if section["schedule"] == "step":
        epoch = step // max(steps_per_epoch, 1)
        return lr * section["gamma"] ** sum(1 for m in section["milestones"] if epoch >= m)
    total = float(max(total, 1))
    s = step + 1.0
    w = max(section["warmup"] * total, 1.0)
    if s <= w:
        return lr * s / w
    p = min((s - w) / max(total - w, 1.0), 1.0)
    return lr * 0.5 * (1.0 + math.cos(math.pi * p))


def crop_flip(x, pad, gen):
    """Random crop of the zero-padded batch (offsets uniform in 0..=2*pad) and horizontal flip
    with probability 1/2, per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    ar = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[ar, ch, rows[:, None, :, None], cols[:, None, None, :]]


def _fmt_s(s):
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.1f} s"


def log(msg):
    print(f"[twin] {msg}", file=sys.stderr, flush=True)


def train_model(model, x, y, section, seed, eval_set=None, label="model"):
    """Trains `model` in place on (x, y) as nrf_models::train: per epoch a fresh random order,
    batches of `batch_size` (the last one partial), optional crop/flip, an L2 / Linf PGD
    attack on every batch when the section has `attack` (random start, step
    step_factor*eps/steps, best iterate kept), mean cross-entropy, SGD (momentum, Nesterov,
    weight decay on every parameter) with the per-step schedule. `eval_set` (x, y): accuracy
    after every epoch, as nrf's training curve. Returns one dict per epoch. One host
    synchronisation per epoch (the epoch's loss and accuracy)."""
    n = x.shape[0]
    bs = section["batch_size"]
    spe = -(-n // bs)
    total = spe * section["epochs"]
    mom = section["momentum"]
    opt = torch.optim.SGD(model.parameters(), lr=section["lr"], momentum=mom,
                          nesterov=bool(section["nesterov"]) and mom > 0,
                          weight_decay=section["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the attack's random starts
    a = section["attack"]
    threat = threat_for(a["norm"], a["eps"]) if a else None
    history = []
    started = last_log = time.perf_counter()
    for epoch in range(1, section["epochs"] + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(x.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        lr = 0.0
        for b in range(spe):
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            if section["crop_pad"] > 0:
                xb = crop_flip(xb, section["crop_pad"], gen)
            lr = lr_at(section, (epoch - 1) * spe + b, total, spe)
            for g in opt.param_groups:
                g["lr"] = lr
            if threat is not None:
                xb = pgd_attack(model, xb, yb, threat, a["steps"],
                                a["step_factor"] * a["eps"] / a["steps"], a["random_start"],
                                use_best=True)
            model.train()
            logits, _ = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * idx.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
            now = time.perf_counter()
            if now - last_log >= PROGRESS_EVERY_S and b + 1 < spe:
                last_log = now
                rate = (b + 1) * bs / (now - t0)
                left = (total - (epoch - 1) * spe - b - 1) * bs / rate
                log(f"{label}: epoch {epoch}/{section['epochs']} step {b + 1}/{spe} | "
                    f"{rate:.0f} img/s | ETA {_fmt_s(left)}")
        train_loss = loss_sum.item() / n
        if not math.isfinite(train_loss):
            raise RuntimeError(f"{label}: training diverged (mean loss {train_loss} in epoch "
                               f"{epoch}, learning rate {lr})")
        test_acc = None
        if eval_set is not None:
            test_acc = standard_accuracy(model, eval_set[0], eval_set[1], 500)
        wall = time.perf_counter() - t0
        history.append({"epoch": epoch, "lr": lr, "train_loss": train_loss,
                        "train_acc": correct.item() / n, "test_acc": test_acc, "wall_s": wall})
        done = time.perf_counter() - started
        eta = done / epoch * (section["epochs"] - epoch)
        log(f"{label}: epoch {epoch}/{section['epochs']} loss {train_loss:.4f} acc "
            f"{correct.item() / n:.4f} test {'-' if test_acc is None else f'{test_acc:.4f}'} | "
            f"{_fmt_s(wall)}, {n / wall:.0f} img/s | ETA {_fmt_s(eta)}")
    return history


# ---------------------------------------------------------------------------------------------
# Evaluation (crates/attacks/src/eval.rs, experiments/src/pipeline.rs)
# ---------------------------------------------------------------------------------------------

def standard_accuracy(model, x, y, batch_size):
    """Fraction of (x, y) classified correctly (evaluation mode, no gradients)."""
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            correct += (model(x[i:i + batch_size])[0].argmax(1) == y[i:i + batch_size]).sum()
    model.train(was)
    return correct.item() / max(x.shape[0], 1)


def robust_accuracy(model, x, y, norm, eps, steps, step_factor, batch_size):
    """Robust accuracy under untargeted cross-entropy PGD (random start, `steps` steps of
    step_factor*eps/steps, last iterate): an example counts only if it is classified
    correctly clean and at every iterate (the random start and the last included). Only
    clean-correct examples are attacked. Seed torch before calling for fixed random starts."""
    threat = threat_for(norm, eps)
    step = step_factor * eps / steps
    robust = torch.zeros((), dtype=torch.int64, device=x.device)
    with frozen(model):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            with torch.no_grad():
                idx = (model(xb)[0].argmax(1) == yb).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            xa, ya = xb.index_select(0, idx), yb.index_select(0, idx)
            alive = torch.ones_like(ya, dtype=torch.bool)

            def objective(z):
                nonlocal alive
                logits = model(z)[0]
                alive = alive & (logits.detach().argmax(1) == ya)
                return F.cross_entropy(logits, ya, reduction="none")

            pgd(objective, threat, xa, xa, steps, lambda t: step, random_start=True)
            robust += alive.sum()
    return robust.item() / max(x.shape[0], 1)


def evaluate(model, data, preset, robust_idx, seed):
    """Standard accuracy on the whole test set and robust accuracy on the test images
    `robust_idx` for every eps of eval.l2_eps and eval.linf_eps (Ctx::evaluate)."""
    e = preset["eval"]
    std_acc = standard_accuracy(model, data.test_x, data.test_y, e["batch_size"])
    torch.manual_seed(seed)
    rx = data.test_x.index_select(0, robust_idx)
    ry = data.test_y.index_select(0, robust_idx)
    points = []
    for norm, eps_list in (("L2", e["l2_eps"]), ("Linf", e["linf_eps"])):
        for eps in eps_list:
            acc = robust_accuracy(model, rx, ry, norm, eps, e["steps"], e["step_factor"],
                                  e["batch_size"])
            points.append({"norm": norm, "eps": eps, "acc": acc, "steps": e["steps"],
                           "n": int(rx.shape[0])})
    return std_acc, points


# ---------------------------------------------------------------------------------------------
# Constructed datasets (crates/features/src/repmatch.rs, relabel.rs)
# ---------------------------------------------------------------------------------------------

def rep_distance(rep, target, distance):
    """objectives::rep_distance per example: ||r-t||^2, ||r-t|| / ||t||, or 1 - cos(r, t)."""
    r, t = rep.flatten(1), target.flatten(1)
    sq = (r - t).square().sum(1)
    if distance == "l2_squared":
        return sq
    if distance == "l2_relative":
        return (sq + 1e-12).sqrt() / (t.square().sum(1).sqrt() + 1e-12)
    return 1.0 - F.cosine_similarity(r, t, dim=1, eps=1e-8)


def _chunks(n, bs, label):
    """Chunk bounds with a progress line (rate, ETA) after each chunk."""
    t0 = time.perf_counter()
    k = -(-n // bs)
    for j in range(k):
        lo, hi = j * bs, min((j + 1) * bs, n)
        yield lo, hi
        el = time.perf_counter() - t0
        log(f"{label}: chunk {j + 1}/{k}, {hi / el:.0f} img/s | ETA {_fmt_s(el / hi * (n - hi))}")


def build_rep_match(model, train_x, train_y, targets, starts, rep_match, label="rep-matching"):
    """D_R / D_NR (repmatch::build): for each target x = train_x[targets[i]], start at
    x0 = train_x[starts[i]] (uniform noise when rep_match.start = "noise"; `starts` is then
    ignored) and take rep_match.steps normalised-gradient steps on -dist(g(z), g(x)), step
    length cosine-decayed step_start -> step_end, clamped to [0, 1], through FakeReLU at the
    end of g unless rep_match.fake_relu is false; keep the last iterate and the label of x. `targets`, `starts`: int64 tensors. Returns (images, labels, stats) with
    stats a dict of per-example tensors init_rel_err, final_rel_err, dist_to_x, dist_to_x0."""
    r = rep_match
    imgs, stats = [], {k: [] for k in ("init_rel_err", "final_rel_err", "dist_to_x",
                                       "dist_to_x0")}
    with frozen(model):
        for lo, hi in _chunks(len(targets), r["batch_size"], label):
            x = train_x.index_select(0, targets[lo:hi])
            x0 = (torch.rand_like(x) if r["start"] == "noise"
                  else train_x.index_select(0, starts[lo:hi]))
            with torch.no_grad():
                target_rep = model(x)[1]

            def rel(z):
                with torch.no_grad():
                    return rep_distance(model(z)[1], target_rep, "l2_relative")

            def objective(z):
                rep = model(z, fake_relu=r.get("fake_relu", True))[1]
                return -rep_distance(rep, target_rep, r["distance"])

            init = rel(x0)
            z = pgd(objective, Box(), x0, x0, r["steps"],
                    lambda t: cosine_step(r["step_start"], r["step_end"], t, r["steps"]),
                    final_objective=False)
            stats["init_rel_err"].append(init)
            stats["final_rel_err"].append(rel(z))
            stats["dist_to_x"].append(_norms(z - x).flatten())
            stats["dist_to_x0"].append(_norms(z - x0).flatten())
            imgs.append(z.detach())
    return (torch.cat(imgs), train_y.index_select(0, targets),
            {k: torch.cat(v) for k, v in stats.items()})


def build_relabel(model, train_x, train_y, indices, targets, eps, steps, step_size, batch_size,
                  label="relabel"):
    """D_rand / D_det (relabel::build): targeted L2 PGD on `model` from each x = train_x[i]
    (no random start, `steps` steps of `step_size`, best iterate by the target's loss, the
    clean x included) towards `targets` (int64), relabelled to the target. Returns (images,
    targets, stats) with stats per-example tensors success (source model predicts t) and
    dist_to_x, and source_label."""
    threat = L2Ball(eps)
    imgs, success, dist = [], [], []
    with frozen(model):
        for lo, hi in _chunks(len(indices), batch_size, label):
            x = train_x.index_select(0, indices[lo:hi])
            t = targets[lo:hi]
            xa = pgd_attack(model, x, None, threat, steps, step_size, random_start=False,
                            use_best=True, target=t)
            with torch.no_grad():
                success.append((model(xa)[0].argmax(1) == t).float())
            dist.append(_norms(xa - x).flatten())
            imgs.append(xa)
    return (torch.cat(imgs), targets.clone(),
            {"success": torch.cat(success), "dist_to_x": torch.cat(dist),
             "source_label": train_y.index_select(0, indices)})


def random_subset(n, k, seed):
    """k distinct indices of 0..n, uniformly, fixed by seed (numpy PCG64; not nrf's stream)."""
    return np.random.default_rng(seed).permutation(n)[:k]


def choose_starts(targets, n, seed):
    """For each target index, a start index uniform over 0..n without the target itself."""
    rng = np.random.default_rng(seed)
    j = rng.integers(0, max(n - 1, 1), size=len(targets))
    return j + (j >= np.asarray(targets)) if n > 1 else np.zeros(len(targets), dtype=np.int64)
