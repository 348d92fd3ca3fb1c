"""Bad models: every failure is a one-line snncc error with a hint."""
import os
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fe_models import Builder
from snncc.errors import ModelError, SnnccError, UnsupportedOpError
from snncc.frontend import import_onnx, load_model, scan_unsupported

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")
SIGMOID = os.path.join(FIX, "bad", "unsupported", "sigmoid_net.onnx")


def _one_line(e: SnnccError):
    assert e.hint and "\n" not in str(e), str(e)


def test_all_unsupported_ops_listed_at_once():
    with pytest.raises(UnsupportedOpError) as ei:
        import_onnx(SIGMOID)
    e = ei.value
    _one_line(e)
    assert sorted(t for t, _, _ in e.ops) == ["LeakyRelu", "Sigmoid"]
    assert all(v == 17 for _, _, v in e.ops) and all(n for _, n, _ in e.ops)
    assert "ReLU" in e.hint and "retrain" in e.hint
    assert sorted(t for t, _, _ in scan_unsupported(SIGMOID)) == ["LeakyRelu", "Sigmoid"]


def test_scan_is_empty_for_supported_models():
    assert scan_unsupported(os.path.join(FIX, "resnet_legacy.onnx")) == []


def test_missing_file():
    with pytest.raises(ModelError, match="does not exist") as ei:
        import_onnx("/nonexistent/model.onnx")
    _one_line(ei.value)


def test_directory(tmp_path):
    with pytest.raises(ModelError, match="directory"):
        load_model(str(tmp_path))


def test_truncated_file(tmp_path):
    data = open(os.path.join(FIX, "resnet_legacy.onnx"), "rb").read()
    p = tmp_path / "trunc.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as ei:
        import_onnx(str(p))
    _one_line(ei.value)


@pytest.mark.parametrize("data", [b"", b"this is not an onnx model at all" * 10, bytes(range(256)) * 4])
def test_non_onnx_bytes(tmp_path, data):
    p = tmp_path / "junk.onnx"
    p.write_bytes(data)
    with pytest.raises(ModelError) as ei:
        import_onnx(str(p))
    _one_line(ei.value)
    with pytest.raises(ModelError):
        import_onnx(data)


def test_wrong_argument_type():
    with pytest.raises(ModelError, match="cannot load"):
        import_onnx(12345)


def test_missing_external_data_file(tmp_path):
    shutil.copy(os.path.join(FIX, "resnet_dynamo.onnx"), tmp_path / "resnet_dynamo.onnx")
    with pytest.raises(ModelError, match="external") as ei:
        import_onnx(str(tmp_path / "resnet_dynamo.onnx"))
    _one_line(ei.value)
    assert "next to" in ei.value.hint
    raw = open(os.path.join(FIX, "resnet_dynamo.onnx"), "rb").read()
    with pytest.raises(ModelError, match="external"):
        import_onnx(raw)                                  # bytes cannot resolve the data file
    with pytest.raises(ModelError, match="external"):
        import_onnx(onnx.load(os.path.join(FIX, "resnet_dynamo.onnx"), load_external_data=False))


def _tiny(in_shape):
    b = Builder(in_shape)
    y = b.node("Relu", [b.conv("x", 3, 4)])
    y = b.node("GlobalAveragePool", [y])
    y = b.node("Flatten", [y])
    return b.model(b.node("Gemm", [y, b.randw(5, 4), b.randw(5)], transB=1))


@pytest.mark.parametrize("shape", [("N", 3, "H", "W"), (1, "C", 8, 8), ("N", 3, 8, None)])
def test_dynamic_spatial_dims(shape):
    with pytest.raises(ModelError, match="fixed input size|dynamic") as ei:
        import_onnx(_tiny(shape))
    _one_line(ei.value)
    assert "fixed input size" in ei.value.hint


def test_static_batch_is_fine():
    g = import_onnx(_tiny((1, 3, 8, 8)))
    assert tuple(g.input.shape) == (8, 8, 3)


def test_wrong_input_rank():
    b = Builder(("N", 3, 8))
    m = b.model(b.node("Relu", ["x"]))
    with pytest.raises(ModelError, match="rank"):
        import_onnx(m)


def test_two_outputs():
    m = _tiny(("N", 3, 8, 8))
    m.graph.output.append(helper.make_tensor_value_info(m.graph.node[0].output[0], TensorProto.FLOAT, None))
    with pytest.raises(ModelError, match="outputs"):
        import_onnx(m)


def test_malformed_graph_is_a_model_error():
    m = _tiny(("N", 3, 8, 8))
    m.graph.node[1].input[0] = "does_not_exist"
    with pytest.raises(ModelError) as ei:
        import_onnx(m)
    _one_line(ei.value)


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (0.5, 6.0), (None, 6.0)])
def test_clip_with_nonzero_min_is_unsupported(lo, hi):
    b = Builder()
    ins = [b.conv("x", 3, 4), b.const(np.float32(lo)) if lo is not None else "", b.const(np.float32(hi))]
    y = b.node("Clip", ins)
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])])
    with pytest.raises(UnsupportedOpError) as ei:
        import_onnx(b.model(b.node("Gemm", [y, b.randw(5, 4)], transB=1)))
    assert [t for t, _, _ in ei.value.ops] == ["Clip"]
    assert "Clip(min=" in ei.value.hint
    _one_line(ei.value)


