"""``snncc eval``: simulate a .snn on labelled data and report how the conversion went.

Energy (paper Section 4.4): the SNN spends ``E_sop`` per synaptic operation
(default 77 fJ), the ANN ``E_flop`` per operation (default 12.5 pJ).  ANN
operations are counted as the multiply-accumulates of the dense network
(the same synapses, every one used once per image).
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from snncc import data as _data
from snncc.errors import DataError, ModelError, one_line


def checkpoints(T: int) -> list[int]:
    """Every power of two up to T, and T."""
    pts = [2 ** k for k in range(int(math.log2(T)) + 1)] if T >= 1 else []
    if T not in pts:
        pts.append(T)
    return pts


def ann_macs(graph) -> int:
    """Multiply-accumulates of one dense (ANN) pass through the graph's synapses."""
    from snncc import synapses
    total = 0
    for n in graph.populations():
        for src, d in graph.in_edges(n.name):
            syn = d["syn"]
            if syn is None:
                continue
            fan = synapses.SYNAPSES[syn.op].fan_in(syn, tuple(graph.node(src).shape))
            total += fan * int(np.prod(n.shape))
    return int(total)


def ann_accuracy(onnx_path: str, graph, x_cl: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of the source ONNX model on the same (raw, channels-last) images."""
    return float(np.mean(ann_predictions(onnx_path, graph, x_cl, batch) == y))


def ann_predictions(onnx_path: str, graph, x_cl: np.ndarray, batch: int = 256) -> np.ndarray:
    """Top-1 class of the source ONNX model for each (raw, channels-last) image."""
    import onnxruntime as ort

    from snncc.analog import preprocess, run_batched
    if not os.path.exists(onnx_path):
        raise ModelError(f"ANN model {onnx_path!r} not found", "pass the ONNX file the .snn was converted from")
    # what the ONNX model itself expects applied to raw data (files before 0.x also carry 'preprocess_user')
    user = graph.meta.get("preprocess_external") or graph.meta.get("preprocess_user") or {}
    try:
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load {onnx_path!r} ({one_line(e, 120)})",
                         "pass a valid ONNX model") from None
    name = sess.get_inputs()[0].name
    layout = graph.meta.get("input_layout", "NCHW")

    class _G:  # preprocess() reads graph.meta['preprocess']
        meta = {"preprocess": user}
    shape = sess.get_inputs()[0].shape
    fixed = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None   # exported batch size

    def logits(xb):
        xb = preprocess(_G, xb).astype(np.float32)
        if layout == "NCHW":
            xb = np.ascontiguousarray(np.transpose(xb, (0, 3, 1, 2)))
        try:
            out = sess.run(None, {name: xb})[0]
        except Exception as e:  # onnxruntime's own exception types: the model takes other inputs
            raise ModelError(f"the ANN model {onnx_path!r} cannot run on this .snn's inputs "
                             f"({one_line(e, 120)})",
                             "pass the ONNX file the .snn was converted from") from None
        out = out.reshape(out.shape[0], -1)
        if out.shape[1] != graph.output.shape[-1]:
            raise ModelError(f"the ANN model {onnx_path!r} has {out.shape[1]} outputs but the .snn has "
                             f"{graph.output.shape[-1]} classes", "pass the ONNX file the .snn was converted from")
        return [np.argmax(out, axis=1)]
    return run_batched(logits, x_cl, fixed, batch)[0] if x_cl.shape[0] else np.zeros(0, np.int64)


def layer_agreement(net, x_cl: np.ndarray, timesteps: int, images: int = 32) -> dict[str, tuple[float, float]]:
    """Per spiking population, on the first ``images`` images (fewer where their activations and rates
    would exceed ``snncc.data.BATCH_BYTES``): (Pearson correlation between the normalised
    ANN activation and the SNN rate, mean rate gap ``rate - clip(activation, 0, 1)``).  The gap is the
    error Eq. 9-11 accumulate layer by layer (negative: the layer fires too little); unlike the residual
    charge ``E`` it is not swamped by silent neurons, whose rate 0 is exactly their ReLU output."""
    from snncc.analog import run_analog
    g = net.graph
    pops = [p.name for p in g.populations() if p.op in ("neuron", "maxgate")]
    # both views of every neuron are kept (float64 activations and rates): fewer images for big networks
    xs = x_cl[:_data.fit_batch(images, 16 * sum(int(np.prod(g.node(p).shape)) for p in pops))]
    acts = run_analog(g, xs, keep=True)
    res = net.runtime.run(xs, timesteps, progress=False, record=tuple(pops))
    out = {}
    for p in pops:
        a = np.asarray(acts[p]).reshape(xs.shape[0], -1).ravel()
        r = np.asarray(res.rates[p]).reshape(xs.shape[0], -1).ravel()
        out[p] = (float(np.corrcoef(a, r)[0, 1]) if a.std() > 0 and r.std() > 0 else float("nan"),
                  float(np.mean(r - np.clip(a, 0.0, 1.0))))
    return out


def paired_difference(ok_b, ok_a) -> tuple[float, float]:
    """Mean and standard error of the per-image difference ``ok_b - ok_a`` (0/1 correctness of two runs
    on the same images): the paired comparison eval, compare_evals and zeta_heldout report."""
    d = np.asarray(ok_b, float) - np.asarray(ok_a, float)
    return float(d.mean()), (float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0)


def still_rising(gain: float, se: float) -> bool:
    """A late accuracy gain worth more steps: at least half a point and over two standard errors."""
    return bool(gain >= 0.005 and gain > 2 * se)


def late_gain(pred: np.ndarray, y: np.ndarray, T: int) -> dict | None:
    """How much accuracy the second half of the run added: per image, (correct at T) - (correct at
    T/2), its mean and paired standard error.  ``still_rising`` (:func:`still_rising`): the network
    has not converged and more steps would likely pay.
    None for T < 4 or a single image."""
    n = pred.shape[0]
    if T < 4 or n < 2:
        return None
    h = T // 2
    gain, se = paired_difference(pred[:, T - 1] == y, pred[:, h - 1] == y)
    return {"from_step": h, "gain": gain, "standard_error": se, "still_rising": still_rising(gain, se)}


def run_eval(a) -> int:
    from rich.table import Table

    from snncc import api, snnfile
    from snncc.cli import _console, _esc, _progress
    con = _console()
    for opt, v in (("--pj-per-flop", a.pj_per_flop), ("--fj-per-sop", a.fj_per_sop)):
        if not (np.isfinite(v) and v >= 0):
            raise DataError(f"{opt} must be a non-negative energy, got {v}", f"e.g. {opt} "
                            f"{'12.5' if opt == '--pj-per-flop' else '77'}")
    for opt, path in (("--json", a.json), ("--plot", a.plot)):  # fail before the simulation, not after
        if path:
            snnfile.check_writable(path)
    snnfile.check_outputs({"--json": a.json, "--plot": a.plot},
                          {"the .snn file": a.file, "the --data file": a.data, "the --ann model": a.ann})
    if a.plot:
        _matplotlib()
    net = api.load(a.file)
    if a.exit_stable == "auto" and not isinstance(net.graph.meta.get("exit_stable"), dict):
        raise DataError(f"--exit-stable auto needs the window chosen at conversion, and {a.file!r} has none",
                        "convert with `snncc MODEL.onnx ... --exit-stable auto`, or give the window: --exit-stable 64")
    stable = net.runtime.exit_window(a.exit_stable) or None     # "auto": the window stored at conversion
    x, y = _data.load_arrays(a.data, "test data")
    if y is None:
        raise DataError(f"test data {a.data!r} has no labels 'y'", "store labels under the key 'y'")
    y = _data.check_labels(y, x.shape[0], net.n_classes, f"test labels in {a.data!r}")
    image_indices = _data.subset_indices(x.shape[0], a.limit)
    x, y = x[image_indices], y[image_indices]
    log = None if a.quiet else (lambda s: con.print(f"[dim]snncc:[/dim] {_esc(s)}"))
    if a.limit and a.limit > x.shape[0] and log:
        log(f"--limit {a.limit} is more than the {x.shape[0]} images in {a.data!r}: using all of them")
    xc = net.prepare(x, "test data", log)
    ann = None
    if a.ann:                     # before the simulation: a wrong model fails in seconds, not after it
        ann = ann_predictions(a.ann, net.graph, xc)
        _check_ann_source(net, a.ann)
    T = a.timesteps
    if a.exit_stable == "auto" and log:
        chosen_t = net.graph.meta["exit_stable"].get("timesteps")
        log(f"--exit-stable auto: the window chosen at conversion, {stable} steps" if stable else
            "--exit-stable auto: no window was chosen at conversion (none kept the calibration accuracy): "
            "running all steps")
        if stable and stable >= T:
            log(f"the window ({stable} steps) is not shorter than -T {T}: no image can stop early")
        elif stable and isinstance(chosen_t, int) and chosen_t != T:
            log(f"the window was chosen against the answer at T={chosen_t}, this run's T is {T} "
                f"(convert with --zeta-timesteps {T} to choose it for this T)")
    from snncc.runtime.kernels import COMPILE_NOTICE, compile_pending
    if log and compile_pending():
        log(COMPILE_NOTICE)
    t0 = time.time()
    res = net.runtime.run(xc, T, labels=y, early_exit=a.early_exit, exit_stable=stable, threads=a.threads,
                          batch_size=a.batch_size, progress=_progress(a.quiet))
    secs = time.time() - t0
    n = xc.shape[0]
    acc_at = {t: float(np.mean(res.predictions[:, t - 1] == y)) for t in checkpoints(T)}
    sops = float(sum(np.sum(v) for v in res.sops.values())) / n
    spikes = float(sum(np.sum(v) for v in res.spikes.values())) / n
    macs = ann_macs(net.graph)
    agree = layer_agreement(net, xc, T)
    layers = {}
    for p in net.graph.populations():
        if p.op == "input":
            continue
        layers[p.name] = {"op": p.op, "neurons": int(np.prod(p.shape)),
                          "firing_rate": float(res.firing_rate.get(p.name, float("nan"))),
                          "propagation_error": float(np.mean(res.prop_error[p.name])) if p.name in res.prop_error
                          else None,
                          "spikes_per_image": float(np.mean(res.spikes[p.name])) if p.name in res.spikes else None,
                          "sops_per_image": float(np.mean(res.sops[p.name])) if p.name in res.sops else None,
                          "ann_snn_correlation": agree[p.name][0] if p.name in agree else None,
                          "rate_gap": agree[p.name][1] if p.name in agree else None}
    out = {"snn_accuracy": acc_at[T], "timesteps": T, "images": n, "accuracy_at": {str(k): v for k, v in acc_at.items()},
           "sops_per_image": sops, "spikes_per_image": spikes, "seconds_per_image": secs / n,
           "threads": a.threads, "early_exit": bool(a.early_exit), "exit_stable": stable,
           "exit_stable_auto": a.exit_stable == "auto",
           "mean_steps_run": float(np.mean(res.steps_run)),
           "ann_macs_per_image": macs,
           "energy_snn_uj": sops * a.fj_per_sop * 1e-9, "energy_ann_uj": macs * a.pj_per_flop * 1e-6,
           "layers": layers, "late_gain": late_gain(res.predictions, y, T),
           # per image (in --data's order, for paired comparisons of runs: benchmarks/compare_evals.py)
           "image_indices": image_indices.tolist(), "labels": y.tolist(),
           "predictions": res.predictions[:, T - 1].tolist()}
    if ann is not None:
        out["ann_accuracy"] = float(np.mean(ann == y))
        # paired per-image difference (ANN correct - SNN correct): its standard error is the
        # uncertainty of the conversion loss on this many images
        d = (ann == y).astype(float)[:, None] - (res.predictions[:, [t - 1 for t in checkpoints(T)]] == y[:, None])
        out["loss_standard_error_at"] = {str(t): float(np.std(d[:, i], ddof=1) / np.sqrt(n)) if n > 1 else None
                                         for i, t in enumerate(checkpoints(T))}
        out["ann_agreement_at"] = {str(t): float(np.mean(res.predictions[:, t - 1] == ann)) for t in checkpoints(T)}
    con.print(_esc(f"{os.path.basename(a.file)} on {n} images, T={T}"), soft_wrap=True)   # not wrapped to the table
    t = Table()
    t.add_column("step", justify="right")
    t.add_column("SNN accuracy", justify="right")
    for k, v in acc_at.items():
        t.add_row(str(k), f"{100 * v:.2f}%")
    con.print(t)
    if "ann_accuracy" in out:
        con.print(f"ANN accuracy {100 * out['ann_accuracy']:.2f}%  ->  conversion loss "
                  f"{100 * (out['ann_accuracy'] - out['snn_accuracy']):.2f} +- "
                  f"{100 * (out['loss_standard_error_at'][str(T)] or 0):.2f} points at T={T}", soft_wrap=True)
        con.print(f"(+- paired standard error); the SNN agrees with the ANN on "
                  f"{100 * out['ann_agreement_at'][str(T)]:.1f}% of the images", soft_wrap=True)
    lg = out["late_gain"]
    if lg is not None and lg["still_rising"]:
        con.print(f"accuracy was still rising: {100 * lg['gain']:+.2f} +- {100 * lg['standard_error']:.2f} points "
                  f"from T={lg['from_step']} to T={T}; more steps would likely gain more (e.g. -T {2 * T})",
                  soft_wrap=True)
    ran = f"ran {out['mean_steps_run']:.1f} of {T} steps on average"
    exits = (f"; stopped after {stable} equal predictions: {ran}" + (" (or when certified)" if a.early_exit else "")
             if stable else f"; early exit {ran}" if a.early_exit else "")
    con.print(f"{spikes:,.0f} spikes and {sops:,.0f} SOPs per image; {secs / n * 1e3:.1f} ms per image{exits}",
              soft_wrap=True)
    con.print(f"energy per image: SNN {out['energy_snn_uj']:.3f} uJ ({a.fj_per_sop:g} fJ/SOP) vs ANN "
              f"{out['energy_ann_uj']:.3f} uJ ({macs:,} ops x {a.pj_per_flop:g} pJ)", soft_wrap=True)
    files = []                    # written together at the end: a failure while writing leaves neither
    if a.json:
        files.append((a.json, json.dumps(snnfile._jsonable(out), indent=1).encode()))
    if a.plot:
        files.append((a.plot, render_plot(out, a.plot)))
    snnfile.atomic_write_many(files)
    return 0


def _matplotlib():
    """``matplotlib.pyplot`` (Agg backend), or a one-line error naming the extra to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DataError("--plot needs matplotlib", "pip install 'snncc[plot]'") from None
    return plt


def _check_ann_source(net, path: str) -> None:
    """Warn (stderr) when ``--ann`` is not the model the .snn records as its source (sha256)."""
    import sys

    from snncc.api import _model_hash
    want = (net.graph.meta.get("provenance") or {}).get("source_sha256")
    if want and os.path.isfile(path) and _model_hash(path) != want:
        sys.stderr.write(f"snncc: warning: --ann {path!r} is not the model this .snn was converted from "
                         f"(its sha256 differs from the recorded "
                         f"{(net.graph.meta.get('provenance') or {}).get('source_name')!r}); "
                         f"the conversion loss compares different models\n")


def render_plot(out: dict, path: str) -> bytes:
    """Accuracy vs time step, and per-layer firing rate / propagation error / correlation, as image
    bytes in the format of ``path``'s extension (PNG when matplotlib does not know it)."""
    plt = _matplotlib()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    ts = [int(k) for k in out["accuracy_at"]]
    acc = [100 * out["accuracy_at"][str(k)] for k in ts]
    ax[0].plot(ts, acc, "o-", label="SNN")
    if "ann_accuracy" in out:
        ax[0].axhline(100 * out["ann_accuracy"], color="k", ls="--", label="ANN")
    ax[0].set_xscale("log", base=2)
    ax[0].set_xlabel("time step")
    ax[0].set_ylabel("top-1 accuracy (%)")
    ax[0].legend()
    ax[0].grid(alpha=.3)
    names = [k for k, v in out["layers"].items() if v["op"] == "neuron"]
    idx = np.arange(len(names))
    ax[1].plot(idx, [out["layers"][k]["firing_rate"] for k in names], "o-", label="firing rate")
    ax[1].plot(idx, [abs(out["layers"][k]["propagation_error"] or 0) for k in names], "s-", label="|E| = |V(T)|/T")
    ax[1].plot(idx, [out["layers"][k]["ann_snn_correlation"] for k in names], "^-", label="corr(ANN act., SNN rate)")
    ax[1].plot(idx, [abs(out["layers"][k].get("rate_gap") or 0) for k in names], "v-",
               label="|rate - ANN act.| (mean gap)")
    ax[1].set_xticks(idx)
    ax[1].set_xticklabels(names, rotation=70, fontsize=7)
    ax[1].set_xlabel("neuron layer")
    ax[1].legend(fontsize=8)
    ax[1].grid(alpha=.3)
    fig.tight_layout()
    import io
    ext = os.path.splitext(path)[1][1:].lower()
    buf = io.BytesIO()
    fig.savefig(buf, format=ext if ext in fig.canvas.get_supported_filetypes() else "png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
