"""Pure-numpy, dense, time-stepped reference of the spiking semantics.

This is the executable form of ``docs/CONTRACTS.md`` ("Spiking semantics") and
the oracle the event-driven runtime (:mod:`snncc.runtime.network`) is tested
against.  It is slow (every synapse is applied densely at every step with
:func:`snncc.synapses.apply`) and keeps every spike train: use it on small nets.
"""
from __future__ import annotations

import numpy as np

from snncc import nn, synapses
from snncc.analog import preprocess
from snncc.ir import EdgeKind, Graph, IRError


_t2 = nn.ints


def maxgate_reference(counts: np.ndarray, spikes: np.ndarray, kernel, stride, pads, rule: str = "leader") -> np.ndarray:
    """Gate of one step (``counts`` include this step's ``spikes``).

    ``leader`` (the paper's): in each window, the output is the spike of the input with the
    highest count (first in row-major window order on ties; padding never wins).
    ``max``: the output spikes iff the window's highest count rose at this step, so the
    output's count always equals the window's highest count.
    """
    from snncc.nn import conv_out_hw, pad_hw
    n, h, w, c = counts.shape
    kh, kw = _t2(kernel)
    sh, sw = _t2(stride)
    oh, ow = conv_out_hw(h, w, (kh, kw), (sh, sw), _t2(pads))
    cp = pad_hw(counts.astype(np.int64), pads, value=-1)
    sp = pad_hw(spikes, pads, value=0)
    if rule == "max":
        before = pad_hw(counts.astype(np.int64) - spikes, pads, value=-1)
        m_now = np.full((n, oh, ow, c), -1, dtype=np.int64)
        m_before = np.full((n, oh, ow, c), -1, dtype=np.int64)
        for i in range(kh):
            for j in range(kw):
                win = (slice(None), slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
                m_now = np.maximum(m_now, cp[win])
                m_before = np.maximum(m_before, before[win])
        return (m_now > m_before).astype(spikes.dtype)
    if rule != "leader":
        raise IRError(f"unknown maxgate rule {rule!r}")
    best = np.full((n, oh, ow, c), -2, dtype=np.int64)
    out = np.zeros((n, oh, ow, c), dtype=spikes.dtype)
    for i in range(kh):
        for j in range(kw):
            cs = cp[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :]
            ss = sp[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :]
            upd = cs > best
            best = np.where(upd, cs, best)
            out = np.where(upd, ss, out)
    return out


def simulate_reference(graph: Graph, x_nhwc_raw: np.ndarray, T: int, init_membrane: float | None = None,
                       raw: bool = True) -> dict:
    """Simulate ``T`` steps of the spiking-level ``graph`` on a raw channels-last batch.

    Returns a dict with

    * ``spikes``: {population: (N, T, *shape) uint8} spike trains of every
      ``neuron`` and ``maxgate`` population;
    * ``potentials``: (N, T, *out_shape) float64 output potential after each step;
    * ``predictions``: (N, T) int64 argmax of the output potential at each step;
    * ``membrane``: {neuron population: (N, *shape) float32} V after step T;
    * ``counts``: {population: (N, *shape) int64} total spikes per neuron;
    * ``order``: the population names in visiting order.

    ``init_membrane`` (fraction of threshold 1) defaults to ``graph.meta['init_membrane']`` or 0.

    Precision mirrors the event-driven runtime: synaptic currents are computed in
    float64 by :func:`snncc.synapses.apply` and rounded to float32 per edge, membranes
    are float32 (``V <- V + (I + b)``), the output accumulator is float64.
    """
    if init_membrane is None:
        init_membrane = graph.meta.get("init_membrane") or 0.0
    init_membrane = float(init_membrane)
    x = preprocess(graph, x_nhwc_raw) if raw else np.asarray(x_nhwc_raw, dtype=np.float64)
    n = x.shape[0]
    pops = graph.populations()
    order = [p.name for p in pops]
    inp = graph.input.name
    out = graph.output
    if out.op != "output":
        raise IRError(f"sink {out.name!r} is not an output population")

    # constant analog current from the input into each of its targets
    i0: dict[str, np.ndarray] = {}
    for p in pops:
        for src, d in graph.in_edges(p.name):
            if src == inp and d["kind"] is not EdgeKind.DATA:
                i0[p.name] = synapses.apply(d["syn"], x).astype(np.float32)

    V = {p.name: np.full((n,) + tuple(p.shape), init_membrane, dtype=np.float32)
         for p in pops if p.op == "neuron"}
    vout = np.zeros((n,) + tuple(out.shape), dtype=np.float64)
    counts = {p.name: np.zeros((n,) + tuple(p.shape), dtype=np.int64)
              for p in pops if p.op in ("neuron", "maxgate")}
    trains = {name: np.zeros((n, T) + c.shape[1:], dtype=np.uint8) for name, c in counts.items()}
    pot = np.zeros((n, T) + tuple(out.shape), dtype=np.float64)
    pred = np.zeros((n, T), dtype=np.int64)

    for t in range(T):
        s: dict[str, np.ndarray] = {}
        for p in pops:
            if p.op == "input":
                continue
            if p.op == "maxgate":
                (src, d), = graph.in_edges(p.name)
                if src == inp:
                    raise IRError(f"maxgate {p.name!r} on the analog input is not supported")
                # counts of the source, this step included (source was visited first)
                s[p.name] = maxgate_reference(counts[src], s[src], p.attrs["kernel"], p.attrs["stride"],
                                              p.attrs.get("pads", (0, 0, 0, 0)), p.attrs.get("rule", "leader"))
            else:
                cur = np.array(i0[p.name]) if p.name in i0 else np.zeros((n,) + tuple(p.shape), np.float32)
                for src, d in graph.in_edges(p.name):
                    if src == inp:
                        continue
                    if d["kind"] is EdgeKind.DATA:
                        raise IRError(f"population {p.name!r} has a DATA in-edge from {src!r}")
                    cur = cur + synapses.apply(d["syn"], s[src].astype(np.float64)).astype(np.float32)
                b = p.params.get("bias")
                if b is not None:
                    cur = cur + np.asarray(b, dtype=np.float32)
                if p.op == "output":
                    vout = vout + cur.astype(np.float64)
                    continue
                v = V[p.name] + cur
                sp = (v >= np.float32(1.0)).astype(np.uint8)
                V[p.name] = v - sp.astype(np.float32)
                s[p.name] = sp
            counts[p.name] += s[p.name]
            trains[p.name][:, t] = s[p.name]
        pot[:, t] = vout
        pred[:, t] = np.argmax(vout.reshape(n, -1), axis=1)
    return {"spikes": trains, "potentials": pot, "predictions": pred, "membrane": V,
            "counts": counts, "order": order}
