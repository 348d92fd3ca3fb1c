"""Time two versions of snncc's runtime side by side: at the same time, one core each.

    python benchmarks/ab_runtime.py out/resnet20_best.snn --data ../shared/data/cifar10_test.npz \\
        --base HEAD --n 16 -T 350 --rounds 6

On a shared (virtual) 2-core machine one version timed after the other is not a comparison: the
same run moves by 10-40% within minutes, as neighbours load the host.  Here both versions run *at
the same time*, each single-threaded and pinned to its own core, so both see the same conditions;
the cores are swapped every round (a slow core counts against each version equally), and the
report is the per-round ratio new/base with its geometric mean and median.  ``base`` is a git revision
(exported with ``git archive``), ``new`` the working tree (or another revision with ``--new``);
each is imported from its own copy of the package (``snncc/``, ``passes/`` as ``snncc.passes``,
``runtime/`` as ``snncc.runtime``) with its own numba cache, and compiled before it is timed.
Each worker runs every ``.snn`` on the same seeded subset of ``--data`` (best of ``--reps``).
Linux only for the pinning (elsewhere the workers are not pinned, and the figures say so).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def export_package(rev: str | None, dest: str) -> str:
    """Copy the importable package of revision ``rev`` (None: the working tree) into ``dest``;
    returns the directory to put on ``sys.path``."""
    src = REPO if rev is None else dest + "-src"
    if rev is not None:
        os.makedirs(src)
        archive = subprocess.run(["git", "-C", REPO, "archive", rev, "snncc", "passes", "runtime"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(os.path.join(src, "snncc"), os.path.join(dest, "snncc"), ignore=ignore)
    for sub in ("passes", "runtime"):
        shutil.copytree(os.path.join(src, sub), os.path.join(dest, "snncc", sub), ignore=ignore)
    return dest


def worker(pkg: str, models: list[str], data: str, n: int, T: int, reps: int) -> dict:
    """Run in a child process: import snncc from ``pkg`` only, time each model single-threaded."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, pkg)
    import snncc
    from snncc.data import load_arrays, subset
    if not os.path.abspath(snncc.__file__).startswith(os.path.abspath(pkg)):
        raise RuntimeError(f"imported {snncc.__file__}, not the copy in {pkg}")
    x, y = load_arrays(data)
    xs, _ = subset(x, y, n, seed=0)
    out = {}
    for path in models:
        net = snncc.load(path)
        net.run(xs[:2], T, threads=1, progress=False)          # compile (or load the cache) first
        best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            r = net.run(xs, T, threads=1, progress=False)
            best = min(best, time.perf_counter() - t0)
        out[path] = {"ms_per_image": 1000 * best / len(xs),
                     "sops_per_image": float(sum(v.sum() for v in r.sops.values()) / len(xs))}
    return out


geomean = statistics.geometric_mean


def summarise(rounds: list[dict], models: list[str]) -> dict:
    """Per model: the per-round ratios new/base, their geometric mean, median (robust to a round that a
    neighbour on the host slowed down), min and max."""
    res = {}
    for m in models:
        ratios = [r["new"][m]["ms_per_image"] / r["base"][m]["ms_per_image"] for r in rounds]
        res[m] = {"ratios": ratios, "geomean": geomean(ratios), "median": statistics.median(ratios),
                  "min": min(ratios), "max": max(ratios),
                  "base_ms": [r["base"][m]["ms_per_image"] for r in rounds],
                  "new_ms": [r["new"][m]["ms_per_image"] for r in rounds]}
    return res


