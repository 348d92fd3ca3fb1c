"""Numba kernels of the event-driven integrate-and-fire runtime.

Every kernel works on a whole batch of images at once and parallelises with
``prange`` over images: each thread owns whole images (its rows of every state
array), so there are no write races.  All arrays are typed, C-contiguous and
channels-last-flattened: a population of shape ``(H, W, C)`` is a row of
``H*W*C`` values, neuron ``i = (h*W + w)*C + c``.

State of one population (``B`` images, ``S`` neurons):

* ``V``       (B, S) float32  membrane potential (output: float64)
* ``I``       (B, S) float32  input-current buffer of the current step
* ``spk_idx`` (B, S) int32    indices of the neurons that fired this step
* ``spk_cnt`` (B,)   int32    how many entries of ``spk_idx`` are valid
* ``counts``  (B, S) int32    spikes so far per neuron (maxgate, rates)
* ``tot``     (B,)   int64    spikes so far per image
* ``sops``    (B,)   int64    synaptic operations (weight additions) into it
* ``active``  (B,)   uint8    0 once an image has exited early (skipped)

A step visits populations in topological order; for each one the *scatter*
kernels of its in-edges add the weight rows of the sources' fired neurons into
``I`` (work proportional to spikes), then :func:`if_update` /
:func:`output_update` integrate.  See ``docs/runtime.md``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

ONE = np.float32(1.0)
ZERO = np.float32(0.0)


@njit(cache=True, parallel=True)
def if_update(V, I, I0, has_i0, bias, C, active, spk_idx, spk_cnt, counts, tot, mask):
    """Integrate-and-fire update of one ``neuron`` population, reset by subtraction.

    For every neuron ``i`` (channel ``c = i % C``) of every active image::

        V_i <- V_i + (I_i + b_c)          # I_i = I0_i + sum of synaptic currents
        s_i  = 1 if V_i >= 1 else 0       # threshold 1
        V_i <- V_i - s_i                  # reset by subtraction
        counts_i += s_i

    The fired indices are written in increasing order to ``spk_idx[n, :k]``,
    ``spk_cnt[n] = k``, ``tot[n] += k``.  ``I`` is then reset to ``I0`` (the
    constant analog current from the input layer) when ``has_i0``, else to 0,
    ready for the next step.  Inactive images get ``spk_cnt = 0``.

    Two passes per image: a vectorised update writing the spike mask
    (``mask`` (B, S) uint8 scratch), then a branch-free compaction of the mask
    into ``spk_idx`` (a fused loop is ~5x slower: the data-dependent index store
    blocks vectorisation).
    """
    N, S = V.shape
    P = S // C
    for n in prange(N):
        if active[n] == 0:
            spk_cnt[n] = 0
            continue
        Vn = V[n]
        In = I[n]
        mn = mask[n]
        for p in range(P):
            o = p * C
            vr = Vn[o:o + C]
            ir = In[o:o + C]
            mr = mn[o:o + C]
            for c in range(C):
                v = vr[c] + (ir[c] + bias[c])
                f = v >= ONE
                vr[c] = v - np.float32(f)
                mr[c] = np.uint8(f)
        if has_i0:
            I0n = I0[n]
            for j in range(S):
                In[j] = I0n[j]
        else:
            for j in range(S):
                In[j] = ZERO
        idx = spk_idx[n]
        k = 0
        for i in range(S):
            idx[k] = i
            k += np.int64(mn[i])
        cn = counts[n]
        for j in range(k):
            cn[idx[j]] += 1
        spk_cnt[n] = k
        tot[n] += k


@njit(cache=True, parallel=True)
def output_update(V, I, I0, has_i0, bias, C, active):
    """Non-spiking output accumulator: ``V_k <- V_k + (I_k + b_k)`` (float64 V), no reset.

    ``I`` is then reset to ``I0`` (or 0).
    """
    N, S = V.shape
    P = S // C
    for n in prange(N):
        if active[n] == 0:
            continue
        i = 0
        for p in range(P):
            for c in range(C):
                V[n, i] += np.float64(I[n, i] + bias[c])
                i += 1
        if has_i0:
            for j in range(S):
                I[n, j] = I0[n, j]
        else:
            for j in range(S):
                I[n, j] = ZERO


@njit(cache=True, parallel=True)
def scatter_conv(spk_idx, spk_cnt, active, W, coord, KH, KW, Cg, Cout, groups,
                 OH, OW, sh, sw, pt, pl, dh, dw, I, sops):
    """Event-driven convolution synapse: ``I += conv(s)`` for the fired neurons only.

    ``W`` is the flattened ``(KH, KW, Cg, Cout)`` float32 weight.  A spike of
    source neuron ``(h, w, ci)`` (group ``g = ci // Cg``) adds the contiguous
    vector ``W[kh, kw, ci % Cg, g*Cout/groups : (g+1)*Cout/groups]`` into
    ``I[oh, ow, same channels]`` for every output position whose window covers
    it: ``oh*sh - pt + kh*dh = h`` and ``ow*sw - pl + kw*dw = w`` in range.
    ``sops[n]`` += number of weights added.  ``coord[s] = (h, w, ci)`` decodes
    a source index without integer divisions.
    """
    N = spk_cnt.shape[0]
    og = Cout // groups
    for n in prange(N):
        if active[n] == 0:
            continue
        ops = 0
        In = I[n]
        for k in range(spk_cnt[n]):
            s = spk_idx[n, k]
            h = coord[s, 0]
            w = coord[s, 1]
            ci = coord[s, 2]
            g = ci // Cg
            cil = ci - g * Cg
            co0 = g * og
            for i in range(KH):
                a = h + pt - i * dh
                if a < 0:
                    break
                if a % sh != 0:
                    continue
                oh = a // sh
                if oh >= OH:
                    continue
                for j in range(KW):
                    b = w + pl - j * dw
                    if b < 0:
                        break
                    if b % sw != 0:
                        continue
                    ow = b // sw
                    if ow >= OW:
                        continue
                    wo = ((i * KW + j) * Cg + cil) * Cout + co0
                    io = (oh * OW + ow) * Cout + co0
                    dst = In[io:io + og]          # slices: the inner loop vectorises
                    src = W[wo:wo + og]
                    for c in range(og):
                        dst[c] += src[c]
                    ops += og
        sops[n] += ops


@njit(cache=True, parallel=True)
def scatter_conv_w1(spk_idx, spk_cnt, active, Wr, coord, Cs, KH, KW, Cout, OH, OW, sh, pt, pl, dh, I, sops):
    """Fast path of :func:`scatter_conv` for ``groups == 1`` and unit stride/dilation along W.

    ``Wr`` is the flattened weight re-laid out as ``(KH, Cin, KW reversed, Cout)``.
    For a spike at ``(h, w, ci)`` and one kernel row ``kh``, the output positions
    ``ow = w + pl - kw`` covered are consecutive, so the targets
    ``I[oh, ow_lo:ow_hi+1, :]`` form one contiguous block, and with the reversed
    ``kw`` axis the matching weights ``Wr[kh, ci, ...]`` do too: one vector add of
    length ``(#kw) * Cout`` per kernel row instead of ``#kw`` adds of ``Cout``.
    Same arithmetic (and order of additions per target) as :func:`scatter_conv`.
    ``coord[s] = (h, w, ci)`` decodes a source index without integer divisions.
    """
    N = spk_cnt.shape[0]
    for n in prange(N):
        if active[n] == 0:
            continue
        ops = 0
        In = I[n]
        for k in range(spk_cnt[n]):
            s = spk_idx[n, k]
            h = coord[s, 0]
            w = coord[s, 1]
            ci = coord[s, 2]
            b = w + pl
            jlo = b - OW + 1
            if jlo < 0:
                jlo = 0
            jhi = b
            if jhi > KW - 1:
                jhi = KW - 1
            if jhi < jlo:
                continue
            L = (jhi - jlo + 1) * Cout
            ow0 = b - jhi
            wb = KW - 1 - jhi
            for i in range(KH):
                a = h + pt - i * dh
                if a < 0:
                    break
                if sh == 1:
                    oh = a
                else:
                    if a % sh != 0:
                        continue
                    oh = a // sh
                if oh >= OH:
                    continue
                t0 = (oh * OW + ow0) * Cout
                w0 = ((i * Cs + ci) * KW + wb) * Cout
                dst = In[t0:t0 + L]
                src = Wr[w0:w0 + L]
                for c in range(L):
                    dst[c] += src[c]
                ops += L
        sops[n] += ops


@njit(cache=True, parallel=True)
def scatter_dense(spk_idx, spk_cnt, active, W, I, sops):
    """Event-driven dense synapse: a spike of source feature ``f`` adds row ``W[f, :]`` to ``I``."""
    N = spk_cnt.shape[0]
    F = W.shape[1]
    for n in prange(N):
        if active[n] == 0:
            continue
        In = I[n]
        for k in range(spk_cnt[n]):
            src = W[spk_idx[n, k]]
            for o in range(F):
                In[o] += src[o]
        sops[n] += spk_cnt[n] * F


@njit(cache=True, parallel=True)
def scatter_csr(spk_idx, spk_cnt, active, indptr, indices, data, I, sops):
    """Event-driven sparse synapse (avgpool, identity, subsample_pad).

    A spike of source neuron ``s`` adds ``data[e]`` to ``I[indices[e]]`` for
    ``e in indptr[s]:indptr[s+1]`` (the CSR row of ``s``).
    """
    N = spk_cnt.shape[0]
    for n in prange(N):
        if active[n] == 0:
            continue
        In = I[n]
        ops = 0
        for k in range(spk_cnt[n]):
            s = spk_idx[n, k]
            e0 = indptr[s]
            e1 = indptr[s + 1]
            for e in range(e0, e1):
                In[indices[e]] += data[e]
            ops += e1 - e0
        sops[n] += ops


@njit(cache=True, parallel=True)
def maxgate_step(spk_idx, spk_cnt, active, counts, Hs, Ws, C, OH, OW, KH, KW, sh, sw, pt, pl,
                 out_idx, out_cnt, out_counts, tot):
    """Spiking max pooling (gate) for one step.

    ``counts`` are the source's spike counts *including this step* (the source
    was updated first).  Output neuron ``(oh, ow, c)`` fires iff the source
    neuron with the highest count in its window (first in row-major window
    order on ties; padding never wins) fired at this step.  Event-driven: only
    windows that contain a fired source neuron are examined, and a window is
    emitted only by the spike at its arg-max, hence at most once.
    """
    N = spk_cnt.shape[0]
    for n in prange(N):
        if active[n] == 0:
            out_cnt[n] = 0
            continue
        m = 0
        for k in range(spk_cnt[n]):
            s = spk_idx[n, k]
            c = s % C
            hw = s // C
            w = hw % Ws
            h = hw // Ws
            for i in range(KH):
                a = h + pt - i
                if a < 0:
                    break
                if a % sh != 0:
                    continue
                oh = a // sh
                if oh >= OH:
                    continue
                for j in range(KW):
                    b = w + pl - j
                    if b < 0:
                        break
                    if b % sw != 0:
                        continue
                    ow = b // sw
                    if ow >= OW:
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
                            cv = counts[n, (hh * Ws + ww) * C + c]
                            if cv > best:
                                best = cv
                                bh = hh
                                bw = ww
                    if bh == h and bw == w:
                        o = (oh * OW + ow) * C + c
                        out_idx[n, m] = o
                        m += 1
                        out_counts[n, o] += 1
        out_cnt[n] = m
        tot[n] += m
