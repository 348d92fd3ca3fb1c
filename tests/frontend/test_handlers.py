"""Op handlers on tiny hand-built models: IR == onnxruntime."""
import re

import numpy as np
import pytest
from onnx import TensorProto

from fe_models import Builder, check_equal, onnx_tensor_values, ort_run
from snncc.frontend import import_onnx


def _x(shape, seed=0, n=4):
    return np.random.default_rng(seed).standard_normal((n,) + tuple(shape)).astype(np.float32)


def _head(b, y, c, classes=5):
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])])
    return b.node("Gemm", [y, b.randw(classes, c), b.randw(classes, scale=0.1)], transB=1)


def _run(b, out, shape=(3, 8, 8), opset=17):
    m = b.model(out, opset=opset)
    g = import_onnx(m)
    check_equal(g, m, _x(shape))
    return g


@pytest.mark.parametrize("attrs", [
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(auto_pad="VALID", strides=[1, 2]),
    dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[2, 1]),
    dict(pads=[1, 1, 1, 1], group=2),
])
def test_conv_variants(attrs):
    b = Builder(("N", 4, 9, 9))
    g_ = attrs.get("group", 1)
    attrs.setdefault("kernel_shape", [3, 3])
    y = b.node("Conv", ["x", b.randw(6, 4 // g_, 3, 3), b.randw(6)], **attrs)
    y = b.node("Relu", [y])
    g = _run(b, _head(b, y, 6), (4, 9, 9))
    assert g.by_op("conv")[0].attrs["groups"] == g_


def test_conv_without_bias_and_batchnorm():
    b = Builder()
    y = b.node("Conv", ["x", b.randw(4, 3, 3, 3)], pads=[1, 1, 1, 1])
    c = lambda lo, hi: b.const(np.random.default_rng(1).uniform(lo, hi, 4).astype(np.float32))  # noqa: E731
    y = b.node("BatchNormalization", [y, c(0.5, 1.5), c(-0.2, 0.2), c(-0.3, 0.3), c(0.5, 2)], epsilon=1e-3)
    _run(b, _head(b, b.node("Relu", [y]), 4))


def test_gemm_alpha_beta_transb0_and_matmul_add():
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])])
    y = b.node("Gemm", [y, b.randw(4, 6), b.randw(1, 6)], alpha=0.7, beta=1.3)
    y = b.node("Relu", [y])
    y = b.node("MatMul", [y, b.randw(6, 5)])
    y = b.node("Add", [y, b.randw(5)])
    g = _run(b, y)
    assert g.output.op == "dense" and not g.by_op("affine")       # bias folded into the dense


def test_trailing_softmax_is_dropped():
    b = Builder()
    logits = _head(b, b.node("Relu", [b.conv("x", 3, 4)]), 4)
    out = b.node("Softmax", [logits], axis=-1)
    m = b.model(out)
    g = import_onnx(m)
    x = _x((3, 8, 8))
    ref = onnx_tensor_values(g, [logits], x)[logits]
    check_equal(g, m, x, ref=ref)
    assert g.meta["output_name"] == logits == g.output.onnx_tensor
    assert g.meta["onnx_output_name"] == out
    assert g.meta["frontend"]["dropped_output_ops"] == ["Softmax"]


@pytest.mark.parametrize("tail", ["squeeze", "reshape", "unsqueeze_roundtrip", "reduce_keep", "view_pair"])
def test_global_pool_to_vector(tail):
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    if tail == "reduce_keep":
        y = b.node("ReduceMean", [y], axes=[2, 3], keepdims=1)
    else:
        y = b.node("GlobalAveragePool", [y])
    if tail in ("squeeze", "reduce_keep"):
        y = b.node("Squeeze", [y, b.const(np.array([3, 2]))])
    elif tail == "reshape":
        y = b.node("Reshape", [y, b.const(np.array([0, -1]))])
    elif tail == "unsqueeze_roundtrip":
        y = b.node("Squeeze", [y, b.const(np.array([3]))])
        y = b.node("Squeeze", [y, b.const(np.array([2]))])
        y = b.node("Unsqueeze", [y, b.const(np.array([2, 3]))])
        y = b.node("Conv", [y, b.randw(4, 4, 1, 1)])        # 1x1 conv on the pooled map
        y = b.node("Flatten", [y])
    else:
        s = b.node("Shape", [y])
        n = b.node("Gather", [s, b.const(np.array(0))], axis=0)
        n = b.node("Unsqueeze", [n, b.const(np.array([0]))])
        y = b.node("Reshape", [y, b.node("Concat", [n, b.const(np.array([-1]))], axis=0)])
    _run(b, b.node("Gemm", [y, b.randw(5, 4)], transB=1))


