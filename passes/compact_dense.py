"""Store a dense synapse whose rows repeat per position once per channel (spiking level).

Maths
-----
``merge_linear`` folds a global average pool into the classifier that follows it
(``globalavgpool -> flatten -> dense``): the dense map then reads every position of the
pooled ``(H, W, C)`` population, ``W'[(h W + w) C + c, o] = W[c, o] / (H W)``, so its
``H W C`` rows are ``H W`` copies of one ``C``-row block.  That is exact but ``H W`` times
the memory (a ResNet-50 at 224x224: 7 x 7 x 2048 x 1000 weights instead of 2048 x 1000).
Here such a synapse becomes a *tiled* dense synapse: weight ``B = W'[:C]`` and attribute
``tile = H W``, meaning ``z_o = sum_s x_s B[s mod C, o]`` (``s`` the channels-last flat index
of the source neuron, ``s mod C`` its channel).  A synapse is tiled only when its rows are
*bit for bit* ``tile`` copies of the first ``C`` (checked, never assumed).

PRE: spiking level (after ``eliminate_sums``).
POST: no untiled dense synapse whose ``H W C`` rows repeat with period ``C`` (``H W > 1``).
Guarantee: the same map (every weight the runtime adds is the same float; the analog view
sums the positions before the product, so it is exact up to float rounding); idempotent.
"""
from __future__ import annotations

import numpy as np

from snncc import synapses
from snncc.ir import Graph

NAME = "compact_dense"


def _period_rows(w: np.ndarray, c: int) -> int:
    """``tile`` when the rows of ``w`` are that many exact copies of its first ``c`` rows, else 1."""
    f = w.shape[0]
    if c <= 0 or f <= c or f % c:
        return 1
    blocks = w.reshape(f // c, c, -1)
    return f // c if np.array_equal(blocks, np.broadcast_to(blocks[:1], blocks.shape)) else 1


def run(graph: Graph, ctx) -> Graph:
    for p in graph.populations():
        for src, d in graph.in_edges(p.name):
            syn = d.get("syn")
            if syn is None or syn.op != "dense" or synapses.dense_tile(syn) != 1:
                continue
            shape = graph.node(src).shape
            c = int(shape[-1]) if len(shape) == 3 else 0
            w = syn.params["weight"]
            tile = _period_rows(w, c)
            if tile > 1:
                syn.params["weight"] = np.ascontiguousarray(w[:c])
                syn.attrs["tile"] = tile
    return graph
