"""CIFAR-10 data loading for the cifar_variants training scripts.

The training split is read from the shared JPEG zip
(``<shared>/data/cifar10_train_jpeg.zip``, entries ``train/<class>/<nnnn>.jpg``),
decoded with Pillow and cached as a uint8 NCHW array in
``<repo>/out/cifar10_train_u8.npz`` (``out/`` is gitignored).

The shared directory is taken from ``--shared``, else ``$SNNCC_SHARED``, else
``../shared`` relative to the repository root.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / "out" / "cifar10_train_u8.npz"


def shared_dir(arg: str | None = None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("SNNCC_SHARED")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared"


def _decode_zip(zpath: Path):
    from PIL import Image
    cls_index = {c: i for i, c in enumerate(CLASSES)}
    xs, ys = [], []
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".jpg"))
        for n in names:
            parts = n.split("/")
            if len(parts) < 3 or parts[-2] not in cls_index:
                raise ValueError(f"unexpected zip entry {n!r}")
            with Image.open(io.BytesIO(zf.read(n))) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
            if a.shape != (32, 32, 3):
                raise ValueError(f"{n}: shape {a.shape}")
            xs.append(a.transpose(2, 0, 1))
            ys.append(cls_index[parts[-2]])
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_train(shared: str | None = None, cache: Path = CACHE):
    """Return (x uint8 (N,3,32,32), y int64 (N,)) for the 50000-image training split."""
    if cache.exists():
        with np.load(cache) as d:
            return d["x"], d["y"]
    zpath = shared_dir(shared) / "data" / "cifar10_train_jpeg.zip"
    if not zpath.exists():
        raise FileNotFoundError(
            f"{zpath} not found: pass --shared or set SNNCC_SHARED")
    x, y = _decode_zip(zpath)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, cache)
    return x, y


def load_test(shared: str | None = None):
    """Return (x uint8 NCHW, y int64) for the shared JPEG test split."""
    p = shared_dir(shared) / "data" / "cifar10_test.npz"
    with np.load(p) as d:
        return d["x"], d["y"].astype(np.int64)


def normalize(x_u8: np.ndarray) -> np.ndarray:
    """uint8 NCHW -> float32 NCHW: x/255 then per-channel (x-mean)/std."""
    x = x_u8.astype(np.float32) / 255.0
    return (x - MEAN[None, :, None, None]) / STD[None, :, None, None]


def augment(x_u8: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random crop with ``pad``-pixel zero padding + random horizontal flip (uint8 NCHW)."""
    n, c, h, w = x_u8.shape
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x_u8.dtype)
    padded[:, :, pad:pad + h, pad:pad + w] = x_u8
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    iy = dy[:, None] + np.arange(h)[None, :]            # (n,h)
    ix = dx[:, None] + np.arange(w)[None, :]            # (n,w)
    out = padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                 iy[:, None, :, None], ix[:, None, None, :]]
    flip = rng.random(n) < 0.5
    out[flip] = out[flip][..., ::-1]
    return out