def test_nhwc_input_transpose_reducemean_and_inner_transposes():
    b = Builder(("N", 8, 8, 3))
    y = b.node("Transpose", ["x"], perm=[0, 3, 1, 2])
    y = b.node("Relu", [b.conv(y, 3, 4)])
    y = b.node("Transpose", [y], perm=[0, 2, 3, 1])          # NHWC
    y = b.node("Mul", [y, b.randw(4)])                       # per-channel on the last axis
    y = b.node("Pad", [y, b.const(np.array([0, 1, 0, 0, 0, 0, 1, 0]))])
    y = b.node("Transpose", [y], perm=[0, 3, 1, 2])
    y = b.node("Relu", [b.conv(y, 4, 4)])
    y = b.node("Transpose", [y], perm=[0, 2, 3, 1])
    y = b.node("ReduceMean", [y], axes=[1, 2], keepdims=0)
    m = b.model(b.node("MatMul", [y, b.randw(4, 5)]))
    g = import_onnx(m)
    assert g.meta["input_layout"] == "NHWC"
    check_equal(g, m, _x((8, 8, 3)))
    assert g.by_op("relu")[0].onnx_perm == (0, 2, 3, 1)


def test_keras_style_flatten_of_nhwc_map_needs_no_permutation():
    b = Builder(("N", 6, 6, 3))
    y = b.node("Transpose", ["x"], perm=[0, 3, 1, 2])
    y = b.node("Relu", [b.conv(y, 3, 4)])
    y = b.node("Transpose", [y], perm=[0, 2, 3, 1])
    y = b.node("Reshape", [y, b.const(np.array([-1, 144]))])
    m = b.model(b.node("MatMul", [y, b.randw(144, 5)]))
    g = import_onnx(m)
    check_equal(g, m, _x((6, 6, 3)))


def test_flatten_nchw_then_batchnorm1d_permutes_features():
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4, strides=[4, 4])])     # 2x2x4
    y = b.node("Flatten", [y])
    r = np.random.default_rng(3)
    c = lambda lo, hi: b.const(r.uniform(lo, hi, 16).astype(np.float32))  # noqa: E731
    y = b.node("BatchNormalization", [y, c(0.5, 1.5), c(-0.2, 0.2), c(-0.3, 0.3), c(0.5, 2)])
    y = b.node("Relu", [y])
    y = b.node("Add", [y, b.randw(16)])
    g = _run(b, b.node("Gemm", [y, b.randw(5, 16)], transB=1))
    assert g.by_op("relu")[1].onnx_tensor is None                # a permuted vector: profiled in analog


def test_pooling_and_padding():
    b = Builder(("N", 3, 9, 9))
    y = b.node("Relu", [b.conv("x", 3, 4)])
    y = b.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = b.node("Pad", [y, b.const(np.array([0, 0, 1, 0, 0, 0, 0, 1]))])
    y = b.node("AveragePool", [y], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0], count_include_pad=1)
    y = b.node("AveragePool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = b.node("AveragePool", [y], kernel_shape=[2, 2], strides=[1, 1], ceil_mode=1)   # same size as floor
    y = b.node("GlobalMaxPool", [y])
    g = _run(b, b.node("Gemm", [b.node("Flatten", [y]), b.randw(5, 4)], transB=1), (3, 9, 9))
    assert len(g.by_op("maxpool")) == 2 and len(g.by_op("avgpool")) == 3
    assert g.by_op("pad")[0].attrs["pads"] == (1, 0, 0, 1)


def test_aliases_and_arithmetic():
    b = Builder()
    y = b.node("Identity", ["x"])
    y = b.node("Sub", [y, b.const(np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1))])
    y = b.node("Div", [y, b.const(np.array([0.2, 0.3, 0.25], np.float32).reshape(3, 1, 1))])
    y = b.node("Cast", [b.conv(y, 3, 4)], to=TensorProto.FLOAT)
    y = b.node("Dropout", [b.node("Relu", [y])])
    z = b.node("Mul", [b.const(np.float32(0.5)), y])
    z = b.node("Sub", [b.const(np.float32(1.0)), z])
    d = b.node("Sub", [y, z])                                   # activation - activation
    y = b.node("Relu", [b.node("Add", [d, y])])
    g = _run(b, _head(b, y, 4))
    assert len(g.by_op("add")) == 2


