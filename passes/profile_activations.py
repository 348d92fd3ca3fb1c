"""Activation profiling for data-based normalisation (Eq. 4-5): exact percentiles.

Maths
-----
For every population ``l`` (``neuron``, ``maxgate``, ``output``) and the
calibration set, ``lambda_l`` of Eq. 4-5 is the p-th percentile of the ANN
activations of layer ``l``: layer-wise over all images and neurons, or
channel-wise per channel over images and positions.  The percentile is numpy's
default (linear interpolation): for ``n`` sorted values ``a``, virtual index
``i = (n - 1) p / 100``, result ``lerp(a[floor i], a[floor i + 1], i - floor i)``.
The values are all activations (``ctx.percentile_of == 'all'``, the default), or
only the positive ones (``'positive'``: the definition of Rueckauer et al.'s
reference implementation, which the paper's normalisation follows -- the
percentile of the *nonzero* ReLU outputs; a sparse layer then gets a larger
lambda, i.e. less clipping).

Bounded memory: ``n`` is known in advance (images x neurons), so only the
``k = n - floor((n - 1) p / 100) + 1`` largest values can matter; each batch's
values are merged into a running top-k buffer with ``np.partition``.  The
result reproduces ``np.percentile`` over the full stacked float64 activations
bit for bit (the same index, gamma and lerp formulas are used).

Where activations come from: onnxruntime on ``graph.onnx_model`` with every
population's ``onnx_tensor`` added as an extra graph output (on a copy of the
ModelProto).  The calibration images (raw, channels-last) get the *external*
preprocessing ``meta['preprocess_external']`` (what the ONNX model expects; the
in-graph normalisation folded by ``fold_input_affine`` is in the model itself)
and are transposed to the model's own layout (``meta['input_layout']``).
Populations without an ``onnx_tensor`` (or graphs without a model, e.g. in
tests) are profiled with the analog interpreter on the (not yet normalised)
graph, which equals the ANN exactly.

Result: ``meta['activations'][pop] = {'layer': float, 'channel': list | None,
'max': float}`` (``channel`` only with ``ctx.channel_wise``; never for the
output), ``meta['percentile']``, ``meta['percentile_of']``.  NaN/inf activations raise ``DataError``.
Analysis only: the graph is unchanged.
"""
from __future__ import annotations

import numpy as np

from snncc.analog import run_batched
from snncc.data import fit_batch
from snncc.errors import DataError, ModelError
from snncc.ir import Graph

NAME = "profile_activations"


# -- exact streaming percentile ------------------------------------------------
def percentile_index(n: int, p: float) -> tuple[int, int, np.float64]:
    """numpy's (linear) neighbours and gamma for the p-th percentile of n values."""
    q = np.true_divide(p, 100)
    vi = np.float64((n - 1) * q)
    prev = int(np.floor(vi))
    if vi >= n - 1:
        return n - 1, n - 1, vi - np.float64(-1)
    if vi < 0:
        return 0, 0, vi
    return prev, prev + 1, vi - np.float64(prev)


def _lerp(a, b, t):
    d = b - a
    return (b - d * (1 - t)) if t >= 0.5 else (a + d * t)


def topk_needed(n: int, p: float) -> int:
    """How many of the largest values determine the p-th percentile of n values."""
    lo, _, _ = percentile_index(n, p)
    return max(1, min(n, n - lo + 1))


#: columns a TopK buffer may grow beyond 2k before it is trimmed back to k
TRIM_SLACK = 4096


