"""What the layout of the CNN's last ReLU costs, channels-last.

The Fashion-MNIST CNN (nrf_models::Arch::FmnistCnn) ends its convolutions with
``relu(conv3(h)).flatten(1)``. Channels-last, the flatten copies the feature map into NCHW order
and its backward hands the ReLU a contiguous gradient while the ReLU's saved output is
channels-last: ATen's ReLU backward over two layouts is several times slower than over one.
``relu(conv3(h).contiguous()).flatten(1)`` makes the same copy before the ReLU instead, so both
of its tensors are contiguous and the flatten is a view. This checks that the two give the same
logits and gradients to the bit and times a training step (forward, backward; batch 128) and an
attack step (forward and input gradient, parameters frozen; batch 500) both ways, in f32 and
under bfloat16 autocast, the variants alternating in rounds (best round kept).

Usage: python probe_relu_layout.py [--threads 1] [--rounds 6] [--reps 10]
(docs/performance.md, "Memory format").
"""

import argparse
import time

import torch
import torch.nn.functional as F

from probe_grouped_seeds import Cnn


def forward(net, x, contiguous_first):
    h = net.c3(F.relu(net.c2(F.relu(net.c1(x)))))
    h = F.relu(h.contiguous()) if contiguous_first else F.relu(h)
    return net.fc2(F.relu(net.fc1(h.flatten(1))))


def run(net, x, y, contiguous_first, bf16, attack):
    """One step; returns the gradients it computes (the weights' for a training step, the
    input's for an attack step)."""
    z = x.detach().requires_grad_(True) if attack else x
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = forward(net, z, contiguous_first)
    loss = F.cross_entropy(out.float(), y, reduction="sum" if attack else "mean")
    if attack:
        return torch.autograd.grad(loss, z)
    return torch.autograd.grad(loss, list(net.parameters()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    net = Cnn().to(memory_format=cl)
    cases = {"training, batch 128": 128, "attack, batch 500": 500}
    for bf16 in (False, True):
        for name, b in cases.items():
            attack = b == 500
            x = torch.rand(b, 1, 28, 28).contiguous(memory_format=cl)
            y = torch.randint(0, 10, (b,))
            for p in net.parameters():
                p.requires_grad_(not attack)
            same = all(torch.equal(g, h) for g, h in zip(run(net, x, y, False, bf16, attack),
                                                         run(net, x, y, True, bf16, attack)))
            best = {False: float("inf"), True: float("inf")}
            for _ in range(a.rounds):
                for v in (False, True):
                    t = time.perf_counter()
                    for _ in range(a.reps):
                        run(net, x, y, v, bf16, attack)
                    best[v] = min(best[v], (time.perf_counter() - t) / a.reps * 1e3)
            print(f"{'bf16' if bf16 else 'f32 '} {name}: relu then flatten {best[False]:.2f} ms, "
                  f"contiguous then relu {best[True]:.2f} ms ({best[True] / best[False]:.2f}x); "
                  f"gradients equal to the bit: {same}", flush=True)


if __name__ == "__main__":
    main()