def test_subsample_with_offset_and_option_a_pad():
    b = Builder(("N", 3, 9, 9))
    y = b.node("Relu", [b.conv("x", 3, 4)])
    s = b.node("Slice", [y, b.const(np.array([1, 0])), b.const(np.array([2**62, 2**62])),
                         b.const(np.array([2, 3])), b.const(np.array([2, 3]))])
    s = b.node("Pad", [s, b.const(np.array([0, 2, 0, 0, 0, 2, 0, 0]))])
    z = b.node("Relu", [b.conv(y, 4, 8, strides=[2, 3], pads=[0, 1, 0, 1])])
    y = b.node("Relu", [b.node("Add", [z, s])])
    g = _run(b, _head(b, y, 8), (3, 9, 9))
    (sub,) = g.by_op("subsample")
    assert sub.attrs["stride"] == (2, 3) and sub.attrs["offset"] == (1, 0)


def test_old_opset_attribute_forms():
    b = Builder()
    y = b.conv("x", 3, 4)
    y = b.node("Clip", [y], min=0.0, max=2.0)
    y = b.node("Pad", [y], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant")
    y = b.node("Slice", [y], starts=[0, 0], ends=[100, 100], axes=[2, 3])
    y = b.node("GlobalAveragePool", [y])
    y = b.node("Squeeze", [y], axes=[2, 3])
    g = _run(b, b.node("Gemm", [y, b.randw(5, 4), b.randw(5)], transB=1), opset=9)
    assert g.by_op("relu")[0].attrs["cap"] == 2.0


def test_folding_keeps_names_and_runs():
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    two = b.node("Add", [b.const(np.float32(1.0)), b.const(np.float32(1.0))])
    y = b.node("Mul", [y, two])                               # folded constant operand
    out = _head(b, y, 4)
    m = b.model(out)
    g = import_onnx(m)
    ops = [n.op_type for n in g.onnx_model.graph.node]
    assert ops.count("Add") == 0 and "Mul" in ops
    relu = g.by_op("relu")[0]
    x = _x((3, 8, 8))
    assert relu.onnx_tensor in {o for n in g.onnx_model.graph.node for o in n.output}
    np.testing.assert_allclose(ort_run(g.onnx_model, x)[0], ort_run(m, x)[0], rtol=1e-6)


@pytest.mark.parametrize("opset", [11, 13])
def test_folding_uses_the_models_opset(opset):
    """Unsqueeze/Squeeze take ``axes`` as an attribute before opset 13 (legacy exports)."""
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    k = b.node("Constant", [], value=__import__("onnx").numpy_helper.from_array(np.array(2, np.int64)))
    if opset < 13:
        k = b.node("Unsqueeze", [k], axes=[0])
        one = b.node("Unsqueeze", [b.const(np.array(1, np.int64))], axes=[0])
    else:
        k = b.node("Unsqueeze", [k, b.const(np.array([0]))])
        one = b.node("Unsqueeze", [b.const(np.array(1, np.int64)), b.const(np.array([0]))])
    zero = b.const(np.array([0], np.int64))
    big = b.const(np.array([2**62], np.int64))
    y = b.node("Slice", [y, zero, big, k, b.node("Add", [one, one])])       # x[:, :, ::2]
    y = b.node("Slice", [y, zero, big, b.const(np.array([3])), b.const(np.array([2]))])
    g = _run(b, _head(b, y, 4), opset=opset)
    assert g.by_op("subsample")[0].attrs["stride"] == (2, 2)
    assert not any(n.op_type in ("Constant", "Unsqueeze") for n in g.onnx_model.graph.node)


@pytest.mark.parametrize("zero_first", [False, True])
def test_max_with_zero_is_a_relu(zero_first):
    """``torch.clamp(x, min=0)`` exported by dynamo: Max(x, 0), either operand order."""
    b = Builder()
    y = b.conv("x", 3, 4)
    z = b.const(np.float32(0.0))
    y = b.node("Max", [z, y] if zero_first else [y, z])
    g = _run(b, _head(b, y, 4))
    assert [n.op for n in g.nodes()].count("relu") == 1 and g.by_op("relu")[0].attrs["cap"] is None


@pytest.mark.parametrize("case, words", [("const", "Max(x, c) with c other than 0"),
                                         ("two", "Max of two activations"),
                                         ("three", "Max of 3 operands")])
def test_other_max_of_a_feature_map_is_rejected(case, words):
    from snncc.errors import UnsupportedOpError
    b = Builder()
    y = b.conv("x", 3, 4)
    if case == "const":
        y = b.node("Max", [y, b.const(np.float32(0.5))])
    elif case == "two":
        y = b.node("Max", [y, b.node("Relu", [y])])
    else:
        y = b.node("Max", [y, b.const(np.float32(0.0)), b.const(np.float32(0.0))])
    with pytest.raises(UnsupportedOpError, match=re.escape(words)) as e:
        import_onnx(b.model(_head(b, y, 4)))
    assert e.value.ops[0][0] == "Max" and "\n" not in str(e.value)


def test_gather_of_activations_names_the_dynamo_flatten_fix():
    """What dynamo writes for torch.flatten of a channels_last tensor: a Gather of the activations."""
    from snncc.errors import UnsupportedOpError
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])])
    y = b.node("Gather", [y, b.const(np.array([3, 2, 1, 0]))], axis=1)
    with pytest.raises(UnsupportedOpError, match="Gather") as e:
        import_onnx(b.model(b.node("Gemm", [y, b.randw(5, 4)], transB=1)))
    assert ".contiguous() before flattening" in e.value.hint and "dynamo=False" in e.value.hint


