"""Constant folding of shape/constant subgraphs.

A node whose inputs are all constants (initializers, ``Constant`` outputs,
outputs of already folded nodes, or ``Shape``/``Size`` of a tensor whose shape
shape inference knows) is evaluated with :class:`onnx.reference.ReferenceEvaluator`
on that single node and replaced by initializers in the folded model.

Batch-dependent values
----------------------
With a dynamic batch dim, ``Shape(x)`` is not a constant, but exporters use it
for ``x.view(x.size(0), -1)``.  Such a value is evaluated twice, with batch 2
and batch 3 (a *pair*): what comes out equal in both runs is a true constant
and is folded (e.g. ``Gather(Shape(x), 1)``); what differs stays in the ONNX
model (so it keeps a dynamic batch) and is known to the importer as a pair,
from which e.g. a ``Reshape`` target ``[N, -1]`` is recovered.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from snncc.frontend.loader import infer_shapes, opset_of, tensor_dims

BATCHES = (2, 3)
NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                              "Multinomial", "Bernoulli"})
#: ops never folded (subgraphs / sequences)
NOFOLD = frozenset({"If", "Loop", "Scan", "SequenceConstruct", "SequenceAt", "SplitToSequence"})


@dataclass
class Folded:
    model: onnx.ModelProto
    consts: dict = field(default_factory=dict)     # name -> ndarray
    pairs: dict = field(default_factory=dict)      # name -> (value at batch 2, value at batch 3)
    folded: list = field(default_factory=list)     # op types folded (for the report)


def _shapes(m: onnx.ModelProto) -> dict:
    out = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        d = tensor_dims(vi)
        if d is not None:
            out[vi.name] = d
    return out


def _eval(node, opset: int, feeds: dict):
    """Run one node through ReferenceEvaluator, as a one-node model of the model's opset
    (a bare NodeProto would be run with the newest op version)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None)
           for k, v in feeds.items()]
    outs = [helper.make_value_info(o, onnx.TypeProto()) for o in node.output if o]
    g = helper.make_graph([node], "fold", ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return [np.asarray(v) for v in ReferenceEvaluator(m).run(None, feeds)]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def _dummy(dims, batch):
    """A zero-cost array of the tensor's shape (batch substituted), or None if unknown."""
    if dims is None:
        return None
    shp = []
    for i, d in enumerate(dims):
        if isinstance(d, int) and d >= 0:
            shp.append(d)
        elif i == 0:
            shp.append(batch)
        else:
            return None
    return np.broadcast_to(np.zeros((), np.float32), shp)


def _fold_once(m: onnx.ModelProto, res: Folded) -> bool:
    opset = opset_of(m)
    shapes = _shapes(m)
    consts, pairs = res.consts, res.pairs
    changed = False
    keep = []
    for node in m.graph.node:
        outs = [o for o in node.output if o]
        if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC or node.op_type in NOFOLD:
            keep.append(node)
            continue
        ins = list(node.input)
        feeds = [{}, {}]
        ok, paired = True, False
        if node.op_type in ("Shape", "Size") and ins and ins[0] not in consts:
            for k, b in enumerate(BATCHES):
                d = _dummy(shapes.get(ins[0]), b)
                if d is None:
                    ok = False
                    break
                feeds[k][ins[0]] = d
            paired = True
        else:
            for name in ins:
                if not name:
                    continue
                if name in consts:
                    feeds[0][name] = feeds[1][name] = consts[name]
                elif name in pairs:
                    feeds[0][name], feeds[1][name] = pairs[name]
                    paired = True
                else:
                    ok = False
                    break
        if not ok or not outs:
            keep.append(node)
            continue
        try:
            va = _eval(node, opset, feeds[0])
            vb = _eval(node, opset, feeds[1]) if paired else va
        except Exception:  # noqa: BLE001 - leave it to the importer (it reports the node)
            keep.append(node)
            continue
        named = [(o, a, b) for o, a, b in zip(node.output, va, vb) if o]
        if _same(va, vb):
            for o, a, _ in named:
                consts[o] = a
                pairs.pop(o, None)
            res.folded.append(node.op_type)
            changed = True
        else:
            for o, a, b in named:
                if o not in pairs:
                    changed = True
                pairs[o] = (a, b)
            keep.append(node)
    if not changed:
        return False
    _rebuild(m, keep, consts)
    return True


def _rebuild(m: onnx.ModelProto, keep: list, consts: dict) -> None:
    used = {i for n in keep for i in n.input if i}
    used |= {o.name for o in m.graph.output}
    # subgraph references (If/Loop bodies) keep their outer-scope names
    for n in keep:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                used |= {i for sn in a.g.node for i in sn.input}
    old_inits = {t.name: t for t in m.graph.initializer}
    new_inits = []
    for name in sorted(used):
        if name in old_inits:
            new_inits.append(old_inits[name])
        elif name in consts:
            new_inits.append(numpy_helper.from_array(np.array(consts[name], copy=True, order="C"), name))
    keep_names = {t.name for t in new_inits}
    dropped = set(old_inits) - keep_names
    inputs = [i for i in m.graph.input if i.name not in dropped]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    del m.graph.initializer[:]
    m.graph.initializer.extend(new_inits)
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    del m.graph.value_info[:]


def fold_constants(model: onnx.ModelProto, max_rounds: int = 8) -> Folded:
    """Fold constant subgraphs of ``model`` (modified copy in ``Folded.model``)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    res = Folded(model=m)
    for t in m.graph.initializer:
        res.consts[t.name] = numpy_helper.to_array(t)
    for _ in range(max_rounds):
        if not _fold_once(m, res):
            break
        m = infer_shapes(m)
        res.model = m
    # only initializers still referenced (plus folded values the importer may look up)
    return res
