"""Data-based normalisation on the residual DAG (Eq. 4-6).

Maths
-----
Each population ``l`` gets a scale ``lambda_l`` (Eq. 4-5: the p-th percentile of
its ANN activations from ``profile_activations``; per channel with
``channel_wise``):

* ``input`` -> 1 (the analog input current is not rate coded);
* ``neuron`` (ReLU or avg-pool population) -> its own percentile; a dead
  layer/channel (percentile 0) gets 1; a capped ReLU (Clip) gets
  ``min(lambda, cap)``;
* ``maxgate`` -> lambda of its source (max commutes with a positive per-channel
  scale, and the gate forwards its source's spikes unchanged);
* ``output`` -> one scalar, the layer-wise percentile of the logits (never per
  class: that would change the argmax).

Every synapse ``u -> v`` becomes ``S'(x) = S(lambda_u x) / lambda_v``, i.e.
``W <- W lambda_{l-1} / lambda_l`` (Eq. 5) through
``snncc.synapses.rescale(syn, a_in=lambda_u, b_out=1/lambda_v)``; shortcut edges
likewise get ``lambda_in / lambda_out`` (Eq. 6).  With ``shortcut_norm=False``
(the paper's Table 2 baseline) identity/subsample_pad shortcut edges keep their
weight (scale 1).  Biases ``b_v <- b_v / lambda_v`` and caps ``cap_v <- cap_v / lambda_v``.

By induction over the topological order, the normalised activation of ``v``
equals ``a_v / lambda_v`` (ReLU and Clip commute with a positive scale).

Rate scale (beyond the paper, ``ctx.rate_scale = K``, default 1): every
``neuron``/``output`` lambda above is multiplied by ``K`` (the input keeps 1;
max gates follow their source).  Interior synapses ``lambda_u / lambda_v`` are
unchanged; the first layer's analog current and every bias and cap are divided by
``K``, so every normalised activation -- and every firing rate it encodes -- is
``1/K`` of the unscaled network's: ``K`` times fewer spikes and synaptic
operations per step, at the cost of a ``K`` times coarser rate resolution per step
(the network needs about ``K`` times the steps for the same accuracy; for runs
far longer than the accuracy needs, e.g. T=350 on a ResNet-20 that is converged
at T=64).  The argmax of the output is unchanged (the output is divided by ``K``).

PRE: spiking level; ``meta['activations']`` present.
POST: ``meta['lambda']`` ({pop: float | list}, rate scale included), ``meta['rate_scale']``, ``meta['channel_wise']``,
``meta['shortcut_norm']``, ``meta['percentile']``, ``meta['normalized'] = True``.
Guarantee (``shortcut_norm=True``): analog output = ANN logits / lambda_out
exactly (up to rounding), and the p-th percentile of every non-dead neuron
population's normalised activation on the calibration data is ``1/K`` (per channel
with ``channel_wise``).  With ``shortcut_norm=False`` the output is not
preserved (that is the baseline's error).
Idempotence: a flag ``meta['normalized']`` makes a second run a no-op (weights
are never rescaled twice; to renormalise, start again from the op-level graph).
"""
from __future__ import annotations

import numpy as np

from snncc import synapses
from snncc.errors import ModelError
from snncc.ir import EdgeKind, Graph

NAME = "normalize"


def _clean(lam: np.ndarray) -> np.ndarray:
    lam = np.asarray(lam, np.float64).copy()
    lam[~(lam > 0)] = 1.0          # dead layer/channel (or NaN): keep weights as they are
    return lam


def lambdas(graph: Graph, channel_wise: bool) -> dict[str, np.ndarray]:
    """lambda per population as a float64 vector (length 1 or C)."""
    acts = graph.meta.get("activations") or {}
    lam: dict[str, np.ndarray] = {}
    for p in graph.populations():
        if p.op == "input":
            lam[p.name] = np.ones(1)
            continue
        if p.op == "maxgate":
            (src,) = graph.preds(p.name)
            lam[p.name] = lam[src]
            continue
        if p.name not in acts:
            raise ModelError(f"no activation profile for population {p.name!r}",
                             "run profile_activations before normalize")
        a = acts[p.name]
        if p.op == "neuron" and channel_wise:
            if a.get("channel") is None:
                raise ModelError(f"population {p.name!r} was profiled layer-wise but channel-wise lambda was asked",
                                 "re-run profile_activations with channel_wise=True")
            v = _clean(np.asarray(a["channel"], np.float64))
        else:
            v = _clean(np.asarray([a["layer"]], np.float64))
        cap = p.attrs.get("cap")
        if cap is not None:
            v = np.minimum(v, np.asarray(cap, np.float64))
            v = _clean(v)
        lam[p.name] = v
    return lam


def run(graph: Graph, ctx) -> Graph:
    if graph.meta.get("normalized"):
        if ctx is not None:
            ctx.log("normalize: graph already normalised; skipped")
        return graph
    if not graph.is_spiking_level():
        raise ModelError("normalize needs a spiking-level graph", "run eliminate_sums first")
    channel_wise = bool(getattr(ctx, "channel_wise", False))
    shortcut_norm = bool(getattr(ctx, "shortcut_norm", True))
    rate_scale = getattr(ctx, "rate_scale", None)
    rate_scale = 1.0 if rate_scale is None else float(rate_scale)
    if not (np.isfinite(rate_scale) and rate_scale > 0):
        raise ModelError(f"rate scale must be a positive number, got {rate_scale}",
                         "e.g. --rate-scale 4, or 1 for none")
    lam = lambdas(graph, channel_wise)
    if rate_scale != 1.0:
        for p in graph.populations():
            if p.op in ("neuron", "output"):
                lam[p.name] = lam[p.name] * rate_scale
        for p in graph.populations():          # max gates follow their (now scaled) source
            if p.op == "maxgate":
                lam[p.name] = lam[graph.preds(p.name)[0]]
    for u, v, d in list(graph.nx.edges(data=True)):
        if d["kind"] is EdgeKind.DATA:
            continue
        syn = d["syn"]
        if (not shortcut_norm and d["kind"] is EdgeKind.SHORTCUT and syn.op in ("identity", "subsample_pad")):
            continue
        synapses.rescale(syn, lam[u], 1.0 / lam[v], graph.node(u).shape)
    for p in graph.populations():
        if p.op in ("neuron", "output") and "bias" in p.params:
            b = p.params["bias"]
            p.params["bias"] = (np.asarray(b, np.float64) / lam[p.name]).astype(b.dtype)
        if p.op == "neuron" and p.attrs.get("cap") is not None:
            c = np.asarray(p.attrs["cap"], np.float64) / lam[p.name]
            p.attrs["cap"] = float(c[0]) if c.size == 1 else [float(x) for x in c]
    graph.meta["lambda"] = {k: (float(v[0]) if v.size == 1 else [float(x) for x in v]) for k, v in lam.items()}
    graph.meta["rate_scale"] = rate_scale
    graph.meta["channel_wise"] = channel_wise
    graph.meta["shortcut_norm"] = shortcut_norm
    if ctx is not None and getattr(ctx, "percentile", None) is not None:
        graph.meta.setdefault("percentile", float(ctx.percentile))
    graph.meta["normalized"] = True
    return graph
