"""Reading an ONNX model: ``load_model`` and the static-shape checks.

Every failure becomes a :class:`snncc.errors.ModelError` with a one-line hint.
"""
from __future__ import annotations

import os

import onnx
from google.protobuf.message import DecodeError

from snncc.errors import ModelError, one_line

#: model opsets covered by the tests (every one, see tests/frontend/test_opsdoc.py)
MIN_OPSET, MAX_OPSET = 7, 21
TESTED_OPSETS = f"opsets {MIN_OPSET}-{MAX_OPSET} are tested"

_NOT_ONNX = "pass an .onnx file written by torch.onnx.export / tf2onnx / keras export"


def _from_bytes(data: bytes, what: str) -> onnx.ModelProto:
    if not data:
        raise ModelError(f"{what} is empty", _NOT_ONNX)
    m = onnx.ModelProto()
    try:
        m.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{what} is not a valid ONNX protobuf (truncated or corrupt: {str(e)[:80]})",
                         "re-export or re-download the model; " + _NOT_ONNX) from None
    if not m.HasField("graph") or not m.graph.node:
        raise ModelError(f"{what} does not contain an ONNX graph", _NOT_ONNX)
    return m


def _uses_external(m: onnx.ModelProto) -> bool:
    from onnx.external_data_helper import uses_external_data
    return any(uses_external_data(t) for t in m.graph.initializer)


def load_model(model) -> onnx.ModelProto:
    """Load ``model`` (path, ``bytes`` or ``onnx.ModelProto``), resolve external
    weights, run the ONNX checker and (non-strict) shape inference.

    Returns a new ModelProto with inferred ``value_info``.  Raises
    :class:`ModelError` for a missing/corrupt file or missing external data.
    """
    try:
        return _load_model(model)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt protobuf contents
        raise ModelError(f"the model cannot be read ({type(e).__name__}: {one_line(e)})",
                         "the model looks malformed; re-export it with a current exporter") from None


def _load_model(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        if _uses_external(m):
            raise ModelError("the ModelProto references external weight files that are not loaded",
                             "pass the .onnx path instead (its external data is read from the same folder)")
    elif isinstance(model, (bytes, bytearray, memoryview)):
        m = _from_bytes(bytes(model), "the model bytes")
        if _uses_external(m):
            raise ModelError("the model bytes reference external weight files",
                             "pass the .onnx path instead (its external data is read from the same folder)")
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ModelError(f"model file {path!r} does not exist", "check the path to the .onnx file")
        if os.path.isdir(path):
            raise ModelError(f"model path {path!r} is a directory", "pass the .onnx file itself")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ModelError(f"cannot read model file {path!r}: {e.strerror}", "check file permissions") from None
        m = _from_bytes(data, f"model file {path!r}")
        if _uses_external(m):
            from onnx.external_data_helper import load_external_data_for_model
            base = os.path.dirname(os.path.abspath(path))
            try:
                load_external_data_for_model(m, base)
            except (OSError, ValueError, onnx.checker.ValidationError) as e:
                raise ModelError(f"external weights of {os.path.basename(path)!r} cannot be read "
                                 f"({type(e).__name__}: {one_line(e)})",
                                 "keep the external data file(s) next to the .onnx file, under the name "
                                 "it was exported with") from None
    else:
        raise ModelError(f"cannot load a model from a {type(model).__name__}",
                         "pass a path, bytes or an onnx.ModelProto")
    m = infer_shapes(m)      # first: fills in e.g. output shapes the checker insists on
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as e:
        if "Field 'shape' of 'type' is required" in str(e):
            return m        # an output whose shape inference could not fill in: harmless here
        raise ModelError(f"the ONNX checker rejects the model: {one_line(e)}",
                         f"re-export the model with a current exporter ({TESTED_OPSETS})") from None
    except Exception as e:  # noqa: BLE001 - checker internals (e.g. too-new IR version)
        raise ModelError(f"the ONNX checker failed: {one_line(e)}",
                         f"re-export the model with a current exporter ({TESTED_OPSETS})") from None
    return m


def infer_shapes(m: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"ONNX shape inference failed: {one_line(e)}",
                         "re-export the model with a fixed input size and a current opset") from None


def opset_of(m: onnx.ModelProto, domain: str = "") -> int:
    for o in m.opset_import:
        if o.domain in (domain, "ai.onnx" if domain == "" else domain):
            return int(o.version)
    return 0


def tensor_dims(vi) -> list | None:
    """Dims of a ValueInfo: ints, str (symbolic) or None (unknown); None if no shape."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(str(d.dim_param))
        else:
            out.append(None)
    return out


def graph_input(m: onnx.ModelProto):
    """The single real (non-initializer) graph input."""
    inits = {t.name for t in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise ModelError(f"the model has {len(ins)} inputs ({', '.join(i.name for i in ins) or 'none'}); "
                         "snncc needs exactly one image input", "export the model with a single image input")
    return ins[0]


def check_input(m: onnx.ModelProto):
    """Validate the input: float image of rank 4 with static non-batch dims."""
    vi = graph_input(m)
    dims = tensor_dims(vi)
    if dims is None:
        raise ModelError(f"input {vi.name!r} has no declared shape", "export the model with a fixed input size")
    if len(dims) != 4:
        raise ModelError(f"input {vi.name!r} has rank {len(dims)} {dims}; snncc needs an image batch "
                         "(N,C,H,W) or (N,H,W,C)", "export the model with a rank-4 image input (grayscale too: "
                         "Keras Input((H, W, 1)), PyTorch (N, 1, H, W))")
    bad = [i for i, d in enumerate(dims[1:], 1) if not isinstance(d, int) or d <= 0]
    if bad:
        raise ModelError(f"input {vi.name!r} has dynamic spatial/channel dims {dims} (axes {bad})",
                         "export with a fixed input size: only the batch dim may be dynamic "
                         "(e.g. torch.onnx.export(..., dynamic_axes={'input': {0: 'N'}}))")
    et = vi.type.tensor_type.elem_type
    if et not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                  onnx.TensorProto.UINT8, onnx.TensorProto.BFLOAT16):
        raise ModelError(f"input {vi.name!r} has element type {onnx.TensorProto.DataType.Name(et)}",
                         "export the model with a float32 image input")
    return vi, dims
