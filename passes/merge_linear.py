"""Merge chains of linear ops that have no ReLU between them (op level).

Rewrites, applied until none matches (each is exact):

* ``pad`` (spatial, value 0, no channel pad) whose consumers are all ``conv``:
  the pads are added to each conv's ``pads``; the ``pad`` node disappears.
* ``conv``/``dense`` -> ``affine`` (the affine being its only consumer): Eq. 1 again,
  ``W'[..., c] = s_c W[..., c]``, ``b' = s b + t``.
* ``affine`` -> ``affine``: ``(x s1 + t1) s2 + t2 = x (s1 s2) + (t1 s2 + t2)``.
* ``affine`` -> ``conv`` with **no padding** (the affine its only consumer):
  ``W'[kh, kw, ci, co] = W[kh, kw, ci, co] s_ci``,
  ``b'_co = b_co + sum_{kh, kw, ci} W[kh, kw, ci, co] t_ci``.  With padding this
  is not exact (the pad would see ``t``, not 0), so such an affine is left in
  place; ``eliminate_sums`` absorbs its scale (``pad(s x) = s pad(x)``) and
  rejects a nonzero shift.
* ``affine`` -> [``flatten`` ->] ``dense``: ``W'[f, o] = W[f, o] s_{f mod C}``,
  ``b' = b + tile(t) W``.
* ``globalavgpool`` -> ``flatten`` -> ``dense``: ``flatten`` -> ``dense'`` on the
  pool's input ``(H, W, C)``, ``W'[(h W + w) C + c, o] = W[c, o] / (H W)``
  (channels-last flatten order).  The ``flatten`` stays because an op-level
  ``dense`` takes a 1-D operand; ``eliminate_sums`` makes it implicit.
* ``globalavgpool`` -> ``conv`` 1x1 (stride any, no pads): one ``conv`` with an
  ``H x W`` kernel ``W'[h, w, c, o] = W[0, 0, c, o] / (H W)``.
* ``conv`` -> global average (``globalavgpool``, or an unpadded ``avgpool`` whose window is
  the whole map) -> ``flatten``, the conv's only consumer the pool: the all-convolutional /
  NiN classifier head, linear from the conv's input ``(H, W, C)`` to the logits.  Becomes
  ``flatten`` -> ``dense`` with ``D[(h W + w) C + c, o] = sum_{kh, kw} A_h[h, kh] A_w[w, kw]
  W[kh, kw, c, o] / (OH OW)``, where ``A_h[h, kh]`` counts the output rows ``oh`` reading
  input row ``h`` through tap ``kh`` (``oh s - p_top + kh d = h``), likewise ``A_w``;
  bias ``b`` unchanged (the mean of a constant).
* ``conv`` -> ``conv`` 1x1 (stride 1, no padding, one group; the first conv its only
  consumer): depthwise-separable convolutions (Keras ``SeparableConv2D``), linear bottlenecks.
  One conv with the first's geometry, ``W[kh, kw, ci, co] = sum_m W1[kh, kw, ci, m] W2[m, co]``
  (``W1`` expanded block-diagonally over its groups), ``b = b1 W2 + b2``.  Exact: the 1x1
  conv is pointwise, so it commutes with the first conv's zero padding.
* ``affine`` -> pool (the affine its only consumer) becomes pool -> ``affine``: a BatchNorm after
  the ReLU and before the pooling layer (a common Keras ordering).  Exact for ``maxpool`` when every
  scale is positive (``max(s x + t) = s max(x) + t``; padding never wins), for ``globalavgpool``,
  and for ``avgpool`` without padding or with ``count_include_pad`` false (each window's weights sum
  to 1).  The affine then merges into what follows (a dense, an unpadded conv) or is reported there.
* ``maxpool`` [after a zero ``pad``] -> ``relu`` (the pool's only consumer the ReLU) becomes ``relu``
  -> ``maxpool``: ReLU (capped or not) is non-decreasing, so it commutes with max
  (``relu(max(a, b)) = max(relu(a), relu(b))``) -- PyTorch's ``F.relu(F.max_pool2d(conv(x), 2))``
  and ``conv -> BN -> MaxPool -> ReLU``.  A zero ``pad`` in between is merged into the pool's
  pads (after the ReLU a padded 0 never exceeds a window's max; merged pads must stay smaller than
  the kernel).  Not applied to a pool of the input image (no ReLU may go there).
* ``dense`` -> ``dense``: ``W = W1 W2``, ``b = b1 W2 + b2``.

``subsample`` + channel ``pad`` (option-A shortcuts) are left to
``eliminate_sums``, which composes them into one ``subsample_pad`` synapse.

PRE: op level, no ``batchnorm`` (run ``fold_batchnorm`` first).
POST: no zero ``pad`` directly before a conv, no affine after a conv/dense.
Guarantee: exact in the analog view (up to rounding of the merged parameters).
"""
from __future__ import annotations

