"""Registry of ONNX op handlers (one small function per op type, onnx2torch-style).

``@register("Conv")`` adds a handler ``fn(ctx, node)`` that maps one ONNX node
onto IR nodes (or onto a layout/alias change).  An optional ``check(node, ctx)``
returns a reason string when this particular node cannot be converted (e.g.
``Clip`` with ``min != 0``); the scan collects those together with op types
that have no handler at all, so one :class:`UnsupportedOpError` lists every
problem of a model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from snncc.errors import UnsupportedOpError


@dataclass(frozen=True)
class Handler:
    op_type: str
    fn: Callable
    check: Callable | None = None


HANDLERS: dict[str, Handler] = {}

#: ops only ever consumed by constant folding (no feature-map semantics)
FOLD_ONLY = ("Constant", "ConstantOfShape", "Shape", "Size", "Gather", "Range", "Equal", "Where",
             "Expand", "Tile", "Floor", "Ceil", "Sqrt", "Reciprocal", "Neg", "Pow", "Min")

NON_RELU = frozenset({"Sigmoid", "LeakyRelu", "Gelu", "Tanh", "Elu", "Selu", "Softplus", "Softsign",
                      "HardSigmoid", "HardSwish", "PRelu", "Erf", "Mish", "Celu", "ThresholdedRelu",
                      "Swish", "Exp", "Log", "Abs", "Sin", "Cos"})

RELU_HINT = ("integrate-and-fire neurons only represent ReLU (and ReLU6 via Clip(0, c)): "
             "retrain the network with ReLU activations and re-export it")

OP_HINTS = {
    "Concat": "Concat of feature maps (DenseNet/Inception-style) is not supported: use residual Add "
              "blocks instead of concatenation",
    "Gather": "a Gather of the activations is not supported; PyTorch's dynamo exporter writes one for "
              "torch.flatten of a non-contiguous tensor (a channels_last model, or a permute of the input): "
              "call .contiguous() before flattening, or export with dynamo=False",
    "ConvTranspose": "transposed convolutions are not supported; use a classifier network",
    "Resize": "upsampling is not supported; use a classifier network",
    "Upsample": "upsampling is not supported; use a classifier network",
    "LRN": "local response normalisation is not supported; use BatchNorm instead",
    "InstanceNormalization": "instance/layer/group normalisation is not linear at inference: use BatchNorm",
    "LayerNormalization": "instance/layer/group normalisation is not linear at inference: use BatchNorm",
    "GroupNormalization": "instance/layer/group normalisation is not linear at inference: use BatchNorm",
}


def register(op_type: str, check: Callable | None = None):
    """Decorator: register ``fn(ctx, node)`` as the handler of ``op_type``."""
    def deco(fn):
        HANDLERS[op_type] = Handler(op_type, fn, check)
        return fn
    return deco


def supported_ops() -> list[str]:
    """ONNX op types the front end converts (plus ops it only constant-folds)."""
    return sorted(set(HANDLERS) | set(FOLD_ONLY))


def hint_for(op_types, reasons=()) -> str:
    ts = set(op_types)
    parts = []
    if ts & NON_RELU:
        parts.append(f"{', '.join(sorted(ts & NON_RELU))}: {RELU_HINT}")
    for t in sorted(ts - NON_RELU):
        if t in OP_HINTS:
            parts.append(f"{t}: {OP_HINTS[t]}")
    parts.extend(r for r in dict.fromkeys(reasons) if r)
    if not parts:
        parts.append("replace them with supported ops (Conv, BatchNormalization, Relu, Add, pooling, "
                     "Gemm/MatMul; see snncc.frontend.supported_ops()) before exporting")
    return "; ".join(parts)


def raise_unsupported(items: list[tuple[str, str, int, str | None]]) -> None:
    """``items``: (op_type, node name, opset, reason or None)."""
    if not items:
        return
    ops = [(t, n, v) for t, n, v, _ in items]
    raise UnsupportedOpError(ops, hint_for([t for t, *_ in items], [r for *_, r in items]))
