"""A tiny NCHW ONNX model and its hand-written op-level IR (for the ORT profiling path)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from snncc.ir import EdgeKind, Graph, Node, verify


def make(seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 4).astype(np.float32)
    w2 = rng.normal(0, 0.4, (3, 4, 3, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 3).astype(np.float32)
    wd = rng.normal(0, 0.5, (5, 3)).astype(np.float32)
    bd = rng.normal(0, 0.1, 5).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (wd, "wd"), (bd, "bd"))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["m1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["m1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["fl"]),
        helper.make_node("Gemm", ["fl", "wd", "bd"], ["logits"], transB=1),
    ]
    gr = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                           [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)

    g = Graph()
    g.meta.update({"input_layout": "NCHW", "input_name": "x", "onnx_input_shape": (2, 6, 6),
                   "output_name": "logits", "preprocess": {"scale": 1 / 255, "mean": None, "std": None}})
    g.onnx_model = model
    cl = (0, 2, 3, 1)
    g.add_node(Node("in", "input", (6, 6, 2)))
    g.add_node(Node("conv1", "conv", (6, 6, 4), {"pads": (1, 1, 1, 1)},
                    {"weight": w1.transpose(2, 3, 1, 0).copy(), "bias": b1}))
    g.add_node(Node("r1", "relu", (6, 6, 4), onnx_tensor="r1", onnx_perm=cl))
    g.add_node(Node("m1", "maxpool", (3, 3, 4), {"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 0, 0)},
                    onnx_tensor="m1", onnx_perm=cl))
    g.add_node(Node("conv2", "conv", (3, 3, 3), {"pads": (1, 1, 1, 1)},
                    {"weight": w2.transpose(2, 3, 1, 0).copy(), "bias": b2}))
    g.add_node(Node("r2", "relu", (3, 3, 3), onnx_tensor="r2", onnx_perm=cl))
    g.add_node(Node("gp", "globalavgpool", (1, 1, 3)))
    g.add_node(Node("fl", "flatten", (3,)))
    g.add_node(Node("logits", "dense", (5,), {}, {"weight": wd.T.copy(), "bias": bd}, onnx_tensor="logits"))
    for u, v in (("in", "conv1"), ("conv1", "r1"), ("r1", "m1"), ("m1", "conv2"), ("conv2", "r2"),
                 ("r2", "gp"), ("gp", "fl"), ("fl", "logits")):
        g.add_edge(u, v, EdgeKind.DATA, 0)
    verify(g)
    x = rng.integers(0, 256, size=(37, 6, 6, 2)).astype(np.uint8)
    return g, x


def ort_logits(g, x):
    import onnxruntime as ort
    s = ort.InferenceSession(g.onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    xin = (x.astype(np.float64) / 255).transpose(0, 3, 1, 2).astype(np.float32)
    return s.run(None, {"x": xin})[0]
