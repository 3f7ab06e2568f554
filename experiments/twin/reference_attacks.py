"""Robust accuracy of an nrf checkpoint under torchattacks' APGD / APGD-T / Square, for tests/apgd_reference.rs.

usage: python reference_attacks.py MODEL_STEM INPUTS.safetensors CONFIG.json

MODEL_STEM: an nrf checkpoint (`<stem>.safetensors` + `<stem>.json`), loaded with
experiments/python/nrf_torch.py. INPUTS: tensors `x` ([N, 1, 28, 28] in [0, 1]), `y` ([N],
int64) and optionally `logits` (nrf's logits of x: the output then has `max_logit_diff`, the
largest absolute difference from PyTorch's). CONFIG: {"norm": "L2"|"Linf", "eps": float, "steps": int, "seed": int,
"attacks": ["apgd-ce", "apgd-dlr", "apgd-t", "square"], "square_queries": int}. Prints one JSON object: attack -> robust accuracy
(the model's accuracy on torchattacks' adversarial examples; clean-wrong examples count as
fooled, as torchattacks returns them unchanged).

torchattacks is installed by `cargo xtask setup` with `--no-deps` (so pip cannot replace torch);
its package __init__ imports every attack, some of which need scipy, so only the modules used
here are loaded, under a stub package.
"""
import importlib.util
import json
import os
import sys
import types

import torch
import torch.nn as nn
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from nrf_torch import load_model  # noqa: E402


def torchattacks_modules():
    """torchattacks' APGD, APGDT and Square classes (ImportError when it is not installed)."""
    if "torchattacks" not in sys.modules:  # the stub package is made once per process
        spec = importlib.util.find_spec("torchattacks")
        if spec is None or spec.origin is None:
            raise ImportError("torchattacks is not installed in this environment "
                              "(run `cargo xtask setup`)")
        root = os.path.dirname(spec.origin)
        for name, path in [("torchattacks", root),
                           ("torchattacks.attacks", os.path.join(root, "attacks"))]:
            pkg = types.ModuleType(name)
            pkg.__path__ = [path]
            sys.modules[name] = pkg
    from torchattacks.attacks.apgd import APGD
    from torchattacks.attacks.apgdt import APGDT
    from torchattacks.attacks.square import Square
    return APGD, APGDT, Square


class Logits(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]


def main():
    stem, inputs, config = sys.argv[1:4]
    cfg = json.load(open(config))
    torch.set_num_threads(int(cfg.get("threads", 1)))
    data = load_file(inputs)
    x, y = data["x"], data["y"].long()
    model = Logits(load_model(stem)).eval()
    try:
        APGD, APGDT, Square = torchattacks_modules()
    except ImportError as e:
        sys.exit(str(e))
    out = {}
    with torch.no_grad():
        logits = model(x)
        out["clean"] = (logits.argmax(1) == y).float().mean().item()
        if "logits" in data:
            out["max_logit_diff"] = (logits - data["logits"]).abs().max().item()
    for name in cfg["attacks"]:
        common = dict(norm=cfg["norm"], eps=cfg["eps"], steps=cfg["steps"], n_restarts=1,
                      seed=cfg["seed"])
        if name == "apgd-ce":
            attack = APGD(model, loss="ce", **common)
        elif name == "apgd-dlr":
            attack = APGD(model, loss="dlr", **common)
        elif name == "apgd-t":
            attack = APGDT(model, n_classes=10, **common)
        elif name == "square":
            # The margin loss, p_init 0.8 and the schedule rescaled to n_queries: torchattacks'
            # defaults, which nrf's SquareConfig::new also uses.
            attack = Square(model, norm=cfg["norm"], eps=cfg["eps"], n_queries=cfg["square_queries"],
                            n_restarts=1, p_init=0.8, loss="margin", resc_schedule=True,
                            seed=cfg["seed"])
        else:
            sys.exit(f"unknown attack {name}")
        adv = attack(x, y)
        with torch.no_grad():
            out[name] = (model(adv).argmax(1) == y).float().mean().item()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
