"""Presets and data for nrf's fidelity twin (see nrf_twin.py): the preset TOML read as
experiments/src/preset.rs reads it (same defaults, errors naming the field), nrf's per-stage
seeds, and the IDX (Fashion-MNIST / MNIST) files as nrf_data::idx loads them."""

import gzip
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
PRESET_DIR = HERE.parent / "presets"
# Fashion-MNIST / MNIST have 10 classes (nrf_data::idx loads them with 10).
IDX_CLASSES = 10
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


class PresetError(ValueError):
    """A preset that cannot be used; the message names the file and the field."""


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------

TRAIN_DEFAULTS = {"warmup": 0.0, "milestones": [], "gamma": 0.1, "nesterov": False, "crop_pad": 0,
                  "attack": None}
TRAIN_REQUIRED = ("epochs", "batch_size", "lr", "schedule", "momentum", "weight_decay")
ATTACK_DEFAULTS = {"step_factor": 2.5, "random_start": True}
SECTION_REQUIRED = {
    "eval": ("robust_n", "steps", "l2_eps", "headline_eps", "batch_size"),
    "rep_match": ("n", "steps", "step_start", "step_end", "batch_size"),
    "relabel": ("n", "eps", "steps", "step_size", "batch_size"),
}
SECTION_DEFAULTS = {
    "eval": {"step_factor": 2.5, "linf_eps": [], "curve_n": 2000},
    "rep_match": {"distance": "l2_squared", "start": "other_image", "fake_relu": True},
    "relabel": {"extra_eps": []},
}


def resolve_preset(path_or_name):
    """The preset file for a path or a built-in name (experiments/presets/<name>.toml)."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    builtin = PRESET_DIR / f"{path_or_name}.toml"
    if builtin.is_file():
        return builtin
    names = sorted(f.stem for f in PRESET_DIR.glob("*.toml"))
    raise PresetError(f"no preset file {path_or_name!r} and no built-in preset of that name "
                      f"(built in: {', '.join(names)})")


def parse_override(text):
    """`a.b=VALUE` -> (["a", "b"], value); VALUE is read as TOML, else taken as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise PresetError(f"--set {text!r}: expected key=value, e.g. rep_match.n=100")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def _need(table, keys, where, origin):
    for k in keys:
        if k not in table:
            raise PresetError(f"preset {origin}: field `{where}.{k}` is missing")


