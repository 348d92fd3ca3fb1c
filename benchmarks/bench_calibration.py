"""Bias calibration's cost, side by side: segments replaying spike trains vs whole-prefix simulations.

    python benchmarks/bench_calibration.py MODEL.snn --data CALIB.npz [--sizes 2,3] [--calibrate-bias 64]
                                            [--threads K] [--json OUT]

``MODEL.snn`` is a conversion made with ``--calibrate-bias 0``.  For each group size, copies of it are
bias-calibrated on the conversion's own seeded ``--calib-limit`` subset (as ``snncc`` does) in the two
ways ``snncc.calibration.calibrate_bias`` can simulate a group, one right after the other on the same
images and threads:

* ``segments`` (the default): each group with the group before it, replaying the recorded spike trains
  of the earlier layers that feed them (``Network.run_segment``);
* ``prefix``: each group with every layer before it (``Network.run(until=...)``), which the calibration
  falls back to when the trains would exceed ``snncc.calibration.TRAINS_BUDGET``.

Printed per size: seconds of each, their ratio, the trains' peak memory, and whether the two gave the
same biases bit for bit (they must; exit 1 otherwise).  A benchmark, not a test: timings depend on the
machine, so both ways are measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from snncc.argtypes import positive_int


def calibrate(net, xc: np.ndarray, size: int, steps: int, segments: bool) -> tuple[float, dict, dict]:
    """Seconds to calibrate a copy of ``net`` with groups of ``size`` layers; the copy's biases; the
    calibration's record."""
    from snncc import calibration
    from snncc.api import SpikingNetwork
    cand = SpikingNetwork(net.graph.copy())
    budget = calibration.TRAINS_BUDGET
    calibration.TRAINS_BUDGET = budget if segments else -1
    try:
        t0 = time.perf_counter()
        rec = calibration.calibrate_bias(cand, xc, timesteps=steps, layers_per_group=size, progress=False)
        secs = time.perf_counter() - t0
    finally:
        calibration.TRAINS_BUDGET = budget
    return secs, {p.name: p.params["bias"].copy() for p in cand.graph.populations() if "bias" in p.params}, rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a .snn converted with --calibrate-bias 0")
    ap.add_argument("--data", required=True, help="the calibration .npz the conversion used")
    ap.add_argument("--sizes", default="2", help="layers per group, comma-separated (default 2)")
    ap.add_argument("--calibrate-bias", type=positive_int, default=64, help="calibration steps (default 64)")
    ap.add_argument("--threads", type=positive_int, default=None)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    try:
        sizes = [int(v) for v in a.sizes.split(",") if v]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--sizes: positive integers separated by commas, got {a.sizes!r}")
    for f in (a.model, a.data):
        if not os.path.exists(f):
            ap.error(f"{f} not found")
    import numba

    import snncc
    from snncc.calibration import _trains_bytes, group_layers
    from snncc.data import load_arrays, subset
    net = snncc.load(a.model)
    if net.graph.meta.get("bias_calibration"):
        ap.error(f"{a.model} is bias-calibrated already: convert it with --calibrate-bias 0")
    if a.threads:
        numba.set_num_threads(min(a.threads, numba.config.NUMBA_NUM_THREADS))
    limit = ((net.graph.meta.get("provenance") or {}).get("options") or {}).get("calib_limit")
    xc = net.prepare(subset(load_arrays(a.data, "calibration data")[0], None, limit)[0])
    rows = []
    same_all = True
    for size in sizes:
        seg_s, seg_b, rec = calibrate(net, xc, size, a.calibrate_bias, True)
        pre_s, pre_b, _ = calibrate(net, xc, size, a.calibrate_bias, False)
        same = all(np.array_equal(seg_b[k], pre_b[k]) for k in seg_b)
        same_all &= same
        groups, images = rec["groups"], rec["images"]
        mib = _trains_bytes(net.graph, group_layers(net.graph, size), images, a.calibrate_bias) / 2 ** 20
        rows.append({"layers_per_group": size, "groups": groups, "segments_seconds": seg_s,
                     "prefix_seconds": pre_s, "speedup": pre_s / seg_s, "trains_peak_mib": mib,
                     "same_biases": bool(same)})
        print(f"groups of {size} ({groups} simulations, {a.calibrate_bias} steps): segments {seg_s:.1f} s, "
              f"whole prefixes {pre_s:.1f} s, ratio {pre_s / seg_s:.2f}x; spike trains kept at most {mib:.0f} MiB; "
              f"biases {'identical' if same else 'DIFFER'}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": os.path.basename(a.model), "threads": numba.get_num_threads(),
                       "images": images, "runs": rows}, f, indent=1)
    return 0 if same_all else 1


if __name__ == "__main__":
    sys.exit(main())
