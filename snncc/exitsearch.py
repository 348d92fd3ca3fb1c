"""Choosing the stable-prediction exit's window on calibration images (``--exit-stable auto``).

The exit (runtime option ``exit_stable = m``, docs/runtime.md "Exit on a stable prediction")
stops an image after the first step ``s < T`` (``s`` steps run) whose prediction the ``m - 1``
steps before it share, all ``m`` of them at or after the output's first input ``f`` (0-based)::

    stop(m) = min { s in [max(1, f + m), T) : pred[s - m] = ... = pred[s - 1] }   (else T)

and answers ``pred[stop(m) - 1]``.  It is a heuristic: a window too short for the network's
start-up stops on an answer the output has not settled on yet (ResNet-56 with ``m = 32``: 9.6
points lost on test images), so ``m`` is chosen on calibration images instead of guessed.

Search: one simulation of ``--exit-images`` calibration images (default 1024) for ``T`` steps
without any exit gives every image's per-step predictions ``pred`` and first input ``f``; from them :func:`exit_steps`
computes, exactly as the runtime would, where each image stops and what it answers for
*every* ``m`` in ``1 .. T-1`` at once.  With ``run[t]`` the length of the run of equal
predictions ending at step ``t`` and ``cap[t] = min(run[t], t + 1 - f)``, the exit for ``m`` is
after the first ``t < T - 1`` with ``cap[t] >= m``: the first ``t`` where the running maximum of
``cap`` reaches ``m`` (a binary search per image).  ``loss(m)`` = the full run's accuracy minus
the exit's, paired on the same images, in points, ``se(m)`` its standard error.  The chosen
``m`` is the smallest from which *every* longer window has ``loss + se <= tolerance`` (default
1 point), so a short window that scores well by luck, with longer ones failing, is not chosen.
Without labels the answers are scored against the source model's (as the zeta search does).
If even ``m = T - 1`` fails, no window is stored (``m = None``: ``exit_stable="auto"`` then runs
the full ``T`` steps).  The record in ``meta['exit_stable']`` keeps the window, its loss, the
mean steps it ran and the losses of a few other windows.

Why accuracy and not agreement with the full run: on ResNet-20 (512 held-out calibration images,
T=350) the exit after 32 equal steps keeps the full run's answer on only 91% of the images but
loses no accuracy (its accuracy +0.20 +- 1.16 points against the full run's): the answers it
changes are the network's uncertain ones, wrong as often before as after.  A 99%-agreement rule
chose m = 173 on 256 calibration images; this rule chooses 34 on 1024 (and 173 on 256: the
standard errors of a small sample make the window long, the safe side).

The reference is the answer at the search's ``T`` (``--zeta-timesteps``); a network later run
for more steps is compared with a later answer.  Only calibration images are used (a seeded
subset, not the one the zeta search scores on).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from snncc.presets import ZETA_TIMESTEPS

#: the most calibration accuracy (points, plus one standard error) a window and every longer one may lose
TOLERANCE = 1.0
#: calibration images the window is chosen on: one simulation of them (not one per candidate, as in the zeta
#: search), and the standard errors decide how long the window is (ResNet-20, T=350: 256 images chose 173
#: steps, 1024 chose 34)
EXIT_IMAGES = 1024


def exit_steps(pred: np.ndarray, first: np.ndarray, m) -> tuple[np.ndarray, np.ndarray]:
    """The stable-prediction exit from a full run, for one window ``m`` or an array of them.

    ``pred`` (N, T) per-step predictions of a run without exit, ``first`` (N,) the step (0-based)
    each image's output first received input (-1: never).  Returns ``(steps, answers)``, each
    ``(N,)`` for a scalar ``m`` or ``(N, len(m))``: the steps the runtime's ``exit_stable = m``
    runs and the prediction it ends on (``T`` and ``pred[:, -1]`` where it never stops)."""
    pred = np.asarray(pred)
    first = np.asarray(first, dtype=np.int64)
    n, T = pred.shape
    ms = np.atleast_1d(np.asarray(m, dtype=np.int64))
    if np.any(ms <= 0):
        raise ValueError(f"exit windows must be positive, got {ms[ms <= 0][0]}")
    run = np.ones((n, T), dtype=np.int64)       # length of the run of equal predictions ending at t
    for t in range(1, T):
        run[:, t] = np.where(pred[:, t] == pred[:, t - 1], run[:, t - 1] + 1, 1)
    cap = np.minimum(run, np.arange(1, T + 1)[None, :] - first[:, None])
    cap[first < 0] = 0
    cap[:, T - 1] = 0                            # no exit after the last step: that is the full run
    reach = np.maximum.accumulate(cap, axis=1)   # non-decreasing: the first t with reach >= m is the exit
    steps = np.full((n, ms.size), T, dtype=np.int64)
    for i in range(n):
        t = np.searchsorted(reach[i], ms, side="left")
        steps[i] = np.where(t < T - 1, t + 1, T)
    answers = pred[np.arange(n)[:, None], steps - 1]
    if np.ndim(m) == 0:
        return steps[:, 0], answers[:, 0]
    return steps, answers


def choose_window(pred: np.ndarray, first: np.ndarray, target: np.ndarray, tolerance: float = TOLERANCE) -> dict:
    """The smallest window ``m`` from which every longer one loses at most ``tolerance`` points against the
    full run, counting one standard error: ``loss(m) + se(m) <= tolerance``, where ``loss(m)`` is the full
    run's share of images answering ``target`` (labels, or the source model's answers) minus the exit's,
    in points, paired per image.  With its loss, steps and the losses of a few other windows."""
    from snncc.evaluate import paired_difference
    n, T = np.shape(pred)
    target = np.asarray(target)
    full_ok = np.asarray(pred)[:, -1] == target
    out = {"tolerance": float(tolerance), "timesteps": int(T), "images": int(n),
           "full_score": float(np.mean(full_ok)) if n else None}
    if T < 2 or n < 2:
        out.update(m=None, loss=None, loss_se=None, mean_steps=float(T))
        return out
    ms = np.arange(1, T)
    steps, answers = exit_steps(pred, first, ms)
    diff = [paired_difference(full_ok, answers[:, j] == target) for j in range(ms.size)]
    loss = 100 * np.array([d for d, _ in diff])
    se = 100 * np.array([e for _, e in diff])
    bad = np.flatnonzero(loss + se > tolerance + 1e-9)   # (1 image of 200: 0.5 + 0.5 points, not over 1)
    k = int(bad[-1]) + 1 if bad.size else 0        # after the last window that fails
    if k >= ms.size:
        out.update(m=None, loss=None, loss_se=None, mean_steps=float(T))
        return out
    out.update(m=int(ms[k]), loss=float(loss[k]), loss_se=float(se[k]), mean_steps=float(steps[:, k].mean()),
               agreement=float(np.mean(answers[:, k] == np.asarray(pred)[:, -1])))
    show = sorted({int(v) for v in (8, 16, 32, 64, 128, 256, 512) if v < T} | {int(ms[k])})
    out["loss_at"] = {str(v): [float(loss[v - 1]), float(se[v - 1]), float(steps[:, v - 1].mean())] for v in show}
    return out


def exit_images(x: np.ndarray, y: np.ndarray | None, images: int):
    """The calibration images (and labels) the window is chosen on: a seeded subset of ``images``,
    another one than the zeta search's."""
    from snncc.data import subset
    return subset(x, y, images, seed=2)


