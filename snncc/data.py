"""Reading calibration/test arrays and fitting them to a model's input.

Data files are ``.npz`` (``x`` and optionally ``y``) or ``.npy`` (``x`` only),
loaded with ``allow_pickle=False``.  ``x`` may be ``(N, C, H, W)``,
``(N, H, W, C)`` or, for one channel, ``(N, H, W)``, of any numeric dtype.
Internally snncc is channels-last; :func:`to_channels_last` transposes when
the data's layout differs and says so.
"""
from __future__ import annotations

import os
import zipfile
from typing import Callable

import numpy as np

from snncc.errors import DataError, one_line

SEED = 0


def load_arrays(path: str, what: str = "data") -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(x, y)`` from an ``.npz``/``.npy`` file; ``y`` is None when absent."""
    if not os.path.exists(path):
        raise DataError(f"{what} file {path!r} not found", "check the path")
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        # numpy reads anything that is neither zip nor .npy as a pickle, which allow_pickle=False refuses
        why = "neither a zip (.npz) nor a .npy file" if "pickled" in str(e) else one_line(e, 160)
        raise DataError(f"{what} file {path!r} is not a readable .npz/.npy array file ({why})",
                        "save it with numpy.savez(path, x=images, y=labels) or numpy.save") from None
    if isinstance(obj, np.ndarray):
        return _check_x(obj, path, what), None
    with obj:
        keys = list(obj.keys())
        if "x" not in keys:
            raise DataError(f"{what} file {path!r} has no array 'x' (found {keys})",
                            "store the images under the key 'x' (and labels under 'y')")
        try:
            x = obj["x"]
            y = obj["y"] if "y" in keys else None
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            if "allow_pickle" in str(e):    # object arrays: snncc never unpickles (it could run code)
                raise DataError(f"{what} file {path!r} holds object arrays (pickled Python objects)",
                                "save plain numeric arrays: numpy.savez(path, x=np.asarray(images, np.uint8), "
                                "y=np.asarray(labels, np.int64))") from None
            raise DataError(f"{what} file {path!r} is corrupt ({one_line(e, 160)})", "re-create the file") from None
    x = _check_x(x, path, what)
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{what} labels 'y' in {path!r} must be {x.shape[0]} integers, got {y.dtype} {y.shape}",
                            "store integer class indices, one per image")
        y = y.astype(np.int64)
    return x, y


def _check_x(x: np.ndarray, path: str, what: str) -> np.ndarray:
    shapes = "(N, C, H, W), (N, H, W, C) or (N, H, W)"
    if x.ndim not in (3, 4) or x.shape[0] == 0:
        raise DataError(f"{what} array 'x' in {path!r} has shape {x.shape}; expected {shapes} with N > 0",
                        "reshape the images to a batch of 2-D images")
    return check_images(x, shapes, f"{what} array 'x' in {path!r}")


def check_labels(labels, n: int, classes: int, what: str = "labels") -> np.ndarray:
    """``labels`` as (n,) int64 class indices in 0..classes-1 (a column (n, 1) is accepted), else DataError."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{what} of shape {y.shape} for {n} images", f"give one label per image, shape ({n},)")
    if y.dtype == np.bool_ or (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        y = y.astype(np.int64)              # 0/1 flags, or whole numbers stored as floats
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what} have dtype {y.dtype}; expected integer class indices", "pass labels as integers")
    if n and (y.min() < 0 or y.max() >= classes):
        raise DataError(f"{what} range over {int(y.min())}..{int(y.max())} but the network has {classes} classes",
                        f"use 0-based class indices 0..{classes - 1}")
    return y.astype(np.int64)


def check_float32_range(x: np.ndarray, what: str = "data") -> None:
    """Finite values too large for float32 (the runtime's precision) would become inf."""
    if x.dtype.itemsize > 4 and x.dtype != np.bool_ and x.size:
        big = float(np.max(np.abs(x)))
        if big > float(np.finfo(np.float32).max):
            raise DataError(f"{what} has values of magnitude up to {big:.3g}, beyond float32 (the runtime's "
                            f"precision)", "pass images in their natural range, e.g. uint8 0-255 or floats in [0, 1]")


