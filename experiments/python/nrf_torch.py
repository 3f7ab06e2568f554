"""nrf's artefacts in PyTorch, without nrf: model checkpoints and constructed data sets.

    import sys; sys.path.insert(0, "experiments/python")
    from nrf_torch import load_model, load_constructed

    model = load_model("results/fashion-mnist/weights/C_rob")       # no extension
    logits, rep = model(x)                                           # x: [N, 1, 28, 28] in [0, 1]
    d_r, header = load_constructed("results/fashion-mnist/data/D_R.safetensors")
    loader = torch.utils.data.DataLoader(d_r, batch_size=128, shuffle=True)
    save_constructed("built/D_R", images, labels, method="robust_features")  # nrf reads it

Needs torch and safetensors only (the environment `cargo xtask setup` makes has both). See
docs/pytorch.md for the file formats and what is checked.
"""
import hashlib
import json
import os
import re
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
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


CONSTRUCTED_FORMAT = "nrf-constructed-dataset/1"


def _write_atomic(path, write):
    """`write(tmp_path)`, then the temporary file renamed to `path` (same folder): a crash never
    leaves a half-written file under the final name."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_constructed(stem, images, labels, name=None, method="imported", num_classes=10,
                     class_names=(), source_indices=None, extra=None):
    """Writes a data set as nrf writes its constructed sets (`<stem>.safetensors` + `<stem>.json`,
    read by nrf's `load_constructed`, `nrf fresh --data`, and `load_constructed` above): images
    float32 `[N, C, H, W]` in [0, 1], labels int64 in `0..num_classes`, `source_indices` int64
    (-1: unknown), the header with `metadata.method` and `metadata.extra`. Checks what nrf checks
    when it reads the file and raises ValueError naming `stem` otherwise. Returns the two paths."""
    images = torch.as_tensor(images).detach().to("cpu", torch.float32).contiguous()
    labels = torch.as_tensor(labels).detach().to("cpu", torch.int64).contiguous()
    where = f"{stem}: "
    if images.dim() != 4 or 0 in images.shape:
        raise ValueError(where + f"images of shape {tuple(images.shape)}, expected [N, C, H, W]")
    n = images.shape[0]
    if labels.shape != (n,):
        raise ValueError(where + f"labels of shape {tuple(labels.shape)} for {n} images")
    if not torch.isfinite(images).all():
        raise ValueError(where + "images hold NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(where + f"pixel values in [{lo}, {hi}], nrf's images are in [0, 1]")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(where + f"labels in [{int(labels.min())}, {int(labels.max())}], "
                         f"expected 0..{num_classes - 1}")
    if class_names and len(class_names) != num_classes:
        raise ValueError(where + f"{len(class_names)} class names for {num_classes} classes")
    sources = (torch.full((n,), -1, dtype=torch.int64) if source_indices is None
               else torch.as_tensor(source_indices).to(torch.int64).contiguous())
    if sources.shape != (n,):
        raise ValueError(where + f"{tuple(sources.shape)} source indices for {n} images")
    stem = str(stem)
    for ext in (".safetensors", ".json"):
        stem = stem[: -len(ext)] if stem.endswith(ext) else stem
    header = {
        "format": CONSTRUCTED_FORMAT,
        "name": name or os.path.basename(stem),
        "len": n,
        "shape": list(images.shape[1:]),
        "num_classes": num_classes,
        "class_names": list(class_names),
        "class_counts": [int((labels == c).sum()) for c in range(num_classes)],
        "metadata": {"method": method, "epsilon": None, "steps": None, "step_size": None,
                     "source_model_sha256": None, "seed": None, "extra": dict(extra or {})},
    }
    st, js = stem + ".safetensors", stem + ".json"
    tensors = {"images": images, "labels": labels, "source_indices": sources}
    _write_atomic(st, lambda tmp: save_file(tensors, tmp, metadata={"nrf": json.dumps(header)}))
    with open(st, "rb") as f:
        header["safetensors_sha256"] = hashlib.sha256(f.read()).hexdigest()

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(header, f, indent=2)
    _write_atomic(js, write_json)
    return st, js
