"""Paired comparison of two ``snncc eval --json`` runs on the same images.

    python benchmarks/compare_evals.py A.json B.json

Two conversions (or two T, or the same network on two machines) are best compared image by image:
the difference of their accuracies has a much smaller standard error when both ran on the same
images, since most images are right (or wrong) in both.  Uses the per-image ``labels`` and
``predictions`` (at each run's T) that ``snncc eval --json`` stores; refuses runs whose images
differ.  Prints each run's accuracy, the paired difference B - A +- its standard error, and how
many images each gets right that the other does not.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from snncc.evaluate import paired_difference


def compare(a: dict, b: dict) -> dict:
    """Paired comparison of two eval JSONs (per-image lists required, the same images)."""
    for name, d in (("A", a), ("B", b)):
        if "predictions" not in d:
            raise ValueError(f"run {name} has no per-image predictions (made before snncc eval stored them): "
                             "re-run snncc eval --json")
    if a["labels"] != b["labels"] or a.get("image_indices") != b.get("image_indices"):
        raise ValueError("the two runs are not on the same images (labels or image_indices differ): "
                         "evaluate both on the same --data with the same --limit")
    y = np.asarray(a["labels"])
    ok_a = np.asarray(a["predictions"]) == y
    ok_b = np.asarray(b["predictions"]) == y
    diff, se = paired_difference(ok_b, ok_a)
    return {"images": int(y.size), "accuracy_a": float(ok_a.mean()), "accuracy_b": float(ok_b.mean()),
            "diff": diff, "diff_se": se,
            "only_a": int(np.sum(ok_a & ~ok_b)), "only_b": int(np.sum(ok_b & ~ok_a)),
            "timesteps_a": a["timesteps"], "timesteps_b": b["timesteps"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="snncc eval --json output (the reference)")
    ap.add_argument("b", help="snncc eval --json output to compare with it")
    args = ap.parse_args(argv)
    try:
        runs = []
        for path in (args.a, args.b):
            with open(path) as f:
                runs.append(json.load(f))
        c = compare(*runs)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{c['images']} images: A {100 * c['accuracy_a']:.2f}% (T={c['timesteps_a']}), "
          f"B {100 * c['accuracy_b']:.2f}% (T={c['timesteps_b']})")
    print(f"B - A: {100 * c['diff']:+.2f} +- {100 * c['diff_se']:.2f} points (paired standard error); "
          f"right only in A: {c['only_a']}, only in B: {c['only_b']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
