"""Propagation-error compensation search (Hu et al., Section 3.4, Eq. 9-14).

Propagation error of layer ``l`` after ``t`` steps is the charge not yet emitted
as spikes, ``E_l(t) = V_l(t) / t`` (Eq. 9-11), averaged over the layer's neurons.
It accumulates with depth roughly as ``E_l = p * q**l`` (Table 1).  The
compensation multiplies every hidden layer's synaptic weights (and bias) by a
factor ``zeta`` (equivalently, lowers the threshold to ``1/zeta``) so that
firing rates are not systematically short of the normalised activations.

Search (``--compensate auto``), on calibration images only:

1. simulate the uncompensated SNN, measure ``E_l`` per hidden layer depth ``l``;
2. fit ``log E_l = log p + l log q`` by least squares, report ``p``, ``q`` and
   the adjusted R^2;
3. ``tau_max = 1 / r_max`` with ``r_max`` the highest firing rate in the last
   hidden layer (a larger ``zeta`` would saturate it);
4. try ``zeta`` step-wise around ``q`` inside ``(1, tau_max)`` (plus ``zeta=1``),
   in increasing order, and keep the one with the best calibration accuracy
   (agreement with the ANN when there are no labels); ties go to the smaller
   factor.  The scan stops once ``patience`` successive candidates all score
   below the best so far: the factor compounds over depth (``zeta**L`` at depth
   ``L``), so past its peak the accuracy only falls (ResNet-20/32/56: 10-14
   candidates, the peak at the 2nd-4th), and the skipped simulations are about
   half of the search's cost.  ``patience=None`` tries them all.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from snncc.analog import run_analog
from snncc.presets import ZETA_IMAGES, ZETA_TIMESTEPS


def depth_of(graph) -> dict[str, int]:
    """Neuron-layer depth: longest number of neuron populations on a path from the input."""
    depth: dict[str, int] = {}
    for n in graph.nodes():
        preds = graph.preds(n.name)
        d = max((depth[p] for p in preds), default=0)
        depth[n.name] = d + (1 if n.op == "neuron" else 0)
    return depth


def fit_exponential(depths, errors) -> dict:
    """Least-squares fit of ``E = p q^l`` in log space; returns p, q, adjusted R^2, n."""
    l = np.asarray(depths, dtype=float)
    e = np.asarray(errors, dtype=float)
    ok = e > 0
    l, e = l[ok], e[ok]
    if l.size < 3:
        return {"p": float("nan"), "q": float("nan"), "adj_r2": float("nan"), "n": int(l.size)}
    y = np.log(e)
    A = np.stack([np.ones_like(l), l], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = A @ coef
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    n, k = l.size, 1
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - k - 1)
    return {"p": float(np.exp(coef[0])), "q": float(np.exp(coef[1])), "adj_r2": float(adj), "n": int(n)}


def layer_errors(graph, result) -> tuple[list[int], list[float]]:
    """(depth, mean |E|) per hidden neuron layer, from a runtime RunResult."""
    depth = depth_of(graph)
    by_depth: dict[int, list[float]] = {}
    for n in graph.populations():
        if n.op == "neuron" and n.name in result.prop_error:
            by_depth.setdefault(depth[n.name], []).append(abs(float(np.mean(result.prop_error[n.name]))))
    ds = sorted(by_depth)
    return ds, [float(np.mean(by_depth[d])) for d in ds]


def candidates(q: float, tau_max: float, steps: int = 6, step: float = 0.01) -> list[float]:
    """``zeta`` values step-wise around ``q`` inside ``(1, tau_max)``, plus 1 (no compensation)."""
    centre = q if np.isfinite(q) and q > 1 else 1.0 + step
    vals = {1.0}
    for k in range(-steps, steps + 1):
        z = round(centre + k * step, 6)
        if 1.0 < z < tau_max:
            vals.add(z)
    return sorted(vals)


def scan(cands: list[float], score: Callable[[float], dict], patience: int | None = 3) -> list[dict]:
    """Score ``cands`` in order (``score(z)`` -> dict with ``accuracy``); stop after ``patience`` successive
    candidates below the best so far (``None``: score them all).  Returns the scores of those tried."""
    scores: list[dict] = []
    best, worse = -np.inf, 0
    for z in cands:
        s = score(z)
        scores.append(s)
        worse = worse + 1 if s["accuracy"] < best else 0
        best = max(best, s["accuracy"])
        if patience is not None and worse >= patience:
            break
    return scores


def zeta_images(x: np.ndarray, y: np.ndarray | None, images: int):
    """The calibration images (and labels) the zeta search scores on: a seeded subset of ``images``."""
    from snncc.data import subset
    return subset(x, y, images, seed=1)


SCORE_WORDS = {"labels": "accuracy", "ann_agreement": "agreement with the source model"}


def search_target(graph, xs: np.ndarray, ys: np.ndarray | None, ann_pred: np.ndarray | None = None):
    """What a calibration search (zeta, initial membrane) scores against, and the criterion's name:
    the labels ``ys``; without them ``ann_pred`` (default: ``graph``'s analog view on ``xs``)."""
    if ys is not None:
        return np.asarray(ys), "labels"
    if ann_pred is None:
        ann_pred = np.argmax(run_analog(graph, xs), axis=1)
    return np.asarray(ann_pred), "ann_agreement"


def certified_accuracy(graph, xs: np.ndarray, timesteps: int, target: np.ndarray):
    """(share of ``xs`` whose prediction at ``timesteps`` is ``target``, the run).  The certified early
    exit stops an image once its answer is provably the full-T one, so the score is the full-T score
    at a fraction of the cost (per-step results after an image's exit are not simulated)."""
    from snncc.runtime.network import Network
    r = Network(graph).run(xs, timesteps, progress=False, early_exit=True)
    return float(np.mean(r.predictions[:, -1] == target)), r


def search_zeta(net, x: np.ndarray, y: np.ndarray | None, *, timesteps: int = ZETA_TIMESTEPS,
                images: int = ZETA_IMAGES, steps: int = 6, step: float = 0.01, patience: int | None = 3,
                log: Callable[[str], None] | None = None, progress: bool = True,
                ann_pred: np.ndarray | None = None) -> dict:
    """Choose ``zeta`` on calibration images ``x`` (channels-last raw) and apply it to ``net``.

    The search is over the *total* compensation: a network that already has one (``meta['zeta']``)
    is first brought back to zeta = 1.  Without labels ``y`` a candidate scores by agreement with
    ``ann_pred`` (predictions of the source model on :func:`zeta_images`; default: the network's own
    analog view)."""
    from snncc.passes import apply_zeta

    log = log or (lambda s: None)
    g = net.graph
    if float(g.meta.get("zeta", 1.0) or 1.0) != 1.0:
        apply_zeta(g, 1.0)
        net._net = None
    xs, ys = zeta_images(x, y, images)
    if images > xs.shape[0]:
        log(f"compensation: --zeta-images {images} is more than the {xs.shape[0]} calibration images: using all of them")
    target, criterion = search_target(g, xs, ys, ann_pred)
    last = [n for n in g.populations() if n.op == "neuron"]
    depth = depth_of(g)
    last_name = max(last, key=lambda n: depth[n.name]).name if last else None
    base = net.runtime.run(xs, timesteps, progress=progress, record=(last_name,) if last_name else ())
    ds, es = layer_errors(g, base)
    fit = fit_exponential(ds, es)
    # r_max: highest firing rate of the last hidden layer, over its neurons (mean over images)
    rmax = float(np.max(np.mean(base.rates[last_name], axis=0))) if last_name else 0.0
    tau_max = 1.0 / rmax if rmax > 0 else 2.0
    cands = candidates(fit["q"], tau_max, steps, step)
    log(f"compensation: E = {fit['p']:.3g} * {fit['q']:.4f}^l (adj. R^2 {fit['adj_r2']:.3f}), "
        f"tau_max {tau_max:.3f}; zeta candidates {cands}")
    from tqdm.auto import tqdm

    from snncc.evaluate import paired_difference
    pb = tqdm(total=len(cands), desc="zeta search", unit="zeta", leave=False, disable=not progress)
    base_ok = base.predictions[:, -1] == target

    def score(z):
        trial = g.copy()
        apply_zeta(trial, z)
        # (with the early exit, the error below is measured at each image's exit step)
        if z == 1.0:
            r, acc = base, float(np.mean(base.predictions[:, -1] == target))
        else:
            acc, r = certified_accuracy(trial, xs, timesteps, target)
        err = float(np.mean(layer_errors(trial, r)[1] or [0.0]))
        gain, se = paired_difference(r.predictions[:, -1] == target, base_ok)   # per image, against zeta = 1
        pb.update(1)
        return {"zeta": z, "accuracy": acc, "mean_error": err, "gain": gain, "gain_se": se}

    with pb:
        scores = scan(cands, score, patience)
    best = max(scores, key=lambda s: (s["accuracy"], -s["zeta"]))
    apply_zeta(g, best["zeta"])
    net._net = None
    record = {"fit": fit, "depths": ds, "errors": es, "tau_max": tau_max, "timesteps": timesteps,
              "images": int(xs.shape[0]), "criterion": criterion,
              "candidates": scores, "untried": cands[len(scores):], "zeta": best["zeta"]}
    g.meta["compensation"] = record
    log(f"compensation: chose zeta {best['zeta']} (calibration {SCORE_WORDS[criterion]} {best['accuracy']:.4f}, "
        f"{100 * best['gain']:+.2f} +- {100 * best['gain_se']:.2f} points over zeta 1 on the same images)"
        + (f"; stopped after {len(scores)} of {len(cands)} candidates ({patience} in a row below the best)"
           if len(scores) < len(cands) else ""))
    return record
