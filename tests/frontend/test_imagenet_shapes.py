"""ImageNet-style ResNet-18/34/50 *topologies* (random weights) through the front end and every pass.

Built with onnx.helper + numpy only (torchvision's layout, reduced width and input so each
case takes seconds): 7x7 stride-2 stem conv + BN + ReLU, 3x3 stride-2 max pool (pad 1),
four stages of basic blocks ([2,2,2,2] / [3,4,6,3]) or bottlenecks ([3,4,6,3], expansion 4)
with stride 2 at the start of stages 2-4 and projection shortcuts (1x1 conv + BN), global
average pool, Gemm.  After every pass of the pipeline the analog view times lambda_out must
equal onnxruntime's logits on the original model (argmax identical, tight tolerance).
The ResNet-18-shaped net is also simulated for a few steps by the event-driven runtime
(the max pool becomes a spike-count gate) and checked against the numpy reference.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from snncc.analog import run_analog
from snncc.frontend import import_onnx
from snncc.ir import verify
from snncc.passes import PASS_NAMES, PassContext, run_pipeline

HW = 64        # input size (torchvision uses 224)
BASE = 8       # width of the first stage (torchvision uses 64)
CLASSES = 10

ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


class _Net:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.k = 0

    def const(self, a):
        self.k += 1
        name = f"w{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    def node(self, op, ins, name, **at):
        self.nodes.append(helper.make_node(op, ins, [name], name=name, **at))
        return name

    def conv(self, x, cin, cout, k, stride, name):
        w = self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        return self.node("Conv", [x, self.const(w)], name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[k // 2] * 4)

    def bn(self, x, c, name, gamma=1.0):
        r = self.rng
        ins = [x, self.const(gamma * (0.6 + 0.8 * r.random(c))), self.const(0.2 * r.standard_normal(c)),
               self.const(0.2 * r.standard_normal(c)), self.const(0.5 + 1.5 * r.random(c))]
        return self.node("BatchNormalization", ins, name, epsilon=1e-5)

    def conv_bn(self, x, cin, cout, k, stride, name, relu=True, gamma=1.0):
        y = self.bn(self.conv(x, cin, cout, k, stride, f"{name}.conv"), cout, f"{name}.bn", gamma)
        return self.node("Relu", [y], f"{name}.relu") if relu else y


def build_resnet(arch: str, seed: int = 0) -> onnx.ModelProto:
    """torchvision-layout ResNet (NCHW input (N, 3, HW, HW), dynamic batch) with random weights."""
    kind, blocks = ARCHS[arch]
    n = _Net(seed)
    x = n.conv_bn("input", 3, BASE, 7, 2, "stem")
    x = n.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = BASE
    for s, nb in enumerate(blocks):
        planes = BASE * 2 ** s
        cout = planes * (4 if kind == "bottleneck" else 1)
        for b in range(nb):
            stride = 2 if (s > 0 and b == 0) else 1
            p = f"layer{s + 1}.{b}"
            if kind == "basic":
                y = n.conv_bn(x, cin, planes, 3, stride, f"{p}.1")
                y = n.conv_bn(y, planes, cout, 3, 1, f"{p}.2", relu=False, gamma=0.5)
            else:
                y = n.conv_bn(x, cin, planes, 1, 1, f"{p}.1")
                y = n.conv_bn(y, planes, planes, 3, stride, f"{p}.2")
                y = n.conv_bn(y, planes, cout, 1, 1, f"{p}.3", relu=False, gamma=0.5)
            sc = x
            if stride != 1 or cin != cout:
                sc = n.conv_bn(x, cin, cout, 1, stride, f"{p}.downsample", relu=False)
            x = n.node("Relu", [n.node("Add", [y, sc], f"{p}.add")], f"{p}.relu")
            cin = cout
    x = n.node("Flatten", [n.node("GlobalAveragePool", [x], "avgpool")], "flatten")
    w = n.rng.standard_normal((CLASSES, cin)) / np.sqrt(cin)
    out = n.node("Gemm", [x, n.const(w), n.const(0.1 * n.rng.standard_normal(CLASSES))], "fc", transB=1)
    g = helper.make_graph(n.nodes, arch, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, HW, HW])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", CLASSES])], n.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _data(seed, n):
    """Raw channels-last images: per-channel offsets plus a few random low-frequency waves
    (white noise would average out in the deep layers and give every image the same class)."""
    r = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(HW), np.arange(HW), indexing="ij")
    x = r.uniform(-0.5, 0.5, (n, 1, 1, 3)) + np.zeros((n, HW, HW, 3))
    for _ in range(4):
        f = r.uniform(0.02, 0.3, (n, 1, 1, 2))
        ph = r.uniform(0, 2 * np.pi, (n, 1, 1, 3))
        x += r.uniform(0.2, 0.6, (n, 1, 1, 3)) * np.sin(f[..., :1] * yy[None, :, :, None]
                                                        + f[..., 1:] * xx[None, :, :, None] + ph)
    return x


def _standardize_head(m, x_nhwc):
    """Rescale the classifier so the logits depend on the image: with random BatchNorm
    statistics the pooled features are dominated by constants, so the Gemm is applied to
    features standardised over ``x_nhwc`` (W / sd, bias - W mu / sd)."""
    mm = onnx.ModelProto()
    mm.CopyFrom(m)
    mm.graph.output.append(helper.make_tensor_value_info("flatten", TensorProto.FLOAT, None))
    s = ort.InferenceSession(mm.SerializeToString(), providers=["CPUExecutionProvider"])
    feats = s.run(["flatten"], {"input": x_nhwc.transpose(0, 3, 1, 2).astype(np.float32)})[0].astype(np.float64)
    mu, sd = feats.mean(0), feats.std(0) + 1e-3
    fc = next(nd for nd in m.graph.node if nd.op_type == "Gemm")
    inits = {t.name: t for t in m.graph.initializer}
    w = numpy_helper.to_array(inits[fc.input[1]]) / sd
    b = numpy_helper.to_array(inits[fc.input[2]]) - w @ mu
    inits[fc.input[1]].CopyFrom(numpy_helper.from_array(w.astype(np.float32), fc.input[1]))
    inits[fc.input[2]].CopyFrom(numpy_helper.from_array(b.astype(np.float32), fc.input[2]))


def _ort(m, x_nhwc):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x_nhwc.transpose(0, 3, 1, 2).astype(np.float32)})[0].astype(np.float64)


def _convert(arch, seen=None, n_calib=16, n_test=6):
    m = build_resnet(arch)
    calib, x = _data(1, n_calib), _data(2, n_test)
    _standardize_head(m, calib)
    ref = _ort(m, x)
    assert len(set(ref.argmax(1))) > 1, "degenerate random net: every image gets the same class"
    g = import_onnx(m)
    ops = [nd.op for nd in g.nodes()]
    assert ops.count("maxpool") == 1 and ops.count("globalavgpool") == 1 and ops.count("dense") == 1

    def on_pass(name, graph):
        lam = graph.meta.get("lambda", {}).get(graph.output.name, 1.0)
        y = run_analog(graph, x) * lam
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * scale, err_msg=f"{arch} after {name}")
        assert np.array_equal(y.argmax(1), ref.argmax(1)), f"{arch}: argmax differs after {name}"
        if seen is not None:
            seen.append(name)

    on_pass("import", g)
    ctx = PassContext(calib=calib, percentile=99.9, channel_wise=True, progress=False)
    g = run_pipeline(g, ctx, verify=True, on_pass=on_pass)
    verify(g)
    assert g.is_spiking_level()
    return g, x, ref


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_pass_matches_onnxruntime(arch):
    seen = []
    g, _, _ = _convert(arch, seen)
    assert seen == ["import"] + PASS_NAMES
    kind, blocks = ARCHS[arch]
    shortcuts = [(u, v, d["syn"]) for u, v, d in g.nx.edges(data=True) if d["kind"].value == "shortcut"]
    n_blocks = sum(blocks)
    projections = 4 if kind == "bottleneck" else 3          # the first bottleneck stage widens 8 -> 32
    convs = [s for _, _, s in shortcuts if s.op == "conv"]
    idents = [s for _, _, s in shortcuts if s.op == "identity"]
    assert len(convs) == projections and len(idents) == n_blocks - projections
    assert len(g.by_op("maxgate")) == 1
    per_block = 3 if kind == "bottleneck" else 2
    assert len(g.by_op("neuron")) == 1 + per_block * n_blocks


def test_runtime_runs_resnet18_shape_with_maxpool_gate():
    from snncc.runtime import Network, simulate_reference

    g, x, ref = _convert("resnet18", n_test=3)
    (gate,) = g.by_op("maxgate")
    # every weight, scale and bias rounded to a multiple of 1/256: the sums of spikes' weights are then
    # exact in float32 whatever their order, so runtime and reference must agree spike for spike
    for n in g.nodes():
        for k, v in n.params.items():
            n.params[k] = (np.round(np.asarray(v, np.float64) * 256) / 256).astype(v.dtype)
    for _, _, d in g.nx.edges(data=True):
        if d["syn"] is not None:
            for k, v in d["syn"].params.items():
                d["syn"].params[k] = (np.round(np.asarray(v, np.float64) * 256) / 256).astype(v.dtype)
    T = 6
    res = Network(g).run(x, timesteps=T, threads=1, progress=False, batch_size=3)
    assert res.predictions.shape == (3, T) and res.potentials.shape == (3, CLASSES)
    assert res.spikes[gate.name].sum() > 0            # the gate passed spikes on
    rr = simulate_reference(g, x, T)
    counts = rr["counts"]
    assert int(counts[gate.name].sum()) > 0
    for pop, tot in res.spikes.items():                 # same semantics as the dense reference
        np.testing.assert_array_equal(tot, counts[pop].reshape(len(x), -1).sum(1), err_msg=pop)
    np.testing.assert_array_equal(res.potentials, rr["potentials"][:, -1])
