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
in topological order, in consecutive groups of ``layers_per_group`` layers (default
2): each group is corrected from one simulation in which every upstream group is
already corrected (cost per round: one segment simulation per group, the group and the one
before it, replaying the recorded spike trains of earlier layers -- about two passes through
the network in all).  Correcting all
layers from a single shared simulation over-corrects, because each layer is then
also corrected for upstream drift that the upstream corrections remove (measured
on ResNet-20: worse than no calibration).  Only calibration images are used.

The group size was chosen on calibration images the conversion did not use
(``benchmarks/bias_groups.py``, 1024 held-out training images, the shared CIFAR-10
ResNets with the ``best`` preset; docs/results.md, "Bias calibration group size"):
on ResNet-56 (55 layers) groups of 2 (28 simulations) lose 11 points less than the
former 8 groups of 7 at T=16 and T=32, 3.0 at T=64 and 2.3 at T=128 (paired, over
two standard errors); groups of 3 are within noise of 2 from T=32 on.  On ResNet-20
(19 layers) sizes 1, 2 and 3, on ResNet-32 (31 layers) sizes 2 and 3 are within noise
of one another.  A second round (``rounds=2``) over 8 groups diverged on ResNet-56
(51.6 points lost at T=128).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from snncc.analog import run_analog
from snncc.presets import LAYERS_PER_GROUP
from snncc.snnfile import param_dtype


#: at most this many bytes of recorded spike trains (images x steps x neurons kept at once, one
#: bit each); a bigger calibration simulates each group with every layer before it instead
TRAINS_BUDGET = 2 << 30


def _trains_bytes(g, groups, images: int, timesteps: int) -> int:
    """The most bytes of spike trains the segments of :func:`_segments` hold at once."""
    from snncc.runtime.network import packed_size

    size = {n.name: packed_size(int(np.prod(n.shape))) for n in g.populations()}
    most = 0
    for seg in _segments(g, groups):
        seg["store"].update({k: None for k in seg["keep"]})
        most = max(most, sum(size[k] for k in seg["store"]))
    return most * int(images) * int(timesteps)


def _segments(g, groups):
    """The simulations of the sequential bias calibration, one per group, each a segment of the network.

    The simulation that corrects group k must see every earlier group corrected.  Group k-1 was
    corrected after the previous simulation, so the segment re-simulates it with group k: it runs
    from group k-1's first population to group k's last, replaying the spike trains of
    the earlier populations that feed it (recorded by earlier segments, where they were already
    final) and keeping those of its own final part (up to group k-1's last) that later segments
    read.  Same spike trains as a simulation of the whole prefix (tests), at about twice the cost
    of one pass through the network for all groups together instead of one prefix per group.
    Yields dicts with ``first``, ``last``, ``group``, ``replay`` and ``keep``; ``store`` (shared)
    takes each segment's kept trains and is what ``replay`` reads.  Trains no longer read are dropped.
    """
    order = [n.name for n in g.populations() if n.op != "input"]
    pos = {name: i for i, name in enumerate(order)}
    last_reader = {name: max((pos[d] for d in g.succs(name)), default=-1) for name in order}
    store: dict = {}
    start = 0                   # segment k runs from `start`; its final part, [start, group k's first), is kept
    for grp in groups:
        end = pos[grp[-1].name]
        final_end = pos[grp[0].name]    # everything before group k is final in this segment
        for name in [k for k in store if last_reader[k] < start]:
            del store[name]
        need = {s for p in order[start:end + 1] for s in g.preds(p) if s in pos and pos[s] < start}
        keep = [q for q in order[start:final_end] if last_reader[q] >= final_end]
        yield {"first": order[start], "last": order[end], "group": grp, "store": store,
               "replay": {k: store[k] for k in need}, "keep": keep}
        start = final_end


def calibrate_layers(g) -> list:
    """The populations bias calibration corrects: neuron layers with a bias, in topological order."""
    return [p for p in g.populations() if p.op == "neuron" and "bias" in p.params]