def _train_section(p, name, origin):
    s = p.get(name)
    if not isinstance(s, dict):
        raise PresetError(f"preset {origin}: section [{name}] is missing")
    _need(s, TRAIN_REQUIRED, name, origin)
    s = {**TRAIN_DEFAULTS, **s}
    for k in ("resized_crop", "color_jitter", "rotate_deg", "lighting"):
        if s.get(k):
            raise PresetError(f"preset {origin}: field `{name}.{k}`: the twin implements the crop "
                              f"and flip (crop_pad) only, got {k} = {s[k]!r}")
    if s["schedule"] not in ("cosine", "step"):
        raise PresetError(f"preset {origin}: field `{name}.schedule` must be \"cosine\" or "
                          f"\"step\", got {s['schedule']!r}")
    if s["attack"] is not None:
        a = {**ATTACK_DEFAULTS, **s["attack"]}
        _need(a, ("norm", "eps", "steps"), f"{name}.attack", origin)
        if a["norm"] not in ("l2", "linf"):
            raise PresetError(f"preset {origin}: field `{name}.attack.norm` must be \"l2\" or "
                              f"\"linf\", got {a['norm']!r}")
        for k in ("eps", "steps", "step_factor"):
            v = a[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                    or (k == "steps" and not isinstance(v, int)):
                raise PresetError(f"preset {origin}: field `{name}.attack.{k}` must be a "
                                  f"positive {'whole ' if k == 'steps' else ''}number, got {v!r}")
        s["attack"] = a
    return s


def load_preset(path_or_name, overrides=()):
    """Reads a preset (path or built-in name), applies `overrides` (strings `key=value`), and
    fills in the defaults experiments/src/preset.rs uses. Raises PresetError naming the field."""
    path = resolve_preset(path_or_name)
    return preset_from_text(path.read_text(), str(path), overrides)


def preset_from_text(text, origin, overrides=()):
    """`load_preset` of a preset's text; `origin` names it in errors."""
    try:
        p = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"preset {origin}: invalid TOML: {e}") from e
    for text in overrides:
        keys, value = parse_override(text)
        t = p
        for k in keys[:-1]:
            t = t.setdefault(k, {})
            if not isinstance(t, dict):
                raise PresetError(f"--set {text!r}: `{k}` is not a table")
        t[keys[-1]] = value
    _need(p, ("name", "seed", "data", "model", "eval", "rep_match", "relabel"), "(top level)",
          origin)
    p.setdefault("threads", 0)
    d = p["data"]
    _need(d, ("dataset",), "data", origin)
    if d["dataset"] not in ("fashion-mnist", "mnist"):
        raise PresetError(f"preset {origin}: field `data.dataset`: the twin reads IDX files only "
                          f"(fashion-mnist, mnist), got {d['dataset']!r}")
    d.setdefault("dir", "/usr/share/datasets/fashion-mnist")
    d.setdefault("train_limit", 0)
    d.setdefault("test_limit", 0)
    m = p["model"]
    _need(m, ("arch",), "model", origin)
    if m["arch"].get("type") not in ("fmnist_cnn", "mlp"):
        raise PresetError(f"preset {origin}: field `model.arch`: the twin builds fmnist_cnn and "
                          f"mlp, got {m['arch']!r}")
    m.setdefault("init", "pytorch")
    if m["init"] not in ("pytorch", "tch"):
        raise PresetError(f"preset {origin}: field `model.init` must be \"pytorch\" or \"tch\", "
                          f"got {m['init']!r}")
    m.setdefault("precision", "f32")
    if m["precision"] not in ("f32", "bf16"):
        raise PresetError(f"preset {origin}: field `model.precision` must be \"f32\" or \"bf16\", "
                          f"got {m['precision']!r}")
    for name in ("train_std", "train_rob", "fresh"):
        p[name] = _train_section(p, name, origin)
    if p["train_rob"]["attack"] is None:
        raise PresetError(f"preset {origin}: field `train_rob.attack`: the robust model needs one")
    for name, req in SECTION_REQUIRED.items():
        _need(p[name], req, name, origin)
        p[name] = {**SECTION_DEFAULTS[name], **p[name]}
    e = p["eval"]
    if not any(abs(x - e["headline_eps"]) <= 1e-9 for x in e["l2_eps"]):
        raise PresetError(f"preset {origin}: field `eval.headline_eps` {e['headline_eps']} must "
                          f"be one of eval.l2_eps {e['l2_eps']}")
    r = p["rep_match"]
    if r["distance"] not in ("l2_squared", "l2_relative", "cosine"):
        raise PresetError(f"preset {origin}: field `rep_match.distance` must be l2_squared, "
                          f"l2_relative or cosine; got {r['distance']!r}")
    if r["start"] not in ("other_image", "noise"):
        raise PresetError(f"preset {origin}: field `rep_match.start` must be other_image or "
                          f"noise; got {r['start']!r}")
    if not isinstance(r["fake_relu"], bool):
        raise PresetError(f"preset {origin}: field `rep_match.fake_relu` must be true or false; "
                          f"got {r['fake_relu']!r}")
    _check_numbers(p, origin)
    p["_path"] = origin
    p["_overrides"] = list(overrides)
    return p


# What a twin run's numbers depend on: every table the twin reads except `threads`, `name`,
# `data.dir` and `fresh.seeds` (the twin's own seed count is its command line's).
COMPARED_SECTIONS = ("data", "model", "train_std", "train_rob", "eval", "rep_match", "relabel",
                     "fresh")
# The twin runs no ensemble (its numbers are PGD-20): nrf's `[eval] ensemble` does not change them.
NOT_COMPARED = {("data", "dir"), ("fresh", "seeds"), ("eval", "ensemble")}


def comparable(preset):
    """The part of a loaded preset that the Figure 2 / Table 1 numbers depend on (a JSON-able
    dict), for checking that nrf and the twin ran the same configuration."""
    out = {"seed": preset["seed"]}
    for sec in COMPARED_SECTIONS:
        out[sec] = {k: v for k, v in preset[sec].items() if (sec, k) not in NOT_COMPARED}
    return out


def preset_differences(a, b, prefix=""):
    """Dotted keys where the comparable presets `a` and `b` differ, as (key, a value, b value);
    numbers compare equal when within 1e-9 (1 == 1.0)."""
    diffs = []
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k), b.get(k)
        key = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += preset_differences(va, vb, key + ".")
        elif isinstance(va, (int, float)) and isinstance(vb, (int, float)) \
                and not isinstance(va, bool) and not isinstance(vb, bool):
            if abs(va - vb) > 1e-9 * max(abs(va), abs(vb), 1.0):
                diffs.append((key, va, vb))
        elif va != vb:
            diffs.append((key, va, vb))
    return diffs