def test_concat_of_features_and_mul_of_features_listed_together():
    b = Builder()
    a = b.node("Relu", [b.conv("x", 3, 4)])
    c = b.node("Relu", [b.conv("x", 3, 4)])
    y = b.node("Concat", [a, c], axis=1)
    y = b.node("Mul", [y, y])
    y = b.node("Tanh", [y])
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])])
    with pytest.raises(UnsupportedOpError) as ei:
        import_onnx(b.model(b.node("Gemm", [y, b.randw(5, 8)], transB=1)))
    assert sorted(t for t, _, _ in ei.value.ops) == ["Concat", "Mul", "Tanh"]
    h = ei.value.hint
    assert "Concat" in h and "residual" in h and "not linear" in h and "retrain" in h


def test_custom_domain_op_listed():
    b = Builder()
    y = b.conv("x", 3, 4)
    b.nodes.append(helper.make_node("FusedThing", [y], ["z"], domain="com.example", name="fused"))
    y = b.node("Flatten", [b.node("GlobalAveragePool", ["z"])])
    m = b.model(b.node("Gemm", [y, b.randw(5, 4)], transB=1))
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedOpError) as ei:
        import_onnx(m)
    assert ei.value.ops == [("com.example.FusedThing", "fused", 1)]


def test_softmax_in_the_middle_is_rejected():
    b = Builder()
    y = b.node("Softmax", [b.conv("x", 3, 4)], axis=1)
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])])
    with pytest.raises(UnsupportedOpError, match="Softmax"):
        import_onnx(b.model(b.node("Gemm", [y, b.randw(5, 4)], transB=1)))


UNCONVERTIBLE = {"channel_slice": "slices the channel axis", "ceil_mode": "ceil_mode=1 changes the output size",
                 "reshape_spatial": "reshape of the feature map", "dilated_pool": "dilated pooling is not supported"}


@pytest.mark.parametrize("case", sorted(UNCONVERTIBLE))
def test_unconvertible_node_errors(case):
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    if case == "channel_slice":
        y = b.node("Slice", [y, b.const(np.array([0])), b.const(np.array([2])), b.const(np.array([1]))])
        c = 2
    elif case == "ceil_mode":
        y = b.node("AveragePool", [y], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
        c = 4
    elif case == "reshape_spatial":
        y = b.node("Reshape", [y, b.const(np.array([-1, 4, 2, 32]))])
        c = 4
    else:
        y = b.node("MaxPool", [y], kernel_shape=[2, 2], dilations=[2, 2])
        c = 4
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])])
    with pytest.raises(ModelError, match=UNCONVERTIBLE[case]) as ei:
        import_onnx(b.model(b.node("Gemm", [y, b.randw(5, c)], transB=1)))
    _one_line(ei.value)


def test_corrupted_models_only_raise_snncc_errors():
    """Byte flips and structural damage: either a faithful import or one-line snncc errors."""
    import onnxruntime as ort

    from fe_models import check_equal
    path = os.path.join(FIX, "resnet_legacy.onnx")
    data = open(path, "rb").read()
    m0 = onnx.load(path)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3,) + tuple(d.dim_value for d in m0.graph.input[0].type.tensor_type.shape.dim[1:]))
    outcomes = {"imported": 0, "compared": 0, "error": 0}

    def attempt(model):
        try:
            g = import_onnx(model)
        except SnnccError as e:
            _one_line(e)
            outcomes["error"] += 1
            return
        outcomes["imported"] += 1
        raw = model if isinstance(model, bytes) else model.SerializeToString()
        try:        # where onnxruntime runs the damaged model too, the import must compute what it computes
            ref = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, {"input": x.astype(np.float32)})[0]
        except Exception:
            ref = None
        if ref is not None and np.all(np.isfinite(ref)):
            check_equal(g, raw, x, atol=1e-5 * max(1.0, float(np.abs(ref).max())), ref=ref)
            outcomes["compared"] += 1
    for _ in range(40):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        attempt(bytes(b))
    for _ in range(40):
        m = onnx.ModelProto()
        m.CopyFrom(m0)
        n = m.graph.node[int(rng.integers(0, len(m.graph.node)))]
        k = int(rng.integers(0, 3))
        if k == 0 and len(n.input):
            n.input[int(rng.integers(0, len(n.input)))] = m.graph.node[int(rng.integers(0, len(m.graph.node)))].output[0]
        elif k == 1 and len(n.attribute):
            del n.attribute[int(rng.integers(0, len(n.attribute)))]
        elif len(n.input) > 1:
            del n.input[-1]
        attempt(m)
    assert outcomes["error"] >= 10 and outcomes["compared"] >= 10, outcomes


def test_rank3_input_names_the_grayscale_fix():
    b = Builder(("N", 8, 8))
    y = b.node("Reshape", ["x", b.const(np.array([-1, 1, 8, 8]))])
    y = b.node("Flatten", [b.node("GlobalAveragePool", [b.node("Relu", [b.conv(y, 1, 4)])])])
    with pytest.raises(ModelError) as e:
        import_onnx(b.model(b.node("Gemm", [y, b.randw(5, 4)], transB=1)))
    msg = str(e.value)
    assert "has rank 3" in msg and "Input((H, W, 1))" in msg and "\n" not in msg