import numpy as np

from snncc import nn
from snncc.ir import EdgeKind, Graph

from ._util import bypass, can_bypass, chan, data_pred, only_consumer
from .fold_batchnorm import fold_affine_into_linear

NAME = "merge_linear"


def _splice_out(g: Graph, name: str, src: str, consumers) -> bool:
    """Remove node ``name`` (its effect already folded into ``consumers``): each consumer now reads
    ``src`` directly through a DATA edge.  Returns True (the rewrite happened)."""
    for c in consumers:
        g.nx.remove_edge(name, c)
        g.add_edge(src, c, EdgeKind.DATA, 0)
    g.remove_node(name)
    return True


_t = nn.ints


def _is_data(g, u, v):
    return g.edge(u, v)["kind"] is EdgeKind.DATA


def _pad_into_conv(g: Graph, n) -> bool:
    if n.op != "pad" or float(n.attrs.get("value", 0.0)) != 0.0 or any(_t(n.attrs.get("cpad", (0, 0)))):
        return False
    cons = g.succs(n.name)
    if not cons or any(g.node(c).op != "conv" for c in cons):
        return False
    src = data_pred(g, n.name)
    if any(g.nx.has_edge(src, c) for c in cons):
        return False
    p = _t(n.attrs.get("pads", (0, 0, 0, 0)))
    for c in cons:
        cn = g.node(c)
        cp = _t(cn.attrs.get("pads", (0, 0, 0, 0)))
        cn.attrs["pads"] = tuple(a + b for a, b in zip(cp, p))
    return _splice_out(g, n.name, src, cons)


def _affine_after_linear(g: Graph, n) -> bool:
    if n.op != "affine":
        return False
    src = data_pred(g, n.name)
    lin = g.node(src)
    if lin.op not in ("conv", "dense") or only_consumer(g, src) != n.name or not can_bypass(g, n.name, src):
        return False
    c = lin.params["weight"].shape[-1]
    fold_affine_into_linear(lin, chan(n.params["scale"], c), chan(n.params["shift"], c))
    bypass(g, n.name, src)
    return True


def _affine_affine(g: Graph, n) -> bool:
    if n.op != "affine":
        return False
    src = data_pred(g, n.name)
    a = g.node(src)
    if a.op != "affine" or only_consumer(g, src) != n.name or not can_bypass(g, n.name, src):
        return False
    c = n.channels
    s1, t1 = chan(a.params["scale"], c), chan(a.params["shift"], c)
    s2, t2 = chan(n.params["scale"], c), chan(n.params["shift"], c)
    dt = a.params["scale"].dtype
    a.params = {"scale": (s1 * s2).astype(dt), "shift": (t1 * s2 + t2).astype(dt)}
    bypass(g, n.name, src)
    return True


