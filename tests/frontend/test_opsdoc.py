"""docs/supported_ops.md is generated from the op registry and its claims hold.

* the committed page equals ``snncc.frontend.opsdoc.render()`` (regenerate it with
  ``python -m snncc.frontend.opsdoc``);
* every registered op is documented (summary + an ``IR:`` field naming real IR ops);
* one hand-built model that uses every registered op converts and equals onnxruntime
  at every opset of the documented range (attribute vs input forms of Clip, Pad, Slice,
  Squeeze/Unsqueeze, ReduceMean, Dropout chosen per opset).
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fe_models import check_equal
from snncc.frontend import import_onnx, opsdoc, registry
from snncc.ir import OP_LEVEL_OPS

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "supported_ops.md")


def test_committed_page_is_up_to_date():
    with open(DOC, encoding="utf-8") as f:
        committed = f.read()
    assert committed == opsdoc.render(), \
        "docs/supported_ops.md is out of date: run `python -m snncc.frontend.opsdoc` and commit it"


def test_check_flag(tmp_path, capsys):
    p = tmp_path / "ops.md"
    assert opsdoc.main(["--check", "-o", str(p)]) == 1
    assert opsdoc.main(["-o", str(p)]) == 0
    assert opsdoc.main(["--check", "-o", str(p)]) == 0
    assert p.read_text(encoding="utf-8") == opsdoc.render()


def test_every_registered_op_is_documented():
    text = opsdoc.render()
    docs = opsdoc.handler_docs()
    assert set(docs) == set(registry.HANDLERS)
    for op, d in docs.items():
        assert d["summary"], f"handler of {op} has no docstring"
        assert d.get("IR"), f"handler docstring of {op} has no 'IR:' field"
        for ir_op in opsdoc.ir_ops(d["IR"]):
            assert ir_op in OP_LEVEL_OPS, f"{op}: IR op {ir_op!r} is not an op-level IR op"
        assert opsdoc.ir_ops(d["IR"]) or d["IR"].startswith("none"), op
        assert f"| [`{op}`](#{op.lower()}) |" in text and f"\n### {op}\n" in text
        assert opsdoc.op_versions(op), f"{op} is not an ONNX op at opsets {opsdoc.MIN_OPSET}-{opsdoc.MAX_OPSET}"
    for t in registry.FOLD_ONLY + tuple(registry.NON_RELU) + tuple(registry.OP_HINTS):
        assert f"`{t}`" in text


def test_parse_doc_fields():
    d = opsdoc.parse_doc("""Summary line.

        IR: ``conv``
        Accepts: a
        b
        Rejects: c
        """)
    assert d == {"summary": "Summary line.", "IR": "``conv``", "Accepts": "a b", "Rejects": "c"}
    assert opsdoc.op_versions("Conv", 7, 21) == [1, 11]
    assert opsdoc.op_versions("Squeeze", 7, 12) == [1, 11]


# -- one model with every registered op, at every documented opset -------------------------
def all_ops_model(opset: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    k = [0]

    def c(a):
        k[0] += 1
        inits.append(numpy_helper.from_array(np.asarray(a), f"k{k[0]}"))
        return f"k{k[0]}"

    def w(*s, sc=None):
        return c((rng.standard_normal(s) * (sc or 1 / np.sqrt(int(np.prod(s[1:]))))).astype(np.float32))

    def pos(*s):
        return c((0.6 + 0.8 * rng.random(s)).astype(np.float32))

    def nd(op, ins, **at):
        k[0] += 1
        o = f"{op.lower()}{k[0]}"
        nodes.append(helper.make_node(op, ins, [o], name=f"n{k[0]}", **at))
        return o

    def bn(x, ch):
        return nd("BatchNormalization", [x, pos(ch), w(ch, sc=0.2), w(ch, sc=0.2), pos(ch)], epsilon=1e-5)

    def conv(x, cin, cout, **at):
        return nd("Conv", [x, w(cout, cin, 3, 3), w(cout, sc=0.1)], **at)

    def clip(x, lo, hi):
        if opset < 11:
            return nd("Clip", [x], min=lo, max=hi)
        return nd("Clip", [x, c(np.float32(lo)), c(np.float32(hi))])

    def pad(x, p):
        if opset < 11:
            return nd("Pad", [x], pads=p, mode="constant", value=0.0)
        return nd("Pad", [x, c(np.array(p, np.int64))], mode="constant")

    def subsample(x, axis):
        if opset < 10:
            return nd("Slice", [x], starts=[0], ends=[2**31 - 1], axes=[axis])   # no steps before 10
        return nd("Slice", [x, c(np.array([0])), c(np.array([2**31 - 1])), c(np.array([axis])), c(np.array([2]))])

    def axes_op(op, x, axes, new_form_from, **at):
        if opset < new_form_from:
            return nd(op, [x], axes=axes, **at)
        return nd(op, [x, c(np.array(axes, np.int64))], **at)

    # in-graph normalisation, stem
    x = nd("Div", [nd("Sub", ["x", c(np.array([0.5, 0.4, 0.3], np.float32).reshape(1, 3, 1, 1))]),
                   c(np.array([0.2, 0.25, 0.3], np.float32).reshape(1, 3, 1, 1))])
    h = nd("Relu", [bn(conv(x, 3, 8, pads=[1, 1, 1, 1]), 8)])
    h = nd("Cast", [nd("Identity", [h])], to=TensorProto.FLOAT)
    # identity block: ReLU6, explicit Pad before a pad-free conv, NHWC round trip, Sum
    y = clip(bn(conv(h, 8, 8, pads=[1, 1, 1, 1]), 8), 0.0, 6.0)
    y = nd("Transpose", [nd("Transpose", [y], perm=[0, 2, 3, 1])], perm=[0, 3, 1, 2])
    y = bn(conv(pad(y, [0, 0, 1, 1, 0, 0, 1, 1]), 8, 8), 8)
    h = nd("Relu", [nd("Sum", [y, h])])
    # down-sampling block with the option-A shortcut; Mul by a constant before BN
    y = nd("Mul", [conv(h, 8, 16, pads=[1, 1, 1, 1], strides=[2, 2]), pos(1, 16, 1, 1)])
    if opset >= 8:      # torch.clamp(min=0) from dynamo (Max broadcasts from opset 8)
        y = nd("Max", [bn(y, 16), c(np.float32(0.0))])
    else:
        y = nd("Relu", [bn(y, 16)])
    y = bn(conv(y, 16, 16, pads=[1, 1, 1, 1]), 16)
    if opset >= 10:
        s = subsample(subsample(h, 2), 3)
    else:   # Slice-1 has no steps: a 1x1 stride-2 max pool subsamples the ReLU output instead
        s = nd("MaxPool", [subsample(h, 2)], kernel_shape=[1, 1], strides=[2, 2])
    h = nd("Relu", [nd("Add", [y, pad(s, [0, 4, 0, 0, 0, 4, 0, 0])])])          # (16, 6, 6)
    h = nd("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])                   # (16, 3, 3)
    h = nd("AveragePool", [h], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0])
    h = nd("Dropout", [h])
    # three heads, summed: ReduceMean/Squeeze/Unsqueeze/Flatten/Gemm/Reshape/MatMul,
    # GlobalMaxPool/Flatten/Gemm (+ ReduceMax/Gemm) and GlobalAveragePool/Flatten/Gemm
    a = axes_op("ReduceMean", h, [2, 3], 18, keepdims=1)
    a = axes_op("Unsqueeze", axes_op("Squeeze", a, [2, 3], 13), [2], 13)
    a = nd("Relu", [nd("Gemm", [nd("Flatten", [a], axis=1), w(12, 16), w(12, sc=0.1)], transB=1)])
    a = nd("Reshape", [a, c(np.array([-1, 12], np.int64))])
    a = nd("Add", [nd("MatMul", [a, w(12, 10)]), w(10, sc=0.1)])
    b = nd("Gemm", [nd("Flatten", [nd("GlobalMaxPool", [h])]), w(16, 10), w(10, sc=0.1)])
    b = nd("Add", [b, nd("Gemm", [axes_op("ReduceMax", h, [2, 3], 18, keepdims=0), w(16, 10), w(10, sc=0.1)])])
    g = nd("Gemm", [nd("Flatten", [nd("GlobalAveragePool", [h])]), w(10, 16), w(10, sc=0.1)], transB=1)
    out = nd("LogSoftmax" if opset % 2 else "Softmax", [nd("Sum", [a, b, g])], axis=1)
    gr = helper.make_graph(nodes, "all_ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
                           [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def test_all_ops_model_uses_every_registered_op():
    used = {n.op_type for o in (opsdoc.MIN_OPSET, opsdoc.MIN_OPSET + 1) for n in all_ops_model(o).graph.node}
    missing = set(registry.HANDLERS) - used
    assert not missing, (f"add {sorted(missing)} to all_ops_model() in tests/frontend/test_opsdoc.py so the "
                         "documented opset range is tested for it")


@pytest.mark.parametrize("opset", range(opsdoc.MIN_OPSET, opsdoc.MAX_OPSET + 1))
def test_documented_opsets_convert_exactly(opset):
    m = all_ops_model(opset)
    g = import_onnx(m)
    x = np.random.default_rng(opset).standard_normal((4, 3, 12, 12)).astype(np.float32)
    mm = onnx.ModelProto()
    mm.CopyFrom(m)
    mm.graph.output.append(helper.make_tensor_value_info(g.meta["output_name"], TensorProto.FLOAT, None))
    sess = ort.InferenceSession(mm.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = sess.run([g.meta["output_name"]], {"x": x})[0]
    check_equal(g, m, x, ref=logits)
    assert g.meta["frontend"]["opset"] == opset
    assert g.meta["frontend"]["dropped_output_ops"] == ["LogSoftmax" if opset % 2 else "Softmax"]