class TopK:
    """Running top-k of ``rows`` independent streams (one per channel, or 1 for the layer).

    ``positive``: the percentile is taken over the positive values of each stream only
    (their count ``n_pos <= n`` is known only at the end; ``n - lo(n)`` never decreases
    with ``n``, so the top ``k(n)`` values still contain every value that can matter).
    """

    def __init__(self, rows: int, n: int, p: float, positive: bool = False):
        self.n, self.p, self.positive = n, p, positive
        self.k = topk_needed(n, p)
        self.buf = np.empty((rows, 0))
        self.thr = None                   # per row: the k-th largest value at the last trim
        self.seen = 0
        self.npos = np.zeros(rows, np.int64)

    def update(self, vals: np.ndarray) -> None:
        """``vals``: (rows, m) new float64 values.

        Once a row holds k values, only new values > its k-th largest (at the last trim) can
        change its top k (an equal one leaves its values as they are: ReLU zeros of a mostly silent
        channel); they are appended (rows padded with -inf to the longest), and the
        buffer is trimmed back to each row's top k by one partition only when it exceeds
        ``2k + TRIM_SLACK`` columns.  Exact: the buffer always contains every row's top k.
        """
        self.seen += vals.shape[1]
        if self.positive:
            self.npos += np.count_nonzero(vals > 0, axis=1)
        if self.thr is not None:
            keep = vals > self.thr[:, None]    # a value equal to the k-th largest leaves the top k's values as they are
            cnt = np.count_nonzero(keep, axis=1)
            if not cnt.any():
                return
            rows, cols = np.nonzero(keep)      # row-major: each row's kept values together, in order
            new = np.full((vals.shape[0], int(cnt.max())), -np.inf)
            new[rows, np.arange(rows.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)] = vals[rows, cols]
            vals = new                         # -inf pads never reach a full row's top k
        self.buf = np.concatenate([self.buf, vals], axis=1)
        if self.buf.shape[1] > 2 * self.k + TRIM_SLACK:
            self._trim()

    def _trim(self) -> None:
        if self.buf.shape[1] > self.k:
            self.buf = np.partition(self.buf, self.buf.shape[1] - self.k, axis=1)[:, -self.k:]
            self.thr = self.buf.min(axis=1)

    def result(self) -> np.ndarray:
        if self.seen != self.n:
            raise DataError(f"profiling saw {self.seen} values, expected {self.n}")
        self._trim()
        s = np.sort(self.buf, axis=1)           # s[:, j] == sorted_full[n - k + j]
        base = self.n - s.shape[1]
        counts = self.npos if self.positive else np.full(s.shape[0], self.n)
        out = np.zeros(s.shape[0])
        for r, m in enumerate(counts):          # the counted values are the last m of the sorted stream
            if m == 0:
                continue                        # no positive value: a dead channel/layer, lambda 0
            lo, hi, gamma = percentile_index(int(m), self.p)
            off = self.n - int(m) - base
            out[r] = _lerp(np.float64(s[r, off + lo]), np.float64(s[r, off + hi]), gamma)
        return out


# -- activation sources ----------------------------------------------------------
def _external_preprocess(meta, x):
    from snncc.analog import apply_preprocess
    return apply_preprocess(meta.get("preprocess_external") or meta.get("preprocess") or {}, x)


class _OrtSource:
    def __init__(self, graph: Graph, names: list[str]):
        import onnx
        import onnxruntime as ort
        m = onnx.ModelProto()
        m.CopyFrom(graph.onnx_model)
        types = {}
        try:
            inf = onnx.shape_inference.infer_shapes(m)
            for vi in list(inf.graph.value_info) + list(inf.graph.output) + list(inf.graph.input):
                types[vi.name] = vi.type.tensor_type.elem_type
        except Exception:       # noqa: BLE001 - types are a convenience
            pass
        self.input_name = graph.meta.get("input_name") or m.graph.input[0].name
        inp = next(i for i in m.graph.input if i.name == self.input_name)
        in_type = inp.type.tensor_type.elem_type
        have = {o.name for o in m.graph.output}
        for t in names:
            if t not in have:
                m.graph.output.append(onnx.helper.make_tensor_value_info(t, types.get(t, in_type) or in_type, None))
                have.add(t)
        self.names = names
        so = ort.SessionOptions()
        so.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types (e.g. an opset it does not know)
            import re

            from snncc.errors import one_line
            from snncc.frontend.loader import TESTED_OPSETS
            why = re.sub(r"/onnxruntime_src/\S+ [^)]*\)\s*", "", one_line(e, 1000))   # drop ORT's source location
            raise ModelError(f"onnxruntime cannot run the model to profile its activations ({why[:200]})",
                             f"re-export the model at an opset this onnxruntime supports ({TESTED_OPSETS})") from None
        self.dtype = onnx.helper.tensor_dtype_to_np_dtype(in_type)
        self.layout = graph.meta.get("input_layout", "NCHW")
        shp = graph.meta.get("onnx_input_shape")
        self.shape = tuple(int(s) for s in shp) if shp and all(isinstance(s, (int, np.integer)) and s > 0
                                                               for s in shp) else None
        self.meta = graph.meta

    def __call__(self, xb):
        x = _external_preprocess(self.meta, xb)
        if x.ndim == 4 and self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        if self.shape is not None:
            x = x.reshape((x.shape[0],) + self.shape)
        x = np.ascontiguousarray(x.astype(self.dtype))
        outs = run_batched(lambda b: self.sess.run(self.names, {self.input_name: b}), x,
                           self.meta.get("onnx_batch"), x.shape[0])
        return dict(zip(self.names, outs))


