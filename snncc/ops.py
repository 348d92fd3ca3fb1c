"""Registry of IR node ops: shape inference and analog (floating-point) semantics.

``OPS[op].forward(node, inputs)`` takes the list of operand batches (already
passed through their edge's synapse, if any) and returns the node's output
batch, channels-last.  ``OPS[op].infer_shape(node, in_shapes)`` returns the
per-sample output shape.  Populations (``neuron``, ``output``) sum their
operands: this *is* the sum-node semantics of Section 3.2 of the paper.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from snncc import nn


@dataclass(frozen=True)
class OpDef:
    infer_shape: Callable
    forward: Callable


OPS: dict[str, OpDef] = {}


def register(name: str, infer_shape: Callable, forward: Callable) -> None:
    OPS[name] = OpDef(infer_shape, forward)


_t2 = nn.ints


def _one(in_shapes, node=None):
    if len(in_shapes) != 1:
        raise ValueError(f"expects 1 operand, got {len(in_shapes)}")
    return in_shapes[0]


def _same_all(node, in_shapes):
    if not in_shapes:
        raise ValueError("has no operands")
    if any(tuple(s) != tuple(in_shapes[0]) for s in in_shapes):
        raise ValueError(f"operand shapes differ: {in_shapes}")
    return tuple(in_shapes[0])


def _bias(node, x):
    b = node.params.get("bias")
    return x if b is None else x + b


def _relu(x, cap):
    y = np.maximum(x, 0)
    return y if cap is None else np.minimum(y, cap)


register("input", lambda n, s: tuple(n.shape), lambda n, xs: xs[0])

# populations ----------------------------------------------------------------
register("neuron", _same_all, lambda n, xs: _relu(_bias(n, sum(xs)), n.attrs.get("cap")))
register("output", _same_all, lambda n, xs: _bias(n, sum(xs)))


def _pool_shape(n, s):
    s = _one(s, n)
    oh, ow = nn.conv_out_hw(s[0], s[1], _t2(n.attrs["kernel"]), _t2(n.attrs["stride"]), _t2(n.attrs["pads"]))
    return (oh, ow, s[2])


def _maxpool(n, xs):
    return nn.pool2d(xs[0], _t2(n.attrs["kernel"]), _t2(n.attrs["stride"]), _t2(n.attrs["pads"]), "max")


register("maxgate", _pool_shape, _maxpool)

# op level -------------------------------------------------------------------


def _conv_shape(n, s):
    return nn.conv_shape(n.params["weight"], n.attrs, _one(s, n))


def _conv(n, xs):
    return nn.conv2d_attrs(xs[0], n.params["weight"], n.params.get("bias"), n.attrs)


register("conv", _conv_shape, _conv)


def _dense_shape(n, s):
    s = _one(s, n)
    w = n.params["weight"]
    if len(s) != 1 or s[0] != w.shape[0]:
        raise ValueError(f"dense expects ({w.shape[0]},), got {s}")
    return (w.shape[1],)


register("dense", _dense_shape, lambda n, xs: _bias(n, xs[0] @ n.params["weight"]))


def _chan_shape(key):
    def f(n, s):
        s = _one(s, n)
        if n.params[key].shape not in ((s[-1],), (1,), ()):
            raise ValueError(f"per-channel {key} of shape {n.params[key].shape} vs input {s}")
        return tuple(s)
    return f


def _bn(n, xs):
    p, eps = n.params, float(n.attrs.get("eps", 1e-5))
    return (xs[0] - p["mean"]) / np.sqrt(p["var"] + eps) * p["scale"] + p["bias"]


register("batchnorm", _chan_shape("scale"), _bn)
register("affine", _chan_shape("scale"), lambda n, xs: xs[0] * n.params["scale"] + n.params["shift"])
register("relu", lambda n, s: tuple(_one(s, n)), lambda n, xs: _relu(xs[0], n.attrs.get("cap")))
register("add", _same_all, lambda n, xs: sum(xs))


def _pad_shape(n, s):
    s = _one(s, n)
    t, l, b, r = _t2(n.attrs.get("pads", (0, 0, 0, 0)))
    cb, ca = _t2(n.attrs.get("cpad", (0, 0)))
    if len(s) != 3:
        raise ValueError(f"pad needs (H, W, C), got {s}")
    return (s[0] + t + b, s[1] + l + r, s[2] + cb + ca)


def _pad(n, xs):
    t, l, b, r = _t2(n.attrs.get("pads", (0, 0, 0, 0)))
    cb, ca = _t2(n.attrs.get("cpad", (0, 0)))
    return np.pad(xs[0], ((0, 0), (t, b), (l, r), (cb, ca)), constant_values=float(n.attrs.get("value", 0.0)))


register("pad", _pad_shape, _pad)
register("avgpool", _pool_shape,
         lambda n, xs: nn.pool2d(xs[0], _t2(n.attrs["kernel"]), _t2(n.attrs["stride"]), _t2(n.attrs["pads"]),
                                 "avg", bool(n.attrs.get("count_include_pad", False))))
register("maxpool", _pool_shape, _maxpool)


def _gap_shape(n, s):
    s = _one(s, n)
    if len(s) != 3:
        raise ValueError(f"global pool needs (H, W, C), got {s}")
    return (1, 1, s[2])


register("globalavgpool", _gap_shape, lambda n, xs: xs[0].mean(axis=(1, 2), keepdims=True))
register("flatten", lambda n, s: (int(np.prod(_one(s, n))),), lambda n, xs: xs[0].reshape(xs[0].shape[0], -1))


def _sub_shape(n, s):
    s = _one(s, n)
    st, off = _t2(n.attrs["stride"]), _t2(n.attrs.get("offset", (0, 0)))
    return (-(-(s[0] - off[0]) // st[0]), -(-(s[1] - off[1]) // st[1]), s[2])


register("subsample", _sub_shape,
         lambda n, xs: xs[0][:, n.attrs.get("offset", (0, 0))[0]::n.attrs["stride"][0],
                             n.attrs.get("offset", (0, 0))[1]::n.attrs["stride"][1], :])
