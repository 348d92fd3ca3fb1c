"""Propagation-error compensation (Eq. 9-14), the fixed-zeta hook.

Maths
-----
An IF neuron with reset by subtraction fires at rate ``r = a - V(T)/T``: the
residual charge gives a per-layer propagation error ``E = V(t)/t`` (Eq. 9-11)
that accumulates with depth, so deep layers fire too little.  Eq. 12-14
compensate it by a factor ``zeta > 1``: every hidden layer's input (weights
and bias) is multiplied by ``zeta`` -- equivalently its threshold becomes
``1/zeta``.  Here: every incoming synapse of every ``neuron`` population
(SYNAPSE and SHORTCUT edges, avg-pool populations included) gets
``rescale(a_in=1, b_out=zeta)`` and ``bias <- zeta * bias``; ``maxgate`` and
``output`` are untouched.

``apply_zeta(graph, zeta)`` sets the *total* compensation to ``zeta``: it scales
by ``zeta / meta['zeta']`` (1 when absent), so applying it twice equals once,
and the automatic search (``snncc.compensation``) can call it on copies.  A graph stored at
``param_dtype`` float32 (``snncc.snnfile.set_param_dtype``) stays so: the scaled parameters are
rounded to float32 again.

PRE: spiking level (normally after ``normalize``).  POST: ``meta['zeta']``.
Guarantee: not exact in the analog view for ``zeta != 1`` (by design: it
changes the network to offset the spiking error); ``zeta = 1`` is a no-op.
"""
from __future__ import annotations

import numpy as np

from snncc import synapses
from snncc.errors import SnnccError
from snncc.ir import EdgeKind, Graph
from snncc.snnfile import param_dtype, set_param_dtype

NAME = "compensate"


def apply_zeta(graph: Graph, zeta: float) -> Graph:
    """Make the graph's compensation factor ``zeta`` (in place; returns the graph)."""
    zeta = float(zeta)
    if not np.isfinite(zeta) or zeta <= 0:
        raise SnnccError(f"compensation factor zeta must be a positive number, got {zeta}",
                         "use e.g. --compensate 1.05 or --compensate auto")
    old = float(graph.meta.get("zeta", 1.0) or 1.0)
    f = zeta / old
    if f != 1.0:
        for p in graph.populations():
            if p.op != "neuron":
                continue
            for u, d in graph.in_edges(p.name):
                if d["kind"] is not EdgeKind.DATA:
                    synapses.rescale(d["syn"], 1.0, f, graph.node(u).shape)
            if "bias" in p.params:
                b = p.params["bias"]
                p.params["bias"] = (np.asarray(b, np.float64) * f).astype(b.dtype)
    graph.meta["zeta"] = zeta
    return set_param_dtype(graph, param_dtype(graph))      # the scaled weights at the stored precision


def run(graph: Graph, ctx) -> Graph:
    zeta = getattr(ctx, "zeta", None)
    if zeta is None:
        graph.meta.setdefault("zeta", 1.0)
        return graph
    return apply_zeta(graph, zeta)