def _affine_before_linear(g: Graph, n) -> bool:
    if n.op != "affine":
        return False
    cons = only_consumer(g, n.name)
    if cons is None:
        return False
    nxt = g.node(cons)
    c = n.channels
    s, t = chan(n.params["scale"], c), chan(n.params["shift"], c)
    src = data_pred(g, n.name)
    if nxt.op == "conv":
        if any(_t(nxt.attrs.get("pads", (0, 0, 0, 0)))) and np.any(t != 0):
            return False
        w = nxt.params["weight"]
        groups = int(nxt.attrs.get("groups", 1))
        kh, kw, cg, cout = w.shape
        og = cout // groups
        idx = np.array([[(co // og) * cg + ci for co in range(cout)] for ci in range(cg)])   # (cg, cout)
        w64 = np.asarray(w, np.float64)
        b = nxt.params.get("bias")
        b64 = np.zeros(cout) if b is None else np.asarray(b, np.float64)
        b64 = b64 + np.einsum("hwio,io->o", w64, t[idx])
        nxt.params["weight"] = (w64 * s[idx]).astype(w.dtype)
        nxt.params["bias"] = b64.astype(w.dtype)
        target = cons
    elif nxt.op in ("flatten", "dense"):
        dense_name = cons if nxt.op == "dense" else only_consumer(g, cons)
        if dense_name is None or g.node(dense_name).op != "dense":
            return False
        d = g.node(dense_name)
        w = d.params["weight"]
        reps = w.shape[0] // c
        sf, tf = np.tile(s, reps), np.tile(t, reps)
        w64 = np.asarray(w, np.float64)
        b = d.params.get("bias")
        b64 = (np.zeros(w.shape[1]) if b is None else np.asarray(b, np.float64)) + tf @ w64
        d.params["weight"] = (w64 * sf[:, None]).astype(w.dtype)
        d.params["bias"] = b64.astype(w.dtype)
        target = cons
    else:
        return False
    if g.nx.has_edge(src, target):
        return False
    return _splice_out(g, n.name, src, [target])


def _gap(g: Graph, n) -> bool:
    if n.op != "globalavgpool":
        return False
    cons = only_consumer(g, n.name)
    if cons is None:
        return False
    src = data_pred(g, n.name)
    h, w_, c = g.node(src).shape
    nxt = g.node(cons)
    if nxt.op == "flatten":
        dn = only_consumer(g, cons)
        if dn is None or g.node(dn).op != "dense" or g.nx.has_edge(src, cons):
            return False
        d = g.node(dn)
        w = d.params["weight"]
        d.params["weight"] = (np.tile(np.asarray(w, np.float64), (h * w_, 1)) / (h * w_)).astype(w.dtype)
        nxt.shape = (h * w_ * c,)
    elif nxt.op == "conv":
        w = nxt.params["weight"]
        if w.shape[:2] != (1, 1) or any(_t(nxt.attrs.get("pads", (0, 0, 0, 0)))) or g.nx.has_edge(src, cons):
            return False
        nxt.params["weight"] = (np.tile(np.asarray(w, np.float64), (h, w_, 1, 1)) / (h * w_)).astype(w.dtype)
        nxt.attrs["stride"], nxt.attrs["dilation"] = (1, 1), (1, 1)
    else:
        return False
    return _splice_out(g, n.name, src, [cons])


def _swap(g: Graph, first: str, second: str) -> bool:
    """``up -> first -> second -> outs`` (``second`` the only consumer of ``first``) becomes
    ``up -> second -> first -> outs``; ``first`` now carries ``second``'s ONNX tensor (the value that
    flows on) and ``second`` none.  Shapes are the caller's.  False (graph unchanged) where the
    rewiring would create a parallel edge."""
    up = data_pred(g, first)
    outs = [(v, dict(e)) for _, v, e in g.nx.out_edges(second, data=True)]
    if any(v == first or g.nx.has_edge(first, v) for v, _ in outs) or g.nx.has_edge(up, second):
        return False
    g.nx.remove_edge(up, first)
    g.nx.remove_edge(first, second)
    for v, _ in outs:
        g.nx.remove_edge(second, v)
    g.add_edge(up, second, EdgeKind.DATA, 0)
    g.add_edge(second, first, EdgeKind.DATA, 0)
    for v, e in outs:
        g.add_edge(first, v, e["kind"], e["port"], e["syn"])
    a, b = g.node(first), g.node(second)
    a.onnx_tensor, a.onnx_perm, b.onnx_tensor, b.onnx_perm = b.onnx_tensor, b.onnx_perm, None, None
    return True


def _global_avg(g: Graph, n) -> bool:
    """A ``globalavgpool``, or an ``avgpool`` without padding whose one window covers its input."""
    if n.op == "globalavgpool":
        return True
    if n.op != "avgpool" or any(_t(n.attrs.get("pads", (0, 0, 0, 0)))):
        return False
    h, w, _ = g.node(data_pred(g, n.name)).shape
    return tuple(_t(n.attrs["kernel"])) == (h, w)


def _tap_counts(size: int, out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """``A[i, kk]``: how many of the ``out`` output positions read input ``i`` through tap ``kk``."""
    a = np.zeros((size, k))
    for o in range(out):
        for kk in range(k):
            i = o * stride - pad + kk * dil
            if 0 <= i < size:
                a[i, kk] += 1
    return a


def _conv_global_avg(g: Graph, n) -> bool:
    if not _global_avg(g, n):
        return False
    cv_name = data_pred(g, n.name)
    cv = g.node(cv_name)
    fl = only_consumer(g, n.name)
    if cv.op != "conv" or only_consumer(g, cv_name) != n.name or fl is None or g.node(fl).op != "flatten":
        return False
    src = data_pred(g, cv_name)
    if g.nx.has_edge(src, fl) or g.nx.has_edge(cv_name, fl):
        return False
    (h, w_, cin), (oh, ow, cout) = g.node(src).shape, cv.shape
    stride, pads, dil, groups = nn.conv_geometry(cv.attrs)
    wt = np.asarray(cv.params["weight"], np.float64)                # (KH, KW, Cin/groups, Cout)
    full = _full_weight(wt, groups)
    ah = _tap_counts(h, oh, wt.shape[0], stride[0], pads[0], dil[0])
    aw = _tap_counts(w_, ow, wt.shape[1], stride[1], pads[1], dil[1])
    d = np.einsum("hk,wl,klio->hwio", ah, aw, full) / (oh * ow)
    b = cv.params.get("bias")
    dt = cv.params["weight"].dtype
    cv.op, cv.attrs, cv.shape = "dense", {}, (cout,)
    cv.params = {"weight": d.reshape(h * w_ * cin, cout).astype(dt),
                 "bias": (np.zeros(cout) if b is None else np.asarray(b, np.float64)).astype(dt)}
    g.node(fl).shape = (h * w_ * cin,)
    g.remove_node(n.name)                       # the pool (folded into D): src -> conv -> flatten, then
    g.add_edge(cv_name, fl, EdgeKind.DATA, 0)
    return _swap(g, cv_name, fl)                # src -> flatten -> dense (the conv) -> consumers


def _full_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv weight ``(KH, KW, Cin/groups, Cout)`` as the equivalent dense one ``(KH, KW, Cin, Cout)``."""
    if groups == 1:
        return np.asarray(w, np.float64)
    kh, kw, cg, cout = w.shape
    og = cout // groups
    full = np.zeros((kh, kw, cg * groups, cout))
    for k in range(groups):
        full[:, :, k * cg:(k + 1) * cg, k * og:(k + 1) * og] = w[:, :, :, k * og:(k + 1) * og]
    return full


def _conv_conv1x1(g: Graph, n) -> bool:
    if n.op != "conv":
        return False
    src = data_pred(g, n.name)
    a = g.node(src)
    w2 = n.params["weight"]
    stride, pads, _, groups = nn.conv_geometry(n.attrs)
    if (a.op != "conv" or w2.shape[:2] != (1, 1) or stride != (1, 1) or any(pads) or groups != 1
            or only_consumer(g, src) != n.name or not can_bypass(g, n.name, src)):
        return False
    w1 = _full_weight(a.params["weight"], nn.conv_geometry(a.attrs)[3])
    m2 = np.asarray(w2, np.float64)[0, 0]                           # (M, Cout)
    b1, b2 = a.params.get("bias"), n.params.get("bias")
    b = (0 if b1 is None else np.asarray(b1, np.float64) @ m2) + (0 if b2 is None else np.asarray(b2, np.float64))
    dt = a.params["weight"].dtype
    a.params = {"weight": np.einsum("hwim,mo->hwio", w1, m2).astype(dt), "bias": (np.zeros(m2.shape[1]) + b).astype(dt)}
    a.attrs["groups"] = 1
    a.shape = tuple(n.shape)
    bypass(g, n.name, src)
    return True


def _affine_through_pool(g: Graph, n) -> bool:
    if n.op not in ("maxpool", "avgpool", "globalavgpool"):
        return False
    src = data_pred(g, n.name)
    a = g.node(src)
    if a.op != "affine" or only_consumer(g, src) != n.name:
        return False
    s = chan(a.params["scale"], a.channels)
    if n.op == "maxpool" and not np.all(s > 0):
        return False
    if n.op == "avgpool" and any(_t(n.attrs.get("pads", (0, 0, 0, 0)))) and n.attrs.get("count_include_pad"):
        return False
    if not _swap(g, src, n.name):               # up -> pool -> affine -> outs
        return False
    a.shape = tuple(n.shape)
    return True


def _relu_before_maxpool(g: Graph, n) -> bool:
    if n.op != "relu":
        return False
    pool = data_pred(g, n.name)
    p = g.node(pool)
    if p.op != "maxpool" or only_consumer(g, pool) != n.name:
        return False
    q = data_pred(g, pool)
    pad = None
    pads = _t(p.attrs.get("pads", (0, 0, 0, 0)))
    if g.node(q).op == "pad":
        pd = g.node(q)
        if (float(pd.attrs.get("value", 0.0)) != 0.0 or any(_t(pd.attrs.get("cpad", (0, 0))))
                or only_consumer(g, q) != pool):
            return False
        pads = tuple(a + b for a, b in zip(pads, _t(pd.attrs.get("pads", (0, 0, 0, 0)))))
        k = _t(p.attrs["kernel"])
        if any(pads[i] >= k[i % 2] for i in range(4)):
            return False
        pad, q = q, data_pred(g, q)
    up = q
    if g.node(up).op == "input" or any(g.nx.has_edge(pool, v) for v in g.succs(n.name)):   # (_swap's own guard)
        return False
    if pad is not None:                         # the zero pad joins the pool's pads: up -> maxpool -> relu
        g.remove_node(pad)
        g.add_edge(up, pool, EdgeKind.DATA, 0)
    p.attrs["pads"] = pads
    _swap(g, pool, n.name)                      # up -> relu -> maxpool -> outs; relu(max(x)) = max(relu(x))
    n.shape = tuple(g.node(up).shape)
    return True


def _dense_dense(g: Graph, n) -> bool:
    if n.op != "dense":
        return False
    src = data_pred(g, n.name)
    a = g.node(src)
    if a.op != "dense" or only_consumer(g, src) != n.name or not can_bypass(g, n.name, src):
        return False
    w1, w2 = np.asarray(a.params["weight"], np.float64), np.asarray(n.params["weight"], np.float64)
    b1 = a.params.get("bias")
    b2 = n.params.get("bias")
    b = (0 if b1 is None else np.asarray(b1, np.float64) @ w2) + (0 if b2 is None else np.asarray(b2, np.float64))
    dt = a.params["weight"].dtype
    a.params = {"weight": (w1 @ w2).astype(dt), "bias": (np.zeros(w2.shape[1]) + b).astype(dt)}
    a.shape = tuple(n.shape)
    bypass(g, n.name, src)
    return True


# (_conv_global_avg before _gap: a conv -> pool -> flatten -> dense head becomes one dense, not a conv
# feeding a dense with no ReLU between them)
RULES = (_pad_into_conv, _affine_after_linear, _affine_affine, _affine_before_linear, _conv_global_avg, _gap,
         _conv_conv1x1, _affine_through_pool, _relu_before_maxpool, _dense_dense)


def run(graph: Graph, ctx=None) -> Graph:
    changed = True
    while changed:
        changed = False
        for n in list(graph.nodes()):
            if n.name not in graph or n.op == "input":
                continue
            for rule in RULES:
                if rule(graph, n):
                    changed = True
                    break
    return graph