def _launch(pkg: str, core: int | None, a, out_path: str) -> subprocess.Popen:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", pkg, "--worker-out", out_path,
           "--data", a.data, "--n", str(a.n), "-T", str(a.timesteps), "--reps", str(a.reps), *a.models]
    pin = None if core is None else (lambda: os.sched_setaffinity(0, {core}))
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    return subprocess.Popen(cmd, preexec_fn=pin, env=env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help=".snn files to time")
    ap.add_argument("--data", default=os.path.join(REPO, "snncc", "data", "digits_test.npz"),
                    help=".npz with x (and y) the models accept (default: the shipped digits test set)")
    ap.add_argument("--base", default="HEAD", help="git revision of the reference (default HEAD)")
    ap.add_argument("--new", default=None, help="git revision to compare (default: the working tree)")
    ap.add_argument("--n", type=int, default=16, help="images (seeded subset; default 16)")
    ap.add_argument("-T", "--timesteps", type=int, default=350, help="time steps (default 350)")
    ap.add_argument("--rounds", type=int, default=6, help="rounds, cores swapped each round (default 6)")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per model and round, best kept (default 3)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write the rounds and ratios here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        with open(a.worker_out, "w") as f:
            json.dump(worker(a.worker, a.models, a.data, a.n, a.timesteps, a.reps), f)
        return 0
    for m in a.models:
        if not os.path.isfile(m):
            print(f"error: no such .snn file: {m}", file=sys.stderr)
            return 2
    a.models = [os.path.abspath(m) for m in a.models]
    a.data = os.path.abspath(a.data)
    pinned = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    cores = sorted(os.sched_getaffinity(0))[:2] if pinned else [None, None]
    rounds = []
    with tempfile.TemporaryDirectory(prefix="snncc-ab-") as tmp:
        try:
            pkgs = {"base": export_package(a.base, os.path.join(tmp, "base")),
                    "new": export_package(a.new, os.path.join(tmp, "new"))}
        except subprocess.CalledProcessError as e:
            print(f"error: cannot export revision: {e.stderr.decode().strip()}", file=sys.stderr)
            return 2
        for r in range(a.rounds):
            order = ("base", "new") if r % 2 == 0 else ("new", "base")
            procs = {v: _launch(pkgs[v], cores[i], a, os.path.join(tmp, f"{v}.json")) for i, v in enumerate(order)}
            if any(p.wait() != 0 for p in procs.values()):
                print("error: a worker failed (its traceback is above)", file=sys.stderr)
                return 1
            rnd = {}
            for v in ("base", "new"):
                with open(os.path.join(tmp, f"{v}.json")) as f:
                    rnd[v] = json.load(f)
            rnd["cores"] = {v: cores[i] for i, v in enumerate(order)}
            rounds.append(rnd)
            print(f"round {r + 1}: " + "; ".join(
                f"{os.path.basename(m)} base {rnd['base'][m]['ms_per_image']:.1f} new {rnd['new'][m]['ms_per_image']:.1f} "
                f"ms/image ({rnd['new'][m]['ms_per_image'] / rnd['base'][m]['ms_per_image']:.3f})" for m in a.models),
                flush=True)
    summ = summarise(rounds, a.models)
    print(f"new ({a.new or 'working tree'}) / base ({a.base}), {a.n} images x T={a.timesteps}, one core each at "
          f"the same time{'' if pinned else ' (NOT pinned to cores)'}, {a.rounds} rounds:")
    for m, s in summ.items():
        print(f"  {os.path.basename(m)}: time ratio {s['geomean']:.3f} (geometric mean; median {s['median']:.3f}, "
              f"rounds {s['min']:.3f}-{s['max']:.3f})")
    for m in a.models:
        sb, sn = rounds[0]["base"][m]["sops_per_image"], rounds[0]["new"][m]["sops_per_image"]
        if sb != sn:
            print(f"  note: {os.path.basename(m)}: the versions do not simulate identically ({sb:.0f} vs {sn:.0f} "
                  f"SOPs per image, relative difference {abs(sn - sb) / max(sb, 1):.1e}; a changed summation "
                  "order alone changes a few spikes)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"settings": {k: v for k, v in vars(a).items() if not k.startswith("worker")},
                       "pinned": pinned, "rounds": rounds, "summary": summ}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