def group_layers(g, layers_per_group: int = LAYERS_PER_GROUP, max_sims: int | None = None) -> list[list]:
    """The sequential calibration's groups: consecutive :func:`calibrate_layers` in groups of
    ``layers_per_group`` (the last may be smaller; sizes balanced by ``np.array_split``), at most
    ``max_sims`` groups when given."""
    pops = calibrate_layers(g)
    if int(layers_per_group) < 1:
        raise ValueError(f"layers_per_group must be >= 1, got {layers_per_group}")
    k = -(-len(pops) // int(layers_per_group))
    if max_sims is not None:
        k = min(k, int(max_sims))
    k = max(1, min(len(pops), k))
    return [list(grp) for grp in np.array_split(np.array(pops, dtype=object), k) if len(grp)]


def calibrate_bias(net, x: np.ndarray, *, timesteps: int = 64, images: int = 128, rounds: int = 1,
                   damping: float = 1.0, sequential: bool = True, layers_per_group: int = LAYERS_PER_GROUP,
                   max_sims: int | None = None, log: Callable[[str], None] | None = None,
                   progress: bool = True) -> dict:
    """Correct the biases of ``net`` (a SpikingNetwork) in place; returns a record stored in meta.

    ``sequential`` (default): layers are corrected group by group in topological order,
    each group from a simulation in which every upstream group is already corrected (as
    in Li et al.'s light pipeline, where the groups are single layers).  The layers are
    split into consecutive groups of ``layers_per_group`` (the last may be smaller), at
    most ``max_sims`` groups when given (one simulation each per round).
    ``sequential=False`` corrects all layers from one shared simulation per round
    (cheapest, but a layer is then also corrected for the upstream drift that the
    upstream corrections remove, which over-corrects).
    """
    from snncc.data import subset
    from snncc.runtime.network import Network

    log = log or (lambda s: None)
    g = net.graph
    xs, _ = subset(x, None, images, seed=2)
    pops = calibrate_layers(g)
    acts = run_analog(g, xs, keep=True)
    target = {p.name: np.clip(np.asarray(acts[p.name]), 0.0, 1.0).reshape(xs.shape[0], -1, p.channels).mean(axis=(0, 1))
              for p in pops}
    del acts

    def gap_of(rates, p):
        rate = np.asarray(rates[p.name]).reshape(xs.shape[0], -1, p.channels).mean(axis=(0, 1))
        return target[p.name] - rate

    store32 = param_dtype(g) == "float32"

    def correct(rates, grp, gaps):
        for p in grp:
            gap = gap_of(rates, p)
            b = p.params["bias"] + damping * gap
            if store32:     # what the .snn will store, before the downstream groups are corrected against it
                b = b.astype(np.float32)
            p.params["bias"] = b.astype(p.params["bias"].dtype)
            gaps.append(float(np.mean(np.abs(gap))))

    history = []
    if sequential:
        groups = group_layers(g, layers_per_group, max_sims)
    else:
        groups = [pops]
    bar = None
    if progress and sequential:
        from tqdm.auto import tqdm
        bar = tqdm(total=rounds * len(groups), desc="bias calibration", unit="group", leave=False)
    # kept spike trains within budget: segments replay them; else each group runs with everything before it
    replay = sequential and _trains_bytes(g, groups, xs.shape[0], timesteps) <= TRAINS_BUDGET
    for rnd in range(rounds):
        gaps = []
        if not sequential:
            res = Network(g).run(xs, timesteps, progress=progress, record=tuple(p.name for p in pops))
            correct(res.rates, pops, gaps)
        else:
            for seg in _segments(g, groups):
                if replay:
                    rates, kept = Network(g).run_segment(xs, timesteps, seg["first"], seg["last"], seg["replay"],
                                                         keep=seg["keep"], record=tuple(p.name for p in seg["group"]))
                    seg["store"].update(kept)
                else:
                    seg["store"].update({k: None for k in seg["keep"]})
                    rates = Network(g).run(xs, timesteps, progress=False, record=tuple(p.name for p in seg["group"]),
                                           until=seg["last"]).rates
                correct(rates, seg["group"], gaps)
                if bar is not None:
                    bar.update(1)
        history.append(float(np.mean(gaps)))
        log(f"bias calibration round {rnd + 1}/{rounds} ({len(groups)} simulation{'s' * (len(groups) != 1)} of "
            f"{xs.shape[0]} images, {timesteps} steps): mean |rate gap| {history[-1]:.4f}")
    if bar is not None:
        bar.close()
    net._net = None
    rec = {"timesteps": timesteps, "images": int(xs.shape[0]), "rounds": rounds, "sequential": bool(sequential),
           "groups": len(groups), "layers_per_group": int(layers_per_group),
           "mean_abs_gap": history}
    g.meta["bias_calibration"] = rec
    return rec


#: ``--init-membrane auto`` candidates (fractions of threshold)
INIT_CANDIDATES = (0.0, 0.125, 0.25, 0.375, 0.5)


def search_init_membrane(net, x: np.ndarray, y: np.ndarray | None, *, timesteps: int, images: int,
                         candidates=INIT_CANDIDATES, ann_pred: np.ndarray | None = None,
                         log: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    """Choose the initial membrane potential of ``net`` on calibration images and set it (in place).

    Each candidate ``V(0)`` (a fraction of threshold) is simulated for ``timesteps`` steps on the
    calibration subset the zeta search uses (:func:`snncc.compensation.zeta_images`) and scored by
    accuracy against ``y`` (or, without labels, agreement with ``ann_pred``, default the network's
    analog view); the best wins, ties going to the larger ``V(0)``.  Why it matters: a half-threshold
    start removes most of the start-up delay, but lets a neuron whose ANN activation is 0 fire on
    its first positive inputs before the negative ones arrive; with ``--rate-scale K`` the same
    input reaches a neuron spread over K times more steps, each checked against the threshold, so
    such spurious spikes grow with K and a lower start pays (docs/usage.md, docs/results.md).
    Returns the record stored in ``meta['init_membrane_search']``.
    """
    from tqdm.auto import tqdm

    from snncc.compensation import SCORE_WORDS, certified_accuracy, search_target, zeta_images

    log = log or (lambda s: None)
    g = net.graph
    xs, ys = zeta_images(x, y, images)
    target, criterion = search_target(g, xs, ys, ann_pred)
    scores = []
    with tqdm(total=len(candidates), desc="initial membrane search", unit="V0", leave=False,
              disable=not progress) as pb:
        for v0 in candidates:
            g.meta["init_membrane"] = float(v0)
            scores.append({"init_membrane": float(v0), "accuracy": certified_accuracy(g, xs, timesteps, target)[0]})
            pb.update(1)
    best = max(scores, key=lambda s: (s["accuracy"], s["init_membrane"]))
    g.meta["init_membrane"] = best["init_membrane"]
    net._net = None
    record = {"timesteps": int(timesteps), "images": int(xs.shape[0]),
              "criterion": criterion, "candidates": scores,
              "init_membrane": best["init_membrane"]}
    g.meta["init_membrane_search"] = record
    log(f"initial membrane: chose {best['init_membrane']:g} x threshold (calibration "
        f"{SCORE_WORDS[criterion]} {best['accuracy']:.4f} at "
        f"T={timesteps}; " + ", ".join(f"{s['init_membrane']:g}: {s['accuracy']:.4f}" for s in scores) + ")")
    return record
