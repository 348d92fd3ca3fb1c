"""Analog (floating-point, ReLU kept) execution of any IR state.

This is the oracle every pass is checked with: the op-level graph must match
onnxruntime on the original model, and each pass must preserve the outputs
(up to the final lambda scale after normalisation).
"""
from __future__ import annotations

import numpy as np

from snncc import synapses
from snncc.ir import EdgeKind, Graph
from snncc.ops import OPS


def preprocess(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Raw channels-last batch -> the input node's value: ``(x*scale - mean)/std``."""
    return apply_preprocess(graph.meta.get("preprocess") or {}, x)


#: the largest preprocessed input value the float32 runtime can take
_F32_MAX = float(np.finfo(np.float32).max)


def apply_preprocess(p: dict, x: np.ndarray) -> np.ndarray:
    """``(x*scale - mean)/std`` with the values of the dict ``p`` (float64); finite data that this makes
    non-finite or beyond float32's range (an absurd scale, mean or std) is a :class:`DataError`."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        y = np.asarray(x, dtype=np.float64) * float(p.get("scale", 1.0))
        if p.get("mean") is not None:
            y = y - np.asarray(p["mean"], dtype=np.float64)
        if p.get("std") is not None:
            y = y / np.asarray(p["std"], dtype=np.float64)
    # (non-finite data itself is left to the callers' checks, which name the image)
    if y.size and not np.abs(y).max() <= _F32_MAX and np.isfinite(np.asarray(x, np.float64)).all():
        from snncc.errors import DataError
        given = ", ".join(f"{k} {p[k]}" for k in ("scale", "mean", "std") if p.get(k) is not None)
        raise DataError(f"the preprocessing ({given}) turns the input into values beyond float32's range",
                        "check --input-scale, --mean and --std (for a .snn: convert it again with sensible ones)")
    return y


def run_analog(graph: Graph, x: np.ndarray, keep: bool = False, raw: bool = True):
    """Execute the graph on a channels-last batch ``x``.

    ``raw=True`` applies ``graph.meta['preprocess']`` first.  Returns the sink's
    output, or with ``keep=True`` a dict of every node's output.
    """
    v = preprocess(graph, x) if raw else np.asarray(x, dtype=np.float64)
    vals: dict[str, np.ndarray] = {}
    for node in graph.nodes():
        if node.op == "input":
            vals[node.name] = v
            continue
        ins = []
        for src, d in graph.in_edges(node.name):
            a = vals[src]
            if d["kind"] is not EdgeKind.DATA:
                a = synapses.apply(d["syn"], a)
            ins.append(a)
        vals[node.name] = OPS[node.op].forward(node, ins)
    return vals if keep else vals[graph.output.name]


def run_batched(fn, x: np.ndarray, fixed: int | None, batch: int) -> list:
    """``fn`` over ``x`` in batches: of ``batch`` images, or of exactly ``fixed`` images for an ONNX
    model exported with a fixed batch size (the last batch padded by repeating its last image and
    the padding's results dropped).  ``fn(xb)`` returns a list of arrays with images on axis 0;
    the result is the list of their concatenations."""
    step = int(fixed) if fixed else max(1, int(batch))
    outs: list[list[np.ndarray]] = []
    for i in range(0, x.shape[0], step):
        xb = x[i:i + step]
        k = xb.shape[0]
        if fixed and k < fixed:
            xb = np.concatenate([xb, np.repeat(xb[-1:], fixed - k, axis=0)])
        outs.append([np.asarray(o)[:k] for o in fn(xb)])
    return [np.concatenate(parts) for parts in zip(*outs)]
