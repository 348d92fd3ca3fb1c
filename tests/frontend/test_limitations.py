"""docs/limitations.md: every limitation gives the exact one-line error quoted there.

Each case is a tiny model built with onnx.helper in the form exporters write it (node names
like torch.onnx's).  ``snncc.convert`` must raise exactly ``MESSAGES[case]`` (one line, naming
the problem and a fix), and docs/limitations.md must quote it verbatim as
``snncc: error: <message>`` -- so the page cannot drift from what users see.
"""
import os

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import snncc
from snncc.errors import ModelError, SnnccError, UnsupportedOpError

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "limitations.md")


class Net:
    """Sequential builder with torch.onnx-style node names (``/<layer>/<Op>``)."""

    def __init__(self, in_shape=("batch", 3, 8, 8), opset=17):
        self.rng = np.random.default_rng(0)
        self.nodes, self.inits = [], []
        self.in_shape, self.opset = in_shape, opset
        self.k = 0

    def const(self, a):
        self.k += 1
        self.inits.append(numpy_helper.from_array(np.asarray(a), f"onnx::c_{self.k}"))
        return f"onnx::c_{self.k}"

    def node(self, op, ins, layer, n_out=1, **at):
        outs = [f"/{layer}/{op}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name=f"/{layer}/{op}", **at))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, layer, k=3, **at):
        w = (self.rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        return self.node("Conv", [x, self.const(w), self.const(np.zeros(cout, np.float32))], layer,
                         kernel_shape=[k, k], pads=[k // 2] * 4, **at)

    def bn(self, x, c, layer):
        one, zero = np.ones(c, np.float32), np.zeros(c, np.float32)
        return self.node("BatchNormalization", [x, self.const(one), self.const(zero), self.const(zero),
                                                self.const(one)], layer)

    def relu(self, x, layer):
        return self.node("Relu", [x], layer)

    def head(self, x, c, classes=10):
        x = self.node("Flatten", [self.node("GlobalAveragePool", [x], "avgpool")], "flatten")
        w = self.rng.standard_normal((classes, c)).astype(np.float32)
        out = self.node("Gemm", [x, self.const(w), self.const(np.zeros(classes, np.float32))], "fc", transB=1)
        return self.model(out)

    def model(self, out):
        g = helper.make_graph(self.nodes, "m", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               list(self.in_shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 8
        return m


# -- the cases -------------------------------------------------------------------------------------
def activations():
    """Sigmoid, LeakyReLU, GELU (opset 20: a Gelu node) and Tanh in one model: listed together."""
    n = Net(opset=20)
    x = n.node("Sigmoid", [n.conv("input", 3, 4, "conv1")], "act1")
    x = n.node("LeakyRelu", [n.conv(x, 4, 4, "conv2")], "act2", alpha=0.1)
    x = n.node("Gelu", [n.conv(x, 4, 4, "conv3")], "act3")
    x = n.node("Tanh", [n.conv(x, 4, 4, "conv4")], "act4")
    return n.head(x, 4)


def gelu_erf():
    """nn.GELU through the legacy exporter at opset 17: x * 0.5 * (1 + erf(x / sqrt(2)))."""
    n = Net()
    c = n.conv("input", 3, 4, "conv1")
    e = n.node("Erf", [n.node("Div", [c, n.const(np.float32(np.sqrt(2)))], "act")], "act")
    x = n.node("Mul", [c, n.node("Add", [e, n.const(np.float32(1))], "act")], "act")
    x = n.node("Mul", [x, n.const(np.float32(0.5))], "act1")
    return n.head(x, 4)


def silu():
    """nn.SiLU (swish) through the legacy exporter: Sigmoid then Mul."""
    n = Net()
    c = n.conv("input", 3, 4, "conv1")
    return n.head(n.node("Mul", [c, n.node("Sigmoid", [c], "act")], "act"), 4)


def hardtanh():
    n = Net()
    x = n.node("Clip", [n.conv("input", 3, 4, "conv1"), n.const(np.float32(-1)), n.const(np.float32(1))], "act")
    return n.head(x, 4)


def maxpool_no_relu():
    """conv -> BN -> MaxPool -> conv: a max of values that can be negative, and no ReLU after it either."""
    n = Net()
    x = n.node("MaxPool", [n.bn(n.conv("input", 3, 4, "conv1"), 4, "bn1")], "pool1", kernel_shape=[2, 2],
               strides=[2, 2])
    return n.head(n.relu(n.conv(x, 4, 4, "conv2"), "relu2"), 4)


def maxpool_input():
    """A max pool of the input image."""
    n = Net()
    x = n.node("MaxPool", ["input"], "pool0", kernel_shape=[2, 2], strides=[2, 2])
    return n.head(n.relu(n.bn(n.conv(x, 3, 4, "conv1"), 4, "bn1"), "relu1"), 4)


def maxpool_negative():
    """conv -> BN -> MaxPool -> ReLU: the max pool sees values that can be negative (converts: the ReLU
    moves in front of the pool)."""
    n = Net()
    x = n.bn(n.conv("input", 3, 4, "conv1"), 4, "bn1")
    x = n.relu(n.node("MaxPool", [x], "pool1", kernel_shape=[2, 2], strides=[2, 2]), "relu1")
    return n.head(x, 4)


def dynamic_hw():
    n = Net(in_shape=("batch", 3, "height", "width"))
    return n.head(n.relu(n.conv("input", 3, 4, "conv1"), "relu1"), 4)


def ceil_mode():
    """nn.MaxPool2d(3, 2, ceil_mode=True) on an 8x8 map: 4x4 instead of 3x3."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    x = n.node("MaxPool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    return n.head(x, 4)


def concat():
    """DenseNet/Inception-style concatenation of feature maps."""
    n = Net()
    a = n.relu(n.conv("input", 3, 4, "branch1"), "branch1")
    b = n.relu(n.conv("input", 3, 4, "branch2"), "branch2")
    return n.head(n.node("Concat", [a, b], "cat", axis=1), 8)


def squeeze_excitation():
    """SE block: x * sigmoid(fc(pool(x))) -- a product of two activations."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    s = n.node("GlobalAveragePool", [x], "se/pool")
    s = n.node("Sigmoid", [n.conv(s, 4, 4, "se/fc", k=1)], "se")
    return n.head(n.node("Mul", [x, s], "se"), 4)


def channel_split():
    """ShuffleNet-style channel split x[:, :C/2]."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    x = n.node("Slice", [x, n.const(np.array([0])), n.const(np.array([2])), n.const(np.array([1]))], "split")
    return n.head(x, 2)


def layernorm():
    n = Net()
    x = n.node("LayerNormalization", [n.conv("input", 3, 4, "conv1"), n.const(np.ones(8, np.float32)),
                                      n.const(np.zeros(8, np.float32))], "norm1", axis=-1)
    return n.head(n.relu(x, "relu1"), 4)


def conv_conv():
    """Two convolutions with no activation between them (a factorised 3x1 + 1x3 conv)."""
    n = Net()
    x = n.node("Conv", [n.relu(n.conv("input", 3, 4, "conv1"), "relu1"),
                        n.const(n.rng.standard_normal((4, 4, 3, 1)).astype(np.float32))], "conv2a",
               kernel_shape=[3, 1], pads=[1, 0, 1, 0])
    x = n.node("Conv", [x, n.const(n.rng.standard_normal((4, 4, 1, 3)).astype(np.float32))], "conv2b",
               kernel_shape=[1, 3], pads=[0, 1, 0, 1])
    return n.head(n.relu(x, "relu2"), 4)


def one_conv_residual():
    """A residual block with a single conv: relu(x + bn(conv(x))) -- identity and conv of the same source."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    y = n.bn(n.conv(x, 4, 4, "conv2"), 4, "bn2")
    return n.head(n.relu(n.node("Add", [x, y], "add2"), "relu2"), 4)


def bn_after_relu():
    """conv -> ReLU -> BatchNorm -> zero-padded conv: the BN's shift is not zero in the padding."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    one, shift = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    x = n.node("BatchNormalization", [x, n.const(one), n.const(shift), n.const(np.zeros(4, np.float32)),
                                      n.const(one)], "bn1")
    return n.head(n.relu(n.conv(x, 4, 4, "conv2"), "relu2"), 4)


def avgpool_negative():
    """conv -> BN -> AvgPool -> ReLU in the middle of the network."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    x = n.bn(n.conv(x, 4, 4, "conv2"), 4, "bn2")
    x = n.relu(n.node("AveragePool", [x], "pool2", kernel_shape=[2, 2], strides=[2, 2]), "relu2")
    return n.head(x, 4)


def training_mode():
    """BatchNorm exported in training mode (model.train() during torch.onnx.export)."""
    n = Net()
    x = n.node("BatchNormalization", [n.conv("input", 3, 4, "conv1")] +
               [n.const(np.full(4, v, np.float32)) for v in (1, 0, 0, 1)], "bn1", n_out=3, training_mode=1)[0]
    return n.head(n.relu(x, "relu1"), 4)


def sigmoid_output():
    """A multi-label / binary classifier ending in Sigmoid."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    x = n.node("Flatten", [n.node("GlobalAveragePool", [x], "avgpool")], "flatten")
    x = n.node("Gemm", [x, n.const(np.ones((10, 4), np.float32))], "fc", transB=1)
    return n.model(n.node("Sigmoid", [x], "out"))


def edge_pad_avgpool():
    """Keras 3 (torch backend) AveragePooling2D(3, 2, padding="same"): an edge Pad, then AveragePool.

    Unlike a max, an average changes with the replicated border values: still rejected."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    x = n.node("Pad", [x, n.const(np.array([0, 0, 0, 0, 0, 0, 1, 1]))], "pool1", mode="edge")
    x = n.node("AveragePool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2])
    return n.head(x, 4)


def zeropad_maxpool_negative():
    """conv -> BN -> ZeroPadding2D -> MaxPool -> ReLU: the zero pad is not of a ReLU output."""
    n = Net()
    x = n.bn(n.conv("input", 3, 4, "conv1"), 4, "bn1")
    x = n.node("Pad", [x, n.const(np.array([0, 0, 1, 1, 0, 0, 1, 1]))], "pool1", mode="constant")
    x = n.relu(n.node("MaxPool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2]), "relu1")
    return n.head(x, 4)


def keras_same_maxpool():
    """Keras 3 (torch backend) MaxPooling2D(3, 2, padding="same"): an edge-replicating Pad, then MaxPool.

    Converts exactly (not an error case): the MaxPool takes the Pad over as its own pads."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    x = n.node("Pad", [x, n.const(np.array([0, 0, 0, 0, 0, 0, 1, 1]))], "pool1", mode="edge")
    x = n.node("MaxPool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2])
    return n.head(x, 4)


def zeropad_maxpool():
    """ZeroPadding2D(1) + MaxPooling2D(3, 2) (keras.applications ResNet stem): a zero Pad, then MaxPool.

    Converts exactly (not an error case): the padded tensor is a ReLU output, so a zero never wins."""
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    x = n.node("Pad", [x, n.const(np.array([0, 0, 1, 1, 0, 0, 1, 1]))], "pool1", mode="constant")
    x = n.node("MaxPool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2])
    return n.head(x, 4)


def upsample():
    n = Net()
    x = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
    x = n.node("Resize", [x, "", n.const(np.array([1, 1, 2, 2], np.float32))], "up", mode="nearest")
    return n.head(x, 4)


_RELU = ("integrate-and-fire neurons only represent ReLU (and ReLU6 via Clip(0, c)): retrain the network "
         "with ReLU activations and re-export it")
_MUL = ("Mul '/act/Mul': product/quotient of two activations is not linear (only constants may scale a "
        "feature map)")

#: case -> (model builder, exception class, the exact message)
CASES = {
    "activations": (activations, UnsupportedOpError,
                    "unsupported ONNX ops: Sigmoid (node '/act1/Sigmoid', opset 20); LeakyRelu (node "
                    "'/act2/LeakyRelu', opset 20); Gelu (node '/act3/Gelu', opset 20); Tanh (node '/act4/Tanh', "
                    f"opset 20) (fix: Gelu, LeakyRelu, Sigmoid, Tanh: {_RELU})"),
    "gelu_erf": (gelu_erf, UnsupportedOpError,
                 "unsupported ONNX ops: Erf (node '/act/Erf', opset 17); Mul (node '/act/Mul', opset 17) "
                 f"(fix: Erf: {_RELU}; {_MUL})"),
    "silu": (silu, UnsupportedOpError,
             "unsupported ONNX ops: Sigmoid (node '/act/Sigmoid', opset 17); Mul (node '/act/Mul', opset 17) "
             f"(fix: Sigmoid: {_RELU}; {_MUL})"),
    "hardtanh": (hardtanh, UnsupportedOpError,
                 "unsupported ONNX ops: Clip (node '/act/Clip', opset 17) (fix: Clip '/act/Clip': Clip(min=-1.0) "
                 "is not a ReLU; integrate-and-fire neurons represent only Clip(0, c) (ReLU/ReLU6): retrain "
                 "with ReLU or ReLU6)"),
    "maxpool_no_relu": (maxpool_no_relu, ModelError,
                        "cannot lower maxpool node 'pool1/MaxPool': its operand 'conv1/Conv' is not the output of "
                        "a ReLU (it can be negative) and no ReLU follows the pool either (fix: put a ReLU right "
                        "before or right after the MaxPool (they commute; snncc moves one after the pool in front "
                        "of it))"),
    "maxpool_input": (maxpool_input, ModelError,
                      "cannot lower maxpool node 'pool0/MaxPool': it pools the input image (a max pool needs spike "
                      "rates: the output of a ReLU) (fix: pool after the first ReLU instead)"),
    "dynamic_hw": (dynamic_hw, ModelError,
                   "input 'input' has dynamic spatial/channel dims ['batch', 3, 'height', 'width'] (axes [2, 3]) "
                   "(fix: export with a fixed input size: only the batch dim may be dynamic (e.g. "
                   "torch.onnx.export(..., dynamic_axes={'input': {0: 'N'}})))"),
    "ceil_mode": (ceil_mode, ModelError,
                  "MaxPool node '/pool1/MaxPool': ceil_mode=1 changes the output size here (fix: export pooling "
                  "with ceil_mode=False (or adjust the input size))"),
    "concat": (concat, UnsupportedOpError,
               "unsupported ONNX ops: Concat (node '/cat/Concat', opset 17) (fix: Concat: Concat of feature maps "
               "(DenseNet/Inception-style) is not supported: use residual Add blocks instead of concatenation)"),
    "squeeze_excitation": (squeeze_excitation, UnsupportedOpError,
                           "unsupported ONNX ops: Sigmoid (node '/se/Sigmoid', opset 17); Mul (node '/se/Mul', "
                           f"opset 17) (fix: Sigmoid: {_RELU}; Mul '/se/Mul': product/quotient of two activations "
                           "is not linear (only constants may scale a feature map))"),
    "channel_split": (channel_split, ModelError,
                      "Slice node '/split/Slice': slices the channel axis (0:2:1 of 4 channels) (fix: channel "
                      "slicing is not supported; only strided spatial subsampling x[:, :, ::s, ::s] (option-A "
                      "shortcuts))"),
    "layernorm": (layernorm, UnsupportedOpError,
                  "unsupported ONNX ops: LayerNormalization (node '/norm1/LayerNormalization', opset 17) (fix: "
                  "LayerNormalization: instance/layer/group normalisation is not linear at inference: use "
                  "BatchNorm)"),
    "conv_conv": (conv_conv, ModelError,
                  "cannot lower conv node 'conv2b/Conv': it follows another linear map of 'relu1/Relu' with no "
                  "ReLU between (fix: insert a ReLU between the two layers, or merge them in the model)"),
    "bn_after_relu": (bn_after_relu, ModelError,
                      "cannot lower conv node 'conv2/Conv': a constant shift (bias/BN/affine with no ReLU between) "
                      "before a zero-padded conv (fix: the padding would need the shift's value, not zero: put the "
                      "BatchNorm before the ReLU (conv-BN-ReLU), or give the conv no padding)"),
    "avgpool_negative": (avgpool_negative, ModelError,
                         "cannot lower avgpool node 'pool2/AveragePool': its operand is not a ReLU/pool population "
                         "(a linear op with no activation before it) (fix: put a ReLU before the pooling layer)"),
    "training_mode": (training_mode, UnsupportedOpError,
                      "unsupported ONNX ops: BatchNormalization (node '/bn1/BatchNormalization', opset 17) (fix: "
                      "BatchNormalization '/bn1/BatchNormalization': training_mode=1 (export the model in eval "
                      "mode))"),
    "sigmoid_output": (sigmoid_output, UnsupportedOpError,
                       f"unsupported ONNX ops: Sigmoid (node '/out/Sigmoid', opset 17) (fix: Sigmoid: {_RELU})"),
    "edge_pad_avgpool": (edge_pad_avgpool, UnsupportedOpError,
                         "unsupported ONNX ops: Pad (node '/pool1/Pad', opset 17) (fix: Pad '/pool1/Pad': "
                         "mode='edge' (only constant zero padding is supported))"),
    "upsample": (upsample, UnsupportedOpError,
                 "unsupported ONNX ops: Resize (node '/up/Resize', opset 17) (fix: Resize: upsampling is not "
                 "supported; use a classifier network)"),
}


def _convert(model):
    calib = np.random.default_rng(0).uniform(0, 1, (8, 3, 8, 8)).astype(np.float32)
    return snncc.convert(model, calib, progress=False, calibrate_bias=0)


@pytest.mark.parametrize("case", list(CASES))
def test_exact_one_line_error(case):
    build, exc, message = CASES[case]
    with pytest.raises(SnnccError) as ei:
        _convert(build())
    e = ei.value
    assert type(e) is exc
    assert str(e) == message
    assert "\n" not in str(e) and e.hint and str(e).endswith(f"(fix: {e.hint})")


@pytest.mark.parametrize("case", list(CASES))
def test_quoted_verbatim_in_docs(case):
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    assert f"snncc: error: {CASES[case][2]}\n" in doc, f"docs/limitations.md does not quote the {case!r} error"


def test_cli_prints_the_same_line(tmp_path, capsys):
    from snncc.cli import main
    p = tmp_path / "m.onnx"
    p.write_bytes(maxpool_no_relu().SerializeToString())
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).uniform(0, 255, (4, 3, 8, 8)).astype(np.uint8))
    rc = main([str(p), "-o", str(tmp_path / "m.snn"), "--calib", str(tmp_path / "calib.npz"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"snncc: error: {CASES['maxpool_no_relu'][2]}\n"
    assert not (tmp_path / "m.snn").exists()


@pytest.mark.parametrize("build", [maxpool_negative, zeropad_maxpool_negative], ids=["maxpool-relu", "zeropad-maxpool-relu"])
def test_maxpool_then_relu_converts_exactly(build):
    """Documented as supported: conv -> BN -> [ZeroPad ->] MaxPool -> ReLU (PyTorch's
    F.relu(F.max_pool2d(conv(x), 2))).  Max and ReLU commute, so the ReLU moves in front of the pool (the
    zero pad into the pool's pads) and the network computes exactly what the model does."""
    import onnxruntime as ort
    m = build()
    x = np.random.default_rng(2).uniform(0, 1, (6, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    net = _convert(m)
    g = net.graph
    assert [p.op for p in g.populations()] == ["input", "neuron", "maxgate", "output"]
    np.testing.assert_allclose(net.analog(x) * g.meta["lambda"][g.output.name], ref, rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())
    res = net.run(x, 64, progress=False)
    assert res.spikes[g.by_op("maxgate")[0].name].sum() > 0


def test_preactivation_resnet_converts_exactly():
    """Documented as supported: BN-ReLU-conv blocks whose sum has no ReLU (ResNet v2)."""
    import onnxruntime as ort
    n = Net()
    s = n.conv("input", 3, 4, "stem")
    for i in (1, 2):
        y = n.conv(n.relu(n.bn(s, 4, f"b{i}/bn1"), f"b{i}/relu1"), 4, 4, f"b{i}/conv1")
        y = n.conv(n.relu(n.bn(y, 4, f"b{i}/bn2"), f"b{i}/relu2"), 4, 4, f"b{i}/conv2")
        s = n.node("Add", [s, y], f"b{i}")
    m = n.head(n.relu(n.bn(s, 4, "bn_final"), "relu_final"), 4)
    x = np.random.default_rng(1).uniform(0, 1, (6, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    net = _convert(m)
    g = net.graph
    y = net.analog(x) * g.meta["lambda"][g.output.name]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert sum(d["kind"].value == "shortcut" for _, _, d in g.nx.edges(data=True)) >= 2


def test_one_conv_residual_block_converts_exactly():
    """Documented as supported: relu(x + bn(conv(x))) becomes one conv synapse (identity in the centre tap)."""
    import onnxruntime as ort
    m = one_conv_residual()
    x = np.random.default_rng(1).uniform(0, 1, (6, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    net = _convert(m)
    g = net.graph
    np.testing.assert_allclose(net.analog(x) * g.meta["lambda"][g.output.name], ref, rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())
    (e,) = g.in_edges("relu2/Relu")
    assert e[1]["syn"].op == "conv"


@pytest.mark.parametrize("build, pads", [(keras_same_maxpool, (0, 0, 1, 1)), (zeropad_maxpool, (1, 1, 1, 1))])
def test_padded_maxpool_from_keras_converts_exactly(build, pads):
    """Documented as supported: an edge Pad, or a zero Pad of a ReLU output, in front of a MaxPool
    becomes the pool's own pads (which never win a max); the analog network equals onnxruntime."""
    import onnxruntime as ort
    from snncc.frontend import import_onnx
    m = build()
    ir = import_onnx(m)
    assert [nd.op for nd in ir.nodes()].count("pad") == 0
    (mp,) = [nd for nd in ir.nodes() if nd.op == "maxpool"]
    assert tuple(mp.attrs["pads"]) == pads and tuple(mp.shape) == (4, 4, 4)
    x = np.random.default_rng(1).uniform(0, 1, (6, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    net = _convert(m)
    g = net.graph
    y = net.analog(x) * g.meta["lambda"][g.output.name]
    assert np.array_equal(np.argmax(y, 1), np.argmax(ref, 1))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert [p.op for p in g.populations()].count("maxgate") == 1


def test_nin_head_without_relu_before_the_pool_converts_exactly():
    """Documented as supported: conv (1x1 and 3x3 stride 2) -> GlobalAveragePool / a whole-map AveragePool
    -> Flatten with no ReLU before the pool (NiN / all-conv heads) merges into the classifier, exactly."""
    import onnxruntime as ort
    x = np.random.default_rng(1).uniform(0, 1, (6, 3, 8, 8)).astype(np.float32)
    for k, pool in ((1, "GlobalAveragePool"), (3, "AveragePool")):
        n = Net()
        h = n.relu(n.bn(n.conv("input", 3, 8, "conv1"), 8, "bn1"), "relu1")
        at = {"strides": [2, 2]} if k == 3 else {}
        y = n.conv(h, 8, 10, "classifier", k=k, **at)                       # (10, 8, 8) or (10, 4, 4)
        side = 4 if k == 3 else 8
        y = n.node(pool, [y], "pool", **({"kernel_shape": [side, side]} if pool == "AveragePool" else {}))
        m = n.model(n.node("Flatten", [y], "flatten"))
        ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        net = _convert(m)
        g = net.graph
        assert [p.op for p in g.populations()] == ["input", "neuron", "output"], pool
        np.testing.assert_allclose(net.analog(x) * g.meta["lambda"][g.output.name], ref, rtol=1e-4,
                                   atol=1e-4 * np.abs(ref).max())


def test_batchnorm_after_relu_before_pools_converts_exactly():
    """Documented as supported: conv -> ReLU -> BN -> MaxPool / AvgPool -> Flatten -> Gemm (Keras' common
    ordering); the BN moves past the pool and merges into the classifier."""
    import onnxruntime as ort
    x = np.random.default_rng(1).uniform(0, 1, (6, 3, 8, 8)).astype(np.float32)
    for pool in ("MaxPool", "AveragePool"):
        n = Net()
        h = n.relu(n.conv("input", 3, 4, "conv1"), "relu1")
        c = 4
        h = n.node("BatchNormalization", [h, n.const(np.array([0.5, 1.5, 1.0, 2.0], np.float32)),
                                          n.const(np.array([0.1, -0.2, 0.3, 0.0], np.float32)),
                                          n.const(np.array([0.2, 0.1, -0.1, 0.3], np.float32)),
                                          n.const(np.array([1.0, 0.5, 2.0, 1.5], np.float32))], "bn1")
        h = n.node(pool, [h], "pool1", kernel_shape=[2, 2], strides=[2, 2])
        h = n.node("Flatten", [h], "flatten")
        w = n.rng.standard_normal((10, c * 16)).astype(np.float32)
        m = n.model(n.node("Gemm", [h, n.const(w), n.const(np.zeros(10, np.float32))], "fc", transB=1))
        ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        net = _convert(m)
        g = net.graph
        np.testing.assert_allclose(net.analog(x) * g.meta["lambda"][g.output.name], ref, rtol=1e-4,
                                   atol=1e-4 * np.abs(ref).max())
