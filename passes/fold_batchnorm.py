"""Batch-normalisation folding (Eq. 1).

Maths
-----
Inference-mode BN computes ``y = gamma (x - mu) / sigma + beta`` with
``sigma = sqrt(var + eps)`` per channel.  When ``x = W * a + b`` is the output of
a conv/dense layer, ``y = W' * a + b'`` with (Eq. 1)::

    W'[..., c] = gamma_c W[..., c] / sigma_c
    b'_c       = gamma_c (b_c - mu_c) / sigma_c + beta_c

(the output channel is the last weight axis for both conv ``(KH, KW, Cin/g, Cout)``
and dense ``(Fin, Fout)``).  A BN whose operand is not a conv/dense, or whose
conv/dense has other consumers, becomes an ``affine`` node
``y = x * s + t`` with ``s = gamma/sigma``, ``t = beta - mu gamma/sigma``.

PRE: op level; every ``batchnorm`` has one DATA operand.
POST: no ``batchnorm`` node remains.
Guarantee: exact in the analog view (up to floating-point rounding of the folded
parameters, which keep the dtype of the layer's weights).
"""
from __future__ import annotations

import numpy as np

from snncc.ir import Graph, Node

from ._util import bypass, can_bypass, chan, data_pred, only_consumer

NAME = "fold_batchnorm"


def bn_scale_shift(bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (s, t) with ``bn(x) = x * s + t`` (float64)."""
    c = bn.channels
    p = bn.params
    sigma = np.sqrt(chan(p["var"], c) + float(bn.attrs.get("eps", 1e-5)))
    s = chan(p["scale"], c) / sigma
    t = chan(p["bias"], c) - chan(p["mean"], c) * s
    return s, t


def fold_affine_into_linear(lin: Node, s: np.ndarray, t: np.ndarray) -> None:
    """``lin`` (conv/dense) followed by ``x*s+t`` -> one conv/dense (in place)."""
    w = lin.params["weight"]
    b = lin.params.get("bias")
    b64 = np.zeros(w.shape[-1]) if b is None else np.asarray(b, np.float64)
    lin.params["weight"] = (np.asarray(w, np.float64) * s).astype(w.dtype)
    lin.params["bias"] = (b64 * s + t).astype(w.dtype)


def run(graph: Graph, ctx=None) -> Graph:
    for bn in graph.by_op("batchnorm"):
        s, t = bn_scale_shift(bn)
        src = data_pred(graph, bn.name)
        lin = graph.node(src)
        if lin.op in ("conv", "dense") and only_consumer(graph, src) == bn.name and can_bypass(graph, bn.name, src):
            fold_affine_into_linear(lin, s, t)
            bypass(graph, bn.name, src)
        else:
            dt = next((v.dtype for v in bn.params.values()), np.float32)
            bn.op = "affine"
            bn.attrs = {}
            bn.params = {"scale": s.astype(dt), "shift": t.astype(dt)}
    return graph
