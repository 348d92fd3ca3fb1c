"""Compensation factors scored on held-out calibration images: does a zeta carry over?

    python benchmarks/zeta_heldout.py MODEL.snn --data CALIB.npz [--zetas 1,1.0135] [--images 1024]
                                      [-T 350] [--threads K] [--json OUT]

The zeta search (``--compensate auto``) picks the factor by accuracy on ``--zeta-images`` calibration
images, which are also among those the lambdas were profiled on.  This script re-scores factors on
calibration images the conversion did *not* use: the complement of its seeded ``--calib-limit``
subset (read from the ``.snn``'s provenance), of which it takes a seeded ``--images`` subset.  Each
factor is applied to a copy of the network as its total compensation (``apply_zeta``: weights and
biases of every hidden neuron layer times zeta) and simulated for ``T`` steps without early exit.
Printed per factor: accuracy at T/2 and T, the loss against the analog view of the network without
compensation (the source model up to the lambda scale, when no bias calibration ran), and the
paired difference against the first factor, +- its standard error.  Use calibration data, never the test split: this is a selection experiment.
``--save-images OUT.npz`` writes those held-out images instead, for ``snncc eval`` (longer T, plots).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from snncc.argtypes import nonnegative_int, positive_floats, positive_int


def heldout(n: int, calib_limit: int | None, images: int) -> np.ndarray:
    """Indices of ``images`` of the ``n`` calibration images outside the conversion's subset."""
    from snncc.data import subset_indices
    from snncc.errors import DataError
    rest = np.setdiff1d(np.arange(n), subset_indices(n, calib_limit))
    if rest.size == 0:
        raise DataError(f"the conversion used all {n} images of --data (--calib-limit {calib_limit})",
                        "pass a calibration file with images the conversion did not see, or convert "
                        "with a smaller --calib-limit")
    return rest[subset_indices(rest.size, images, seed=2)]


def score(net, x: np.ndarray, y: np.ndarray, zetas: list[float], T: int, threads: int | None,
          progress: bool = True) -> tuple[np.ndarray, list[dict]]:
    """(analog predictions, one record per zeta with per-image correctness at T/2 and T)."""
    from tqdm.auto import tqdm

    from snncc.passes import apply_zeta
    from snncc.runtime.network import Network
    from snncc.analog import run_analog
    plain = net.graph.copy()
    apply_zeta(plain, 1.0)                      # the reference: the network without compensation
    ann = np.argmax(run_analog(plain, x), axis=1)
    rows = []
    for z in tqdm(zetas, desc="zeta", unit="zeta", disable=not progress):
        g = net.graph.copy()
        apply_zeta(g, z)
        r = Network(g).run(x, T, progress=False, threads=threads)
        rows.append({"zeta": z, "ok_half": (r.predictions[:, T // 2 - 1] == y).astype(int).tolist(),
                     "ok": (r.predictions[:, T - 1] == y).astype(int).tolist()})
    return ann, rows


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of ``a - b`` (per-image 0/1 correctness), in points."""
    from snncc.evaluate import paired_difference
    mean, se = paired_difference(a, b)
    return 100 * mean, 100 * se


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("snn")
    ap.add_argument("--data", required=True, help="the calibration .npz the model was converted with (labels needed)")
    ap.add_argument("--zetas", type=positive_floats, default=[1.0],
                    help="comma-separated total compensation factors (default: 1); the first is the reference")
    ap.add_argument("--images", type=positive_int, default=1024, help="held-out images to score on (default 1024)")
    ap.add_argument("-T", type=positive_int, default=350, help="steps (default 350)")
    ap.add_argument("--threads", type=nonnegative_int, default=0, help="threads (0: all cores)")
    ap.add_argument("--json", help="write the per-image results here")
    ap.add_argument("--save-images", metavar="OUT.npz",
                    help="write the held-out images (x, y, indices into --data) here instead of scoring, "
                         "e.g. for `snncc eval` at other T")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    if a.T < 2:
        ap.error("-T must be at least 2")
    import snncc
    from snncc.data import load_arrays
    from snncc.errors import SnnccError
    try:
        net = snncc.load(a.snn)
        x, y = load_arrays(a.data, "data")
        if y is None:
            raise SnnccError(f"{a.data} has no labels", "use a calibration file with a 'y' array")
        limit = (net.graph.meta.get("provenance") or {}).get("options", {}).get("calib_limit")
        idx = heldout(x.shape[0], limit, a.images)
        if a.save_images:
            np.savez_compressed(a.save_images, x=x[idx], y=np.asarray(y)[idx], indices=idx)
            print(f"wrote {len(idx)} held-out calibration images to {a.save_images}")
            return 0
        xs, ys = net.prepare(x[idx]), np.asarray(y)[idx].astype(np.int64)
        ann, rows = score(net, xs, ys, a.zetas, a.T, a.threads or None, progress=not a.quiet)
    except SnnccError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ann_ok = (ann == ys).astype(int)
    print(f"{len(idx)} held-out calibration images (not among the conversion's {limit or 'all'}), T={a.T}; "
          f"analog accuracy {100 * ann_ok.mean():.2f}%")
    print(f"{'zeta':>8s} {f'acc T={a.T // 2}':>11s} {f'acc T={a.T}':>10s} {'loss':>14s} "
          f"{f'vs zeta {a.zetas[0]:g}':>16s}")
    for r in rows:
        loss, se = paired(ann_ok, r["ok"])
        diff, dse = paired(r["ok"], rows[0]["ok"])
        r.update(accuracy_half=float(np.mean(r["ok_half"])), accuracy=float(np.mean(r["ok"])),
                 loss=loss, loss_se=se, diff=diff, diff_se=dse)
        print(f"{r['zeta']:8.4f} {100 * r['accuracy_half']:10.2f}% {100 * r['accuracy']:9.2f}% "
              f"{loss:6.2f} +- {se:4.2f} {diff:+7.2f} +- {dse:4.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"snn": a.snn, "data": a.data, "calib_limit": limit, "images": int(len(idx)), "T": a.T,
                       "indices": idx.tolist(), "ann_ok": ann_ok.tolist(), "runs": rows}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
