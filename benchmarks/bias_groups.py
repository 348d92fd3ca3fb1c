"""Bias-calibration group sizes scored on held-out calibration images: how many layers per simulation?

    python benchmarks/bias_groups.py MODEL.snn --data CALIB.npz [--sizes 2,0,1,3] [--images 1024]
                                     [--calibrate-bias 64] [-T 128] [--threads K] [--json OUT]

``MODEL.snn`` is a conversion made with ``--calibrate-bias 0`` (others are refused).  For each size N
in ``--sizes`` a copy of it is bias-calibrated as ``snncc --calibrate-bias T --calibrate-bias-group N``
would do it (``snncc.calibration.calibrate_bias`` on the conversion's own seeded ``--calib-limit``
subset, read from the ``.snn``'s provenance); N = 0 means no bias calibration.  Every copy is then
simulated for ``-T`` steps on calibration images the conversion did *not* use (a seeded subset of the
complement, as ``zeta_heldout.py`` takes it).  Printed per size and checkpoint (powers of two up to T,
and T): the loss against the analog view of the uncalibrated network (the source model up to the
lambda scale) and the paired difference in accuracy against the first size, +- standard errors.
Use calibration data, never the test split: this is a selection experiment.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zeta_heldout import heldout, paired  # noqa: E402

from snncc.argtypes import nonnegative_int, positive_int  # noqa: E402


def checkpoints(T: int) -> list[int]:
    """``snncc eval``'s checkpoints (powers of two up to T, and T) from 16 on; [T] for a shorter T."""
    from snncc.evaluate import checkpoints as every
    return [t for t in every(T) if t >= 16] or [T]


def score(net, xc: np.ndarray, x: np.ndarray, y: np.ndarray, sizes: list[int], calib_steps: int, T: int,
          threads: int | None, progress: bool = True) -> tuple[np.ndarray, list[dict]]:
    """(analog correctness, one record per size with per-image correctness at every checkpoint)."""
    from tqdm.auto import tqdm

    from snncc.analog import run_analog
    from snncc.api import SpikingNetwork
    from snncc.calibration import calibrate_bias
    from snncc.runtime.network import Network
    ann_ok = (np.argmax(run_analog(net.graph, x), axis=1) == y).astype(int)
    rows = []
    for n in tqdm(sizes, desc="group sizes", unit="size", disable=not progress):
        cand = SpikingNetwork(net.graph.copy())
        t0 = time.time()
        groups = 0
        if n:
            groups = calibrate_bias(cand, xc, timesteps=calib_steps, layers_per_group=n, progress=False)["groups"]
        secs = time.time() - t0
        r = Network(cand.graph).run(x, T, progress=False, threads=threads)
        rows.append({"layers_per_group": n, "groups": groups, "calibrate_seconds": secs,
                     "ok_at": {str(t): (r.predictions[:, t - 1] == y).astype(int).tolist() for t in checkpoints(T)}})
    return ann_ok, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("snn", help="a .snn converted with --calibrate-bias 0")
    ap.add_argument("--data", required=True, help="the calibration .npz the model was converted with (labels needed)")
    ap.add_argument("--sizes", default="2,0,1,3",
                    help="comma-separated layers per group (0: no calibration); the first is the reference "
                         "(default 2,0,1,3)")
    ap.add_argument("--calibrate-bias", type=positive_int, default=64, metavar="T",
                    help="steps of the bias calibration (default 64, the best preset's)")
    ap.add_argument("--images", type=positive_int, default=1024, help="held-out images to score on (default 1024)")
    ap.add_argument("-T", type=positive_int, default=128, help="steps simulated on the held-out images (default 128)")
    ap.add_argument("--threads", type=nonnegative_int, default=0, help="threads (0: all cores)")
    ap.add_argument("--json", help="write the per-image results here")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in a.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes takes comma-separated integers, got {a.sizes!r}")
    if not sizes or min(sizes) < 0:
        ap.error(f"--sizes takes integers >= 0, got {a.sizes!r}")
    import snncc
    from snncc.data import load_arrays, subset
    from snncc.errors import SnnccError
    try:
        net = snncc.load(a.snn)
        if "bias_calibration" in net.graph.meta:
            raise SnnccError(f"{a.snn} is already bias-calibrated",
                             "convert it again with --calibrate-bias 0 and pass that .snn")
        x, y = load_arrays(a.data, "data")
        if y is None:
            raise SnnccError(f"{a.data} has no labels", "use a calibration file with a 'y' array")
        limit = (net.graph.meta.get("provenance") or {}).get("options", {}).get("calib_limit")
        idx = heldout(x.shape[0], limit, a.images)
        xc = net.prepare(subset(x, None, limit)[0], "calibration data")   # what the conversion calibrates on
        xs, ys = net.prepare(x[idx]), np.asarray(y)[idx].astype(np.int64)
        ann_ok, rows = score(net, xc, xs, ys, sizes, a.calibrate_bias, a.T, a.threads or None,
                             progress=not a.quiet)
    except SnnccError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ts = checkpoints(a.T)
    print(f"{len(idx)} held-out calibration images (not among the conversion's {limit or 'all'}); analog accuracy "
          f"{100 * ann_ok.mean():.2f}%; bias calibration {a.calibrate_bias} steps; loss (points) at "
          + ", ".join(f"T={t}" for t in ts) + f"; paired difference vs {sizes[0]} layers per group")
    for r in rows:
        r["loss_at"], r["diff_at"] = {}, {}
        for t in ts:
            r["loss_at"][str(t)] = paired(ann_ok, r["ok_at"][str(t)])
            r["diff_at"][str(t)] = paired(r["ok_at"][str(t)], rows[0]["ok_at"][str(t)])
        name = f"{r['layers_per_group']} per group ({r['groups']} sims)" if r["layers_per_group"] else "none"
        print(f"{name:>22s} {r['calibrate_seconds']:6.0f} s  " + "  ".join(
            f"{r['loss_at'][str(t)][0]:6.2f} ({r['diff_at'][str(t)][0]:+.2f} +- {r['diff_at'][str(t)][1]:.2f})"
            for t in ts))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"snn": a.snn, "data": a.data, "calib_limit": limit, "images": int(len(idx)), "T": a.T,
                       "calibrate_bias": a.calibrate_bias, "indices": idx.tolist(), "ann_ok": ann_ok.tolist(),
                       "runs": rows}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
