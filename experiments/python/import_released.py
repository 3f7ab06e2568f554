"""Imports a data set released as `torch.save`d tensors, such as the paper's own D_R / D_NR /
D_rand / D_det for CIFAR-10 (`d_robust_CIFAR/CIFAR_ims` and `CIFAR_lab`: lists of tensors that
`torch.cat(torch.load(...))` joins, ../shared/spec/paper.md "Released data format"), into nrf's
constructed-set format, so that `nrf fresh --data OUT.safetensors` trains and evaluates the
preset's fresh models on it as a run does on its own sets.

    python experiments/python/import_released.py --images d_robust_CIFAR/CIFAR_ims \\
        --labels d_robust_CIFAR/CIFAR_lab --name D_R --out imported/D_R
    nrf fresh --preset cifar10 --data imported/D_R.safetensors

The value range is not documented for the released sets: `--scale auto` (the default) keeps
images already in [0, 1] and divides images of integer values up to 255 by 255, saying so and
recording it (`metadata.extra.scaled_by`); anything else is refused, as are NaNs, labels outside
0..classes-1 and shapes that are not [N, C, H, W] (or [N, H, W, C] with 1 or 3 channels, which is
transposed and recorded). Prints a JSON summary. Needs torch and safetensors only.
"""
import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nrf_torch import save_constructed  # noqa: E402

# As nrf's own constructions record them (metadata.method).
METHODS = {"D_R": "robust_features", "D_NR": "non_robust_features", "D_rand": "random_target",
           "D_det": "deterministic_target"}


def load_tensor(path, what):
    """A `torch.save`d tensor, or list / tuple of tensors (joined along the first dimension)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the message names the file
        raise SystemExit(f"error: {path}: cannot read the {what} with torch.load ({e})")
    if isinstance(obj, (list, tuple)):
        if not obj or not all(isinstance(t, torch.Tensor) for t in obj):
            raise SystemExit(f"error: {path}: expected a tensor or a list of tensors ({what})")
        try:
            obj = torch.cat([t.reshape(-1, *t.shape[1:]) if t.dim() else t.reshape(1) for t in obj])
        except RuntimeError as e:
            raise SystemExit(f"error: {path}: the {what} tensors do not join ({e})")
    if not isinstance(obj, torch.Tensor):
        raise SystemExit(f"error: {path}: expected a tensor or a list of tensors ({what}), "
                         f"got {type(obj).__name__}")
    return obj


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def to_nchw(images, path):
    """[N, C, H, W], or [N, H, W, C] with 1 or 3 channels transposed; the layout as recorded."""
    if images.dim() == 3:
        return images.unsqueeze(1), "NHW (one channel added)"
    if images.dim() != 4:
        raise SystemExit(f"error: {path}: images of shape {tuple(images.shape)}, expected "
                         "[N, C, H, W]")
    if images.shape[1] in (1, 3):
        return images, "NCHW"
    if images.shape[3] in (1, 3):
        return images.permute(0, 3, 1, 2).contiguous(), "NHWC (transposed)"
    raise SystemExit(f"error: {path}: images of shape {tuple(images.shape)}: neither dimension 1 "
                     "nor dimension 3 is 1 or 3 channels")


def scaled(images, scale, path):
    """Images in [0, 1] and the factor they were divided by."""
    images = images.to(torch.float32)
    if not torch.isfinite(images).all():
        raise SystemExit(f"error: {path}: images hold NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if scale == "auto":
        if lo >= 0.0 and hi <= 1.0:
            return images, 1.0
        if lo >= 0.0 and hi <= 255.0 and bool((images == images.round()).all()):
            print(f"{path}: integer pixel values in [{lo:g}, {hi:g}]: divided by 255",
                  file=sys.stderr)
            return images / 255.0, 255.0
        raise SystemExit(f"error: {path}: pixel values in [{lo:g}, {hi:g}] are neither in [0, 1] "
                         "nor integers up to 255; give --scale")
    factor = float(scale)
    images = images / factor
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise SystemExit(f"error: {path}: pixel values divided by {factor:g} lie in [{lo:g}, "
                         f"{hi:g}], not in [0, 1]")
    return images, factor


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="torch.save'd images (tensor or list)")
    ap.add_argument("--labels", required=True, help="torch.save'd labels (tensor or list)")
    ap.add_argument("--name", required=True,
                    help="the set's name: D_R, D_NR, D_rand, D_det (which [fresh_by_set] entry "
                         "applies), or another")
    ap.add_argument("--out", required=True, help="output stem: OUT.safetensors + OUT.json")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--scale", default="auto", help="auto (default), or a number to divide by")
    ap.add_argument("--note", default="", help="recorded as metadata.extra.note")
    a = ap.parse_args(argv)
    images, layout = to_nchw(load_tensor(a.images, "images"), a.images)
    images, factor = scaled(images, a.scale, a.images)
    labels = load_tensor(a.labels, "labels")
    if labels.is_floating_point():
        if not bool((labels == labels.round()).all()):
            raise SystemExit(f"error: {a.labels}: labels are not whole numbers")
    labels = labels.reshape(-1).to(torch.int64)
    if labels.shape[0] != images.shape[0]:
        raise SystemExit(f"error: {a.labels}: {labels.shape[0]} labels for {images.shape[0]} "
                         f"images in {a.images}")
    extra = {
        "imported_from": {
            "images": os.path.abspath(a.images), "images_sha256": sha256(a.images),
            "labels": os.path.abspath(a.labels), "labels_sha256": sha256(a.labels),
        },
        "layout": layout,
        "scaled_by": factor,
    }
    if a.note:
        extra["note"] = a.note
    try:
        st, js = save_constructed(a.out, images, labels, name=a.name,
                                  method=METHODS.get(a.name, "imported"), num_classes=a.classes,
                                  extra=extra)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    counts = [int((labels == c).sum()) for c in range(a.classes)]
    print(json.dumps({"file": st, "sidecar": js, "name": a.name, "n": int(images.shape[0]),
                      "shape": list(images.shape[1:]), "class_counts": counts,
                      "scaled_by": factor, "layout": layout}, indent=2))


if __name__ == "__main__":
    main()
