"""Evaluate on disjoint parts of a test set (e.g. on several machines), then merge the JSONs.

    python benchmarks/merge_evals.py split ../shared/data/cifar10_test.npz 5 parts/
    snncc eval m.snn --data parts/part0.npz -T 350 --ann m.onnx --json parts/r0.json   # ... one per part
    python benchmarks/merge_evals.py merge merged.json parts/r*.json

``split`` writes ``part0.npz ...`` with consecutive slices of every per-image array (``x``,
``y``; other arrays are copied whole).  ``merge`` combines ``snncc eval --json`` runs of
disjoint image sets of the same model and T: accuracies, agreement and per-image counts are
averaged with the images as weights; the paired standard error of the loss combines as
``sqrt(sum(n_i^2 se_i^2)) / N`` (independent parts), and so do ``late_gain``'s gain and
standard error (``still_rising`` re-decided on the merged figures); per-image labels and predictions
are concatenated in the order the parts are given (``image_indices`` index the split file when each
part was evaluated whole, else null); per-layer figures are image-weighted
means.  ``seconds_per_image`` is dropped (the parts may have run on different machines); the
merged file lists its parts under ``merged_from``.
"""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

from snncc.argtypes import positive_int
from snncc.evaluate import still_rising


def split(data, parts, outdir):
    d = np.load(data)
    n = len(d["y"])
    if parts > n:
        raise ValueError(f"{data} has {n} images, fewer than the {parts} parts asked for")
    os.makedirs(outdir, exist_ok=True)
    bounds = np.linspace(0, n, parts + 1).astype(int)
    for i in range(parts):
        a, b = bounds[i], bounds[i + 1]
        arrays = {k: (d[k][a:b] if d[k].ndim and len(d[k]) == n else d[k]) for k in d.files}
        np.savez(os.path.join(outdir, f"part{i}.npz"), **arrays)
        print(f"part{i}.npz: images {a}..{b - 1}")


def _wmean(ds, w, key):
    return sum(d[key] * n for d, n in zip(ds, w)) / sum(w)


def _combined_se(ses, w) -> float:
    """Standard error of an image-weighted mean of independent parts: ``sqrt(sum(n_i^2 se_i^2)) / N``."""
    return math.sqrt(sum((n * se) ** 2 for se, n in zip(ses, w))) / sum(w)


def merge(out, paths):
    ds = [json.load(open(p)) for p in paths]
    T = {d["timesteps"] for d in ds}
    if len(T) != 1:
        raise SystemExit(f"merge_evals: the parts ran with different T {sorted(T)}")
    w = [d["images"] for d in ds]
    N = sum(w)
    m = {"timesteps": ds[0]["timesteps"], "images": N, "merged_from": [os.path.basename(p) for p in paths]}
    for key in ("snn_accuracy", "sops_per_image", "spikes_per_image", "mean_steps_run", "energy_snn_uj"):
        m[key] = _wmean(ds, w, key)
    for key in ("ann_macs_per_image", "energy_ann_uj", "early_exit"):
        m[key] = ds[0][key]
    m["threads"] = None
    m["seconds_per_image"] = None      # the parts may have run on different machines: see each part
    for key in ("accuracy_at", "ann_agreement_at"):
        if all(key in d for d in ds):
            m[key] = {t: sum(d[key][t] * n for d, n in zip(ds, w)) / N for t in ds[0][key]}
    if all("ann_accuracy" in d for d in ds):
        m["ann_accuracy"] = _wmean(ds, w, "ann_accuracy")
        m["loss_standard_error_at"] = {t: _combined_se([d["loss_standard_error_at"][t] for d in ds], w)
                                       for t in ds[0]["loss_standard_error_at"]}
    if all(d.get("late_gain") for d in ds):      # same T, so the same from_step; parts are independent
        gain = sum(d["late_gain"]["gain"] * n for d, n in zip(ds, w)) / N
        se = _combined_se([d["late_gain"]["standard_error"] for d in ds], w)
        m["late_gain"] = {"from_step": ds[0]["late_gain"]["from_step"], "gain": gain, "standard_error": se,
                          "still_rising": still_rising(gain, se)}
    if all("predictions" in d for d in ds):      # per image: the parts in the order given
        m["labels"] = [v for d in ds for v in d["labels"]]
        m["predictions"] = [v for d in ds for v in d["predictions"]]
        whole = all(d["image_indices"] == list(range(n)) for d, n in zip(ds, w))
        # consecutive parts of one file (``split``) map back to it; --limit subsets of the parts do not
        m["image_indices"] = list(range(N)) if whole else None
    layers = {}
    for name, row in ds[0].get("layers", {}).items():
        merged = dict(row)
        for k, v in row.items():
            if isinstance(v, float) and all(isinstance(d["layers"][name].get(k), float) for d in ds):
                merged[k] = sum(d["layers"][name][k] * n for d, n in zip(ds, w)) / N
        layers[name] = merged
    m["layers"] = layers
    with open(out, "w") as f:
        json.dump(m, f, indent=1)
    loss = 100 * (m.get("ann_accuracy", float("nan")) - m["snn_accuracy"])
    se = 100 * m.get("loss_standard_error_at", {}).get(str(m["timesteps"]), float("nan"))
    print(f"{out}: {N} images, SNN {100 * m['snn_accuracy']:.2f}%, loss {loss:.2f} +- {se:.2f} points at "
          f"T={m['timesteps']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="write consecutive parts of a .npz data set")
    s.add_argument("data")
    s.add_argument("parts", type=positive_int)
    s.add_argument("outdir")
    g = sub.add_parser("merge", help="merge snncc eval --json runs of disjoint image sets")
    g.add_argument("out")
    g.add_argument("inputs", nargs="+")
    a = ap.parse_args()
    for p in [a.data] if a.cmd == "split" else a.inputs:
        if not os.path.isfile(p):
            ap.error(f"{p} not found")
    try:
        if a.cmd == "split":
            split(a.data, a.parts, a.outdir)
        else:
            merge(a.out, a.inputs)
    except (ValueError, KeyError, OSError) as e:   # not an .npz with x/y, not an eval JSON, unwritable output
        ap.error(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
