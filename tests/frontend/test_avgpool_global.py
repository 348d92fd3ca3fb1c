"""An AveragePool whose kernel covers the whole feature map (PyTorch's
``F.avg_pool2d(x, x.size(3))``, as in the CIFAR ResNets) is a global average pool:
it must merge with the classifier into one synapse, not become a spiking layer."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import snncc
from fe_models import check_equal, ort_run
from snncc.frontend import import_onnx


def _model(kernel):
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32)
    wd = rng.normal(0, 0.5, (5, 4 * (4 // kernel) ** 2)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(wd, "wd")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[kernel, kernel], strides=[kernel, kernel]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wd"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "avg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_whole_map_average_pool_is_global_and_merges():
    m = _model(4)
    x = np.random.default_rng(0).uniform(0, 1, (16, 2, 4, 4)).astype(np.float32)
    g = import_onnx(m)
    ops = [n.op for n in g.nodes()]
    assert "globalavgpool" in ops and "avgpool" not in ops
    check_equal(g, m, x)
    net = snncc.convert(m, x, progress=False, calibrate_bias=0)
    pops = [p for p in net.graph.populations() if p.op != "input"]
    assert [p.op for p in pops] == ["neuron", "output"]          # no spiking pool layer
    lam = net.graph.meta["lambda"][net.graph.output.name]
    np.testing.assert_allclose(net.analog(x) * lam, ort_run(m, x)[0], rtol=1e-4, atol=1e-5)


def test_partial_average_pool_stays_a_pool():
    m = _model(2)
    x = np.random.default_rng(1).uniform(0, 1, (8, 2, 4, 4)).astype(np.float32)
    g = import_onnx(m)
    assert "avgpool" in [n.op for n in g.nodes()]
    check_equal(g, m, x)
