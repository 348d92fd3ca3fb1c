"""Sum-node elimination (Section 3.2): lower the op-level graph to populations.

Maths
-----
Between two nonlinearities an ANN computes a *linear* function of the previous
activations.  Each population ``v`` (a ReLU, a pooling layer, the logits) is
therefore fed by a sum of linear maps of source populations plus a constant::

    z_v = sum_u S_uv(a_u) + b_v,        a_v = relu(z_v)   (or z_v for the output)

The residual ``add`` is exactly that sum, so it disappears: each operand becomes
one incoming synapse of the neuron (the sum node of Section 3.2 is absorbed into
the IF neuron, which integrates all its input currents).  Every op-level linear
op is pushed onto the terms of the sum:

* ``conv``/``dense`` from a population -> a ``conv``/``dense`` synapse
  (``EdgeKind.SYNAPSE``; their biases go into ``b_v``);
* a population used directly by an ``add`` -> ``identity`` synapse (scale ones),
  ``EdgeKind.SHORTCUT``;
* ``subsample`` and channel ``pad`` of a population (option-A shortcut) -> one
  ``subsample_pad`` synapse, ``EdgeKind.SHORTCUT``;
* convs of the same population whose kernels nest (same stride/dilation/groups), and the
  identity (a 1x1 ``diag(s)`` conv) -> one ``conv`` synapse (a residual block with one conv,
  RepVGG-style 3x3 + 1x1 + identity branches), the smaller kernel added into the larger;
* a conv(+BN) projection (option B) whose source is an *ancestor* of another
  operand's source (the block input skipping over the block) -> ``conv``
  synapse on an ``EdgeKind.SHORTCUT`` edge;
* ``affine`` after a term scales it (``s`` into the synapse's output scale or
  weights, ``t`` into ``b_v``); an ``affine`` before a conv is absorbed into the
  conv's input channels (``pad(s x) = s pad(x)``), a nonzero shift only when
  the conv has no padding;
* ``flatten`` is implicit for dense synapses (channels-last order); a chain
  ``map -> flatten -> dense`` that is not a single synapse is materialised as
  one dense matrix (guarded by size).

``avgpool``/``globalavgpool`` of a population -> a ``neuron`` population with
one ``avgpool`` synapse (scale ones) and zero bias (exact: the pooled value of a
non-negative input is non-negative, so the ReLU is the identity).  ``maxpool``
-> ``maxgate`` with a DATA in-edge; its source must be a spiking population
(non-negative).  The sink -> ``output`` population (a sink that is itself a ReLU
or pool gets an extra ``output`` with an identity synapse).  Populations keep
the name, ``onnx_tensor``/``onnx_perm`` (and ``cap``) of the op they replace.

PRE: op level after ``fold_batchnorm``/``merge_linear``.
POST: spiking level (``graph.is_spiking_level()``); populations not feeding the
output are pruned.
Guarantee: exact in the analog view (up to rounding).  Anything that cannot be
lowered raises :class:`snncc.errors.ModelError`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from snncc import nn, synapses
from snncc.errors import ModelError
from snncc.ir import EdgeKind, Graph, Node, Synapse

from ._util import chan, data_pred, graph_dtype

NAME = "eliminate_sums"
#: largest dense matrix (entries) built when a linear chain must be materialised
MAX_MATERIALISE = 1 << 25


_t = nn.ints


@dataclass
class Term:
    """One summand ``S(a_src)`` of a population's input; ``syn`` None = structural map."""

    src: str
    src_shape: tuple
    shape: tuple
    syn: Synapse | None = None
    scale: np.ndarray | None = None        # structural: per output channel (per feature if flat)
    stride: tuple = (1, 1)
    offset: tuple = (0, 0)
    cpad: tuple = (0, 0)
    flat: bool = False

    def trivial(self) -> bool:
        return self.stride == (1, 1) and self.offset == (0, 0) and self.cpad == (0, 0)


@dataclass
class Expr:
    shape: tuple
    terms: dict = field(default_factory=dict)   # src -> Term
    bias: np.ndarray | None = None              # float64, per channel (per feature if 1-D)


def _err(node: Node, what: str, hint: str):
    raise ModelError(f"cannot lower {node.op} node {node.name!r}: {what}", hint)


def _struct_syn(t: Term) -> Synapse:
    if t.trivial():
        return Synapse("identity", {}, {"scale": t.scale.copy()})
    return Synapse("subsample_pad", {"stride": t.stride, "offset": t.offset, "cpad": t.cpad},
                   {"scale": t.scale.copy()})


