"""Train a small Fashion-MNIST CNN in plain PyTorch and export it with TorchScript in both shapes
`nrf construct` / `nrf eval` accept (docs/pytorch.md, "Bring your own model"):

  tuple.pt      forward(x) -> (logits, g(x))                     (--rep tuple)
  method.pt     forward(x) -> logits, features(x) -> g(x)        (--rep method:features)
  normalised.pt like tuple.pt, but expects (x - 0.2860) / 0.3530  (--mean 0.2860 --std 0.3530)

usage: python export_example.py OUT_DIR [--data DIR] [--epochs 1] [--n 10000] [--seed 0]

Images in [0, 1], [N, 1, 28, 28]. Prints a JSON line with the test accuracy of the trained model (and on the first 1000 test images).
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "twin"))
from twin_data import load_data, load_preset  # noqa: E402


class Net(nn.Module):
    """The same layers as nrf's fmnist_cnn (any architecture would do)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, stride=1, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, 10)

    def features(self, x):
        h = F.relu(self.c3(F.relu(self.c2(F.relu(self.c1(x))))))
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x):
        rep = self.features(x)
        return self.fc2(rep), rep


class LogitsWithMethod(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]

    @torch.jit.export
    def features(self, x):
        return self.net.features(x)


class Normalised(nn.Module):
    """Expects normalised inputs: undoes it, so that its outputs equal the net's on [0, 1]."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, x):
        return self.net(x * self.std + self.mean)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    preset = load_preset("fashion-mnist", [f'data.dir="{a.data}"'])
    d = load_data(preset)
    x, y = d.train_x[: a.n], d.train_y[: a.n]
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for _ in range(a.epochs):
        for idx in torch.randperm(len(y)).split(128):
            loss = F.cross_entropy(net(x[idx])[0], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        correct = (net(d.test_x)[0].argmax(1) == d.test_y).float()
        acc = correct.mean().item()
        acc_1000 = correct[:1000].mean().item()
    os.makedirs(a.out, exist_ok=True)
    example = d.test_x[:2]
    torch.jit.trace(net, example).save(os.path.join(a.out, "tuple.pt"))
    torch.jit.script(LogitsWithMethod(net)).save(os.path.join(a.out, "method.pt"))
    torch.jit.trace(Normalised(net, 0.2860, 0.3530), example).save(os.path.join(a.out, "normalised.pt"))
    print(json.dumps({"test_acc": acc, "test_acc_1000": acc_1000, "n_train": int(len(y)), "epochs": a.epochs}))


if __name__ == "__main__":
    main()
