"""Readable text dump of an IR state (``--dump-ir``); not a pass."""
from __future__ import annotations

import numpy as np

from snncc.ir import Graph


def _arr(v) -> str:
    a = np.asarray(v)
    if a.size == 0:
        return f"{a.shape} {a.dtype} (empty)"
    return f"{a.shape} {a.dtype} [{float(np.min(a)):.6g}, {float(np.max(a)):.6g}]"


def _attrs(d: dict) -> str:
    parts = []
    for k, v in sorted(d.items()):
        if isinstance(v, (list, tuple)) and len(v) > 8:
            v = f"[{len(v)} values, {min(v):.4g}..{max(v):.4g}]"
        parts.append(f"{k}={v}")
    return "{" + ", ".join(parts) + "}"


def _meta(k, v) -> str:
    if isinstance(v, dict) and len(v) > 6:
        return f"{k}: {{{len(v)} entries}}"
    s = repr(v)
    return f"{k}: {s if len(s) <= 200 else s[:197] + '...'}"


def dump_text(graph: Graph, title: str = "") -> str:
    lines = [f"# {title}" if title else "# IR", f"# {len(graph)} nodes, {graph.nx.number_of_edges()} edges, "
             f"ops {graph.summary()}"]
    for k in sorted(graph.meta):
        lines.append("# meta " + _meta(k, graph.meta[k]))
    for n in graph.nodes():
        extra = f" onnx={n.onnx_tensor}" if n.onnx_tensor else ""
        lines.append(f"{n.name}: {n.op} shape={tuple(n.shape)} attrs={_attrs(n.attrs)}{extra}")
        for k, v in sorted(n.params.items()):
            lines.append(f"    param {k} {_arr(v)}")
        for u, d in graph.in_edges(n.name):
            syn = d["syn"]
            s = "" if syn is None else (f" syn={syn.op} attrs={_attrs(syn.attrs)} "
                                        + " ".join(f"{k}={_arr(v)}" for k, v in sorted(syn.params.items())))
            lines.append(f"    <- {u} [{d['kind'].value} port={d['port']}]{s}")
    return "\n".join(lines) + "\n"
