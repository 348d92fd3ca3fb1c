"""Event-driven integrate-and-fire simulation of a spiking-level :class:`~snncc.ir.Graph`.

>>> from snncc.runtime import Network
>>> net = Network(graph)                       # spiking-level graph (after the passes)
>>> res = net.run(x_raw_nhwc, timesteps=256, labels=y)
>>> res.predictions[:, -1], res.accuracy(), res.sops

The semantics are those of ``docs/CONTRACTS.md`` (executed densely by
:func:`snncc.runtime.reference.simulate_reference`); layout, kernels, statistics
and the certified early exit are described in ``docs/runtime.md``.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numba
import numpy as np

from snncc import nn, synapses
from snncc.analog import preprocess
from snncc.data import check_images, check_labels, fit_batch
from snncc.errors import DataError
from snncc.ir import EdgeKind, Graph, IRError, Synapse
from snncc.runtime import kernels as K


#: with threads=None, batches with fewer (images x neurons) than this run on one thread
_SERIAL_BELOW = 200_000
#: pairwise early-exit bounds are computed exactly when sources x classes^2 is at most this
_PAIR_BUDGET = 50_000_000
#: time steps per block: each population runs this many steps before the next one does
#: (the same simulation, reordered for cache locality; see kernels.run_steps)
BLOCK = 16
#: at most this many bytes of per-image spike-list scratch (a block holds every population's
#: spike lists of all its steps): big networks get shorter blocks
_SCRATCH_BYTES = 64 << 20


_t2 = nn.ints


#: the longest simulation ``run`` accepts (predictions are kept per image and step: 8 MB per image here)
MAX_TIMESTEPS = 1_000_000


def _integral(v) -> bool:
    """An int (numpy's included), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_timesteps(timesteps) -> int:
    """``timesteps`` as an int in 1..MAX_TIMESTEPS, else :class:`DataError`."""
    if not _integral(timesteps) or timesteps <= 0:
        raise DataError(f"timesteps must be a positive integer, got {timesteps!r}", "e.g. -T 256")
    if timesteps > MAX_TIMESTEPS:
        raise DataError(f"{timesteps} time steps is more than this runtime simulates ({MAX_TIMESTEPS:,}; the "
                        f"prediction of every step is kept)", f"use -T {MAX_TIMESTEPS} or fewer")
    return int(timesteps)


def packed_size(size: int) -> int:
    """Bytes per step of a bit-packed spike train of ``size`` neurons."""
    return (int(size) + 7) // 8


def pack_trains(trains: np.ndarray) -> np.ndarray:
    """``(N, T, size)`` 0/1 spike trains -> the ``(N, T, ceil(size/8))`` uint8 form segments replay and
    keep: neuron ``i`` in bit ``i % 8`` of byte ``i // 8``."""
    return np.packbits(np.asarray(trains, dtype=bool), axis=-1, bitorder="little")


def unpack_trains(packed: np.ndarray, size: int) -> np.ndarray:
    """The inverse of :func:`pack_trains`: ``(N, T, size)`` 0/1 uint8."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, count=int(size), bitorder="little")


def _positive(name: str, v) -> int:
    if not _integral(v) or v <= 0:
        raise DataError(f"{name} must be a positive integer, got {v!r}", f"e.g. {name}=64" if name == "batch_size"
                        else f"e.g. {name}=2, or None for the default")
    return int(v)


# ----------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What :meth:`Network.run` returns.  Per-image arrays have the images on axis 0.

    * ``predictions`` (N, T) int64: argmax of the output potential after each step
      (after an early exit, later steps repeat the certified final answer);
    * ``potentials`` (N, n_classes) float64: output potential at the last simulated step;
    * ``spikes`` {population: (N,) int64}: total spikes of each ``neuron``/``maxgate`` population;
    * ``sops`` {population: (N,) int64}: synaptic operations (weight additions actually
      performed) into each population; the analog input layer is not counted (see ``input_macs``);
    * ``firing_rate`` {population: float}: spikes / (neurons x simulated steps), over all images;
    * ``prop_error`` {neuron population: float}: mean over images and neurons of
      ``(V_i(T_run) - V_i(0)) / T_run``, the residual charge of Eq. 9-11 (the error ``E`` between the
      firing rate and the analog activation it encodes);
    * ``rates`` {population: (N, size) float}: per-neuron rates (spikes / steps) for the
      populations named in ``record`` (the output population gives ``V / steps``);
    * ``steps_run`` (N,) int64: steps simulated per image (``T`` unless early exit);
    * ``accuracy_at`` {t: accuracy} for t = 1..T when labels were given;
    * ``trains`` {population: (N, T, size) uint8} and ``potential_trace`` (N, T, n_classes)
      when ``trace=True`` (small nets only);
    * ``input_macs`` (N,) multiply-accumulates of the analog first layer (computed once);
    * ``first_input`` (N,) int64: the first step (0-based) at which the output received input
      (a spike on one of its in-edges, or its analog current), -1 if none: the start of the
      window the stable-prediction exit counts (``exit_stable``, :mod:`snncc.exitsearch`).
    """

    predictions: np.ndarray
    potentials: np.ndarray
    spikes: dict[str, np.ndarray]
    sops: dict[str, np.ndarray]
    firing_rate: dict[str, float]
    prop_error: dict[str, float]
    steps_run: np.ndarray
    timesteps: int
    rates: dict[str, np.ndarray] = field(default_factory=dict)
    accuracy_at: dict[int, float] = field(default_factory=dict)
    labels: np.ndarray | None = None
    trains: dict[str, np.ndarray] = field(default_factory=dict)
    potential_trace: np.ndarray | None = None
    input_macs: np.ndarray | None = None
    wall_time: float = 0.0
    first_input: np.ndarray | None = None

    def accuracy(self, t: int | None = None) -> float:
        """Accuracy of the prediction after step ``t`` (1..T; default T)."""
        if self.labels is None:
            raise DataError("no labels were given to run()", "pass labels=... to Network.run")
        if t is None:
            t = self.timesteps
        if not _integral(t) or not 1 <= t <= self.timesteps:
            raise DataError(f"accuracy(t): t must be a step 1..{self.timesteps}, got {t!r}",
                            f"e.g. accuracy({self.timesteps}), or accuracy() for the last step")
        return float(np.mean(self.predictions[:, int(t) - 1] == self.labels))

    @property
    def total_sops(self) -> np.ndarray:
        """(N,) SOPs per image over all populations."""
        return sum(self.sops.values()) if self.sops else np.zeros(len(self.predictions), np.int64)

    @property
    def mean_steps(self) -> float:
        return float(np.mean(self.steps_run)) if len(self.steps_run) else 0.0


# ----------------------------------------------------------------------------------
# the program: typed tables the numba driver executes (built once per Network)
# ----------------------------------------------------------------------------------
#: membranes, constant currents and weight blocks start on 64-byte boundaries (16 float32s): the
#: kernels' 16-float vector loads and stores then never straddle two cache lines (with numpy's
#: 16-byte alignment every one did; aligned, ResNet-20 runs in ~0.9x the time: docs/runtime.md)
ALIGN = 16


def _up(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`ALIGN`."""
    return -(-n // ALIGN) * ALIGN


def _pad(parts: list, n: int) -> int:
    """Append zeros to the float32 blocks ``parts`` (``n`` floats so far) up to a multiple of
    :data:`ALIGN`; returns the new length."""
    if n % ALIGN:
        parts.append(np.zeros(_up(n) - n, np.float32))
    return _up(n)


def aligned(shape, dtype, fill=0) -> np.ndarray:
    """A C-contiguous array whose data starts on a 64-byte boundary, set to ``fill`` (a scalar, or an
    array of that shape to copy)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    buf = np.empty(n * dtype.itemsize + 64, np.uint8)
    start = -buf.ctypes.data % 64
    a = buf[start:start + n * dtype.itemsize].view(dtype).reshape(shape)
    a[...] = fill
    return a


@functools.lru_cache(maxsize=64)
def _coords(h: int, w: int, c: int) -> np.ndarray:
    """(H*W*C, 3) int32 table: flat channels-last index -> (h, w, c)."""
    hh, ww, cc = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return np.ascontiguousarray(np.stack([hh.ravel(), ww.ravel(), cc.ravel()], axis=1), dtype=np.int32)


def _csr(syn: Synapse, src_shape, dst_shape):
    """COO (source, target, weight) of the avgpool / identity / subsample_pad maps."""
    sc = np.asarray(syn.params["scale"], dtype=np.float64)
    if syn.op == "identity":
        s = int(np.prod(src_shape))
        c = int(src_shape[-1])
        idx = np.arange(s, dtype=np.int64)
        return idx, idx, np.tile(sc, s // c), s
    h, w, c = (int(v) for v in src_shape)
    oh, ow, co = (int(v) for v in dst_shape)
    ch = np.arange(c, dtype=np.int64)
    srcs, tgts, vals = [], [], []
    if syn.op == "avgpool":
        kh, kw = _t2(syn.attrs["kernel"])
        sh, sw = _t2(syn.attrs["stride"])
        pads = _t2(syn.attrs["pads"])
        div = nn.avgpool_divisor(h, w, (kh, kw), (sh, sw), pads, bool(syn.attrs.get("count_include_pad", False)))
        og, owg = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
        for i in range(kh):
            for j in range(kw):
                hh = og * sh - pads[0] + i
                ww = owg * sw - pads[1] + j
                m = (hh >= 0) & (hh < h) & (ww >= 0) & (ww < w)
                s_pos = (hh[m] * w + ww[m]).astype(np.int64)
                t_pos = (og[m] * ow + owg[m]).astype(np.int64)
                srcs.append((s_pos[:, None] * c + ch).ravel())
                tgts.append((t_pos[:, None] * c + ch).ravel())
                vals.append((sc[None, :] / div[og[m], owg[m]][:, None]).ravel())
    elif syn.op == "subsample_pad":
        sh, sw = _t2(syn.attrs["stride"])
        offh, offw = _t2(syn.attrs.get("offset", (0, 0)))
        cp0 = _t2(syn.attrs["cpad"])[0]
        og, owg = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
        s_pos = ((offh + og * sh) * w + offw + owg * sw).ravel().astype(np.int64)
        t_pos = (og * ow + owg).ravel().astype(np.int64)
        srcs.append((s_pos[:, None] * c + ch).ravel())
        tgts.append((t_pos[:, None] * co + cp0 + ch).ravel())
        vals.append(np.broadcast_to(sc[cp0:cp0 + c], (len(s_pos), c)).ravel())
    else:
        raise IRError(f"no sparse form for synapse {syn.op!r}")
    return np.concatenate(srcs), np.concatenate(tgts), np.concatenate(vals), h * w * c


class _Program:
    """Population and edge tables plus flat parameter arrays (see runtime/kernels.py)."""

    def __init__(self):
        self.pop_rows: list[list[int]] = []
        self.edge_rows: list[list[int]] = []
        self._w: list[np.ndarray] = []
        self._nw = 0
        self._coord_off: dict[tuple, int] = {}
        self._c: list[np.ndarray] = []
        self._nc = 0
        self._ptr: list[np.ndarray] = []
        self._nptr = 0
        self._ind: list[np.ndarray] = []
        self._dat: list[np.ndarray] = []
        self._nind = 0
        self._b: list[np.ndarray] = []
        self.cb: list[np.ndarray] = []     # per-neuron bias of every neuron population (in V order)
        self._nb = 0
        self.NV = self.NI = self.N0 = self.NS = self.NG = 0
        self.maxsize = 1

    def pad_v(self) -> None:
        """Round ``NV`` (the membranes per image, and ``cb`` with them) up to a multiple of ``ALIGN``."""
        self.NV = _pad(self.cb, self.NV)

    def weights(self, w: np.ndarray) -> int:
        self._nw = _pad(self._w, self._nw)  # each block starts on a 64-byte boundary
        off = self._nw
        self._w.append(np.ascontiguousarray(w, dtype=np.float32).reshape(-1))
        self._nw += self._w[-1].size
        return off

    def coords(self, shape) -> int:
        key = tuple(int(v) for v in shape)
        if key not in self._coord_off:
            self._coord_off[key] = self._nc
            self._c.append(_coords(*key).reshape(-1))
            self._nc += self._c[-1].size
        return self._coord_off[key]

    def csr(self, src_idx, tgt_idx, val, n_src) -> int:
        order = np.argsort(src_idx, kind="stable")
        ptr = np.zeros(n_src + 1, dtype=np.int64)
        np.cumsum(np.bincount(src_idx, minlength=n_src), out=ptr[1:])
        self._ind.append(np.asarray(tgt_idx[order], dtype=np.int32))
        self._dat.append(np.asarray(val[order], dtype=np.float32))
        self._ptr.append(ptr + self._nind)
        self._nind += len(order)
        off = self._nptr
        self._nptr += n_src + 1
        return off

    def bias(self, b: np.ndarray) -> int:
        off = self._nb
        self._b.append(np.asarray(b, dtype=np.float32))
        self._nb += b.size
        return off

    def edge(self, kind: int, src: int, off0: int, off1: int, geo) -> None:
        row = [kind, src, off0, off1] + [int(v) for v in geo]
        self.edge_rows.append(row + [0] * (K.E_COLS - len(row)))

    def finish(self) -> None:
        def cat(parts, dtype):
            return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(1, dtype), dtype=dtype)
        self.pops = np.asarray(self.pop_rows, dtype=np.int64).reshape(-1, K.P_COLS)
        self.edges = np.asarray(self.edge_rows, dtype=np.int64).reshape(-1, K.E_COLS)
        w = cat(self._w, np.float32)
        self.wts = aligned(w.shape, w.dtype, w)
        self.coord = cat(self._c, np.int32)
        self.indptr = cat(self._ptr, np.int64)
        self.indices = cat(self._ind, np.int32)
        self.data = cat(self._dat, np.float32)
        self.bias_all = cat(self._b, np.float32)
        self.pad_v()                        # rows of V (and of cbias) a whole number of 64-byte lines
        self.N0 = _up(self.N0)
        cb = cat(self.cb, np.float32)
        self.cbias = aligned(cb.shape, cb.dtype, cb)


def _add_edge(prog: _Program, src: int, syn: Synapse, src_shape, dst_shape) -> None:
    """Append one spiking in-edge (conv / dense / CSR synapse) to the program."""
    if syn.op == "conv":
        w = np.asarray(syn.params["weight"], dtype=np.float32)
        kh, kw, cg, cout = w.shape
        hs, ws, cs = (int(v) for v in src_shape)
        oh, ow, _ = (int(v) for v in dst_shape)
        (sh, sw), (pt, pl, _, _), (dh, dw), groups = nn.conv_geometry(syn.attrs)
        coff = prog.coords((hs, ws, cs))
        if groups == 1 and sw == 1 and dw == 1:   # (KH, KW, Cin, Cout) -> (KH, Cin, KW reversed, Cout)
            woff = prog.weights(w[:, ::-1].transpose(0, 2, 1, 3))
            prog.edge(K.E_CONV_W1, src, woff, coff, (cs, kh, kw, cout, oh, ow, sh, pt, pl, dh))
        else:
            woff = prog.weights(w)
            prog.edge(K.E_CONV, src, woff, coff, (kh, kw, cg, cout, groups, oh, ow, sh, sw, pt, pl, dh, dw))
    elif syn.op == "dense":
        w = np.asarray(syn.params["weight"], dtype=np.float32)
        tiled = synapses.dense_tile(syn) > 1        # rows s mod R (compact_dense), else row s
        prog.edge(K.E_DENSE, src, prog.weights(w), 0, (w.shape[1], w.shape[0] if tiled else 0))
    elif syn.op == "identity" and tuple(src_shape) == tuple(dst_shape):   # I[s] += scale[channel of s]
        sc = np.asarray(syn.params["scale"], dtype=np.float32)
        size = int(np.prod(src_shape))
        prog.edge(K.E_IDENTITY, src, prog.weights(np.tile(sc, size // sc.size)), 0, ())
    elif syn.op in ("avgpool", "identity", "subsample_pad"):
        prog.edge(K.E_CSR, src, prog.csr(*_csr(syn, src_shape, dst_shape)), 0, ())
    else:
        raise IRError(f"runtime does not support synapse {syn.op!r}")


def _split_syn(syn: Synapse, sign: int) -> Synapse:
    """A copy of ``syn`` keeping only its positive (sign=1) or negative (-1) weights."""
    key = "weight" if syn.op in ("conv", "dense") else "scale"
    p = dict(syn.params)
    w = np.asarray(p[key], dtype=np.float64)
    p[key] = np.maximum(w, 0) if sign > 0 else np.minimum(w, 0)
    return Synapse(syn.op, dict(syn.attrs), p)


@dataclass
class _Pop:
    name: str
    op: str
    shape: tuple
    size: int
    channels: int
    index: int                            # row in the program's population table
    input_syn: Synapse | None = None      # analog edge from the input population
    v_off: int = 0
    i_off: int = 0
    s_off: int = 0
    i0_off: int = -1
    bias: np.ndarray | None = None         # (C,) float32


# ----------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------
class Network:
    """Event-driven IF simulator of a spiking-level graph (see module docstring)."""

    def __init__(self, graph: Graph):
        if not graph.is_spiking_level():
            bad = sorted({n.op for n in graph.nodes()} - {"input", "neuron", "maxgate", "output"})
            raise IRError(f"Network needs a spiking-level graph; found op-level ops {bad}")
        self.graph = graph
        self.input_name = graph.input.name
        self.input_shape = tuple(int(v) for v in graph.input.shape)
        out = graph.output
        if out.op != "output":
            raise IRError(f"sink {out.name!r} must be an 'output' population, not {out.op!r}")
        self.output_name = out.name
        self.n_classes = int(np.prod(out.shape))
        self.init_membrane = float(graph.meta.get("init_membrane") or 0.0)
        # steps simulated per population before moving on (see kernels.run_steps); 1 = step-major
        self.block = BLOCK
        self.pops: list[_Pop] = []
        prog = self._prog = _Program()
        index = {}
        for node in graph.populations():
            if node.op == "input":
                continue
            shape = tuple(int(v) for v in node.shape)
            size = int(np.prod(shape))
            c = int(shape[-1])
            bv = node.params.get("bias")
            bias = np.zeros(c, np.float32) if bv is None else np.broadcast_to(
                np.asarray(bv, dtype=np.float32), (c,)).copy()
            pop = _Pop(node.name, node.op, shape, size, c, len(self.pops), bias=bias)
            index[node.name] = pop.index
            e0 = len(prog.edge_rows)
            for src, d in graph.in_edges(node.name):
                src_shape = tuple(int(v) for v in graph.node(src).shape)
                if node.op == "maxgate":
                    if src == self.input_name:
                        raise IRError(f"maxgate {node.name!r} on the analog input is not supported")
                    if len(src_shape) != 3:
                        raise IRError(f"maxgate {node.name!r} needs an (H, W, C) source")
                    kh, kw = _t2(node.attrs["kernel"])
                    sh, sw = _t2(node.attrs["stride"])
                    pt, pl, _, _ = _t2(node.attrs.get("pads", (0, 0, 0, 0)))
                    rule = node.attrs.get("rule", "leader")
                    if rule not in ("leader", "max"):
                        raise IRError(f"maxgate {node.name!r} has unknown rule {rule!r}")
                    gate_off, prog.NG = prog.NG, prog.NG + int(np.prod(src_shape))   # its gcounts
                    prog.edge(K.E_GATE, index[src], gate_off, 0, (src_shape[0], src_shape[1], src_shape[2], shape[0],
                                                           shape[1], kh, kw, sh, sw, pt, pl, int(rule == "max")))
                    continue
                if d["kind"] is EdgeKind.DATA or d["syn"] is None:
                    raise IRError(f"population {node.name!r} has a DATA in-edge from {src!r}")
                if src == self.input_name:
                    pop.input_syn = d["syn"]
                else:
                    _add_edge(prog, index[src], d["syn"], src_shape, shape)
            op = {"neuron": K.OP_NEURON, "output": K.OP_OUTPUT, "maxgate": K.OP_MAXGATE}[node.op]
            if node.op == "neuron":
                prog.pad_v()                    # its membranes start on a 64-byte boundary
                pop.v_off, prog.NV = prog.NV, prog.NV + size
                prog.cb.append(np.tile(bias, size // c))    # its bias per neuron (read where no analog input drives it)
            if node.op == "output":     # neurons take their events into V directly
                pop.i_off, prog.NI = prog.NI, prog.NI + size
            if node.op != "output":
                pop.s_off, prog.NS = prog.NS, prog.NS + size
            if pop.input_syn is not None:
                pop.i0_off, prog.N0 = _up(prog.N0), _up(prog.N0) + size
            prog.maxsize = max(prog.maxsize, size)
            prog.pop_rows.append([op, size, c, pop.v_off, pop.i_off, pop.s_off, pop.i0_off, prog.bias(bias),
                                  e0, len(prog.edge_rows), -1])
            self.pops.append(pop)
        prog.finish()
        self._neurons = sum(p.size for p in self.pops)
        self._out = self.pops[-1] if self.pops[-1].name == self.output_name else \
            next(p for p in self.pops if p.name == self.output_name)
        self._static_bounds()

    # -- early-exit bounds ---------------------------------------------------------
    def _static_bounds(self) -> None:
        """Static parts of the early-exit bounds (see docs/runtime.md, "Certified early exit").

        Per class ``k``: ``lo_k``/``hi_k`` = bias + the sum of the negative/positive weights
        into ``k`` (bounds of one step's current), ``abs_k`` = bias + sum of |weights| (for the
        rounding margin).  Per class pair ``(c, k)``: ``pair[c, k]`` = a lower bound of one
        step's current difference ``I_c - I_k``: ``b_c - b_k + sum_j min(0, w_jc - w_jk)``
        (each source neuron fires 0 or 1 times per step), from the synapse's effective
        ``(sources x classes)`` matrix when it is small enough, else ``lo_c - hi_k``.
        """
        out = self._out
        g = self.graph
        lo = np.asarray(out.bias, dtype=np.float64).reshape(-1).copy()
        lo = np.broadcast_to(lo, out.shape).reshape(-1).copy() if out.size != lo.size else lo
        bias = lo.copy()
        hi = lo.copy()
        ab = np.abs(lo)
        k = lo.size
        pair = bias[:, None] - bias[None, :]
        exact = True
        for src, d in g.in_edges(out.name):
            if src == self.input_name:
                continue
            src_shape = tuple(int(v) for v in g.node(src).shape)
            ones = np.ones((1,) + src_shape)
            neg = synapses.apply(_split_syn(d["syn"], -1), ones).reshape(-1)
            pos = synapses.apply(_split_syn(d["syn"], 1), ones).reshape(-1)
            lo += neg
            hi += pos
            ab += pos - neg
            fin = int(np.prod(src_shape))
            if exact and fin * k * k <= _PAIR_BUDGET:
                if d["syn"].op == "dense":     # a tiled one's rows repeat over the positions
                    w = np.asarray(d["syn"].params["weight"], dtype=np.float64)
                    m = np.tile(w, (fin // w.shape[0], 1)).reshape(fin, k)
                else:   # the synapse applied to every one-hot source: its effective matrix
                    m = synapses.apply(d["syn"], np.eye(fin).reshape((fin,) + src_shape)).reshape(fin, k)
                for c in range(k):
                    pair[c] += np.minimum(m[:, c:c + 1] - m, 0.0).sum(axis=0)
            else:
                exact = False
        if not exact:
            pair = lo[:, None] - hi[None, :]
        self._lo, self._hi, self._abs, self._pair = lo, hi, ab, np.ascontiguousarray(pair)

    def image_bytes(self, trains: int = 0) -> int:
        """Working memory of one image in a batch, in bytes: membranes, spike lists and counts,
        constant currents (and their float64 source), the block's spike-list scratch, and
        ``trains`` bytes of recorded/replayed spike trains.  :func:`snncc.data.fit_batch` keeps
        ``batch x this`` within ``snncc.data.BATCH_BYTES``."""
        pr = self._prog
        scratch = 4 * pr.NS * max(1, min(int(self.block), _SCRATCH_BYTES // (4 * max(pr.NS, 1))))
        return 4 * pr.NV + 12 * pr.NS + 4 * pr.NG + 16 * pr.N0 + 4 * pr.NI + scratch + int(trains)

    # -- running ---------------------------------------------------------------------
    def run(self, x: np.ndarray, timesteps: int, *, labels: np.ndarray | None = None,
            early_exit: bool = False, threads: int | None = None, batch_size: int = 64,
            callback: Callable | None = None, progress: bool = True, record: Iterable[str] = (),
            trace: bool = False, until: str | None = None, exit_stable: int | None = None) -> RunResult:
        """Simulate raw channels-last images ``x`` (N, H, W, C) for ``timesteps`` steps.

        ``graph.meta['preprocess']`` is applied here.  ``labels`` (N,) adds
        ``accuracy_at``; ``early_exit`` stops an image once its final prediction is
        certified (see docs/runtime.md); ``exit_stable = m`` stops an image once its prediction has
        not changed for ``m`` consecutive steps (a heuristic: not certified, see docs/runtime.md;
        ``"auto"``: the window chosen on calibration images at conversion, :mod:`snncc.exitsearch`);
        ``threads`` sets numba's thread count for the
        call; ``callback(t, predictions_at_t, batch_slice)`` is called after each step
        t = 1..T of each batch; ``record`` names populations whose per-neuron rates are
        returned; ``trace`` keeps every spike train and output potential (small nets).
        ``until`` names a population: only it and the populations before it in topological
        order are simulated (exactly as in a full run, since none of them depends on a later
        one); the result has their statistics only and, unless ``until`` is the output, no
        predictions (all -1).
        """
        T = check_timesteps(timesteps)
        stable = self.exit_window(exit_stable)
        want = f"(N, {', '.join(map(str, self.input_shape))})"
        x = check_images(x, want, "data")
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"expected raw channels-last data of shape {want}, got {x.shape}",
                            "convert the data to the model's input shape")
        n = x.shape[0]
        labels = None if labels is None else check_labels(labels, n, self.n_classes)
        record = [record] if isinstance(record, str) else ([] if record is None else list(record))
        known = {p.name for p in self.pops}
        n_sim = len(self.pops)
        if until is not None:
            if until not in known:
                raise DataError(f"cannot simulate until unknown population {until!r}",
                                f"choose among {', '.join(sorted(known))}")
            if early_exit or stable:
                raise DataError("early exit needs the output population, which a run with `until` does not simulate",
                                "drop early_exit/exit_stable or until")
            n_sim = next(p.index for p in self.pops if p.name == until) + 1
            known = {p.name for p in self.pops[:n_sim]}
        for r in record:
            if r not in known:
                raise DataError(f"cannot record unknown or unsimulated population {r!r}",
                                f"choose among {', '.join(sorted(known))}")
        batch_size = fit_batch(_positive("batch_size", batch_size), self.image_bytes())
        threads = None if threads is None or (_integral(threads) and threads == 0) else _positive("threads", threads)
        if callback is not None and not callable(callback):
            raise DataError(f"callback must be callable, got {type(callback).__name__}",
                            "pass a function callback(t, predictions_at_t, batch_slice)")
        old_threads = numba.get_num_threads()
        if not threads and min(n, batch_size) * self._neurons < _SERIAL_BELOW:
            threads = 1     # tiny nets: a parallel launch per kernel costs more than the work
        if threads:
            numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
        t0 = time.perf_counter()
        parts = []
        try:
            from tqdm.auto import tqdm
            with tqdm(total=n, unit="img", desc=f"simulating T={T}", disable=not progress, leave=False) as bar:
                for b0 in range(0, n, batch_size):
                    sl = slice(b0, min(n, b0 + batch_size))
                    parts.append(self._run_batch(x[sl], T, early_exit, callback, sl, record, trace, n_sim,
                                                 stable=stable))
                    bar.update(sl.stop - sl.start)
                    if labels is not None and n_sim == len(self.pops):
                        done = sl.stop
                        acc = np.mean(np.concatenate([p["pred"][:, -1] for p in parts]) == labels[:done])
                        bar.set_postfix(acc=f"{acc:.4f}")
        finally:
            if threads:
                numba.set_num_threads(old_threads)
        return self._collect(parts, n, T, labels if n_sim == len(self.pops) else None, record, trace,
                             time.perf_counter() - t0)

    def exit_window(self, exit_stable) -> int:
        """``exit_stable`` as the runtime's window (0: off): a positive int, None/0, or ``"auto"``, the window
        chosen at conversion (``meta['exit_stable']``, :mod:`snncc.exitsearch`; none chosen: off)."""
        if isinstance(exit_stable, str) and exit_stable == "auto":
            rec = self.graph.meta.get("exit_stable")
            if not isinstance(rec, dict):
                raise DataError("exit_stable='auto' needs the window chosen at conversion, and this network has none",
                                "convert with --exit-stable auto, or give the window (e.g. --exit-stable 64)")
            return int(rec.get("m") or 0)
        if exit_stable is None or (_integral(exit_stable) and exit_stable == 0):
            return 0
        return _positive("exit_stable", exit_stable)

    def run_segment(self, x: np.ndarray, timesteps: int, first: str, last: str,
                    replay: dict[str, np.ndarray], keep: Iterable[str] = (), record: Iterable[str] = (),
                    batch_size: int = 64) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Simulate only the populations from ``first`` to ``last`` (topological order) of images ``x``.

        Every population before ``first`` that feeds one of them must be in ``replay``: its
        spike train as a run of the whole network makes it, bit-packed (:func:`pack_trains`:
        ``(N, T, ceil(size/8))`` uint8, e.g. ``keep``-ed by an earlier segment); the result is
        then exactly that of a full run for the segment's populations.  Returns ``(rates,
        trains)``: per-neuron rates of the ``record``-ed populations, and the bit-packed spike
        trains of the ``keep``-ed ones (simulated populations of the segment) for later
        segments.  Bias calibration uses it so that each group of layers costs its own
        simulation only.
        """
        T = check_timesteps(timesteps)
        names = [p.name for p in self.pops]
        for end in (first, last):
            if end not in names:
                raise DataError(f"segment end {end!r} is not a population", f"choose among {', '.join(names)}")
        a, b = names.index(first), names.index(last)
        if b < a:
            raise DataError(f"segment {first!r}..{last!r} is empty", "pass first before last in topological order")
        seg = set(names[a:b + 1])
        keep, record = list(keep), list(record)
        for r in keep + record:
            if r not in seg:
                raise DataError(f"population {r!r} is not simulated in segment {first!r}..{last!r}",
                                "keep or record only the segment's populations")
        for p in self.pops[a:b + 1]:
            for src, _ in self.graph.in_edges(p.name):
                if src != self.input_name and src not in seg and src not in replay:
                    raise DataError(f"segment {first!r}..{last!r} needs the spike train of {src!r}",
                                    "pass it in replay")
        x = check_images(x, f"(N, {', '.join(map(str, self.input_shape))})", "data")
        n = x.shape[0]
        size = {p.name: p.size for p in self.pops}
        for k, v in replay.items():
            if k in size and np.shape(v) != (n, T, packed_size(size[k])):
                raise DataError(f"replayed train of {k!r} has shape {np.shape(v)}, expected "
                                f"{(n, T, packed_size(size[k]))}",
                                "pass the bit-packed (images, steps, ceil(neurons/8)) spike train a run of the same "
                                "images made (snncc.runtime.network.pack_trains)")
        rates: dict[str, list] = {r: [] for r in record}
        trains: dict[str, list] = {k: [] for k in keep}
        train_bytes = T * sum(packed_size(size[k]) for k in set(keep) | set(replay) if k in size)
        batch_size = fit_batch(_positive("batch_size", batch_size), self.image_bytes(train_bytes))
        for b0 in range(0, n, batch_size):
            sl = slice(b0, min(n, b0 + batch_size))
            rep = {k: np.asarray(v[sl], dtype=np.uint8) for k, v in replay.items()
                   if k in names[:a]}
            res = self._run_batch(x[sl], T, False, None, sl, record, False, b + 1, (a, rep, keep))
            for r in record:
                rates[r].append(res["rates"][r])
            for k in keep:
                trains[k].append(res["kept"][k])
        return ({r: np.concatenate(v) for r, v in rates.items()},
                {k: np.concatenate(v) for k, v in trains.items()})

    def _run_batch(self, xb, T, early_exit, callback, sl, record, trace, n_sim=None, seg=None, stable=0) -> dict:
        xb = preprocess(self.graph, xb)
        b = xb.shape[0]
        pr = self._prog
        n_pops = len(self.pops)
        n_sim = n_pops if n_sim is None else int(n_sim)
        a, replay, keep = seg if seg is not None else (0, {}, ())
        sim = self.pops[a:n_sim]
        prog_pops = pr.pops[:n_sim]
        tbuf, toff = np.zeros((b, 1), np.uint8), {}
        if seg is not None:         # skip or replay the populations before the segment; record `keep`
            prog_pops, nt = prog_pops.copy(), 0
            for p in self.pops[:n_sim]:
                if (p.index < a and p.name in replay) or p.name in keep:
                    toff[p.name], nt = nt, nt + T * packed_size(p.size)
                    prog_pops[p.index, K.P_T] = toff[p.name]
                if p.index < a:
                    prog_pops[p.index, K.P_OP] = K.OP_REPLAY if p.name in replay else K.OP_SKIP
            tbuf = np.zeros((b, max(nt, 1)), np.uint8)
            for name, tr in replay.items():
                tbuf[:, toff[name]:toff[name] + tr[0].size] = tr.reshape(b, -1)
        I0 = aligned((b, pr.N0), np.float32)
        I = np.zeros((b, pr.NI), dtype=np.float32)
        macs = np.zeros(b, dtype=np.int64)
        i0_out = None
        for p in sim:
            if p.input_syn is None:
                continue
            cur = np.asarray(synapses.apply(p.input_syn, xb).reshape(b, -1), dtype=np.float32)
            # a neuron population's constant current is I0 + b (float32, as the kernel adds them)
            I0[:, p.i0_off:p.i0_off + p.size] = cur + pr.cbias[p.v_off:p.v_off + p.size] if p.op == "neuron" else cur
            if p.op == "output":
                I[:, p.i_off:p.i_off + p.size] = cur
            macs += int(synapses.SYNAPSES[p.input_syn.op].fan_in(p.input_syn, self.input_shape)) * p.size
            if p.op == "output":
                i0_out = cur.astype(np.float64)
        V = aligned((b, pr.NV), np.float32, self.init_membrane)
        Vout = np.zeros((b, self.n_classes), dtype=np.float64)
        idx = np.zeros((b, pr.NS), dtype=np.int32)
        counts = np.zeros((b, pr.NS), dtype=np.int32)
        gcounts = np.zeros((b, max(pr.NG, 1)), dtype=np.int32)
        cnt = np.zeros((b, n_pops), dtype=np.int32)
        tot = np.zeros((b, n_pops), dtype=np.int64)
        sops = np.zeros((b, n_pops), dtype=np.int64)
        active = np.ones(b, dtype=np.uint8)
        pred = np.zeros((b, T), dtype=np.int64) if n_sim == n_pops else np.full((b, T), -1, dtype=np.int64)
        steps_run = np.full(b, T, dtype=np.int64)
        first_in = np.full(b, -1, dtype=np.int64)
        final = np.zeros(b, dtype=np.int64)
        lo = np.broadcast_to(self._lo, (b, self.n_classes)).copy()
        ab = np.broadcast_to(self._abs, (b, self.n_classes)).copy()
        i0o = np.zeros((b, self.n_classes)) if i0_out is None else i0_out
        lo += i0o
        ab += np.abs(i0o)

        block = max(1, min(int(self.block), _SCRATCH_BYTES // (4 * max(pr.NS, 1))))
        # per-neuron spike counts only where rates are returned (totals come from `tot`)
        count = np.array([p.name in record for p in self.pops[:n_sim]], dtype=np.uint8)

        def steps(t0, t1):
            K.run_steps(t0, t1, T, prog_pops, pr.edges, pr.wts, pr.coord, pr.indptr, pr.indices, pr.data,
                        pr.bias_all, pr.cbias, V, Vout, I, I0, idx, cnt, counts, gcounts, tbuf, tot, sops, active,
                        pred, steps_run, final, bool(early_exit), lo, self._pair, i0o, ab, pr.maxsize, block, count,
                        int(stable), first_in)

        spiking = [p for p in sim if p.op in ("neuron", "maxgate")]
        trains = {p.name: np.zeros((b, T, p.size), np.uint8) for p in spiking} if trace else {}
        ptrace = np.zeros((b, T, self.n_classes)) if trace else None
        if callback is None and not trace:
            steps(0, T)                       # one parallel region for the whole batch
        else:
            for t in range(T):
                was_active = np.flatnonzero(active)
                steps(t, t + 1)
                if trace:
                    for p in spiking:
                        tr = trains[p.name]
                        for k in was_active:
                            tr[k, t, idx[k, p.s_off:p.s_off + cnt[k, p.index]]] = 1
                    ptrace[:, t] = Vout
                if callback is not None:
                    callback(t + 1, pred[:, t].copy(), sl)
        vfinal = Vout
        res = {"pred": pred, "pot": vfinal, "steps": steps_run, "macs": macs, "first": first_in,
               "spikes": {}, "sops": {}, "perr": {}, "rates": {}, "trains": trains, "ptrace": ptrace,
               "kept": {p.name: tbuf[:, toff[p.name]:toff[p.name] + T * packed_size(p.size)].reshape(b, T, -1).copy()
                        for p in sim if p.name in keep}}
        for p in sim:
            res["sops"][p.name] = sops[:, p.index].copy()
            if p.op in ("neuron", "maxgate"):
                res["spikes"][p.name] = tot[:, p.index].copy()
            if p.op == "neuron":
                # E = (V(T) - V(0)) / T: the charge received and not emitted (Eq. 9-11, V(0) = init_membrane)
                res["perr"][p.name] = ((V[:, p.v_off:p.v_off + p.size].astype(np.float64) - self.init_membrane)
                                       / steps_run[:, None]).mean(axis=1)
            if p.name in record:
                if p.op == "output":
                    res["rates"][p.name] = vfinal / steps_run[:, None]
                else:
                    res["rates"][p.name] = counts[:, p.s_off:p.s_off + p.size] / steps_run[:, None].astype(np.float64)
        return res

    def _collect(self, parts, n, T, labels, record, trace, wall) -> RunResult:
        def cat(f):
            return np.concatenate([f(p) for p in parts]) if parts else None

        steps_run = cat(lambda p: p["steps"]) if parts else np.zeros(0, np.int64)
        spikes = {k: cat(lambda p, k=k: p["spikes"][k]) for k in (parts[0]["spikes"] if parts else {})}
        sops = {k: cat(lambda p, k=k: p["sops"][k]) for k in (parts[0]["sops"] if parts else {})}
        size = {p.name: p.size for p in self.pops}
        denom = float(np.sum(steps_run)) if parts else 0.0
        rate = {k: (float(v.sum()) / (size[k] * denom) if denom else 0.0) for k, v in spikes.items()}
        perr = {k: float(np.mean(cat(lambda p, k=k: p["perr"][k]))) for k in (parts[0]["perr"] if parts else {})}
        pred = cat(lambda p: p["pred"]) if parts else np.zeros((0, T), np.int64)
        res = RunResult(
            predictions=pred,
            potentials=cat(lambda p: p["pot"]) if parts else np.zeros((0, self.n_classes)),
            spikes=spikes, sops=sops, firing_rate=rate, prop_error=perr, steps_run=steps_run,
            timesteps=T, labels=labels,
            rates={k: cat(lambda p, k=k: p["rates"][k]) for k in record} if parts else {},
            trains={k: cat(lambda p, k=k: p["trains"][k]) for k in parts[0]["trains"]} if parts and trace else {},
            potential_trace=cat(lambda p: p["ptrace"]) if parts and trace else None,
            input_macs=cat(lambda p: p["macs"]) if parts else None,
            wall_time=wall,
            first_input=cat(lambda p: p["first"]) if parts else None,
        )
        if labels is not None and parts:
            acc = (pred == labels[:, None]).mean(axis=0)
            res.accuracy_at = {t + 1: float(acc[t]) for t in range(T)}
        return res

    def __repr__(self) -> str:
        return f"Network({len(self.pops)} populations, input {self.input_shape}, {self.n_classes} outputs)"
