"""Channels-last numpy reference kernels shared by the analog interpreter,
the synapse registry and the dense runtime reference.

All functions take batches ``(N, H, W, C)`` (or ``(N, F)``) in float64/float32
and return the same dtype.
"""
from __future__ import annotations

import numpy as np


def conv_out_hw(h: int, w: int, k: tuple[int, int], stride: tuple[int, int],
                pads: tuple[int, int, int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    if min(k) < 1 or min(stride) < 1 or min(dilation) < 1 or min(pads) < 0:
        raise ValueError(f"window {tuple(k)}, stride {tuple(stride)}, dilation {tuple(dilation)} must be at least 1 "
                         f"and pads {tuple(pads)} at least 0")
    kh = (k[0] - 1) * dilation[0] + 1
    kw = (k[1] - 1) * dilation[1] + 1
    oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - kw) // stride[1] + 1
    if oh <= 0 or ow <= 0:
        raise ValueError(f"window {k} does not fit input {h}x{w} with pads {pads}")
    return oh, ow


def ints(v) -> tuple[int, ...]:
    """An attribute tuple as plain ints."""
    return tuple(int(i) for i in v)


def conv_geometry(attrs: dict) -> tuple:
    """``(stride, pads, dilation, groups)`` of a conv's attributes, ONNX defaults filled in."""
    return (ints(attrs.get("stride", (1, 1))), ints(attrs.get("pads", (0, 0, 0, 0))),
            ints(attrs.get("dilation", (1, 1))), int(attrs.get("groups", 1)))


def conv_shape(w: np.ndarray, attrs: dict, s, what: str = "conv") -> tuple[int, int, int]:
    """Output shape ``(OH, OW, Cout)`` of a conv with weight ``(KH, KW, Cin/groups, Cout)`` on input ``s``."""
    stride, pads, dilation, groups = conv_geometry(attrs)
    if groups < 1 or w.shape[3] % groups:
        raise ValueError(f"{what} has groups={groups}, which must be at least 1 and divide its {w.shape[3]} "
                         "output channels")
    if len(s) != 3 or s[2] != w.shape[2] * groups:
        raise ValueError(f"{what} expects (H, W, {w.shape[2] * groups}) input, got {s}")
    oh, ow = conv_out_hw(s[0], s[1], w.shape[:2], stride, pads, dilation)
    return (oh, ow, w.shape[3])


def conv2d_attrs(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict) -> np.ndarray:
    """:func:`conv2d` with the geometry read from a conv's attributes."""
    return conv2d(x, w, b, *conv_geometry(attrs))


def pad_hw(x: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    t, l, b, r = (int(p) for p in pads)
    if not (t or l or b or r):
        return x
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
           stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups: int = 1) -> np.ndarray:
    """y[n,i,j,co] = b[co] + sum_{kh,kw,ci} xpad[n, i*sh+kh*dh, j*sw+kw*dw, g*Cg+ci] w[kh,kw,ci,co]."""
    n, h, wd, c = x.shape
    kh, kw, cg, cout = w.shape
    if c != cg * groups:
        raise ValueError(f"conv expects {cg * groups} input channels, got {c}")
    oh, ow = conv_out_hw(h, wd, (kh, kw), stride, pads, dilation)
    xp = pad_hw(x, pads)
    sh, sw = stride
    dh, dw = dilation
    out = np.zeros((n, oh, ow, cout), dtype=np.result_type(x, w))
    og = cout // groups
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                       j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
            if groups == 1:
                out += patch @ w[i, j]
            else:
                for g in range(groups):
                    out[..., g * og:(g + 1) * og] += patch[..., g * cg:(g + 1) * cg] @ w[i, j, :, g * og:(g + 1) * og]
    if b is not None:
        out += b
    return out


def pool2d(x: np.ndarray, kernel, stride, pads, mode: str, count_include_pad: bool = False) -> np.ndarray:
    """Average or max pooling, channels-last. Max pooling pads with -inf."""
    n, h, w, c = x.shape
    kh, kw = kernel
    oh, ow = conv_out_hw(h, w, kernel, stride, pads)
    sh, sw = stride
    if mode == "max":
        xp = pad_hw(x, pads, value=-np.inf)
        out = np.full((n, oh, ow, c), -np.inf, dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                out = np.maximum(out, xp[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :])
        return out
    xp = pad_hw(x, pads)
    out = np.zeros((n, oh, ow, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out += xp[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :]
    if count_include_pad or not any(pads):
        return out / (kh * kw)
    ones = pad_hw(np.ones((1, h, w, 1), dtype=x.dtype), pads)
    cnt = np.zeros((1, oh, ow, 1), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cnt += ones[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :]
    return out / cnt


def avgpool_divisor(h: int, w: int, kernel, stride, pads, count_include_pad: bool) -> np.ndarray:
    """Per-output-position divisor (OH, OW) of an average pool."""
    kh, kw = kernel
    oh, ow = conv_out_hw(h, w, kernel, stride, pads)
    if count_include_pad or not any(pads):
        return np.full((oh, ow), float(kh * kw))
    ones = pad_hw(np.ones((1, h, w, 1)), pads)
    cnt = np.zeros((oh, ow))
    sh, sw = stride
    for i in range(kh):
        for j in range(kw):
            cnt += ones[0, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, 0]
    return cnt


def subsample_pad(x: np.ndarray, stride, offset, cpad) -> np.ndarray:
    """Option-A shortcut: ``x[:, off_h::sh, off_w::sw, :]`` then zero-pad channels by ``cpad=(before, after)``."""
    y = x[:, offset[0]::stride[0], offset[1]::stride[1], :]
    if cpad[0] or cpad[1]:
        y = np.pad(y, ((0, 0), (0, 0), (0, 0), (int(cpad[0]), int(cpad[1]))))
    return y