def search_exit_stable(net, x: np.ndarray, y: np.ndarray | None, *, timesteps: int = ZETA_TIMESTEPS,
                       images: int = EXIT_IMAGES, tolerance: float = TOLERANCE, ann_pred: np.ndarray | None = None,
                       log: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    """Choose the exit window on calibration images ``x`` (channels-last raw) and store it in
    ``net.graph.meta['exit_stable']``; returns the record.  Scored against the labels ``y``; without
    them against ``ann_pred`` (the source model's answers on :func:`exit_images`; default: the
    network's own analog view), as the zeta search does."""
    from snncc.compensation import SCORE_WORDS, search_target
    log = log or (lambda s: None)
    xs, ys = exit_images(x, y, images)
    if images > xs.shape[0]:
        log(f"exit window: --exit-images {images} is more than the {xs.shape[0]} calibration images: using all of them")
    target, criterion = search_target(net.graph, xs, ys, ann_pred)
    r = net.runtime.run(xs, timesteps, progress=progress)
    rec = choose_window(r.predictions, r.first_input, target, tolerance)
    rec["criterion"] = criterion
    net.graph.meta["exit_stable"] = rec
    words = SCORE_WORDS[criterion]
    if rec["m"] is None:
        log(f"exit window: even the longest window ({timesteps - 1} steps) loses more than {tolerance:g} point"
            f"{'s' * (tolerance != 1)} of calibration {words} against T={timesteps}: none stored "
            f"(exit_stable='auto' runs all steps)")
    else:
        log(f"exit window: m = {rec['m']} ({rec['mean_steps']:.1f} of {timesteps} steps on average; calibration "
            f"{words} {0.0 - rec['loss']:+.2f} +- {rec['loss_se']:.2f} points against the full run on "
            f"{rec['images']} images, every longer window within {tolerance:g} point{'s' * (tolerance != 1)} "
            f"counting one standard error)")
    return rec
