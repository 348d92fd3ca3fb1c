"""Fold the input-normalisation chain into the input stage (``meta['preprocess']``).

Maths
-----
The input node's value is ``x0 = (x * scale - mean) / std`` (per channel) of the
raw image ``x``.  An ``affine`` node ``y = x0 * s + t`` directly after the input
(an in-graph ``(x - m) / d`` or ``x * a + b`` normalisation, a standalone BN)
is the same kind of map, so with ``s != 0``::

    y = (x * scale - mean') / std'   with   std' = std / s,   mean' = mean - t * std / s

(``mean``/``std`` of ``None`` read as 0/1).  Repeated for a chain of affines.

Why not into the first conv: that conv zero-pads *its input*, i.e. the
normalised image; folding ``s, t`` into its weights would turn the padded zeros
into ``t``-dependent values at the border -- not exact.  Folding into the input
stage keeps padding where it was.

``meta['preprocess_external']`` (set once, before the first change) keeps the
user-supplied preprocessing only, i.e. what the *ONNX model* expects to be
applied to raw data (used by ``profile_activations``); ``meta['preprocess']`` is
the full preprocessing the IR and the runtime apply.

PRE: op level.  POST: the input's single consumer is not an ``affine``.
Guarantee: exact in the analog view (up to rounding of mean'/std').
"""
from __future__ import annotations

import copy

import numpy as np

from snncc.ir import EdgeKind, Graph

from ._util import chan

NAME = "fold_input_affine"


def _pre(meta) -> dict:
    p = meta.get("preprocess") or {}
    return {"scale": float(p.get("scale", 1.0)), "mean": p.get("mean"), "std": p.get("std")}


def run(graph: Graph, ctx=None) -> Graph:
    graph.meta.setdefault("preprocess_external", copy.deepcopy(_pre(graph.meta)))
    while True:
        inp = graph.input
        succ = graph.succs(inp.name)
        if len(succ) != 1:
            break
        aff = graph.node(succ[0])
        if aff.op != "affine" or graph.edge(inp.name, aff.name)["kind"] is not EdgeKind.DATA:
            break
        c = inp.channels
        s, t = chan(aff.params["scale"], c), chan(aff.params["shift"], c)
        if np.any(s == 0):
            break
        p = _pre(graph.meta)
        mean = chan(0.0 if p["mean"] is None else p["mean"], c)
        std = chan(1.0 if p["std"] is None else p["std"], c)
        new_std = std / s
        new_mean = mean - t * std / s
        graph.meta["preprocess"] = {**(graph.meta.get("preprocess") or {}), "scale": p["scale"],
                                    "mean": [float(v) for v in new_mean], "std": [float(v) for v in new_std]}
        outs = [(v, dict(d)) for _, v, d in graph.nx.out_edges(aff.name, data=True)]
        graph.remove_node(aff.name)
        for v, d in outs:
            graph.add_edge(inp.name, v, d["kind"], d["port"], d["syn"])
        if ctx is not None:
            ctx.log(f"fold_input_affine: folded {aff.name!r} into the input preprocessing")
    return graph
