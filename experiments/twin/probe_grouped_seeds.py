"""What training a fresh model's seeds as one grouped network would save, per training step.

The default preset trains every Figure 2 / Table 1 fresh model three times (``fresh.seeds = 3``):
21 models of the same CNN on 10,000-image sets, a third of the core's stage time. The seeds are
independent networks with their own initialisation and their own shuffle, so they can run as one
network whose layers are grouped: convolutions with ``groups = S`` (seed k's image is input
channel k), the two fully connected layers as batched matrix products. Each seed's loss, gradients
and SGD update are then exactly its own (the grouped network is S networks side by side; only
the floating-point order of a few sums may differ). The FLOPs are the same; what changes is how
many operator calls a step makes (a third) and how large each one is.

Variants, alternating in rounds (each keeps its fastest round and its median), channels-last as
nrf runs the CNN:

- ``train separate`` / ``train grouped``: one SGD training step of all S seeds on their own
  batches (forward, cross-entropy with mean reduction per seed, backward, SGD Nesterov with
  weight decay), S networks one after the other (what nrf does now) or one grouped network;
- ``attack separate`` / ``attack grouped``: one attack step of all S seeds on their own inputs
  (forward and the input gradient, parameters frozen), as the robust evaluation of the seeds'
  models would run it.

First the grouped network's logits and gradients are checked against the separate networks' with
the same weights (largest relative difference printed).

Usage: python probe_grouped_seeds.py [--threads 1] [--seeds 3] [--batch 128] [--rounds 5] [--reps 20]
(docs/performance.md, "Seeds as one grouped network").
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

from probe_first_conv import alternating_rounds, channels_last, print_times


class Cnn(nn.Module):
    """nrf_models::Arch::FmnistCnn: conv3x3(1->16) - conv3x3(16->32, s2) - conv3x3(32->64, s2) -
    fc(3136->256) - fc(256->10), ReLU between (PyTorch's default initialisation)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, 1, 1)
        self.c2 = nn.Conv2d(16, 32, 3, 2, 1)
        self.c3 = nn.Conv2d(32, 64, 3, 2, 1)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        h = F.relu(self.c3(F.relu(self.c2(F.relu(self.c1(x))))))
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


class Grouped(nn.Module):
    """S copies of ``Cnn`` as one network: input [B, S, 28, 28] (seed k's batch in channel k),
    logits [S, B, 10]."""

    def __init__(self, nets):
        super().__init__()
        s = self.s = len(nets)

        def conv(name):
            ws = [getattr(n, name).weight.detach() for n in nets]
            bs = [getattr(n, name).bias.detach() for n in nets]
            w = nn.Parameter(torch.cat(ws).contiguous(memory_format=torch.channels_last))
            return w, nn.Parameter(torch.cat(bs))

        self.w1, self.b1 = conv("c1")
        self.w2, self.b2 = conv("c2")
        self.w3, self.b3 = conv("c3")
        # fc weights as [S, in, out] for a batched product; fc1's input order is each seed's
        # NCHW flatten (c, h, w), as ``Cnn`` sees it.
        self.f1 = nn.Parameter(torch.stack([n.fc1.weight.detach().t() for n in nets]).contiguous())
        self.g1 = nn.Parameter(torch.stack([n.fc1.bias.detach() for n in nets]).unsqueeze(1))
        self.f2 = nn.Parameter(torch.stack([n.fc2.weight.detach().t() for n in nets]).contiguous())
        self.g2 = nn.Parameter(torch.stack([n.fc2.bias.detach() for n in nets]).unsqueeze(1))

    def forward(self, x):
        s = self.s
        h = F.relu(F.conv2d(x, self.w1, self.b1, 1, 1, groups=s))
        h = F.relu(F.conv2d(h, self.w2, self.b2, 2, 1, groups=s))
        h = F.relu(F.conv2d(h, self.w3, self.b3, 2, 1, groups=s))  # [B, S*64, 7, 7]
        b = h.shape[0]
        h = h.reshape(b, s, -1).transpose(0, 1)  # [S, B, 3136] in each seed's (c, h, w) order
        h = F.relu(torch.baddbmm(self.g1, h, self.f1))
        return torch.baddbmm(self.g2, h, self.f2)


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    s, b = a.seeds, a.batch

    nets = [Cnn().to(memory_format=torch.channels_last) for _ in range(s)]
    grouped = Grouped(nets)
    xs = [torch.rand(b, 1, 28, 28) for _ in range(s)]
    ys = [torch.randint(0, 10, (b,)) for _ in range(s)]
    xs_cl = [channels_last(x) for x in xs]
    x_grouped = torch.cat(xs, 1).contiguous(memory_format=torch.channels_last)
    y_grouped = torch.stack(ys)  # [S, B]

    # Same function: logits and the first convolution's weight gradient, seed by seed.
    out = grouped(x_grouped)
    F.cross_entropy(out.reshape(s * b, 10), y_grouped.reshape(-1), reduction="sum").div(b).backward()
    worst_logit = worst_grad = 0.0
    for k, n in enumerate(nets):
        ref = n(xs_cl[k])
        F.cross_entropy(ref, ys[k]).backward()
        worst_logit = max(worst_logit, ((out[k] - ref).abs().max() / ref.abs().max()).item())
        g = grouped.w1.grad[16 * k:16 * (k + 1)]
        worst_grad = max(worst_grad, ((g - n.c1.weight.grad).abs().max()
                                      / n.c1.weight.grad.abs().max()).item())
    print(f"grouped vs separate: logits max relative difference {worst_logit:.2e}, "
          f"first conv's weight gradient {worst_grad:.2e}")

    opts = [sgd(n.parameters()) for n in nets]
    opt_grouped = sgd(grouped.parameters())

    def separate_step():
        for n, o, x, y in zip(nets, opts, xs_cl, ys):
            o.zero_grad(set_to_none=True)
            F.cross_entropy(n(x), y).backward()
            o.step()

    def grouped_step():
        opt_grouped.zero_grad(set_to_none=True)
        out = grouped(x_grouped)
        # each seed's mean over its own batch, summed over seeds: seed k's gradient is its own
        F.cross_entropy(out.reshape(s * b, 10), y_grouped.reshape(-1), reduction="sum").div(b).backward()
        opt_grouped.step()

    def attack_separate():
        for n, x, y in zip(nets, xs_cl, ys):
            z = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(n(z), y, reduction="sum"), z)

    def attack_grouped():
        z = x_grouped.detach().requires_grad_(True)
        out = grouped(z)
        torch.autograd.grad(F.cross_entropy(out.reshape(s * b, 10), y_grouped.reshape(-1),
                                            reduction="sum"), z)

    def frozen(f, modules):
        def run():
            for m in modules:
                m.requires_grad_(False)
            f()
            for m in modules:
                m.requires_grad_(True)
        return run

    variants = {
        "train separate": separate_step,
        "train grouped": grouped_step,
        "attack separate": frozen(attack_separate, nets),
        "attack grouped": frozen(attack_grouped, [grouped]),
    }
    times = alternating_rounds(variants, a.rounds, a.reps)
    print(f"a step of {s} seeds, batch {b} each, {a.threads} thread(s), "
          f"{a.rounds} rounds x {a.reps} steps:")
    print_times(times, lambda k: k.split()[0] + " separate", "separate", width=16)


if __name__ == "__main__":
    main()
