"""What the Fashion-MNIST CNN's first convolution costs in an attack step, and what is left to gain.

An attack step is one forward pass and the gradient with respect to the input (parameters
frozen), as nrf's constructions, robust evaluation and adversarial training's PGD run it. The
CNN (nrf_models::Arch::FmnistCnn: conv3x3(1->16) - ReLU - conv3x3(16->32, s2) - ReLU -
conv3x3(32->64, s2) - ReLU - fc(3136->256) - ReLU - fc(256->10)) runs channels-last, its
one-channel tensors in channels-last strides built explicitly as nrf_models::runtime does. Variants,
alternating in rounds (each keeps its fastest round and its median):

- ``nrf``: the layers as nrf runs them (oneDNN convolutions);
- ``im2col``: the first convolution as im2col + one matrix product (libtorch's ``im2col``,
  differentiable), the rest unchanged;
- ``no_first_conv``: the first convolution and its ReLU replaced by a per-channel scale of the
  image (a broadcast multiply into 16 channels): not the same function, an upper bound on what
  any faster first layer could save.

With --profile, torch.profiler's per-operator table of the ``nrf`` variant follows.

Usage: python probe_first_conv.py [--threads 1] [--batch 128] [--rounds 5] [--reps 20] [--profile]
(docs/performance.md, "The first convolution").
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def channels_last(t):
    """``t`` with channels-last strides, one-channel tensors included."""
    n, c, h, w = t.shape
    out = torch.empty_strided(t.shape, (h * w * c, 1, w * c, c), dtype=t.dtype)
    out.copy_(t)
    return out


def alternating_rounds(variants, rounds, reps, warmup=3):
    """Times the zero-argument functions of ``variants`` (name -> function) in ``rounds`` rounds
    that alternate between them, each call ``warmup`` times untimed and then ``reps`` times timed:
    name -> the milliseconds per call of each round."""
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, f in variants.items():
            for _ in range(warmup):
                f()
            t = time.perf_counter()
            for _ in range(reps):
                f()
            times[k].append((time.perf_counter() - t) / reps * 1e3)
    return times


def print_times(times, base_of, base_label, width=14):
    """One line per variant of ``times``: its fastest round, its median, and the median of
    ``base_of(name)``'s variant over its own (``base_label`` / this)."""
    for k, ts in times.items():
        base = statistics.median(times[base_of(k)])
        med = statistics.median(ts)
        print(f"  {k:{width}s} min {min(ts):7.2f} ms  median {med:7.2f} ms  "
              f"{base_label} / this (medians) {base / med:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    c1 = torch.nn.Conv2d(1, 16, 3, 1, 1)
    c2 = torch.nn.Conv2d(16, 32, 3, 2, 1)
    c3 = torch.nn.Conv2d(32, 64, 3, 2, 1)
    fc1 = torch.nn.Linear(64 * 7 * 7, 256)
    fc2 = torch.nn.Linear(256, 10)
    for m in (c1, c2, c3, fc1, fc2):
        m.requires_grad_(False)
    w1, w2, w3 = (channels_last(c.weight) for c in (c1, c2, c3))
    w1_cols = c1.weight.reshape(16, 9).t().contiguous()  # [9, 16]
    scale = torch.randn(1, 16, 1, 1)
    b = a.batch
    x = torch.rand(b, 1, 28, 28)
    y = torch.randint(0, 10, (b,))

    def rest(h):
        h = F.relu(F.conv2d(h, w2, c2.bias, 2, 1))
        h = F.relu(F.conv2d(h, w3, c3.bias, 2, 1))
        return fc2(F.relu(fc1(h.flatten(1))))

    def nrf(z):
        return rest(F.relu(F.conv2d(z, w1, c1.bias, 1, 1)))

    def im2col(z):
        cols = F.unfold(z, 3, padding=1)  # [B, 9, 784]
        h = (cols.transpose(1, 2) @ w1_cols + c1.bias).view(b, 28, 28, 16)
        return rest(F.relu(h.permute(0, 3, 1, 2)))

    def no_first_conv(z):
        return rest(channels_last(z * scale))

    variants = {
        "nrf": (nrf, channels_last(x)),
        "im2col": (im2col, x),
        "no_first_conv": (no_first_conv, x),
    }

    def step(f, z):
        zg = z.detach().requires_grad_(True)
        loss = F.cross_entropy(f(zg), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, zg)
        return loss.detach(), g

    ref = step(*variants["nrf"])
    got = step(*variants["im2col"])
    rel = ((got[1] - ref[1]).abs().max() / ref[1].abs().max()).item()
    print(f"im2col vs nrf: loss {got[0].item():.6g} vs {ref[0].item():.6g}, "
          f"input gradient max relative difference {rel:.2e}")

    calls = {k: (lambda f=f, z=z: step(f, z)) for k, (f, z) in variants.items()}
    times = alternating_rounds(calls, a.rounds, a.reps)
    print(f"attack step, batch {b}, {a.threads} thread(s), {a.rounds} rounds x {a.reps} steps:")
    print_times(times, lambda k: "nrf", "nrf")

    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        f, z = variants["nrf"]
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(a.reps):
                step(f, z)
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=16, max_name_column_width=32,
            max_shapes_column_width=60))


if __name__ == "__main__":
    main()