def _to_cl(arr, perm, shape, name):
    a = np.asarray(arr, np.float64)
    if perm is not None and len(perm) != a.ndim and a.ndim > 2:
        raise ModelError(f"ONNX tensor for population {name!r} has rank {a.ndim} but onnx_perm {tuple(perm)}",
                         "the front end recorded a wrong onnx_perm for this node")
    if perm is not None and len(perm) == a.ndim and tuple(perm) != tuple(range(a.ndim)):
        a = a.transpose(perm)
    if int(np.prod(a.shape[1:])) != int(np.prod(shape)):
        raise ModelError(f"ONNX tensor for population {name!r} has shape {a.shape[1:]}, expected {tuple(shape)}",
                         "the front end recorded a wrong onnx_tensor for this node")
    return a.reshape((a.shape[0],) + tuple(shape))


def run(graph: Graph, ctx) -> Graph:
    if ctx is None or ctx.calib is None:
        raise DataError("activation profiling needs calibration data", "pass calibration images (--calib)")
    x = np.asarray(ctx.calib)
    n_img = int(x.shape[0])
    if n_img == 0:
        raise DataError("calibration data has no images", "pass at least one calibration image")
    pops = [p for p in graph.populations() if p.op != "input"]
    p = float(ctx.percentile)
    use_ort = graph.onnx_model is not None
    ort_pops = [q for q in pops if use_ort and q.onnx_tensor]
    ana_pops = [q for q in pops if q not in ort_pops]
    if ana_pops and graph.meta.get("normalized"):
        if all(q.name in graph.meta.get("activations", {}) for q in ana_pops):
            ctx.log("profile_activations: graph already normalised; keeping the recorded activations")
            return graph
        raise ModelError("cannot profile populations without an ONNX tensor on a normalised graph",
                         "profile before normalize")
    src = _OrtSource(graph, sorted({q.onnx_tensor for q in ort_pops})) if ort_pops else None
    pos = ctx.percentile_of == "positive"
    layer = {q.name: TopK(1, n_img * int(np.prod(q.shape)), p, pos) for q in pops}
    chw = {q.name: TopK(q.channels, n_img * int(np.prod(q.shape[:-1])), p, pos)
           for q in pops if ctx.channel_wise and q.op != "output"}
    mx = {q.name: -np.inf for q in pops}
    # per image: onnxruntime's float32 outputs, their float64 channels-last copies, the top-k merge buffers
    bs = fit_batch(max(1, int(ctx.batch_size or 64)), 24 * sum(int(np.prod(q.shape)) for q in pops))
    from tqdm import tqdm
    # batches of a seeded random order: the percentiles do not depend on the order, but calibration files
    # are often sorted by class, and in random order each running top k settles within a few batches,
    # after which few new values pass its filter (TopK.update)
    order = np.random.default_rng(0).permutation(n_img)
    for i in tqdm(range(0, n_img, bs), desc="profiling", unit="batch", disable=not ctx.progress, leave=False):
        ib = np.sort(order[i:i + bs])
        xb = x[ib]
        vals = {}
        if src is not None:
            o = src(xb)
            for q in ort_pops:
                vals[q.name] = _to_cl(o[q.onnx_tensor], q.onnx_perm, q.shape, q.name)
        if ana_pops:
            from snncc.analog import run_analog
            a = run_analog(graph, xb, keep=True)
            for q in ana_pops:
                vals[q.name] = np.asarray(a[q.name], np.float64)
        for q in pops:
            v = vals[q.name]
            if not np.all(np.isfinite(v)):
                bad = int(ib[np.argmin(np.isfinite(v.reshape(len(ib), -1)).all(axis=1))])
                raise DataError(f"non-finite activations in population {q.name!r} on calibration image {bad}",
                                "check the calibration data and preprocessing (--input-scale/--mean/--std)")
            layer[q.name].update(v.reshape(1, -1))
            mx[q.name] = max(mx[q.name], float(v.max()))
            if q.name in chw:
                chw[q.name].update(v.reshape(-1, q.channels).T)
    acts = {}
    for q in pops:
        acts[q.name] = {"layer": float(layer[q.name].result()[0]),
                        "channel": [float(v) for v in chw[q.name].result()] if q.name in chw else None,
                        "max": float(mx[q.name])}
    graph.meta["activations"] = acts
    graph.meta["percentile"] = p
    graph.meta["percentile_of"] = "positive" if pos else "all"
    graph.meta["profile"] = {"images": n_img, "source": "onnxruntime" if not ana_pops else
                             ("analog" if not ort_pops else "onnxruntime+analog")}
    return graph