def check_images(x, shape_hint: str, what: str = "data") -> np.ndarray:
    """``x`` as an array of real, finite numbers in float32 range with at least one image, else
    :class:`DataError` (a list, a ragged list, strings, complex or object data, NaN/inf, N = 0)."""
    try:
        x = np.asarray(x)
    except ValueError as e:                 # ragged nested lists
        raise DataError(f"{what} is not a rectangular array ({one_line(e, 160)})",
                        f"pass a numpy array of shape {shape_hint}") from None
    if np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{what} has dtype {x.dtype}; expected real numbers", "pass integer or float images")
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"{what} holds no images (shape {x.shape})", f"pass at least one image, shape {shape_hint}")
    check_finite(x, what)
    check_float32_range(x, what)
    return x


def check_finite(x: np.ndarray, what: str = "data") -> None:
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        n_bad = int(np.count_nonzero(~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1))) if x.ndim else 1
        raise DataError(f"{what} contains NaN or inf values ({n_bad} of {x.shape[0] if x.ndim else 1} images "
                        "affected)", "remove or repair those images")


#: a batch's working memory is kept at most about this large (bytes): big networks get smaller batches
BATCH_BYTES = 2 << 30


def fit_batch(requested: int, bytes_per_image: float, budget: int | None = None) -> int:
    """Images per batch: ``requested``, or fewer so that ``bytes_per_image`` times it stays within
    ``budget`` (default :data:`BATCH_BYTES`); at least 1.  Results never depend on the batch size
    (images are simulated / profiled independently), only peak memory does."""
    budget = BATCH_BYTES if budget is None else budget
    return max(1, min(int(requested), int(budget // max(float(bytes_per_image), 1.0))))


def subset_indices(n: int, limit: int | None, seed: int = SEED) -> np.ndarray:
    """The sorted indices :func:`subset` takes from ``n`` images (all of them when ``limit`` is None or >= n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit <= 0:
        raise DataError(f"limit must be positive, got {limit}", "pass a positive number of images")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def subset(x: np.ndarray, y: np.ndarray | None, limit: int | None, seed: int = SEED):
    """A seeded random subset of ``limit`` images (data files are often sorted by class)."""
    if limit is None or limit >= x.shape[0]:
        return x, y
    idx = subset_indices(x.shape[0], limit, seed)
    return x[idx], (None if y is None else y[idx])


def to_channels_last(x: np.ndarray, hwc: tuple[int, int, int], model_layout: str = "NCHW",
                     what: str = "data", log: Callable[[str], None] | None = None) -> np.ndarray:
    """Return ``x`` as ``(N, H, W, C)`` float32 for a model whose input is ``hwc`` per sample.

    Accepts the model's own layout or its transpose; one-channel data may omit
    the channel axis.  Anything else raises :class:`DataError`.
    """
    h, w, c = (int(v) for v in hwc)
    x = check_images(x, f"(N, {c}, {h}, {w}) or (N, {h}, {w}, {c})", what)
    chw = (c, h, w)
    s = tuple(x.shape[1:])
    if x.ndim == 3 and c == 1 and s == (h, w):
        out = x[..., None]
    elif x.ndim == 4 and s == (h, w, c) and (s != chw or model_layout == "NHWC"):
        out = x
        if model_layout != "NHWC" and log:
            log(f"{what} is channels-last (N,H,W,C) while the model takes NCHW: transposed automatically")
    elif x.ndim == 4 and s == chw:
        out = np.transpose(x, (0, 2, 3, 1))
        if model_layout == "NHWC" and log:
            log(f"{what} is channels-first (N,C,H,W) while the model takes NHWC: transposed automatically")
    else:
        want = f"(N, {c}, {h}, {w})" if model_layout == "NCHW" else f"(N, {h}, {w}, {c})"
        raise DataError(f"{what} has shape {tuple(x.shape)} but the model expects {want}",
                        "pass images of the model's input size (channels first or last)")
    return np.ascontiguousarray(out, dtype=np.float32)