def test_uint8_input_cast_to_uint8_is_a_no_op():
    """Keras 3 exports Input(dtype="uint8") + Rescaling as Cast(to=UINT8) x2 -> Cast(to=FLOAT) -> Mul."""
    b = Builder()
    y = b.node("Cast", [b.node("Cast", ["x"], to=TensorProto.UINT8)], to=TensorProto.UINT8)
    y = b.node("Mul", [b.node("Cast", [y], to=TensorProto.FLOAT), b.const(np.float32(1 / 255))])
    y = b.node("Relu", [b.conv(y, 3, 4)])
    m = b.model(_head(b, y, 4), in_type=TensorProto.UINT8)
    g = import_onnx(m)
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8)).astype(np.uint8)
    import onnxruntime as ort
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    check_equal(g, m, x.astype(np.float32), ref=ref)


def test_integer_cast_of_an_activation_is_rejected():
    from snncc.errors import SnnccError
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    y = b.node("Cast", [b.node("Cast", [y], to=TensorProto.INT32)], to=TensorProto.FLOAT)
    with pytest.raises(SnnccError, match="casts an activation to a non-float type"):
        import_onnx(b.model(_head(b, y, 4)))


def test_matmul_on_a_channels_last_map_is_a_1x1_conv():
    """Keras Dense on a 4-D map (no Flatten): (N, H, W, C) x (C, F) + bias, per pixel."""
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    y = b.node("Transpose", [y], perm=[0, 2, 3, 1])                          # NHWC, as Keras' tensors are
    y = b.node("Add", [b.node("MatMul", [y, b.randw(4, 6)]), b.randw(6, scale=0.1)])
    y = b.node("Transpose", [b.node("Relu", [y])], perm=[0, 3, 1, 2])
    g = _run(b, _head(b, y, 6))
    (c1,) = [c for c in g.by_op("conv") if c.params["weight"].shape[:2] == (1, 1)]
    assert c1.params["weight"].shape == (1, 1, 4, 6)


def test_matmul_over_the_width_of_an_nchw_map_is_rejected():
    from snncc.errors import SnnccError
    b = Builder()
    y = b.node("Relu", [b.conv("x", 3, 4)])
    y = b.node("Relu", [b.node("MatMul", [y, b.randw(8, 8)])])                # (N, C, H, W) x (W, W')
    with pytest.raises(SnnccError, match="over its last \\(width\\) axis"):
        import_onnx(b.model(_head(b, y, 4)))
