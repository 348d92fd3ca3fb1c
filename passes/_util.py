"""Small graph-rewriting helpers shared by the passes (not a pass)."""
from __future__ import annotations

import numpy as np

from snncc.errors import ModelError
from snncc.ir import EdgeKind, Graph


def data_pred(g: Graph, name: str) -> str:
    """The single DATA operand of a unary op-level node."""
    ins = g.in_edges(name)
    if len(ins) != 1:
        raise ModelError(f"node {name!r} ({g.node(name).op}) has {len(ins)} operands, expected 1",
                         "re-export the model; the front end should produce unary ops here")
    return ins[0][0]


def only_consumer(g: Graph, name: str) -> str | None:
    s = g.succs(name)
    return s[0] if len(s) == 1 else None


def can_bypass(g: Graph, old: str, new: str) -> bool:
    """Whether moving ``old``'s out-edges to ``new`` creates no parallel edge / self loop."""
    for v in g.succs(old):
        if v == new or (g.nx.has_edge(new, v) and v != old):
            return False
    return True


def bypass(g: Graph, old: str, new: str) -> None:
    """Give ``new`` all out-edges of ``old`` (same kind/port/synapse), then delete ``old``.

    ``new`` inherits ``old``'s ``onnx_tensor``/``onnx_perm`` when it has none of its own
    output tensor worth keeping (the value after ``old`` is what now flows out of ``new``).
    """
    outs = [(v, dict(d)) for _, v, d in g.nx.out_edges(old, data=True)]
    on, nn_ = g.node(old), g.node(new)
    if on.onnx_tensor is not None:
        nn_.onnx_tensor, nn_.onnx_perm = on.onnx_tensor, on.onnx_perm
    else:
        nn_.onnx_tensor, nn_.onnx_perm = None, None
    g.remove_node(old)
    for v, d in outs:
        g.add_edge(new, v, d["kind"], d["port"], d["syn"])


def rewire_input(g: Graph, node: str, old_src: str, new_src: str) -> None:
    d = dict(g.edge(old_src, node))
    g.nx.remove_edge(old_src, node)
    g.add_edge(new_src, node, d["kind"], d["port"], d["syn"])


def is_data_edge(g: Graph, u: str, v: str) -> bool:
    return g.edge(u, v)["kind"] is EdgeKind.DATA


def chan(v, c: int) -> np.ndarray:
    """Broadcast a per-channel parameter (scalar, (1,) or (C,)) to float64 (C,)."""
    return np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1) if np.ndim(v) else
                           np.asarray(v, dtype=np.float64), (c,)).astype(np.float64)


def graph_dtype(g: Graph):
    """float64 if any floating param of the graph is float64, else float32."""
    dts = []
    for n in g.nodes():
        dts += [v.dtype for v in n.params.values() if np.issubdtype(v.dtype, np.floating)]
    for _, _, d in g.nx.edges(data=True):
        if d.get("syn") is not None:
            dts += [v.dtype for v in d["syn"].params.values() if np.issubdtype(v.dtype, np.floating)]
    return np.float64 if any(dt == np.float64 for dt in dts) or not dts else np.float32


def cast_like(x: np.ndarray, ref) -> np.ndarray:
    dt = ref.dtype if hasattr(ref, "dtype") and np.issubdtype(ref.dtype, np.floating) else np.float64
    return np.asarray(x).astype(dt)
