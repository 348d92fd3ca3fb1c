"""Firing rates of every neuron layer in two time windows against the normalised ANN activations.

    python benchmarks/rate_windows.py MODEL.snn --data CALIB.npz [--images 32] [-T 512] [--json OUT]

Simulates a seeded random subset of ``--images`` images of ``--data`` (use calibration images;
the shared calibration file is sorted by class, so its first images are all one class) for ``T/2`` and for
``T`` steps (the simulation is deterministic, so the second half's spike counts are the difference)
and compares, per neuron layer, the mean rate over steps ``[0, T/2)`` and over ``[T/2, T)`` with the
mean normalised ANN activation ``clip(a / lambda, 0, 1)`` of the same images, plus their correlation.
A layer whose late rate matches its activation but whose early rate is low is *late* (its input
arrives after a start-up delay), not wrong: the gap fades as ``1/T`` in rates averaged from step 1.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from snncc.argtypes import positive_int


def windows(net, x, T: int) -> list[dict]:
    from snncc.analog import run_analog
    g = net.graph
    pops = [p.name for p in g.populations() if p.op == "neuron"]
    acts = run_analog(g, x, keep=True)
    h = T // 2
    r1 = net.runtime.run(x, h, progress=False, record=tuple(pops))
    r2 = net.runtime.run(x, T, progress=False, record=tuple(pops))
    rows = []
    for p in pops:
        a = np.clip(np.asarray(acts[p], np.float64).reshape(len(x), -1), 0, 1)
        c1 = np.asarray(r1.rates[p]).reshape(len(x), -1) * h
        c2 = np.asarray(r2.rates[p]).reshape(len(x), -1) * T
        early, late = c1 / h, (c2 - c1) / (T - h)
        rows.append({"layer": p, "activation": float(a.mean()), "rate_early": float(early.mean()),
                     "rate_late": float(late.mean()),
                     "corr_early": float(np.corrcoef(a.ravel(), early.ravel())[0, 1]) if early.std() else None,
                     "corr_late": float(np.corrcoef(a.ravel(), late.ravel())[0, 1]) if late.std() else None})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("snn")
    ap.add_argument("--data", required=True, help=".npz/.npy images (calibration images, not the test split)")
    ap.add_argument("--images", type=positive_int, default=32, help="a seeded random subset of N images of --data (default 32)")
    ap.add_argument("-T", type=positive_int, default=512, help="steps; the windows are [0, T/2) and [T/2, T)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    if a.T < 2:
        ap.error("-T must be at least 2 (two windows)")
    import snncc
    from snncc.data import load_arrays, subset_indices
    from snncc.errors import SnnccError
    try:
        net = snncc.load(a.snn)
        x, _ = load_arrays(a.data, "data")
        idx = subset_indices(len(x), a.images)
        rows = windows(net, net.prepare(x[idx]), a.T)
    except SnnccError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    h = a.T // 2
    print(f"{'layer':40s} {'ANN act.':>9s} {f'rate[0,{h})':>14s} {f'rate[{h},{a.T})':>16s} {'corr late':>9s}")
    for r in rows:
        print(f"{r['layer'][:40]:40s} {r['activation']:9.4f} {r['rate_early']:8.4f} ({100 * (r['rate_early'] / r['activation'] - 1) if r['activation'] else 0:+5.1f}%) "
              f"{r['rate_late']:9.4f} ({100 * (r['rate_late'] / r['activation'] - 1) if r['activation'] else 0:+5.1f}%) "
              f"{r['corr_late'] if r['corr_late'] is not None else float('nan'):9.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"snn": a.snn, "data": a.data, "images": len(idx), "image_indices": idx.tolist(),
                       "T": a.T, "layers": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
