"""nrf's artefacts in PyTorch, without nrf: model checkpoints and constructed data sets.

    import sys; sys.path.insert(0, "experiments/python")
    from nrf_torch import load_model, load_constructed

    model = load_model("results/fashion-mnist/weights/C_rob")       # no extension
    logits, rep = model(x)                                           # x: [N, 1, 28, 28] in [0, 1]
    d_r, header = load_constructed("results/fashion-mnist/data/D_R.safetensors")
    loader = torch.utils.data.DataLoader(d_r, batch_size=128, shuffle=True)

Needs torch and safetensors only (the environment `cargo xtask setup` makes has both). See
docs/pytorch.md for the file formats and what is checked.
"""
import json
import os
import re
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "twin"))
from twin_stages import Classifier, FmnistCnn, Mlp  # noqa: E402


def _spec(stem):
    with open(stem + ".json") as f:
        spec = json.load(f)
    # A training checkpoint's JSON holds the spec under "spec"; a saved model's is the spec.
    return spec.get("spec", spec)


def load_model(stem, device="cpu"):
    """The nrf model saved as `<stem>.safetensors` + `<stem>.json` (e.g. `weights/C_rob`), as a
    torch module in evaluation mode whose forward maps images in [0, 1] to `(logits, g(x))`, with
    the per-channel normalisation of its spec inside, as in nrf. Architectures: `fmnist_cnn` and
    `mlp` (the twin's; ResNet / VGG / DenseNet are not built here)."""
    spec = _spec(stem)
    arch, in_shape, classes = spec["arch"], tuple(spec["in_shape"]), spec["num_classes"]
    if arch["type"] == "fmnist_cnn":
        net = FmnistCnn(in_shape, classes)

        def rename(k):
            return k
    elif arch["type"] == "mlp":
        net = Mlp(in_shape, arch["hidden"], classes)

        def rename(k):
            return re.sub(r"^fc(\d+)\.", r"layers.\1.", k)
    else:
        raise ValueError(f"{stem}.json: architecture {arch['type']!r} is not built by nrf_torch "
                         "(fmnist_cnn and mlp are)")
    tensors = load_file(stem + ".safetensors")
    state = {rename(k.removeprefix("model.")): v for k, v in tensors.items()}
    own = list(net.state_dict().keys())
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"{stem}.safetensors lacks {missing} (has {sorted(tensors)})")
    # A training checkpoint also holds the optimiser's buffers (sgd.*) and its metadata.
    net.load_state_dict({k: state[k] for k in own})
    model = Classifier(net, spec["mean"], spec["std"]).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_constructed(path):
    """A constructed data set (`data/D_R.safetensors`, ...) as `(TensorDataset(images, labels),
    header)`: images float32 `[N, C, H, W]` in [0, 1], labels int64 `[N]` (for D_rand / D_det the
    new labels t), and the JSON header nrf stores with it (name, method, the construction's
    settings under `metadata`). The file also holds `source_indices` (the training image each
    example was made from) and, for D_R / D_NR, `start_indices` (the image its optimisation
    started from, -1 for none): `safetensors.torch.load_file(path)` returns them."""
    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if "nrf" not in meta:
        raise ValueError(f"{path}: no nrf header in the safetensors metadata (not an nrf data set?)")
    header = json.loads(meta["nrf"])
    images, labels = tensors["images"], tensors["labels"].long()
    if images.dim() != 4 or labels.shape != (images.shape[0],):
        raise ValueError(f"{path}: images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                         "do not fit [N, C, H, W] / [N]")
    return TensorDataset(images, labels), header
