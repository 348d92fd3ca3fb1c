"""Tiny hand-built ONNX models (onnx.helper) and an ORT-vs-IR comparison helper."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from snncc.analog import run_analog
from snncc.ir import verify

OPSET = 17


class Builder:
    """Sequential-ish graph builder: ``b.node("Conv", [x, w], ...)`` returns the output name."""

    def __init__(self, in_shape=("N", 3, 8, 8), seed: int = 0, in_name: str = "x"):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.in_shape = in_shape
        self.x = in_name
        self._k = 0

    def const(self, arr, name=None) -> str:
        self._k += 1
        name = name or f"c{self._k}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def randw(self, *shape, scale=None) -> str:
        fan = int(np.prod(shape[1:])) or 1
        s = scale if scale is not None else 1.0 / np.sqrt(fan)
        return self.const((self.rng.standard_normal(shape) * s).astype(np.float32))

    def node(self, op, inputs, n_out=1, **attrs):
        self._k += 1
        outs = [f"{op.lower()}{self._k}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=f"{op}_{self._k}", **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=3, **attrs):
        attrs.setdefault("pads", [k // 2] * 4)
        return self.node("Conv", [x, self.randw(cout, cin, k, k), self.randw(cout, scale=0.1)], **attrs)

    def model(self, out, opset=OPSET, in_type=TensorProto.FLOAT) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, "t", [helper.make_tensor_value_info(self.x, in_type, list(self.in_shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


def ort_run(model, x, outputs=None):
    data = model if isinstance(model, str) else model.SerializeToString()
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return s.run(outputs, {s.get_inputs()[0].name: np.asarray(x, np.float32)})


def to_channels_last(g, x):
    return x.transpose(0, 2, 3, 1) if g.meta["input_layout"] == "NCHW" else x


def check_equal(g, model, x, rtol=1e-4, atol=1e-5, ref=None):
    """IR (analog) output == onnxruntime output of ``model`` on ``x`` (model's own layout)."""
    verify(g)
    if ref is None:
        ref = ort_run(model, x)[0]
    y = run_analog(g, to_channels_last(g, x))
    ref = ref.reshape(y.shape)
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=atol)
    assert np.array_equal(np.argmax(y.reshape(len(y), -1), 1), np.argmax(ref.reshape(len(y), -1), 1))
    return y, ref


def onnx_tensor_values(g, names, x):
    """ORT values of intermediate tensors of ``g.onnx_model`` (added as extra outputs)."""
    m = onnx.ModelProto()
    m.CopyFrom(g.onnx_model)
    have = {o.name for o in m.graph.output}
    for t in names:
        if t not in have:
            m.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    vals = ort_run(m, x, list(names))
    return dict(zip(names, vals))