def _matrix(t: Term) -> np.ndarray:
    """The term as a dense matrix (prod(src_shape), prod(shape)), flatten order channels-last."""
    fin = int(np.prod(t.src_shape))
    fout = int(np.prod(t.shape))
    if fin * fout > MAX_MATERIALISE:
        raise ModelError(f"linear chain from {t.src!r} would need a {fin}x{fout} dense matrix",
                         "insert a ReLU between the linear layers or simplify the model")
    basis = np.eye(fin).reshape((fin,) + tuple(t.src_shape))
    if t.syn is not None:
        y = synapses.apply(t.syn, basis)
    elif t.flat:
        # structural map then flatten, then per-feature scale
        unflat = Term(t.src, t.src_shape, t.src_shape, None, np.ones(t.src_shape[-1] + sum(t.cpad)),
                      t.stride, t.offset, t.cpad)
        y = synapses.apply(_struct_syn(unflat), basis).reshape(fin, -1) * t.scale
    else:
        y = synapses.apply(_struct_syn(t), basis)
    return y.reshape(fin, fout)


def _add_terms(node: Node, a: Term, b: Term) -> Term:
    if a.syn is None and b.syn is None and (a.stride, a.offset, a.cpad, a.flat) == (b.stride, b.offset, b.cpad, b.flat):
        a.scale = a.scale + b.scale
        return a
    if (a.syn is not None and b.syn is not None and a.syn.op == b.syn.op
            and a.syn.attrs == b.syn.attrs and a.syn.params["weight"].shape == b.syn.params["weight"].shape):
        a.syn.params["weight"] = a.syn.params["weight"] + b.syn.params["weight"]
        return a
    if len(a.shape) == 1:
        return Term(a.src, a.src_shape, a.shape, Synapse("dense", {}, {"weight": _matrix(a) + _matrix(b)}))
    merged = _conv_terms_merged(a, b)
    if merged is not None:
        return merged
    _err(node, f"two different linear maps of {a.src!r} are summed",
         "the IR allows one synapse per population pair; only convs whose kernels nest (same stride, "
         "dilation and groups) and the identity merge into one: merge the branches in the model")


def _conv_terms_merged(a: Term, b: Term) -> Term | None:
    """Two terms of one source that are both convolutions -- or a conv and the identity -- as one conv
    (a residual block with one conv, RepVGG-style 3x3 + 1x1 (+ identity) branches), else None.  Exact:
    see :func:`_merge_convs`; the identity is the 1x1 conv ``diag(s)``."""
    if a.syn is None:
        a, b = b, a
    if a.syn is None or a.syn.op != "conv":
        return None
    sb = b.syn if b.syn is not None else _identity_conv(b, a.syn)
    if sb is None or sb.op != "conv":
        return None
    syn = _merge_convs(a.syn, sb)
    return None if syn is None else Term(a.src, a.src_shape, a.shape, syn)


def _identity_conv(t: Term, like: Synapse) -> Synapse | None:
    """The identity term ``s * a`` as a 1x1 conv with ``like``'s groups (``W[0, 0, o % Cg, o] = s_o``)."""
    if not t.trivial() or t.flat or tuple(t.shape) != tuple(t.src_shape):
        return None
    c = int(t.shape[-1])
    g = int(like.attrs.get("groups", 1))
    cg = c // g
    w = np.zeros((1, 1, cg, c), like.params["weight"].dtype)
    o = np.arange(c)
    w[0, 0, o % cg, o] = np.asarray(t.scale, w.dtype)
    return Synapse("conv", {"stride": (1, 1), "pads": (0, 0, 0, 0), "dilation": _t(like.attrs.get("dilation", (1, 1))),
                            "groups": g}, {"weight": w})


