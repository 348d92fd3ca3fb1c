"""Every committed ONNX fixture imports to an IR that equals onnxruntime."""
import os

import numpy as np
import onnx
import pytest

from fe_models import check_equal, onnx_tensor_values, ort_run, to_channels_last
from snncc.analog import run_analog
from snncc.frontend import import_onnx, load_model, supported_ops
from snncc.ir import OP_LEVEL_OPS, verify

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")
FIXTURES = ["resnet_legacy.onnx", "resnet_dynamo.onnx", "resnet_bnfolded.onnx", "resnet_innorm.onnx",
            "resnet_nhwc.onnx", "projection_resnet.onnx", "bottleneck_resnet.onnx", "vgg_maxpool.onnx",
            "vgg_avgpool.onnx", "relu6.onnx"]
_CACHE = {}


def _load(name):
    if name not in _CACHE:
        _CACHE[name] = import_onnx(os.path.join(FIX, name))
    return _CACHE[name]


def _x(name, g, n=6, seed=0):
    rng = np.random.default_rng(seed)
    hi = 255.0 if "innorm" in name else 1.0
    return rng.uniform(0, hi, size=(n,) + tuple(g.meta["onnx_input_shape"])).astype(np.float32)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_onnxruntime(name):
    g = _load(name)
    verify(g)
    assert {n.op for n in g.nodes()} <= OP_LEVEL_OPS | {"input"}
    x = _x(name, g)
    check_equal(g, os.path.join(FIX, name), x)          # the original file
    check_equal(g, g.onnx_model, x)                      # the folded model keeps the semantics
    # dynamic batch survives folding
    check_equal(g, g.onnx_model, x[:1])


@pytest.mark.parametrize("name", FIXTURES)
def test_onnx_tensor_of_relu_pool_and_sink(name):
    g = _load(name)
    x = _x(name, g, n=3, seed=1)
    vals = run_analog(g, to_channels_last(g, x), keep=True)
    tagged = [n for n in g.nodes() if n.op in ("relu", "maxpool", "avgpool")] + [g.output]
    assert all(n.onnx_tensor for n in tagged)
    ref = onnx_tensor_values(g, [n.onnx_tensor for n in tagged], x)
    for n in tagged:
        r = ref[n.onnx_tensor]
        if n.onnx_perm is not None:
            assert len(n.onnx_perm) == r.ndim
            r = r.transpose(n.onnx_perm)
        assert r.shape == vals[n.name].shape, n.name
        np.testing.assert_allclose(vals[n.name], r, rtol=1e-4, atol=1e-5, err_msg=n.name)


@pytest.mark.parametrize("name", FIXTURES)
def test_meta(name):
    g = _load(name)
    m = g.meta
    assert m["input_layout"] == ("NHWC" if "nhwc" in name else "NCHW")
    assert m["preprocess"] == {"scale": 1.0, "mean": None, "std": None}
    inp = [i for i in g.onnx_model.graph.input][0]
    assert m["input_name"] == inp.name
    dims = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    assert tuple(m["onnx_input_shape"]) == dims
    hwc = dims if m["input_layout"] == "NHWC" else (dims[1], dims[2], dims[0])
    assert tuple(g.input.shape) == hwc
    assert m["output_name"] == g.onnx_model.graph.output[0].name == g.output.onnx_tensor
    assert g.output.op == "dense"


def test_option_a_shortcut_structure():
    g = _load("resnet_legacy.onnx")
    subs = g.by_op("subsample")
    assert len(subs) == 2 and all(tuple(s.attrs["stride"]) == (2, 2) for s in subs)   # two Slices merged
    pads = g.by_op("pad")
    assert sorted(tuple(p.attrs["cpad"]) for p in pads) == [(2, 2), (4, 4)]
    assert all(tuple(p.attrs["pads"]) == (0, 0, 0, 0) for p in pads)
    assert len(g.by_op("batchnorm")) == 7 and len(g.by_op("add")) == 3
    # the shape subgraphs are folded: no Constant/Shape-arithmetic left except the dynamic-batch view
    ops = {n.op_type for n in g.onnx_model.graph.node}
    assert "Constant" not in ops and "ConstantOfShape" not in ops


def test_bn_folded_export_has_no_batchnorm():
    assert not _load("resnet_bnfolded.onnx").by_op("batchnorm")


def test_in_graph_normalisation_is_one_affine_after_input():
    g = _load("resnet_innorm.onnx")
    (aff,) = g.by_op("affine")
    assert g.succs(g.input.name) == [aff.name]
    np.testing.assert_allclose(aff.params["scale"], 1 / 255 / np.array([0.229, 0.224, 0.225]), rtol=1e-6)


def test_nhwc_keras_model():
    g = _load("resnet_nhwc.onnx")
    assert g.meta["input_layout"] == "NHWC" and tuple(g.input.shape) == (16, 16, 3)
    assert all(n.onnx_perm == (0, 1, 2, 3) for n in g.by_op("relu"))   # ReLU outputs are NHWC in ONNX
    assert len(g.by_op("affine")) == 6                                  # one per Keras BN (Sub/Mul/Add composed)


def test_relu6_cap_is_active():
    g = _load("relu6.onnx")
    relus = g.by_op("relu")
    assert [r.attrs["cap"] for r in relus] == [6.0, 6.0]
    x = _x("relu6.onnx", g)
    vals = onnx_tensor_values(g, [r.onnx_tensor for r in relus], x)
    assert all(np.isclose(v.max(), 6.0) and (v == 6.0).mean() > 0.002 for v in vals.values())


def test_flatten_of_spatial_map_permutes_dense_rows():
    g = _load("vgg_maxpool.onnx")
    fl = g.by_op("flatten")[0]
    assert fl.shape == (256,)
    dense = g.succs(fl.name)
    assert g.node(dense[0]).op == "dense"
    # ONNX flattens the NCHW map (16, 4, 4) in (c, h, w) order, the IR its channels-last (4, 4, 16) map in
    # (h, w, c) order: the IR's dense rows are the Gemm's weight columns in that order
    m = onnx.load(os.path.join(FIX, "vgg_maxpool.onnx"))
    w = next(onnx.numpy_helper.to_array(t) for t in m.graph.initializer if t.name == "10.weight")   # (32, 256), transB
    expect = w.reshape(32, 16, 4, 4).transpose(2, 3, 1, 0).reshape(256, 32)
    np.testing.assert_array_equal(np.asarray(g.node(dense[0]).params["weight"], np.float32), expect)


def test_external_data_and_input_kinds(tmp_path):
    p = os.path.join(FIX, "resnet_dynamo.onnx")
    assert os.path.exists(p + ".data")
    m = load_model(p)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    x = _x("resnet_dynamo.onnx", _load("resnet_dynamo.onnx"))
    g1 = import_onnx(m)                                   # ModelProto with weights loaded
    g2 = import_onnx(open(os.path.join(FIX, "resnet_legacy.onnx"), "rb").read())   # bytes
    ref = ort_run(p, x)[0]
    check_equal(g1, p, x, ref=ref)
    check_equal(g2, p, x, ref=ref)                         # same weights, other exporter


def test_supported_ops_lists_handlers():
    ops = supported_ops()
    for t in ("Conv", "BatchNormalization", "Relu", "Clip", "Add", "Gemm", "MatMul", "Flatten", "Reshape",
              "Transpose", "Pad", "Slice", "AveragePool", "GlobalAveragePool", "ReduceMean", "MaxPool",
              "Identity", "Dropout", "Softmax", "Constant", "Shape"):
        assert t in ops
    assert "Sigmoid" not in ops and "Concat" not in ops
