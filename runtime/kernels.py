"""Numba kernels of the event-driven integrate-and-fire runtime.

One compiled driver, :func:`run_steps`, simulates a batch of images for a range
of time steps.  It is a single parallel region: ``prange`` over the images, each
thread owning whole images and running, for each of its images, the steps in time
blocks: every population in topological order, each for every step of the block (the
same simulation as step by step; a population's working set stays in the core's cache
for the block).  There is one parallel launch per batch (per step only when a caller
wants per-step results).

The network is a *program* of typed arrays (built once by
:class:`snncc.runtime.network.Network`), never Python objects:

* ``pops`` (P, ``P_COLS``) int64 -- one row per population, topological order;
  columns ``P_*`` below (op, size, channels, offsets of its state in the flat
  per-image arrays, its in-edge range);
* ``edges`` (E, ``E_COLS``) int64 -- one row per in-edge, grouped by target;
  columns ``E_*`` (kind, source population, offsets into the flat parameter
  arrays, geometry);
* flat parameters: ``wts`` float32 (conv / dense weights), ``coords`` int32
  (``(h, w, c)`` of every source index, 3 per neuron), ``indptr`` int64 /
  ``indices`` int32 / ``data`` float32 (CSR synapses), ``bias`` float32 (per channel,
  read by the output), ``cbias`` float32 (per neuron of every ``neuron`` population, at
  its ``V`` offset: the bias of its channel).

Per-image state, every population's block at its offset (channels-last
flattened: neuron ``i = (h*W + w)*C + c``):

* ``V``      (B, NV) float32  membranes of the ``neuron`` populations (the scatters add into them)
* ``Vout``   (B, K)  float64  output accumulator
* ``I``      (B, NI) float32  the output's current of the running step
* ``I0``     (B, N0) float32  constant analog current from the input layer (+ the bias, for a neuron population)
* ``idx``    (B, NS) int32    indices of the neurons that fired at the last simulated step
* ``cnt``    (B, P)  int32    how many entries of a population's ``idx`` are valid
* ``counts`` (B, NS) int32    spikes so far per neuron (recorded rates; a max gate's own, always)
* ``gcounts`` (B, NG) int32   each max gate's copy of its source's counts (its arg-max)
* ``tot``    (B, P)  int64    spikes so far per population
* ``sops``   (B, P)  int64    synaptic operations (weight additions) into it
* ``active`` (B,)    uint8    0 once an image has exited early
* ``trains`` (B, NT) uint8    bit-packed spike trains of the populations with a ``P_T`` offset,
  ``ceil(size/8)`` bytes per step, neuron ``i`` in bit ``i % 8`` of byte ``i // 8`` (numpy's
  ``packbits(..., bitorder="little")``): replayed (``OP_REPLAY``) or recorded (simulated ones);
  (B, 1) when unused

Neuron equations (threshold 1, reset by subtraction), neuron ``i`` of channel ``c``::

    V_i <- V_i + w            for each weight w selected by this step's spikes of the in-edges
    V_i <- V_i + (I0_i + b_c)
    s_i  = [V_i >= 1]
    V_i <- V_i - s_i

(``V <- V + (I + b)`` with ``I = I0 + the step's synaptic current``, summed in another order.)

Output ``V_k <- V_k + (I_k + b_k)`` (float64, no spike, no reset); prediction
``argmax_k V_k``.  See ``docs/runtime.md``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from snncc.runtime.simd import FIRE8_LUT, LANES, host_has_compress, if_fire8, if_fire16, vadd1, vadd2, vadd4

ONE = np.float32(1.0)
ZERO = np.float32(0.0)

# population ops; a segment run (Network.run_segment) marks populations it does not simulate
# OP_SKIP (nothing read) or OP_REPLAY (spike trains read from ``trains``)
OP_NEURON, OP_OUTPUT, OP_MAXGATE, OP_SKIP, OP_REPLAY = 0, 1, 2, 3, 4
# population table columns; P_T: offset of its spike train in ``trains`` (T steps of
# ceil(size/8) bit-packed bytes), -1 for none -- read by OP_REPLAY, written by a simulated population
P_OP, P_SIZE, P_C, P_V, P_I, P_S, P_I0, P_B, P_E0, P_E1, P_T = range(11)
P_COLS = 11
# edge kinds
E_CONV, E_CONV_W1, E_DENSE, E_CSR, E_GATE, E_IDENTITY = 0, 1, 2, 3, 4, 5
# edge table columns: kind, source population, two parameter offsets, then geometry G0..
E_KIND, E_SRC, E_OFF0, E_OFF1 = 0, 1, 2, 3
E_G = 4
E_COLS = 4 + 13


# ----------------------------------------------------------------------------------
# per-image pieces (inlined into the driver)
# ----------------------------------------------------------------------------------
@njit(cache=True)
def _tap(a, s):
    """Output index ``a / s`` reached by a kernel tap, or -1 where ``s`` does not divide ``a``
    (strides 1 and 2 without an integer division)."""
    if s == 1:
        return a
    if s == 2:
        return -1 if a & 1 else a >> 1
    return -1 if a % s != 0 else a // s


@njit(cache=True)
def _first_tap(a, s, d):
    """The first kernel index ``i >= 0`` with ``(a - i*d) % s == 0`` when ``d == 1``
    (``a % s``; the taps are then ``i, i + s, ...``), else 0 (every tap is tested)."""
    if s == 1 or d != 1:
        return 0
    if s == 2:
        return a & 1
    return a % s


@njit(cache=True, inline="always")
def _add_rows(dst, d, src, o1, o2, o3, o4, n, L):
    """``dst[d:d+L] += `` the sum of the ``n`` (1, 2 or 4) source rows ``src[o:o+L]`` at
    ``o1..o4``, pairwise (``(s1 + s2) + (s3 + s4)``): 16-float vectors
    (:mod:`snncc.runtime.simd`), the last ``L % 16`` floats one by one, same arithmetic."""
    L16 = L - L % LANES
    if n == 4:
        for c in range(0, L16, LANES):
            vadd4(dst, d + c, src, o1 + c, o2 + c, o3 + c, o4 + c)
        for c in range(L16, L):
            dst[d + c] += (src[o1 + c] + src[o2 + c]) + (src[o3 + c] + src[o4 + c])
    elif n == 2:
        for c in range(0, L16, LANES):
            vadd2(dst, d + c, src, o1 + c, o2 + c)
        for c in range(L16, L):
            dst[d + c] += src[o1 + c] + src[o2 + c]
    else:
        for c in range(0, L16, LANES):
            vadd1(dst, d + c, src, o1 + c)
        for c in range(L16, L):
            dst[d + c] += src[o1 + c]


@njit(cache=True, inline="always")
def _add_taps(dst, t0, src, o1, o2, o3, o4, n, nt, Cout):
    """``dst[t0:t0+nt*Cout] +=`` the sum of the ``n`` source rows at ``o1..o4`` by :func:`_add_rows`:
    where ``Cout`` is a multiple of 16, tap by tap, ``Cout`` floats each -- constant trip counts (no
    loop set-up) when ``Cout`` is a literal of the inlining caller; else the ``nt * Cout`` floats at
    once (one scalar tail, not one per tap: ~1.3x faster with 20 channels)."""
    if Cout % LANES != 0:
        _add_rows(dst, t0, src, o1, o2, o3, o4, n, nt * Cout)
        return
    for j in range(nt):
        c = j * Cout
        _add_rows(dst, t0 + c, src, o1 + c, o2 + c, o3 + c, o4 + c, n, Cout)


@njit(cache=True)
def _scatter_conv(sidx, k, In, W, coord, KH, KW, Cg, Cout, groups, OH, OW, sh, sw, pt, pl, dh, dw):
    """Event-driven convolution: ``I += conv(s)`` for the ``k`` fired neurons ``sidx[:k]``.

    ``W`` is the flattened ``(KH, KW, Cg, Cout)`` weight.  A spike of source neuron
    ``(h, w, ci)`` (group ``g = ci // Cg``) adds ``W[kh, kw, ci % Cg, group's Cout slice]``
    into ``I[oh, ow, same channels]`` for every output position whose window covers it:
    ``oh*sh - pt + kh*dh = h`` and ``ow*sw - pl + kw*dw = w``.  Without dilation only the
    taps ``kh = (h + pt) % sh + m*sh`` can cover it, and only those are visited (no
    unpredictable parity branch per tap).  Returns the SOPs.
    """
    og = Cout // groups
    sti = sh if dh == 1 else 1
    stj = sw if dw == 1 else 1
    ops = 0
    q = 0
    while q < k:
        s = sidx[q]
        h = coord[3 * s]
        w = coord[3 * s + 1]
        ci = coord[3 * s + 2]
        g = ci // Cg if groups != 1 else 0
        co0 = g * og
        # the run q..q1 of spikes at this position (and group) shares every target block
        q1 = q + 1
        while q1 < k and coord[3 * sidx[q1] + 1] == w and coord[3 * sidx[q1]] == h and \
                (groups == 1 or coord[3 * sidx[q1] + 2] // Cg == g):
            q1 += 1
        for i in range(_first_tap(h + pt, sh, dh), KH, sti):
            a = h + pt - i * dh
            if a < 0:
                break
            oh = _tap(a, sh)
            if oh < 0 or oh >= OH:
                continue
            for j in range(_first_tap(w + pl, sw, dw), KW, stj):
                b = w + pl - j * dw
                if b < 0:
                    break
                ow = _tap(b, sw)
                if ow < 0 or ow >= OW:
                    continue
                io = (oh * OW + ow) * Cout + co0
                for r in range(q, q1):
                    wo = ((i * KW + j) * Cg + coord[3 * sidx[r] + 2] - g * Cg) * Cout + co0
                    _add_rows(In, io, W, wo, 0, 0, 0, 1, og)
                ops += og * (q1 - q)
        q = q1
    return ops


@njit(cache=True, inline="always")
def _w1_body(sidx, k, In, Wr, coord, Cs, KH, KW, Cout, OH, OW, sh, pt, pl, dh):
    """:func:`_scatter_conv_w1`'s body; inlined (numba IR) where the caller passes a literal
    ``Cout``, whose vector loops then have constant trip counts (fully unrolled, no set-up)."""
    st = KW * Cout
    ops = 0
    q = 0
    while q < k:
        s = sidx[q]
        h = coord[3 * s]
        w = coord[3 * s + 1]
        q1 = q + 1             # the run q..q1 of spikes at this position shares every target block
        while q1 < k and coord[3 * sidx[q1] + 1] == w and coord[3 * sidx[q1]] == h:
            q1 += 1
        b = w + pl
        jlo = max(b - OW + 1, 0)
        jhi = min(b, KW - 1)
        if jhi >= jlo:
            nt = jhi - jlo + 1
            L = nt * Cout
            ow0 = b - jhi
            wb = KW - 1 - jhi
            for i in range(KH):
                a = h + pt - i * dh
                if a < 0:
                    break
                oh = _tap(a, sh)
                if oh < 0 or oh >= OH:
                    continue
                t0 = (oh * OW + ow0) * Cout
                wr = (i * Cs * KW + wb) * Cout
                r = q
                while r + 4 <= q1:     # four weight rows summed in registers, one pass over the block
                    _add_taps(In, t0, Wr, wr + coord[3 * sidx[r] + 2] * st, wr + coord[3 * sidx[r + 1] + 2] * st,
                              wr + coord[3 * sidx[r + 2] + 2] * st, wr + coord[3 * sidx[r + 3] + 2] * st, 4, nt, Cout)
                    r += 4
                if r + 2 <= q1:
                    _add_taps(In, t0, Wr, wr + coord[3 * sidx[r] + 2] * st, wr + coord[3 * sidx[r + 1] + 2] * st,
                              0, 0, 2, nt, Cout)
                    r += 2
                if r < q1:
                    _add_taps(In, t0, Wr, wr + coord[3 * sidx[r] + 2] * st, 0, 0, 0, 1, nt, Cout)
                ops += L * (q1 - q)
        q = q1
    return ops


@njit(cache=True, inline="always")
def _w1_single(sidx, k, In, Wr, coord, Cs, KH, KW, Cout, OH, OW, sh, pt, pl, dh):
    """:func:`_w1_body` spike by spike: no search for runs of spikes at one position, no
    dispatch on their length (both branch on the data: with 16 channels a position holds
    ~1-2 spikes, and the mispredictions cost more than the loads of the target block that
    summing a run's rows saves).  Kept apart from :func:`_w1_body` on purpose: one body with a
    literal flag turning the run search off measured 6% slower on ResNet-20 (``ab_runtime.py``,
    six rounds, every round slower)."""
    st = KW * Cout
    ops = 0
    for q in range(k):
        s = sidx[q]
        h = coord[3 * s]
        b = coord[3 * s + 1] + pl
        jlo = max(b - OW + 1, 0)
        jhi = min(b, KW - 1)
        if jhi < jlo:
            continue
        nt = jhi - jlo + 1
        t1 = (b - jhi) * Cout
        wr0 = (KW - 1 - jhi) * Cout + coord[3 * s + 2] * st
        for i in range(KH):
            a = h + pt - i * dh
            if a < 0:
                break
            oh = _tap(a, sh)
            if oh < 0 or oh >= OH:
                continue
            _add_taps(In, oh * OW * Cout + t1, Wr, i * Cs * st + wr0, 0, 0, 0, 1, nt, Cout)
            ops += nt * Cout
    return ops


@njit(cache=True)
def _scatter_conv_w1(sidx, k, In, Wr, coord, Cs, KH, KW, Cout, OH, OW, sh, pt, pl, dh):
    """Fast path of :func:`_scatter_conv` for ``groups == 1`` and unit stride/dilation along W.

    ``Wr`` is the weight re-laid out as ``(KH, Cin, KW reversed, Cout)``.  For a spike at
    ``(h, w, ci)`` and one kernel row ``kh`` the covered output positions
    ``ow = w + pl - kw`` are consecutive, so the targets ``I[oh, ow_lo:ow_hi+1, :]`` form
    one contiguous block and, with the reversed ``kw`` axis, so do the weights: ``#kw * Cout``
    floats added as 16-float vectors (:mod:`snncc.runtime.simd`; a scalar tail where ``Cout`` is
    not a multiple of 16).  Spikes of one position ``(h, w)`` (adjacent in the sorted ``sidx``)
    share their target blocks: up to four weight rows are summed in registers and added in one
    pass (``I += (w1 + w2) + (w3 + w4)``), fewer loads and stores of ``I`` and no store-to-load
    chain between them.  The SOPs are unchanged (one weight addition per spike and target).
    16, 32 and 64 output channels get their own compiled body (constant vector counts); with 16
    it is :func:`_w1_single`, spike by spike (short runs: branching on them costs more than it saves).
    """
    if Cout == 16:
        return _w1_single(sidx, k, In, Wr, coord, Cs, KH, KW, 16, OH, OW, sh, pt, pl, dh)
    if Cout == 32:
        return _w1_body(sidx, k, In, Wr, coord, Cs, KH, KW, 32, OH, OW, sh, pt, pl, dh)
    if Cout == 64:
        return _w1_body(sidx, k, In, Wr, coord, Cs, KH, KW, 64, OH, OW, sh, pt, pl, dh)
    return _w1_body(sidx, k, In, Wr, coord, Cs, KH, KW, Cout, OH, OW, sh, pt, pl, dh)


@njit(cache=True)
def _scatter_dense(sidx, k, In, W, F, R):
    """Dense synapse: a spike of source neuron ``s`` adds row ``W[f*F:(f+1)*F]``, ``f = s``, or
    ``f = s mod R`` for a tiled synapse of ``R`` rows (``R = 0``: not tiled, no division)."""
    for q in range(k):
        o = (sidx[q] % R if R > 0 else sidx[q]) * F
        src = W[o:o + F]
        for c in range(F):
            In[c] += src[c]
    return k * F


@njit(cache=True)
def _scatter_identity(sidx, k, In, w):
    """One-to-one synapse (an identity shortcut): a spike of ``s`` adds ``w[s]`` to ``I[s]``
    (``w`` the per-channel scale tiled over the positions); the CSR form without its index
    loads."""
    for q in range(k):
        s = sidx[q]
        In[s] += w[s]
    return k


@njit(cache=True)
def _scatter_csr(sidx, k, In, indptr, indices, data):
    """Sparse synapse (avgpool, identity, subsample_pad): a spike of ``s`` adds
    ``data[e]`` to ``I[indices[e]]`` for ``e`` in the CSR row ``indptr[s]:indptr[s+1]``."""
    ops = 0
    for q in range(k):
        s = sidx[q]
        e0 = indptr[s]
        e1 = indptr[s + 1]
        for e in range(e0, e1):
            In[indices[e]] += data[e]
        ops += e1 - e0
    return ops


VEC_COMPRESS = host_has_compress()


@njit(cache=True)
def _if_rest(Vn, cur, idx, cn, count, i, k):
    """The vector IF paths' end: neurons ``i..`` by the scalar equations (their indices appended after the
    ``k`` fired so far), then ``counts += s`` where ``count``; returns the number fired."""
    for j in range(i, Vn.shape[0]):
        v = Vn[j] + cur[j]
        f = v >= ONE
        Vn[j] = v - np.float32(f)
        idx[k] = j
        k += np.int64(f)
    if count:
        for j in range(k):
            cn[idx[j]] += 1
    return k


@njit(cache=True)
def _if_update_vec(Vn, cur, mask, idx, cn, count):
    """:func:`_if_update` by :func:`~snncc.runtime.simd.if_fire16` blocks (fused update and compaction), the
    last ``size % 16`` neurons by the scalar equations; ``mask`` is unused."""
    S = Vn.shape[0]
    k = 0
    i = 0
    while i + LANES <= S:
        k += if_fire16(Vn, cur, idx, i, k)
        i += LANES
    return _if_rest(Vn, cur, idx, cn, count, i, k)


@njit(cache=True)
def _if_update_lut(Vn, cur, mask, idx, cn, count):
    """:func:`_if_update` by :func:`~snncc.runtime.simd.if_fire8` blocks (fused update and table-driven
    compaction, for hosts without a vector compress), the last ``size % 8`` neurons by the scalar
    equations; ``mask`` is unused."""
    S = Vn.shape[0]
    k = 0
    i = 0
    while i + 8 <= S:
        k += if_fire8(Vn, cur, idx, FIRE8_LUT, i, k)
        i += 8
    return _if_rest(Vn, cur, idx, cn, count, i, k)


@njit(cache=True)
def _if_update_scalar(Vn, cur, mask, idx, cn, count):
    """:func:`_if_update` in two scalar passes: a flat vectorised update writing a spike mask
    (one loop over the population: with a per-channel bias and a loop per position, 16- and
    32-channel layers fell to LLVM's scalar remainder loop), then a branch-free compaction (a
    fused loop is ~5x slower: the data-dependent index store blocks vectorisation; skipping
    all-zero 8-flag words saved time only below ~2% firing per step and lost more above it,
    through mispredicted branches)."""
    S = Vn.shape[0]
    for i in range(S):
        v = Vn[i] + cur[i]
        f = v >= ONE
        Vn[i] = v - np.float32(f)
        mask[i] = np.uint8(f)
    k = 0
    for i in range(S):
        idx[k] = i
        k += np.int64(mask[i])
    if count:
        for j in range(k):
            cn[idx[j]] += 1
    return k


#: IF update of one population of one image, returning the number of spikes: the scatters have
#: added the step's events into ``V`` directly; here ``V <- V + cur`` (``cur`` the population's
#: constant current per neuron: ``I0 + b`` where the analog input drives it, else the bias ``b`` of
#: the neuron's channel), ``s = [V >= 1]``, ``V <- V - s``; the fired indices go in increasing order
#: to ``idx[:k]``, and ``counts += s`` where ``count`` (recorded rates).  With AVX-512 (and LLVM >= 19:
#: ``VEC_COMPRESS``) 16 neurons per vector compare and compress (:func:`_if_update_vec`, ~4x faster
#: per neuron at 2% firing than the two scalar passes), otherwise 8 neurons per vector with the
#: compaction by table look-up (:func:`_if_update_lut`; on a 2-core AMD EPYC (Zen 3, AVX2) 0.32-0.36 ns
#: per neuron against 0.73-0.81 ns for :func:`_if_update_scalar`, at 0-20% firing); all three give
#: identical results.  Chosen here, in Python, so that the others are never compiled.
_if_update = _if_update_vec if VEC_COMPRESS else _if_update_lut


@njit(cache=True)
def _output_update(Vo, In, I0n, has_i0, bias, C):
    """Non-spiking accumulator ``V_k <- V_k + (I_k + b_k)`` (float64), then ``I <- I0`` (or 0)."""
    S = Vo.shape[0]
    for i in range(S):
        Vo[i] += np.float64(In[i] + bias[i % C])
    if has_i0:
        for j in range(S):
            In[j] = I0n[j]
    else:
        for j in range(S):
            In[j] = ZERO


@njit(cache=True)
def _maxgate(sidx, k, scounts, Hs, Ws, C, OH, OW, KH, KW, sh, sw, pt, pl, rule_max, out_idx, out_counts):
    """Spiking max pooling (gate) for one step of one image; returns the output spike count.

    ``scounts`` are the source's spike counts *including this step*.  Rule ``leader`` (the
    paper's): output neuron ``(oh, ow, c)`` fires iff the source neuron with the highest count
    in its window (first in row-major window order on ties; padding never wins) fired at this
    step; a window is emitted only by the spike at its arg-max, hence at most once.  Rule
    ``max`` (``rule_max``): it fires iff the window's highest count now exceeds the output's
    own count -- which, by induction, is the window's highest count before this step (a count
    rises by at most 1 per step) -- and the output count is raised at once, so a second fired
    neuron of the window cannot emit again.  Only windows containing a fired source neuron
    are examined.
    """
    m = 0
    for q in range(k):
        s = sidx[q]
        c = s % C
        hw = s // C
        w = hw % Ws
        h = hw // Ws
        for i in range(KH):
            a = h + pt - i
            if a < 0:
                break
            oh = _tap(a, sh)
            if oh < 0 or oh >= OH:
                continue
            for j in range(KW):
                b = w + pl - j
                if b < 0:
                    break
                ow = _tap(b, sw)
                if ow < 0 or ow >= OW:
                    continue
                best = -1
                bh = -1
                bw = -1
                for ii in range(KH):
                    hh = oh * sh - pt + ii
                    if hh < 0 or hh >= Hs:
                        continue
                    for jj in range(KW):
                        ww = ow * sw - pl + jj
                        if ww < 0 or ww >= Ws:
                            continue
                        cv = scounts[(hh * Ws + ww) * C + c]
                        if cv > best:
                            best = cv
                            bh = hh
                            bw = ww
                o = (oh * OW + ow) * C + c
                if (best > out_counts[o]) if rule_max else (bh == h and bw == w):
                    out_idx[m] = o
                    m += 1
                    out_counts[o] += 1
    return m


@njit(cache=True)
def _certified(vo, rem, lo, pair, i0, ab):
    """Early-exit test after a step with ``rem`` steps left; returns the certified class or -1.

    Class ``c`` is certified when for every ``k != c``
    ``V_c - V_k + rem * (pair[c, k] + i0_c - i0_k) > margin``: ``pair`` bounds one future
    step's current difference from below (static), ``i0`` is the image's constant analog
    current into the output, ``margin`` covers float32 rounding of the per-step currents.
    Candidates: ``argmax V`` and ``argmax (V + rem * lo)`` (at most one class can pass).
    """
    K = vo.shape[0]
    c1 = 0
    c2 = 0
    b2 = vo[0] + rem * lo[0]
    for c in range(1, K):
        if vo[c] > vo[c1]:
            c1 = c
        v = vo[c] + rem * lo[c]
        if v > b2:
            b2 = v
            c2 = c
    for r in range(2):
        top = c1 if r == 0 else c2
        if r == 1 and c2 == c1:
            break
        ok = True
        for c in range(K):
            if c == top:
                continue
            margin = 1e-4 * (rem * (ab[c] + ab[top]) + abs(vo[c]) + abs(vo[top])) + 1e-9
            if vo[top] - vo[c] + rem * (pair[top, c] + i0[top] - i0[c]) - margin <= 0.0:
                ok = False
                break
        if ok:
            return top
    return -1


# ----------------------------------------------------------------------------------
# the driver
# ----------------------------------------------------------------------------------
@njit(cache=True)
def _stable(pred, t, m):
    """Whether the predictions of steps ``t - m + 1 .. t`` (0-based) are all ``pred[t]``."""
    for u in range(t - m + 1, t):
        if pred[u] != pred[t]:
            return False
    return True


@njit(cache=True, parallel=True)
def run_steps(t0, t1, T, pops, edges, wts, coords, indptr, indices, data, bias, cbias,
              V, Vout, I, I0, idx, cnt, counts, gcounts, trains, tot, sops, active, pred, steps_run, final,
              early_exit, lo, pair, i0out, ab, maxsize, block, count, stable, first_in):
    """Simulate steps ``t0 .. t1-1`` (0-based, of ``T``) of every image of the batch.

    Per image, the steps go in blocks of ``block`` (1 with ``early_exit``): for every
    population in order, for every step of the block, the scatters of its in-edges (the
    sources, earlier in the order, have already fired at that step: their spike lists of the
    whole block are kept), then its update.  This is the step-major order rearranged, not
    approximated -- a population at step t depends only on earlier populations at step t and
    on its own past -- and a population's weights, membranes and sources' spike lists stay in
    the core's cache for a whole block.  A max gate keeps its own copy of its source's spike
    counts (``gcounts``), advanced step by step, since the source's ``counts`` run ahead; a
    neuron population keeps its own ``counts`` only where ``count[p]`` (its rates are recorded).
    When the output population is updated at step t, ``pred[n, t] = argmax Vout[n]``.  After a
    block, ``idx``/``cnt`` hold each population's spikes of the block's last step.  With
    ``early_exit``, an image whose final answer is certified (:func:`_certified`:
    ``lo``/``ab`` per image and class, ``pair`` per class pair, ``i0out`` the images'
    constant currents into the output) stops: ``active[n] = 0``, ``final[n]``,
    ``steps_run[n] = t + 1``, and its later predictions repeat ``final[n]``.  ``first_in[n]`` records
    the first step at which the output received input (a spike on one of its in-edges, or its constant
    analog current).  With ``stable > 0`` (blocks of 1 step too) an image also stops, the same way, after
    the first step ``t`` whose prediction is that of the ``stable - 1`` steps before it, all of them at or
    after ``first_in[n]`` (not certified: a heuristic exit).
    """
    B = active.shape[0]
    P = pops.shape[0]
    TB = 1 if early_exit or stable > 0 else max(1, block)
    NS = idx.shape[1]
    for n in prange(B):
        mask = np.empty(maxsize, np.uint8)
        sbuf = np.empty(NS * TB, np.int32)    # spike lists: population p, step u at s_off*TB + u*size
        kb = np.zeros((P, TB), np.int64)      # their lengths
        for b0 in range(t0, t1, TB):
            nb = min(TB, t1 - b0)
            if active[n] == 0:
                for t in range(b0, b0 + nb):
                    pred[n, t] = final[n]
                continue
            for p in range(P):
                op = pops[p, P_OP]
                size = pops[p, P_SIZE]
                sb = pops[p, P_S]
                if op == OP_SKIP:
                    continue
                if op == OP_REPLAY:           # spike lists from the recorded train, in index order
                    tb = pops[p, P_T]
                    nby = (size + 7) >> 3
                    for u in range(nb):
                        row = trains[n, tb + (b0 + u) * nby:tb + (b0 + u + 1) * nby]
                        d0 = sb * TB + u * size
                        k = 0
                        for j in range(nby):
                            v = np.int64(row[j])
                            if v == 0:
                                continue
                            for bit in range(8):
                                if (v >> bit) & 1:
                                    sbuf[d0 + k] = 8 * j + bit
                                    k += 1
                        kb[p, u] = k
                        tot[n, p] += k
                    continue
                if op == OP_NEURON:       # events go straight into the membranes
                    vb = pops[p, P_V]
                    In = V[n, vb:vb + size]
                else:                     # output accumulator (float64): a float32 current buffer
                    ib = pops[p, P_I]
                    In = I[n, ib:ib + size]
                zb = pops[p, P_I0]
                bb = pops[p, P_B]
                C = pops[p, P_C]
                i0 = I0[n, zb:zb + size] if zb >= 0 else I0[n, 0:0]
                for u in range(nb):
                    for e in range(pops[p, P_E0], pops[p, P_E1]):
                        kind = edges[e, E_KIND]
                        sp = edges[e, E_SRC]
                        k = kb[sp, u]
                        if op == OP_OUTPUT and k > 0 and first_in[n] < 0:
                            first_in[n] = b0 + u
                        s0 = pops[sp, P_S] * TB + u * pops[sp, P_SIZE]
                        sidx = sbuf[s0:s0 + k]
                        g = edges[e, E_G:]
                        o0 = edges[e, E_OFF0]
                        o1 = edges[e, E_OFF1]
                        if kind == E_CONV_W1:
                            sops[n, p] += _scatter_conv_w1(sidx, k, In, wts[o0:], coords[o1:], g[0], g[1], g[2],
                                                           g[3], g[4], g[5], g[6], g[7], g[8], g[9])
                        elif kind == E_CONV:
                            sops[n, p] += _scatter_conv(sidx, k, In, wts[o0:], coords[o1:], g[0], g[1], g[2], g[3],
                                                        g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12])
                        elif kind == E_DENSE:
                            sops[n, p] += _scatter_dense(sidx, k, In, wts[o0:], g[0], g[1])
                        elif kind == E_IDENTITY:
                            sops[n, p] += _scatter_identity(sidx, k, In, wts[o0:])
                        elif kind == E_CSR:
                            sops[n, p] += _scatter_csr(sidx, k, In, indptr[o0:], indices, data)
                        else:   # E_GATE: the population is a max gate of source sp; o0 = its gcounts
                            gc = gcounts[n, o0:o0 + pops[sp, P_SIZE]]
                            for j in range(k):
                                gc[sidx[j]] += 1
                            d0 = sb * TB + u * size
                            m = _maxgate(sidx, k, gc, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8],
                                         g[9], g[10], g[11] != 0, sbuf[d0:d0 + size], counts[n, sb:sb + size])
                            kb[p, u] = m
                            tot[n, p] += m
                    if op == OP_NEURON:
                        d0 = sb * TB + u * size
                        if zb >= 0:      # I0 of a neuron population already holds I0 + b
                            k = _if_update(In, i0, mask, sbuf[d0:d0 + size], counts[n, sb:sb + size], count[p] != 0)
                        else:
                            vb = pops[p, P_V]
                            k = _if_update(In, cbias[vb:vb + size], mask, sbuf[d0:d0 + size],
                                           counts[n, sb:sb + size], count[p] != 0)
                        kb[p, u] = k
                        tot[n, p] += k
                    if pops[p, P_T] >= 0 and op != OP_OUTPUT:     # record this step's spikes (bit i%8 of byte i//8)
                        nby = (size + 7) >> 3
                        row = trains[n, pops[p, P_T] + (b0 + u) * nby:pops[p, P_T] + (b0 + u + 1) * nby]
                        row[:] = 0
                        d0 = sb * TB + u * size
                        for j in range(kb[p, u]):
                            i = sbuf[d0 + j]
                            row[i >> 3] |= np.uint8(1 << (i & 7))
                    if op == OP_OUTPUT:
                        if zb >= 0 and first_in[n] < 0:
                            first_in[n] = b0 + u
                        _output_update(Vout[n], In, i0, zb >= 0, bias[bb:bb + C], C)
                        vo = Vout[n]
                        best = 0
                        for c in range(1, vo.shape[0]):
                            if vo[c] > vo[best]:
                                best = c
                        pred[n, b0 + u] = best
            for p in range(P):            # the block's last spike lists, for callers
                if pops[p, P_OP] != OP_OUTPUT and pops[p, P_OP] != OP_SKIP:
                    k = kb[p, nb - 1]
                    s0 = pops[p, P_S] * TB + (nb - 1) * pops[p, P_SIZE]
                    d = pops[p, P_S]
                    for j in range(k):
                        idx[n, d + j] = sbuf[s0 + j]
                    cnt[n, p] = k
            t = b0 + nb - 1
            if early_exit and t + 1 < T:
                top = _certified(Vout[n], np.float64(T - (t + 1)), lo[n], pair, i0out[n], ab[n])
                if top >= 0:
                    final[n] = top
                    steps_run[n] = t + 1
                    active[n] = 0
            if stable > 0 and active[n] != 0 and 0 <= first_in[n] <= t + 1 - stable and t + 1 < T \
                    and _stable(pred[n], t, stable):
                final[n] = pred[n, t]
                steps_run[n] = t + 1
                active[n] = 0


#: what the CLI says before a simulation that will compile the kernels first (``compile_pending``)
COMPILE_NOTICE = ("first simulation on this machine: compiling the runtime with numba "
                  "(about a minute, once; cached for later runs)")


def compile_pending() -> bool:
    """Whether the next simulation compiles :func:`run_steps` first (tens of seconds): True when it is not
    compiled in this process and numba's on-disk cache (``cache=True``) holds no version for this CPU.

    Reads numba's cache index through internals (``_cache``, ``magic_tuple``), so any failure means
    "unknown" and returns False: this only decides whether to print :data:`COMPILE_NOTICE`.
    """
    try:
        if run_steps.signatures:
            return False
        magic = run_steps.targetctx.codegen().magic_tuple()
        return not any(key[1] == magic for key in run_steps._cache._cache_file._load_index())
    except Exception:       # noqa: BLE001 -- a notice, never an error
        return False
