"""Post-training bias calibration (beyond the paper; the "light" pipeline of
Li et al., *A Free Lunch From ANN: Towards Efficient, Accurate Spiking Neural
Networks Calibration*, ICML 2021).

After normalisation, the firing rate ``r`` of an IF neuron over ``T`` steps
approximates its normalised activation ``a`` (clipped to [0, 1]) but is biased:
quantisation and the residual charge ``V(T)`` (Eq. 9) make the layer's mean rate
drift from the ANN's mean activation, and the drift accumulates with depth.
Bias calibration shifts every hidden layer's per-channel bias ``b`` (a constant
current per step, in normalised units) by the per-channel mean gap::

    b_c <- b_c + mean_{images, positions}( clip(a_c, 0, 1) - r_c )

Because a bias of ``d`` per step moves the rate of an active neuron by ``d``,
one correction per layer cancels the first-order drift.  Layers are corrected
in topological order, in at most ``max_sims`` consecutive groups: each group is
corrected from one simulation in which every upstream group is already corrected
(cost: ``max_sims`` simulations per round, not one per layer).  Correcting all
layers from a single shared simulation over-corrects, because each layer is then
also corrected for upstream drift that the upstream corrections remove (measured
on ResNet-20: worse than no calibration).  Only calibration images are used.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from snncc.analog import run_analog


def calibrate_bias(net, x: np.ndarray, *, timesteps: int = 64, images: int = 128, rounds: int = 1,
                   damping: float = 1.0, sequential: bool = True, max_sims: int = 8, log: Callable[[str], None] | None = None,
                   progress: bool = True) -> dict:
    """Correct the biases of ``net`` (a SpikingNetwork) in place; returns a record stored in meta.

    ``sequential`` (default): layers are corrected group by group in topological order,
    each group from a simulation in which every upstream group is already corrected (as
    in Li et al.'s light pipeline, where the groups are single layers).  To bound the
    cost on deep nets the layers are split into at most ``max_sims`` consecutive groups
    (one simulation each per round).  ``sequential=False`` corrects all layers from one
    shared simulation per round (cheapest, but a layer is then also corrected for the
    upstream drift that the upstream corrections remove, which over-corrects).
    """
    from snncc.data import subset
    from snncc.runtime.network import Network

    log = log or (lambda s: None)
    g = net.graph
    xs, _ = subset(x, None, images, seed=2)
    pops = [p for p in g.populations() if p.op == "neuron" and "bias" in p.params]
    acts = run_analog(g, xs, keep=True)
    target = {p.name: np.clip(np.asarray(acts[p.name]), 0.0, 1.0).reshape(xs.shape[0], -1, p.channels).mean(axis=(0, 1))
              for p in pops}
    del acts

    def gap_of(res, p):
        rate = np.asarray(res.rates[p.name]).reshape(xs.shape[0], -1, p.channels).mean(axis=(0, 1))
        return target[p.name] - rate

    history = []
    if sequential:
        k = max(1, min(len(pops), int(max_sims)))
        groups = [list(grp) for grp in np.array_split(np.array(pops, dtype=object), k) if len(grp)]
    else:
        groups = [pops]
    bar = None
    if progress and sequential:
        from tqdm.auto import tqdm
        bar = tqdm(total=rounds * len(groups), desc="bias calibration", unit="group", leave=False)
    for rnd in range(rounds):
        gaps = []
        for grp in groups:
            res = Network(g).run(xs, timesteps, progress=progress and not sequential,
                                 record=tuple(p.name for p in grp))
            for p in grp:
                gap = gap_of(res, p)
                p.params["bias"] = (p.params["bias"] + damping * gap).astype(p.params["bias"].dtype)
                gaps.append(float(np.mean(np.abs(gap))))
            if bar is not None:
                bar.update(1)
        history.append(float(np.mean(gaps)))
        log(f"bias calibration round {rnd + 1}/{rounds}: mean |rate gap| {history[-1]:.4f}")
    if bar is not None:
        bar.close()
    net._net = None
    rec = {"timesteps": timesteps, "images": int(xs.shape[0]), "rounds": rounds, "sequential": bool(sequential),
           "groups": len(groups),
           "mean_abs_gap": history}
    g.meta["bias_calibration"] = rec
    return rec