# Fields that must be numbers (whole numbers for INT_FIELDS), as preset.rs's types say.
INT_FIELDS = {"seed": None, "threads": None,
              "data": ("train_limit", "test_limit"),
              "train_std": ("epochs", "batch_size", "crop_pad"),
              "train_rob": ("epochs", "batch_size", "crop_pad"),
              "fresh": ("epochs", "batch_size", "crop_pad"),
              "eval": ("robust_n", "steps", "batch_size", "curve_n"),
              "rep_match": ("n", "steps", "batch_size"),
              "relabel": ("n", "steps", "batch_size")}
FLOAT_FIELDS = {"train_std": ("lr", "warmup", "momentum", "weight_decay", "gamma"),
                "train_rob": ("lr", "warmup", "momentum", "weight_decay", "gamma"),
                "fresh": ("lr", "warmup", "momentum", "weight_decay", "gamma"),
                "eval": ("step_factor", "headline_eps"),
                "rep_match": ("step_start", "step_end"),
                "relabel": ("eps", "step_size")}


def _check_numbers(p, origin):
    def bad(field, v, kind):
        raise PresetError(f"preset {origin}: field `{field}` must be {kind}, got {v!r}")
    for table, keys in INT_FIELDS.items():
        items = [(table, p[table])] if keys is None else [(f"{table}.{k}", p[table][k])
                                                          for k in keys]
        for field, v in items:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad(field, v, "a whole number >= 0")
    for table, keys in FLOAT_FIELDS.items():
        for k in keys:
            v = p[table][k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(f"{table}.{k}", v, "a finite number")
    for field, lst in (("eval.l2_eps", p["eval"]["l2_eps"]),
                       ("eval.linf_eps", p["eval"]["linf_eps"]),
                       ("relabel.extra_eps", p["relabel"]["extra_eps"])):
        if not isinstance(lst, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in lst):
            bad(field, lst, "a list of positive numbers")
    for sec in ("train_std", "train_rob", "fresh", "eval", "rep_match", "relabel"):
        for k in ("steps", "batch_size", "epochs", "n"):
            if k in p[sec] and p[sec][k] < 1:
                bad(f"{sec}.{k}", p[sec][k], "at least 1")


def stage_seed(master, stage):
    """Preset::stage_seed: FNV-1a of the stage name, mixed with the master seed (63 bits)."""
    mask = (1 << 64) - 1
    h = 0xCBF29CE484222325
    for b in stage.encode():
        h = ((h ^ b) * 0x100000001B3) & mask
    return (((h ^ master) * 0x9E3779B97F4A7C15) & mask) >> 1


def eps_tag(eps):
    """table1::eps_tag: 2.0 -> "2", 0.25 -> "0p25" (Rust's shortest float display)."""
    s = str(int(eps)) if float(eps).is_integer() else repr(float(eps))
    return s.replace(".", "p")


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

@dataclass
class Data:
    """Training and test images (float32 [N, C, H, W] in [0, 1]) and labels (int64 [N])."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int


def _read_idx(path, magic):
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise ValueError(f"{path}: magic number {got:#010x}, expected {magic:#010x}")
    ndims = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndims)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndims)
    if data.size != math.prod(dims):
        raise ValueError(f"{path}: {data.size} bytes of data for dimensions {dims}")
    return data.reshape(dims)


def _idx_file(folder, name):
    for cand in (folder / f"{name}.gz", folder / name):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"neither {name}.gz nor {name} exists in {folder} "
                            "(Fashion-MNIST: apt-get install -y dataset-fashion-mnist)")


def load_data(preset, device="cpu"):
    """The preset's IDX dataset: pixels / 255 as float32, the first `train_limit` / `test_limit`
    images (0 = all), as nrf_experiments::pipeline::load_data."""
    d = preset["data"]
    folder = Path(d["dir"])
    out = []
    for split in ("train", "t10k"):
        imgs = _read_idx(_idx_file(folder, f"{split}-images-idx3-ubyte"), IDX_IMAGES_MAGIC)
        labs = _read_idx(_idx_file(folder, f"{split}-labels-idx1-ubyte"), IDX_LABELS_MAGIC)
        limit = d["train_limit"] if split == "train" else d["test_limit"]
        if 0 < limit < len(labs):
            imgs, labs = imgs[:limit], labs[:limit]
        x = torch.from_numpy(imgs.copy()).to(torch.float32).div_(255.0).unsqueeze(1)
        out += [x.to(device), torch.from_numpy(labs.astype(np.int64)).to(device)]
    return Data(*out, classes=IDX_CLASSES)
