"""What bfloat16 arithmetic would save in the Fashion-MNIST CNN's steps, on a CPU that has it.

Some x86 CPUs (AMD Zen 4, Intel Sapphire Rapids and later: the ``avx512_bf16`` / ``amx_bf16``
flags) run bfloat16 matrix products and convolutions at up to twice the f32 rate through oneDNN.
nrf computes in f32, as the paper's PyTorch code did. Before any of it is built, this measures the
gain on the core's network (nrf_models::Arch::FmnistCnn, channels-last as nrf runs it) at the
core's batch sizes, and how far the bfloat16 results are from f32's:

- ``train f32`` / ``train autocast``: one SGD training step (forward, mean cross-entropy,
  backward, SGD Nesterov with weight decay) in f32, or under ``torch.autocast("cpu",
  torch.bfloat16)`` (convolutions and linear layers in bfloat16, weights and the update in f32);
- ``attack f32`` / ``attack autocast`` / ``attack bf16`` / ``attack cast``: one attack step
  (forward and the input gradient, parameters frozen) in f32, under autocast, with the network
  and input cast to bfloat16 outright, or with f32 weights cast to bfloat16 in the forward pass
  by hand (autocast written out, as tch, which has no CPU autocast, would do it);
- ``train cast``: the training step with that hand-written cast.

First the bfloat16 logits and input gradients are compared with f32's on the same weights and
inputs: the largest relative difference of the logits, and the share of input-gradient entries
whose sign differs (an L-inf step follows the sign; an L2 step the direction, whose cosine to
f32's is printed too).

Usage: python probe_bf16.py [--threads 1] [--train-batch 128] [--attack-batch 500] [--rounds 5]
[--reps 10] (docs/performance.md, "bfloat16").
"""

import argparse

import torch
import torch.nn.functional as F

from probe_first_conv import alternating_rounds, channels_last, print_times
from probe_grouped_seeds import Cnn, sgd


def input_grad(net, x, y, dtype=None):
    """The summed cross-entropy's gradient with respect to ``x`` (as an attack step takes it);
    ``dtype`` "cast": through ``cast_forward``."""
    z = x.detach().requires_grad_(True)
    if dtype == "cast":
        out = cast_forward(net, z)
    elif dtype is None:
        out = net(z)
    else:
        with torch.autocast("cpu", dtype=dtype):
            out = net(z)
    (g,) = torch.autograd.grad(F.cross_entropy(out.float(), y, reduction="sum"), z)
    return out.detach().float(), g.float()


def cast_forward(net, x):
    """``Cnn.forward`` with every convolution and linear layer in bfloat16 (weights, biases and
    input cast on the way in, differentiably), the logits returned in f32."""
    b = torch.bfloat16

    def conv(h, c, stride):
        return F.relu(F.conv2d(h, c.weight.to(b), c.bias.to(b), stride, 1))

    h = conv(conv(conv(x.to(b), net.c1, 1), net.c2, 2), net.c3, 2)
    h = F.relu(F.linear(h.flatten(1), net.fc1.weight.to(b), net.fc1.bias.to(b)))
    return F.linear(h, net.fc2.weight.to(b), net.fc2.bias.to(b)).float()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--attack-batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")

    net = Cnn().to(memory_format=torch.channels_last)
    # a trained network's gradients are what matter; a few f32 steps move it off initialisation
    opt = sgd(net.parameters())
    xt = channels_last(torch.rand(a.train_batch, 1, 28, 28))
    yt = torch.randint(0, 10, (a.train_batch,))
    for _ in range(20):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(xt), yt).backward()
        opt.step()
    net_bf16 = Cnn().to(memory_format=torch.channels_last)
    net_bf16.load_state_dict(net.state_dict())
    net_bf16 = net_bf16.to(torch.bfloat16)
    xa = channels_last(torch.rand(a.attack_batch, 1, 28, 28))
    ya = torch.randint(0, 10, (a.attack_batch,))
    xa_bf16 = xa.to(torch.bfloat16)

    for m in (net, net_bf16):
        m.requires_grad_(False)
    ref_out, ref_g = input_grad(net, xa, ya)
    for name, (out, g) in {
        "autocast": input_grad(net, xa, ya, torch.bfloat16),
        "bf16": input_grad(net_bf16, xa_bf16, ya),
        "cast": input_grad(net, xa, ya, "cast"),
    }.items():
        logit = ((out - ref_out).abs().max() / ref_out.abs().max()).item()
        flips = (torch.sign(g) != torch.sign(ref_g)).float().mean().item()
        cos = F.cosine_similarity(g.flatten(1), ref_g.flatten(1)).mean().item()
        print(f"{name:8s} vs f32: logits max relative difference {logit:.2e}, input-gradient "
              f"signs differing {100 * flips:.2f}%, mean cosine per image {cos:.4f}")
    net.requires_grad_(True)

    def train(dtype):
        def step():
            opt.zero_grad(set_to_none=True)
            if dtype == "cast":
                loss = F.cross_entropy(cast_forward(net, xt), yt)
            elif dtype is None:
                loss = F.cross_entropy(net(xt), yt)
            else:
                with torch.autocast("cpu", dtype=dtype):
                    loss = F.cross_entropy(net(xt).float(), yt)
            loss.backward()
            opt.step()
        return step

    def attack(model, x, dtype=None):
        def step():
            model.requires_grad_(False)
            input_grad(model, x, ya, dtype)
            model.requires_grad_(True)
        return step

    variants = {
        "train f32": train(None),
        "train autocast": train(torch.bfloat16),
        "train cast": train("cast"),
        "attack f32": attack(net, xa),
        "attack autocast": attack(net, xa, torch.bfloat16),
        "attack bf16": attack(net_bf16, xa_bf16),
        "attack cast": attack(net, xa, "cast"),
    }
    times = alternating_rounds(variants, a.rounds, a.reps, warmup=2)
    print(f"{a.threads} thread(s), training batch {a.train_batch}, attack batch {a.attack_batch}, "
          f"{a.rounds} rounds x {a.reps} steps:")
    print_times(times, lambda k: k.split()[0] + " f32", "f32", width=16)


if __name__ == "__main__":
    main()