def _merge_convs(a: Synapse, b: Synapse) -> Synapse | None:
    """``conv_a(x) + conv_b(x)`` as one conv when b's kernel fits inside a's at the offset their pads
    imply (same stride, dilation, groups and channels): output ``o`` reads input row
    ``o*s - pt + kh*d``, so b's tap ``kh`` is a's tap ``kh + (pt_a - pt_b)/d``, and
    ``W_a[oh:oh+KHb, ow:ow+KWb] += W_b`` gives the sum exactly (zero padding is zero for both)."""
    def geom(s):
        at = s.attrs
        return _t(at.get("stride", (1, 1))), _t(at.get("dilation", (1, 1))), int(at.get("groups", 1))
    wa, wb = a.params["weight"], b.params["weight"]
    if geom(a) != geom(b) or wa.shape[2:] != wb.shape[2:]:
        return None
    if wb.shape[0] > wa.shape[0] or wb.shape[1] > wa.shape[1]:
        a, b, wa, wb = b, a, wb, wa
    (_, dil, _), pa, pb = geom(a), _t(a.attrs.get("pads", (0, 0, 0, 0))), _t(b.attrs.get("pads", (0, 0, 0, 0)))
    offs = []
    for ax in range(2):
        d = pa[ax] - pb[ax]
        if d < 0 or d % dil[ax] or d // dil[ax] + wb.shape[ax] > wa.shape[ax]:
            return None
        offs.append(d // dil[ax])
    w = np.array(wa, copy=True)
    w[offs[0]:offs[0] + wb.shape[0], offs[1]:offs[1] + wb.shape[1]] += wb
    return Synapse("conv", dict(a.attrs), {**a.params, "weight": w})


class _Lowerer:
    def __init__(self, g: Graph):
        self.g = g
        self.pop: dict[str, str] = {}      # boundary op-level node -> population op
        self.memo: dict[str, Expr] = {}

    # -- which op-level nodes become populations ---------------------------
    def classify(self):
        g = self.g
        for n in g.nodes():
            if n.op == "input":
                self.pop[n.name] = "input"
            elif n.op == "relu":
                self.pop[n.name] = "neuron"
            elif n.op in ("maxpool", "avgpool", "globalavgpool"):
                src = data_pred(g, n.name)
                sp = self.pop.get(src)
                if sp in ("neuron", "maxgate"):
                    self.pop[n.name] = "maxgate" if n.op == "maxpool" else "neuron"
                elif n.op == "maxpool" and g.node(src).op == "input":
                    _err(n, "it pools the input image (a max pool needs spike rates: the output of a ReLU)",
                         "pool after the first ReLU instead")
                elif n.op == "maxpool":
                    _err(n, f"its operand {src!r} is not the output of a ReLU (it can be negative) and no ReLU "
                            "follows the pool either",
                         "put a ReLU right before or right after the MaxPool (they commute; snncc moves one after "
                         "the pool in front of it)")
                # avg pools of non-populations stay linear ops (rejected if reached)

    # -- expressions ---------------------------------------------------------
    def expr(self, name: str) -> Expr:
        if name not in self.memo:
            self.memo[name] = self._expr(name)
        return copy.deepcopy(self.memo[name])

    def _expr(self, name: str) -> Expr:
        g = self.g
        n = g.node(name)
        shape = tuple(n.shape)
        if name in self.pop:
            c = shape[-1]
            return Expr(shape, {name: Term(name, shape, shape, None, np.ones(c))}, np.zeros(c))
        ins = g.in_edges(name)
        if n.op == "add":
            out = Expr(shape, {}, np.zeros(shape[-1]))
            for src, _ in ins:
                e = self.expr(src)
                out.bias = out.bias + e.bias
                for s, t in e.terms.items():
                    out.terms[s] = _add_terms(n, out.terms[s], t) if s in out.terms else t
            return out
        if len(ins) != 1:
            _err(n, f"{len(ins)} operands", "re-export the model")
        e = self.expr(ins[0][0])
        op = n.op
        if op == "batchnorm":
            from .fold_batchnorm import bn_scale_shift
            s, t = bn_scale_shift(n)
            return self._affine(e, s, t, shape)
        if op == "affine":
            c = e.shape[-1]
            return self._affine(e, chan(n.params["scale"], c), chan(n.params["shift"], c), shape)
        if op == "subsample":
            return self._subsample(n, e, shape)
        if op == "pad":
            return self._pad(n, e, shape)
        if op == "flatten":
            return self._flatten(n, e, shape)
        if op == "conv":
            return self._conv(n, e, shape)
        if op == "dense":
            return self._dense(n, e, shape)
        if op in ("avgpool", "globalavgpool", "maxpool"):
            _err(n, "its operand is not a ReLU/pool population (a linear op with no activation before it)",
                 "put a ReLU before the pooling layer")
        _err(n, "unsupported op on the way to a population", "see docs/passes.md for supported patterns")

    def _affine(self, e: Expr, s, t, shape) -> Expr:
        for term in e.terms.values():
            if term.syn is not None:
                synapses.rescale(term.syn, 1.0, s, term.src_shape)
            else:
                term.scale = term.scale * s
        e.bias = e.bias * s + t
        e.shape = shape
        return e

    def _subsample(self, n, e: Expr, shape) -> Expr:
        st, off = _t(n.attrs["stride"]), _t(n.attrs.get("offset", (0, 0)))
        for term in e.terms.values():
            if term.syn is not None or term.flat:
                _err(n, f"subsampling of a weighted map of {term.src!r}",
                     "subsample a ReLU output (option-A shortcut) or use a strided conv")
            term.offset = (term.offset[0] + off[0] * term.stride[0], term.offset[1] + off[1] * term.stride[1])
            term.stride = (term.stride[0] * st[0], term.stride[1] * st[1])
            term.shape = shape
        e.shape = shape
        return e

    def _pad(self, n, e: Expr, shape) -> Expr:
        if float(n.attrs.get("value", 0.0)) != 0.0 or any(_t(n.attrs.get("pads", (0, 0, 0, 0)))):
            _err(n, "non-zero or spatial padding that no conv absorbs",
                 "only zero channel padding (option-A shortcut) or zero spatial padding before a conv is supported")
        cb, ca = _t(n.attrs.get("cpad", (0, 0)))
        for term in e.terms.values():
            if term.syn is None and not term.flat:
                term.cpad = (term.cpad[0] + cb, term.cpad[1] + ca)
                term.scale = np.pad(term.scale, (cb, ca))
            elif term.syn is not None and term.syn.op == "conv" and int(term.syn.attrs.get("groups", 1)) == 1:
                w = term.syn.params["weight"]
                term.syn.params["weight"] = np.pad(w, ((0, 0), (0, 0), (0, 0), (cb, ca)))
            else:
                _err(n, f"channel padding of {term.src!r}'s map", "pad a ReLU output or a plain conv")
            term.shape = shape
        e.bias = np.pad(e.bias, (cb, ca))
        e.shape = shape
        return e

    def _flatten(self, n, e: Expr, shape) -> Expr:
        hw = int(np.prod(e.shape[:-1])) if len(e.shape) > 1 else 1
        for s, term in list(e.terms.items()):
            if term.syn is None and not term.flat:
                term.flat, term.scale = True, np.tile(term.scale, hw)
            elif term.syn is not None:
                m = _matrix(term)
                e.terms[s] = Term(term.src, term.src_shape, shape, Synapse("dense", {}, {"weight": m}))
            term.shape = shape
            e.terms[s].shape = shape
        e.bias = np.tile(e.bias, hw)
        e.shape = shape
        return e

    def _conv(self, n, e: Expr, shape) -> Expr:
        w = np.asarray(n.params["weight"], np.float64)
        attrs = {"stride": _t(n.attrs.get("stride", (1, 1))), "pads": _t(n.attrs.get("pads", (0, 0, 0, 0))),
                 "dilation": _t(n.attrs.get("dilation", (1, 1))), "groups": int(n.attrs.get("groups", 1))}
        for s, term in list(e.terms.items()):
            if term.syn is not None or term.flat or not term.trivial():
                _err(n, f"it follows another linear map of {term.src!r} with no ReLU between",
                     "insert a ReLU between the two layers, or merge them in the model")
            syn = Synapse("conv", dict(attrs), {"weight": w.copy()})
            synapses.rescale(syn, term.scale, 1.0, term.src_shape)
            e.terms[s] = Term(term.src, term.src_shape, shape, syn)
        b = n.params.get("bias")
        bias = np.zeros(w.shape[3]) if b is None else np.asarray(b, np.float64).copy()
        if np.any(e.bias != 0):
            if any(attrs["pads"]):
                _err(n, "a constant shift (bias/BN/affine with no ReLU between) before a zero-padded conv",
                     "the padding would need the shift's value, not zero: put the BatchNorm before the ReLU "
                     "(conv-BN-ReLU), or give the conv no padding")
            cg, cout, g_ = w.shape[2], w.shape[3], attrs["groups"]
            og = cout // g_
            idx = np.array([[(co // og) * cg + ci for co in range(cout)] for ci in range(cg)])
            bias = bias + np.einsum("hwio,io->o", w, e.bias[idx])
        e.bias = bias
        e.shape = shape
        return e

    def _dense(self, n, e: Expr, shape) -> Expr:
        w = np.asarray(n.params["weight"], np.float64)
        for s, term in list(e.terms.items()):
            if term.syn is None and term.trivial():
                syn = Synapse("dense", {}, {"weight": w * term.scale[:, None]})
            else:
                m = term.syn.params["weight"] if (term.syn is not None and term.syn.op == "dense") else _matrix(term)
                syn = Synapse("dense", {}, {"weight": m @ w})
            e.terms[s] = Term(term.src, term.src_shape, shape, syn)
        b = n.params.get("bias")
        e.bias = e.bias @ w + (0 if b is None else np.asarray(b, np.float64))
        e.shape = shape
        return e


def _ancestors(g: Graph, name: str, cache: dict) -> set:
    if name not in cache:
        cache[name] = nx.ancestors(g.nx, name)
    return cache[name]


def run(graph: Graph, ctx=None) -> Graph:
    if graph.is_spiking_level():
        return graph
    low = _Lowerer(graph)
    low.classify()
    dt = graph_dtype(graph)
    sink = graph.output
    out = Graph()
    out.meta = graph.meta
    out.onnx_model = graph.onnx_model
    anc: dict = {}

    def cast(syn: Synapse) -> Synapse:
        syn.params = {k: np.asarray(v).astype(dt) for k, v in syn.params.items()}
        return syn

    def add_pop(n: Node, op: str, e: Expr | None, extra_attrs=None):
        attrs = dict(extra_attrs or {})
        params = {}
        if op in ("neuron", "output"):
            params["bias"] = (np.zeros(n.shape[-1]) if e is None else e.bias).astype(dt)
        out.add_node(Node(n.name, op, tuple(n.shape), attrs, params, n.onnx_tensor, n.onnx_perm))
        if e is None:
            return
        srcs = list(e.terms)
        for port, (src, term) in enumerate(sorted(e.terms.items())):
            if term.syn is None:
                syn = _struct_syn(term) if not term.flat else Synapse("dense", {}, {"weight": _matrix(term)})
                kind = EdgeKind.SHORTCUT if (not term.flat and len(srcs) > 1) else EdgeKind.SYNAPSE
            else:
                syn = term.syn
                others = [s for s in srcs if s != src]
                kind = (EdgeKind.SHORTCUT if any(src in _ancestors(graph, s, anc) for s in others)
                        else EdgeKind.SYNAPSE)
            out.add_edge(src, n.name, kind, port, cast(syn))

    for n in graph.nodes():
        p = low.pop.get(n.name)
        if p is None and n.name != sink.name:
            continue
        if p == "input":
            out.add_node(Node(n.name, "input", tuple(n.shape), dict(n.attrs), dict(n.params),
                              n.onnx_tensor, n.onnx_perm))
        elif p == "neuron" and n.op == "relu":
            cap = n.attrs.get("cap")
            add_pop(n, "neuron", low.expr(data_pred(graph, n.name)), {"cap": None if cap is None else float(cap)})
        elif p == "neuron":       # avgpool / globalavgpool of a population
            src = data_pred(graph, n.name)
            h, w, c = graph.node(src).shape
            if n.op == "globalavgpool":
                attrs = {"kernel": (h, w), "stride": (1, 1), "pads": (0, 0, 0, 0)}
            else:
                attrs = {"kernel": _t(n.attrs["kernel"]), "stride": _t(n.attrs["stride"]),
                         "pads": _t(n.attrs.get("pads", (0, 0, 0, 0))),
                         "count_include_pad": bool(n.attrs.get("count_include_pad", False))}
            add_pop(n, "neuron", None, {"cap": None})
            out.add_edge(src, n.name, EdgeKind.SYNAPSE, 0, Synapse("avgpool", attrs, {"scale": np.ones(c, dt)}))
        elif p == "maxgate":
            out.add_node(Node(n.name, "maxgate", tuple(n.shape),
                              {"kernel": _t(n.attrs["kernel"]), "stride": _t(n.attrs["stride"]),
                               "pads": _t(n.attrs.get("pads", (0, 0, 0, 0)))}, {}, n.onnx_tensor, n.onnx_perm))
            out.add_edge(data_pred(graph, n.name), n.name, EdgeKind.DATA, 0)
        if n.name == sink.name:
            if p is None:
                add_pop(n, "output", low.expr(n.name))
            else:
                c = n.shape[-1]
                on = Node(out.unique_name(n.name + "_out"), "output", tuple(n.shape), {},
                          {"bias": np.zeros(c, dt)}, n.onnx_tensor, n.onnx_perm)
                out.add_node(on)
                out.add_edge(n.name, on.name, EdgeKind.SYNAPSE, 0, Synapse("identity", {}, {"scale": np.ones(c, dt)}))
    # prune populations that do not feed the output
    outname = [n.name for n in out.nodes() if n.op == "output"][0]
    keep = nx.ancestors(out.nx, outname) | {outname}
    dead = [n for n in out.nx.nodes if n not in keep]
    for d in dead:
        out.remove_node(d)
    if dead and ctx is not None:
        ctx.log(f"eliminate_sums: pruned populations not feeding the output: {sorted(dead)}")
    return out
