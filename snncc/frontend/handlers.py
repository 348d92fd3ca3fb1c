"""One handler per ONNX op type (see :mod:`snncc.frontend.registry`).

Each handler reads one ONNX node and either adds IR nodes (``ctx.add``) or
only re-labels tensors (layout changes, aliases); it must set ``ctx.values``
for every output that is used downstream.
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from snncc.frontend.importer import NCHW, NHWC, Ctx, Feat
from snncc.frontend.registry import RELU_HINT, register

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
               onnx.TensorProto.BFLOAT16}


# -- helpers ---------------------------------------------------------------------
def attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _ints(v):
    return tuple(int(i) for i in v)


def _spatial(ctx: Ctx, f: Feat, what: str = "input") -> None:
    """Require an NCHW-ordered rank-4 ONNX tensor (what Conv/pooling operate on)."""
    if f.rank != 4 or f.view is not None:
        raise ctx.error(f"{what} must be a rank-4 feature map, got rank {f.rank}",
                        "apply this op to (N, C, H, W) feature maps only")
    if tuple(f.perm) != NCHW:
        raise ctx.error(f"{what} is not in NCHW order (axes permutation {tuple(f.perm)} from channels-last)",
                        "insert a Transpose to NCHW before this op (what tf2onnx/keras exporters do)")


def _pads(ctx: Ctx, a: dict, hw, k, s, d) -> tuple:
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        p = _ints(a.get("pads", (0, 0, 0, 0)))
        if len(p) != 4:
            raise ctx.error(f"pads {p} is not 2-D", "export 2-D convolutions/pooling")
        if min(p) < 0:
            raise ctx.error(f"negative pads {p}", "export without negative padding")
        return p
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"unknown auto_pad {auto!r}", "use explicit pads")
    beg, end = [], []
    for i in range(2):
        out = -(-hw[i] // s[i])
        tot = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - hw[i], 0)
        small, big = tot // 2, tot - tot // 2
        beg.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return (beg[0], beg[1], end[0], end[1])


def _unused_extra_outputs(ctx: Ctx, node, first: int = 1) -> None:
    for o in node.output[first:]:
        if o and (ctx.consumers.get(o) or o == ctx.output_name):
            raise ctx.error(f"output {o!r} (beyond the first) is used", "use only the op's main output")


def _chan_vec(ctx: Ctx, f: Feat, c, what: str) -> np.ndarray:
    """A constant broadcast against feature tensor ``f`` -> per-channel IR vector (C,)."""
    c = np.asarray(c, dtype=np.float64)
    full = (1,) + tuple(ctx.onnx_shape(f))
    if c.ndim > len(full):
        raise ctx.error(f"{what} of shape {c.shape} has a higher rank than the feature map {full}",
                        "use per-channel or scalar constants")
    try:
        out_shape = np.broadcast_shapes(c.shape, full)
    except ValueError:
        raise ctx.error(f"{what} of shape {c.shape} does not broadcast against {full}",
                        "use per-channel or scalar constants") from None
    if tuple(out_shape) != full:
        raise ctx.error(f"{what} of shape {c.shape} would enlarge the feature map {full}",
                        "use per-channel or scalar constants")
    b = np.broadcast_to(c, full)
    if f.view is not None:
        irn = ctx.ir_shape(f)
        b = b.reshape((1,) + tuple(irn))
    elif f.rank == 4:
        b = b.transpose(f.perm)
    elif f.fperm is not None:
        v = np.empty(full[1])
        v[f.fperm] = b[0]
        b = v[None]
    flat = b.reshape(-1, b.shape[-1])
    if not np.all(flat == flat[0]):
        raise ctx.error(f"{what} of shape {c.shape} varies over positions, not only over channels",
                        "use per-channel or scalar constants (no spatially varying maps)")
    return np.ascontiguousarray(flat[0])


def _fperm_of_flatten(ctx: Ctx, f: Feat):
    os_ = ctx.onnx_shape(f)
    idx = np.arange(int(np.prod(os_))).reshape(os_)
    order = idx.transpose([p - 1 for p in f.perm[1:]]).reshape(-1)
    fperm = np.argsort(order)
    return None if np.array_equal(fperm, np.arange(fperm.size)) else fperm


def _flat_compatible(ctx: Ctx, f: Feat) -> bool:
    if f.view is not None:
        return True
    irs = ctx.ir_shape(f)
    return (len(irs) == 1 and f.fperm is None) or (len(irs) == 3 and irs[0] * irs[1] == 1)


def reshape_feat(ctx: Ctx, f: Feat, out: tuple) -> Feat:
    """The Feat of ``f`` reshaped to per-sample ONNX shape ``out`` (batch kept)."""
    out = tuple(int(v) for v in out)
    ins = tuple(ctx.onnx_shape(f))
    if int(np.prod(out)) != int(np.prod(ins)):
        raise ctx.error(f"reshape of {ins} to {out} changes the number of features per sample",
                        "keep the batch dimension first and separate")
    if out == ins:
        return f
    irs = ctx.ir_shape(f)
    if len(out) == 1:
        if len(irs) == 1:
            return Feat(f.node, 2, fperm=f.fperm)
        fperm = _fperm_of_flatten(ctx, f) if f.view is None else None
        return Feat(ctx.add("flatten", [f.node]), 2, fperm=fperm)
    if not _flat_compatible(ctx, f):
        raise ctx.error(f"reshape of the feature map {ins} to {out} is not supported",
                        "only flattening (N, -1) and adding/removing 1x1 spatial dims are supported")
    if len(out) == 3 and sum(1 for v in out if v != 1) <= 1:
        ch = next((i for i, v in enumerate(out) if v != 1), 0)
        src = None
        if len(irs) == 3:
            src = f.node
        else:
            node = ctx.graph.node(f.node)
            preds = ctx.graph.preds(f.node)
            if node.op == "flatten" and len(preds) == 1 and tuple(ctx.graph.node(preds[0]).shape)[:2] == (1, 1):
                src = preds[0]
        if src is None:
            raise ctx.error(f"turning the vector {ins} back into a feature map {out} is not supported",
                            "keep the tensor 4-D after global pooling (or flatten it for a Linear layer)")
        sp = [i + 1 for i in range(3) if i != ch]
        return Feat(src, 4, perm=(0, sp[0], sp[1], ch + 1))
    return Feat(f.node, len(out) + 1, view=out)


def _resolve_shape(ctx: Ctx, node, f: Feat, shp_name: str, allowzero: int) -> tuple:
    """Per-sample output shape of Reshape(f, shape) with the batch kept first."""
    ins = tuple(ctx.onnx_shape(f))
    batch = ctx.static_batch
    if shp_name in ctx.pairs:
        targets = list(zip((2, 3), ctx.pairs[shp_name]))
    else:
        t = ctx.const(shp_name, "shape")
        targets = [(b, t) for b in ((batch,) if batch else (2, 3))]
    outs = []
    for b, t in targets:
        t = [int(v) for v in np.asarray(t).reshape(-1)]
        full = (b,) + ins
        try:
            res = np.empty(full, dtype=np.uint8)
            t2 = [full[i] if (v == 0 and not allowzero and i < len(full)) else v for i, v in enumerate(t)]
            res = res.reshape(t2)
        except ValueError:
            raise ctx.error(f"cannot reshape {ins} to {t}", "check the exported shapes") from None
        if res.ndim == 0 or res.shape[0] != b:
            raise ctx.error(f"reshape target {t} mixes the batch dimension with features",
                            "reshape with the batch dimension first, e.g. x.view(x.size(0), -1)")
        outs.append(res.shape[1:])
    if any(o != outs[0] for o in outs):
        raise ctx.error("reshape target depends on the batch size", "reshape to (N, -1)")
    return outs[0]


# -- convolution, normalisation, activations --------------------------------------
def _conv_check(ctx: Ctx, node):
    if len(node.input) < 2 or not ctx.is_const(node.input[1]):
        return "weights are not constant"
    if ctx.consts[node.input[1]].ndim != 4:
        return ("only 2-D convolutions are supported (write a Conv1d as a Conv2d with a 1xk kernel on "
                "(N, C, 1, L) inputs)")
    return None


@register("Conv", check=_conv_check)
def conv(ctx: Ctx, node):
    """2-D convolution.

    IR: ``conv``
    Accepts: rank-4 constant weight (any ``group``, so depthwise convolutions too), optional
    constant bias, any ``strides`` and ``dilations``, explicit non-negative ``pads`` or ``auto_pad``
    ``SAME_UPPER``/``SAME_LOWER``/``VALID``, on an (N, C, H, W) feature map (channels-last models
    reach it through the exporter's Transposes).
    Rejects: weights computed from the input; 1-D and 3-D convolutions; negative pads.
    Notes: the OIHW weight is stored channels-last (KH, KW, Cin/group, Cout); a following
    BatchNorm, constant Add/Sub/Mul/Div fold into it. Two convolutions with no ReLU between them
    cannot be lowered to IF neurons.
    """
    x = ctx.feat(node.input[0])
    _spatial(ctx, x)
    a = attrs(node)
    w = ctx.const(node.input[1], "weight")
    if w.ndim != 4:
        raise ctx.error(f"weight has rank {w.ndim}", "only 2-D convolutions are supported")
    g = int(a.get("group", 1))
    h, wd, c = ctx.ir_shape(x)
    if w.shape[1] * g != c:
        raise ctx.error(f"weight {w.shape} with group {g} does not fit {c} input channels",
                        "re-export the model")
    k = _ints(w.shape[2:])
    s = _ints(a.get("strides", (1, 1)))
    d = _ints(a.get("dilations", (1, 1)))
    pads = _pads(ctx, a, (h, wd), k, s, d)
    b = ctx.opt_const(node, 2, None)
    bias = np.zeros(w.shape[0]) if b is None else np.asarray(b, np.float64).reshape(-1)
    nm = ctx.add("conv", [x.node], {"stride": s, "pads": pads, "dilation": d, "groups": g},
                 {"weight": np.asarray(w, np.float64).transpose(2, 3, 1, 0), "bias": bias})
    ctx.set(node.output[0], Feat(nm, 4, NCHW))


def _channel_axis_ok(ctx: Ctx, f: Feat) -> None:
    if f.view is not None or f.rank not in (2, 4) or (f.rank == 4 and f.perm[3] != 1):
        raise ctx.error(f"normalises axis 1 of a tensor whose channels are not axis 1 (rank {f.rank})",
                        "apply BatchNorm to (N, C, H, W) or (N, C) tensors")


def _bn_check(ctx: Ctx, node):
    if int(attrs(node).get("training_mode", 0)):
        return "training_mode=1 (export the model in eval mode)"
    if not all(ctx.is_const(i) for i in node.input[1:5]):
        return "scale/bias/mean/var are not constant"
    return None


@register("BatchNormalization", check=_bn_check)
def batchnorm(ctx: Ctx, node):
    """Inference-mode batch normalisation.

    IR: ``batchnorm``
    Accepts: constant scale, bias, mean and variance (per channel or scalar), any ``epsilon``, on
    axis 1 of an (N, C, H, W) or (N, C) tensor.
    Rejects: ``training_mode=1``; statistics that are not constants; using the running mean/var
    outputs; per-position statistics (``spatial=0`` of opsets 7-8).
    Notes: folded into the preceding conv/dense (Eq. 1, pass ``fold_batchnorm``), otherwise an
    ``affine`` (per-channel scale and shift); ``momentum`` is ignored.
    """
    x = ctx.feat(node.input[0])
    _channel_axis_ok(ctx, x)
    _unused_extra_outputs(ctx, node)
    c = ctx.ir_shape(x)[-1]
    p = {}
    for key, i in (("scale", 1), ("bias", 2), ("mean", 3), ("var", 4)):
        v = np.asarray(ctx.const(node.input[i], key), np.float64).reshape(-1)
        if v.size == 1:
            v = np.full(c, float(v[0]))
        if v.size != c:
            raise ctx.error(f"{key} has {v.size} values for {c} channels", "re-export the model")
        if x.rank == 2 and x.fperm is not None:
            w = np.empty(c)
            w[x.fperm] = v
            v = w
        p[key] = v
    eps = float(attrs(node).get("epsilon", 1e-5))
    nm = ctx.add("batchnorm", [x.node], {"eps": eps}, p)
    ctx.set(node.output[0], Feat(nm, x.rank, x.perm, x.fperm))


def _relu_node(ctx: Ctx, node, cap=None, src=None):
    x = ctx.feat(node.input[0] if src is None else src)
    if x.view is not None:
        raise ctx.error("activation of a reshaped (rank-3) tensor", "apply the activation before reshaping")
    onnx_t = node.output[0] if x.fperm is None else None   # a permuted flat vector: profiled in analog
    nm = ctx.add("relu", [x.node], {"cap": None if cap is None else float(cap)}, {},
                 onnx_tensor=onnx_t, onnx_perm=tuple(x.perm) if x.rank == 4 else None)
    ctx.set(node.output[0], Feat(nm, x.rank, x.perm, x.fperm))


@register("Relu")
def relu(ctx: Ctx, node):
    """ReLU: an integrate-and-fire population.

    IR: ``relu``
    Accepts: any feature map or feature vector.
    Notes: becomes a ``neuron`` population of integrate-and-fire neurons (pass ``eliminate_sums``);
    its activations are profiled for the normalisation factor lambda.
    """
    _relu_node(ctx, node)


def _clip_bounds(ctx: Ctx, node):
    if ctx.opset < 11:
        a = attrs(node)
        lo, hi = a.get("min"), a.get("max")
    else:
        lo = ctx.opt_const(node, 1, None)
        hi = ctx.opt_const(node, 2, None)
    lo = None if lo is None else float(np.asarray(lo).reshape(-1)[0])
    hi = None if hi is None else float(np.asarray(hi).reshape(-1)[0])
    if hi is not None and not math.isfinite(hi):
        hi = None
    return lo, hi


def _clip_check(ctx: Ctx, node):
    for i in node.input[1:3]:
        if i and not ctx.is_const(i):
            return "min/max are not constant"
    lo, hi = _clip_bounds(ctx, node)
    if lo is None or lo != 0.0:
        return (f"Clip(min={lo}) is not a ReLU; integrate-and-fire neurons represent only Clip(0, c) "
                "(ReLU/ReLU6): retrain with ReLU or ReLU6")
    if hi is not None and hi <= 0:
        return f"Clip(0, {hi}) has an empty range"
    return None


@register("Clip", check=_clip_check)
def clip(ctx: Ctx, node):
    """Clip(0, c): ReLU6-style capped ReLU.

    IR: ``relu`` (with cap = max)
    Accepts: ``min`` = 0 and ``max`` > 0 (or no/infinite ``max``: a plain ReLU), as attributes or
    constant inputs.
    Rejects: ``min`` other than 0 or absent (Hardtanh, clamping to negative values); bounds that are
    not constants; ``max`` <= 0.
    Opsets: ``min``/``max`` are attributes before opset 11 and optional inputs from opset 11.
    Notes: after normalisation lambda <= cap, so the firing-rate limit of one spike per step
    implements the cap.
    """
    reason = _clip_check(ctx, node)
    if reason:
        raise ctx.error(reason, RELU_HINT)
    _relu_node(ctx, node, _clip_bounds(ctx, node)[1])


def _max_zero_operand(ctx: Ctx, node):
    """(index of the feature operand, None) of ``Max(x, 0)`` / ``Max(0, x)``, or (None, reason)."""
    ins = [i for i in node.input if i]
    if len(ins) != 2:
        return None, f"Max of {len(ins)} operands (only Max(x, 0), a ReLU, is supported)"
    consts = [ctx.is_const(i) for i in ins]
    if consts.count(True) != 1:
        return None, "Max of two activations is not linear (only Max(x, 0), a ReLU, is supported)"
    c = np.asarray(ctx.const(ins[consts.index(True)]), np.float64)
    if c.size == 0 or np.any(c != 0):
        return None, ("Max(x, c) with c other than 0 is not a ReLU (only Max(x, 0) is supported): "
                      "retrain with ReLU")
    if c.ndim > 0 and c.size > 1:
        return None, "Max(x, 0) with a zero tensor operand: use a scalar 0 (torch.clamp(x, min=0) or relu)"
    return consts.index(False), None


def _max_check(ctx: Ctx, node):
    return _max_zero_operand(ctx, node)[1]


@register("Max", check=_max_check)
def max_(ctx: Ctx, node):
    """Max(x, 0): a ReLU (what ``torch.clamp(x, min=0)`` exports to with ``dynamo=True``).

    IR: ``relu``
    Accepts: two operands, one of them the constant scalar 0 (either order); opset 8 on (the
    broadcasting Max).
    Rejects: any other Max of a feature map (another constant, two activations, more operands).
    Notes: a Max whose operands are all constants is constant-folded instead (shape arithmetic).
    """
    k, reason = _max_zero_operand(ctx, node)
    if reason:
        raise ctx.error(reason, RELU_HINT)
    x = [i for i in node.input if i][k]
    _relu_node(ctx, node, src=x)


# -- elementwise arithmetic ----------------------------------------------------------
def _affine(ctx: Ctx, node, f: Feat, scale, shift, out: str, tname: str):
    if f.view is not None:
        raise ctx.error("arithmetic on a reshaped (rank-3) tensor", "apply it before reshaping")
    src = ctx.node_of(f)
    if src.op == "affine" and _sole_alias(ctx, tname, f):
        # compose (x*s1 + t1)*s2 + t2 in place: one affine per chain (Keras BN = Sub, Mul, Add)
        s1, t1 = src.params["scale"], src.params["shift"]
        src.params["scale"] = np.asarray(s1 * scale, np.float64)
        src.params["shift"] = np.asarray(t1 * scale + shift, np.float64)
        ctx.set(out, f)
        return
    nm = ctx.add("affine", [f.node], {}, {"scale": scale, "shift": shift})
    ctx.set(out, Feat(nm, f.rank, f.perm, f.fperm))


def _sole_alias(ctx: Ctx, tensor: str, f: Feat) -> bool:
    """Whether IR node ``f.node`` is consumed by nothing but the current ONNX node.

    Its ONNX names form an alias chain (Identity/Cast/Transpose...): each alias op
    consumes one name, so with ``k`` names exactly ``k`` consumers are expected
    (``k - 1`` alias ops and the current node).
    """
    if ctx.graph.nx.out_degree(f.node):
        return False
    names = [t for t, v in ctx.values.items() if v.node == f.node]
    if tensor not in names or ctx.output_name in names:
        return False
    return sum(ctx.consumers.get(t, 0) for t in names) == len(names)


def _binary(ctx: Ctx, node):
    a, b = node.input[0], node.input[1]
    ca, cb = ctx.is_const(a), ctx.is_const(b)
    return a, b, ca, cb


def _same_layout(ctx: Ctx, fs: list[Feat]) -> None:
    f0 = fs[0]
    for f in fs[1:]:
        same_perm = f.rank == f0.rank and (f.perm == f0.perm) and f.view == f0.view
        same_fperm = (f.fperm is None and f0.fperm is None) or (
            f.fperm is not None and f0.fperm is not None and np.array_equal(f.fperm, f0.fperm))
        if not (same_perm and same_fperm) or ctx.ir_shape(f) != ctx.ir_shape(f0):
            raise ctx.error(f"operands have different shapes/layouts ({ctx.onnx_shape(f0)} vs {ctx.onnx_shape(f)})",
                            "add feature maps of identical shape (no broadcasting between activations)")


def _sum_feats(ctx: Ctx, node, fs: list[Feat]):
    _same_layout(ctx, fs)
    if len({f.node for f in fs}) != len(fs):
        raise ctx.error("adds a tensor to itself", "use a multiplication by 2 instead")
    nm = ctx.add("add", [f.node for f in fs])
    ctx.set(node.output[0], Feat(nm, fs[0].rank, fs[0].perm, fs[0].fperm, fs[0].view))


def _add_const(ctx: Ctx, node, tname: str, cval):
    f = ctx.feat(tname)
    v = _chan_vec(ctx, f, cval, "added constant")
    src = ctx.node_of(f)
    if src.op in ("conv", "dense") and f.view is None and _sole_alias(ctx, tname, f):
        src.params["bias"] = np.asarray(src.params.get("bias", 0.0), np.float64) + v
        ctx.set(node.output[0], f)
        return
    _affine(ctx, node, f, np.ones_like(v), v, node.output[0], tname)


@register("Add")
def add(ctx: Ctx, node):
    """Addition: residual sum, or a constant bias.

    IR: ``add`` | ``affine``
    Accepts: two feature maps of identical shape and layout (the residual connection); a feature
    map/vector plus a per-channel or scalar constant.
    Rejects: broadcasting between two activations; a tensor added to itself; constants that vary
    over positions.
    Notes: a residual ``add`` is absorbed into the next IF population, whose membrane integrates all
    incoming currents (Section 3.2); a constant right after a conv/dense becomes its bias, elsewhere an
    ``affine`` shift.
    """
    a, b, ca, cb = _binary(ctx, node)
    if not ca and not cb:
        _sum_feats(ctx, node, [ctx.feat(a), ctx.feat(b)])
    elif cb:
        _add_const(ctx, node, a, ctx.consts[b])
    else:
        _add_const(ctx, node, b, ctx.consts[a])


@register("Sum")
def sum_(ctx: Ctx, node):
    """N-ary sum of feature maps.

    IR: ``add``
    Accepts: feature maps of identical shape and layout (one operand: an alias).
    Rejects: constant operands (use Add for biases).
    """
    if any(ctx.is_const(i) for i in node.input):
        raise ctx.error("Sum with a constant operand", "use Add for biases")
    fs = [ctx.feat(i) for i in node.input]
    if len(fs) == 1:
        ctx.set(node.output[0], fs[0])
    else:
        _sum_feats(ctx, node, fs)


@register("Sub")
def sub(ctx: Ctx, node):
    """Subtraction.

    IR: ``affine`` | ``add``
    Accepts: feature minus a per-channel/scalar constant, constant minus feature (both ``affine``),
    feature minus feature of the same shape (``affine`` with scale -1, then ``add``).
    Rejects: constants that vary over positions; broadcasting between activations.
    Notes: in-graph input normalisation ``(x - mean) / std`` right after the input is folded into the
    input preprocessing (pass ``fold_input_affine``).
    """
    a, b, ca, cb = _binary(ctx, node)
    if not ca and not cb:
        fa, fb = ctx.feat(a), ctx.feat(b)
        _same_layout(ctx, [fa, fb])
        c = ctx.ir_shape(fb)[-1]
        neg = ctx.add("affine", [fb.node], {}, {"scale": -np.ones(c), "shift": np.zeros(c)},
                      name=(node.name or node.output[0]) + "_neg")
        _sum_feats(ctx, node, [fa, Feat(neg, fb.rank, fb.perm, fb.fperm, fb.view)])
    elif cb:
        f = ctx.feat(a)
        v = _chan_vec(ctx, f, ctx.consts[b], "subtracted constant")
        _affine(ctx, node, f, np.ones_like(v), -v, node.output[0], a)
    else:
        f = ctx.feat(b)
        v = _chan_vec(ctx, f, ctx.consts[a], "constant minuend")
        _affine(ctx, node, f, -np.ones_like(v), v, node.output[0], b)


def _mul_div_check(ctx: Ctx, node):
    a, b = node.input[0], node.input[1]
    if not ctx.is_const(a) and not ctx.is_const(b):
        return "product/quotient of two activations is not linear (only constants may scale a feature map)"
    if node.op_type == "Div" and ctx.is_const(a):
        return "division of a constant by an activation is not linear"
    if node.op_type == "Div" and np.any(np.asarray(ctx.consts[b]) == 0):
        return "division by zero"
    return None


@register("Mul", check=_mul_div_check)
def mul(ctx: Ctx, node):
    """Multiplication by a constant.

    IR: ``affine``
    Accepts: one operand a per-channel or scalar constant.
    Rejects: the product of two activations (attention, squeeze-and-excitation, SiLU =
    x * sigmoid(x)): not linear; constants that vary over positions.
    """
    a, b, ca, cb = _binary(ctx, node)
    t, c = (a, ctx.consts[b]) if cb else (b, ctx.consts[a])
    f = ctx.feat(t)
    v = _chan_vec(ctx, f, c, "scale constant")
    _affine(ctx, node, f, v, np.zeros_like(v), node.output[0], t)


@register("Div", check=_mul_div_check)
def div(ctx: Ctx, node):
    """Division by a constant.

    IR: ``affine``
    Accepts: a feature map/vector divided by a per-channel or scalar non-zero constant.
    Rejects: a constant divided by an activation; activation / activation; division by zero.
    """
    f = ctx.feat(node.input[0])
    v = _chan_vec(ctx, f, ctx.const(node.input[1], "divisor"), "divisor")
    _affine(ctx, node, f, 1.0 / v, np.zeros_like(v), node.output[0], node.input[0])


# -- linear layers ---------------------------------------------------------------------
def _dense(ctx: Ctx, node, f: Feat, w, bias):
    if f.rank != 2 or f.view is not None:
        raise ctx.error(f"input must be a (N, F) matrix, got rank {f.rank}",
                        "flatten the feature map (Flatten / x.view(N, -1)) before the Linear layer")
    fin = ctx.ir_shape(f)[0]
    if w.shape[0] != fin:
        raise ctx.error(f"weight {w.shape} does not fit {fin} input features", "re-export the model")
    if f.fperm is not None:
        wi = np.empty_like(w)
        wi[f.fperm] = w
        w = wi
    nm = ctx.add("dense", [f.node], {}, {"weight": w, "bias": bias})
    ctx.set(node.output[0], Feat(nm, 2))


def _gemm_check(ctx: Ctx, node):
    a = attrs(node)
    if int(a.get("transA", 0)):
        return "transA=1 (the activation must be the left operand, untransposed)"
    if not ctx.is_const(node.input[1]) or (len(node.input) > 2 and node.input[2] and not ctx.is_const(node.input[2])):
        return "weights are not constant"
    return None


@register("Gemm", check=_gemm_check)
def gemm(ctx: Ctx, node):
    """Fully connected layer.

    IR: ``dense``
    Accepts: an (N, F) input, constant ``B`` (``transB`` 0 or 1), ``alpha``, ``beta``, optional
    constant ``C`` of shape (F,) or (1, F).
    Rejects: ``transA=1``; weights that are not constants; a per-sample bias.
    Notes: after a Flatten of an NCHW map the weight rows are permuted to the channels-last order of
    the IR, so the IR computes exactly what ONNX computes.
    """
    a = attrs(node)
    f = ctx.feat(node.input[0])
    bmat = np.asarray(ctx.const(node.input[1], "weight"), np.float64)
    if bmat.ndim != 2:
        raise ctx.error(f"weight has rank {bmat.ndim}", "re-export the model")
    w = (bmat.T if int(a.get("transB", 0)) else bmat) * float(a.get("alpha", 1.0))
    c = ctx.opt_const(node, 2, None)
    bias = np.zeros(w.shape[1])
    if c is not None:
        cb = np.broadcast_to(np.asarray(c, np.float64), (1, w.shape[1])) if np.asarray(c).ndim <= 2 else None
        if cb is None or (np.asarray(c).ndim == 2 and np.asarray(c).shape[0] not in (1,)):
            raise ctx.error(f"bias of shape {np.asarray(c).shape} depends on the sample", "use a (F,) bias")
        bias = float(a.get("beta", 1.0)) * cb[0]
    _dense(ctx, node, f, w, bias)


def _matmul_check(ctx: Ctx, node):
    if not ctx.is_const(node.input[1]):
        return "the right operand is not a constant weight matrix"
    if np.asarray(ctx.consts[node.input[1]]).ndim != 2:
        return "the weight is not a matrix"
    return None


@register("MatMul", check=_matmul_check)
def matmul(ctx: Ctx, node):
    """Matrix product with a constant weight matrix (Keras/TF Dense, PyTorch dynamo Linear).

    IR: ``dense`` | ``conv`` (1x1)
    Accepts: an (N, F) input times a constant 2-D matrix; a following constant Add becomes the bias.
    A channels-last (N, H, W, C) feature map times a (C, F) matrix (Keras ``Dense`` applied to a
    4-D map, with no ``Flatten``) is a per-pixel linear map: a 1x1 convolution.
    Rejects: activation times activation; a weight that is not a matrix; a product over a spatial
    axis (an NCHW map times a matrix).
    """
    f = ctx.feat(node.input[0])
    w = np.asarray(ctx.const(node.input[1], "weight"), np.float64)
    if f.rank == 4 and f.view is None:
        if tuple(f.perm) != NHWC:
            raise ctx.error("multiplies an NCHW feature map by a matrix over its last (width) axis",
                            "flatten the feature map before the linear layer, or use a 1x1 convolution")
        if w.shape[0] != ctx.ir_shape(f)[-1]:
            raise ctx.error(f"weight {w.shape} does not fit the map's {ctx.ir_shape(f)[-1]} channels",
                            "re-export the model")
        nm = ctx.add("conv", [f.node], {"stride": (1, 1), "pads": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1},
                     {"weight": w[None, None], "bias": np.zeros(w.shape[1])})
        ctx.set(node.output[0], Feat(nm, 4, f.perm))
        return
    _dense(ctx, node, f, w, np.zeros(w.shape[1]))


# -- shape and layout ops -------------------------------------------------------------------
@register("Flatten")
def flatten(ctx: Ctx, node):
    """Flatten to (N, features).

    IR: ``flatten``
    Accepts: ``axis`` = 1 (or its negative equivalent).
    Rejects: any other axis (it would mix the batch dimension).
    Notes: flattens channels-last; the next dense layer's rows are permuted to match ONNX's order.
    """
    f = ctx.feat(node.input[0])
    axis = int(attrs(node).get("axis", 1))
    if axis < 0:
        axis += f.rank
    if axis != 1:
        raise ctx.error(f"Flatten(axis={axis}) mixes the batch dimension", "flatten with axis=1")
    ctx.set(node.output[0], reshape_feat(ctx, f, (int(np.prod(ctx.onnx_shape(f))),)))


def _reshape_check(ctx: Ctx, node):
    if node.input[1] not in ctx.consts and node.input[1] not in ctx.pairs:
        return "the target shape is computed from activations (not constant)"
    return None


@register("Reshape", check=_reshape_check)
def reshape(ctx: Ctx, node):
    """Reshape of a feature tensor.

    IR: ``flatten`` | none (alias)
    Accepts: flattening to (N, -1) (also ``x.view(x.size(0), -1)``, whose target is computed from
    ``Shape`` and recovered by constant folding), adding or removing 1x1 spatial dims.
    Rejects: targets computed from activations; reshapes that mix the batch dimension into features;
    any other reshape of a spatial map.
    """
    f = ctx.feat(node.input[0])
    out = _resolve_shape(ctx, node, f, node.input[1], int(attrs(node).get("allowzero", 0)))
    ctx.set(node.output[0], reshape_feat(ctx, f, out))


def _axes(ctx: Ctx, node, idx: int = 1):
    if ctx.opset >= 13 and node.op_type in ("Squeeze", "Unsqueeze") or \
            (ctx.opset >= 18 and node.op_type.startswith("Reduce")):
        v = ctx.opt_const(node, idx, None)
        return None if v is None else [int(i) for i in np.asarray(v).reshape(-1)]
    v = attrs(node).get("axes")
    return None if v is None else [int(i) for i in v]


@register("Squeeze")
def squeeze(ctx: Ctx, node):
    """Squeeze of size-1 axes (e.g. after global pooling).

    IR: ``flatten`` | none (alias)
    Accepts: non-batch axes of size 1 (all size-1 axes when ``axes`` is absent).
    Rejects: the batch axis; axes that are not 1.
    Opsets: ``axes`` is an attribute before opset 13, a constant input from opset 13.
    """
    f = ctx.feat(node.input[0])
    shp = (None,) + tuple(ctx.onnx_shape(f))
    axes = _axes(ctx, node)
    if axes is None:
        axes = [i for i in range(1, len(shp)) if shp[i] == 1]
    axes = sorted(a + len(shp) if a < 0 else a for a in axes)
    if 0 in axes or any(shp[a] != 1 for a in axes):
        raise ctx.error(f"squeezes axes {axes} of {shp} that are not 1 (or the batch axis)",
                        "squeeze only the 1x1 spatial dims after global pooling")
    out = tuple(v for i, v in enumerate(shp) if i and i not in axes)
    ctx.set(node.output[0], reshape_feat(ctx, f, out))


@register("Unsqueeze")
def unsqueeze(ctx: Ctx, node):
    """Unsqueeze (insert size-1 axes).

    IR: none (alias)
    Accepts: new non-batch axes, e.g. turning a pooled (N, C) vector back into (N, C, 1, 1).
    Rejects: a new batch axis; missing ``axes``.
    Opsets: ``axes`` is an attribute before opset 13, a constant input from opset 13.
    """
    f = ctx.feat(node.input[0])
    shp = list(ctx.onnx_shape(f))
    axes = _axes(ctx, node)
    if axes is None:
        raise ctx.error("has no axes", "re-export the model")
    r = len(shp) + 1 + len(axes)
    axes = sorted(a + r if a < 0 else a for a in axes)
    if 0 in axes:
        raise ctx.error("inserts a new batch axis", "keep the batch dimension first")
    full = [None] + shp
    for a in axes:
        full.insert(a, 1)
    ctx.set(node.output[0], reshape_feat(ctx, f, tuple(full[1:])))


@register("Transpose")
def transpose(ctx: Ctx, node):
    """Layout change.

    IR: none (layout only)
    Accepts: permutations of rank-4 feature maps that keep the batch first (NHWC <-> NCHW around
    the convolutions of Keras/TF exports); identity permutations of any tensor.
    Rejects: moving the batch axis; permuting a feature vector.
    Notes: the IR is channels-last throughout; a Transpose only changes how the front end maps ONNX
    axes onto it. An NHWC model input is recognised from its Transpose to NCHW.
    """
    f = ctx.feat(node.input[0])
    p = attrs(node).get("perm")
    p = list(range(f.rank))[::-1] if p is None else [int(i) for i in p]
    if p == list(range(f.rank)):
        ctx.set(node.output[0], f)
        return
    if f.rank != 4 or f.view is not None or p[0] != 0:
        raise ctx.error(f"Transpose{tuple(p)} of a rank-{f.rank} tensor (moves the batch axis or "
                        "permutes a vector)", "only layout changes of (N, ., ., .) feature maps are supported")
    inv = [0] * 4
    for i, v in enumerate(p):
        inv[v] = i
    q = tuple(inv[f.perm[i]] for i in range(4))
    ctx.set(node.output[0], Feat(f.node, 4, q))


def _alias(ctx: Ctx, node):
    ctx.set(node.output[0], ctx.feat(node.input[0]))


@register("Identity")
def identity(ctx: Ctx, node):
    """Identity.

    IR: none (alias)
    """
    _alias(ctx, node)


def _dropout_check(ctx: Ctx, node):
    if len(node.input) > 2 and node.input[2]:
        if not ctx.is_const(node.input[2]) or bool(np.asarray(ctx.consts[node.input[2]]).reshape(-1)[0]):
            return "training_mode is not constant False"
    return None


@register("Dropout", check=_dropout_check)
def dropout(ctx: Ctx, node):
    """Dropout at inference (the identity).

    IR: none (alias)
    Accepts: no ``training_mode`` input or a constant False; ``ratio`` is ignored.
    Rejects: ``training_mode`` True or computed; using the ``mask`` output.
    """
    _unused_extra_outputs(ctx, node)
    _alias(ctx, node)


@register("Cast")
def cast(ctx: Ctx, node):
    """Cast between float types (exporters insert them around every op).

    IR: none (alias)
    Accepts: casts to float, double, float16 or bfloat16; a cast of a uint8 image input to uint8
    (Keras 3 writes one), or to another integer type wide enough for 0..255.
    Rejects: casting an activation to an integer or bool type.
    """
    to = int(attrs(node).get("to", onnx.TensorProto.FLOAT))
    if to not in FLOAT_TYPES:
        if node.input[0] not in ctx.raw_int or to not in (onnx.TensorProto.UINT8, onnx.TensorProto.INT16,
                                                           onnx.TensorProto.INT32, onnx.TensorProto.INT64,
                                                           onnx.TensorProto.UINT16, onnx.TensorProto.UINT32,
                                                           onnx.TensorProto.UINT64):
            raise ctx.error("casts an activation to a non-float type", "keep activations in float")
        ctx.raw_int.add(node.output[0])         # still the raw image, losslessly
    _alias(ctx, node)


def _softmax_check(ctx: Ctx, node):
    if node.output[0] != ctx.output_name:
        return "Softmax/LogSoftmax is only supported as the last op after the logits (where it is dropped)"
    return None


@register("Softmax", check=_softmax_check)
def softmax(ctx: Ctx, node):
    """Softmax / LogSoftmax after the logits.

    IR: none (dropped)
    Accepts: only as the model's last op, over the class axis of the (N, classes) logits.
    Rejects: a Softmax/LogSoftmax anywhere else (e.g. attention).
    Notes: argmax-invariant, so it is dropped; the IR ends at the logits
    (``graph.meta['output_name']``).
    """
    f = ctx.feat(node.input[0])
    if f.rank != 2 or f.view is not None:
        raise ctx.error("softmax over a feature map", "apply Softmax to (N, classes) logits only")
    ax = int(attrs(node).get("axis", -1 if ctx.opset >= 13 else 1))
    if ax not in (-1, 1):
        raise ctx.error(f"softmax over axis {ax}", "apply Softmax over the class axis")
    # argmax-invariant: dropped, the IR ends at the logits (meta['output_name'])
    ctx.logits_name = node.input[0]
    ctx.dropped.append(node.op_type)
    ctx.set(node.output[0], f)


register("LogSoftmax", check=_softmax_check)(softmax)


# -- padding / slicing ----------------------------------------------------------------------
def _ir_axis(f: Feat, onnx_axis: int) -> int:
    return list(f.perm).index(onnx_axis)


def _consumer_ops(ctx: Ctx, tensor: str) -> set:
    return {n.op_type for n in ctx.model.graph.node if tensor in n.input}


def _pad_check(ctx: Ctx, node):
    a = attrs(node)
    mode = a.get("mode", "constant")
    out = node.output[0]
    if mode == "edge" and out != ctx.output_name and _consumer_ops(ctx, out) == {"MaxPool"}:
        pass    # Keras MaxPooling2D(padding="same"): replicated borders never change a max (see _pool)
    elif mode != "constant":
        return f"mode={a.get('mode')!r} (only constant zero padding is supported)"
    for i in node.input[1:]:
        if i and not ctx.is_const(i):
            return "pads/value are not constant"
    return None


@register("Pad", check=_pad_check)
def pad(ctx: Ctx, node):
    """Constant zero padding; edge padding in front of a max pool.

    IR: ``pad`` | none (merged into a following MaxPool)
    Accepts: ``mode`` = constant with constant pads; spatial pads (merged into the following conv's
    ``pads``, e.g. Keras ``ZeroPadding2D``, or into a following MaxPool's when the padded tensor is a
    ReLU output); zero channel pads (the option-A shortcut, with Slice); ``mode`` = edge with
    spatial pads when every consumer is a MaxPool (Keras ``MaxPooling2D(padding="same")``).
    Rejects: ``reflect``/``wrap`` modes; ``edge`` mode in front of anything but MaxPool (e.g.
    AveragePool) or on the channel axis; negative pads (cropping); padding the batch axis; channel
    padding with a non-zero value. A spatial pad that no conv or max pool absorbs (e.g. with a
    non-zero value) is rejected when the model is lowered.
    Opsets: pads and value are attributes before opset 11, inputs from opset 11; the ``axes`` input
    (opset 18) is supported.
    """
    f = ctx.feat(node.input[0])
    if f.rank != 4 or f.view is not None:
        raise ctx.error(f"padding a rank-{f.rank} tensor", "pad (N, C, H, W) feature maps only")
    a = attrs(node)
    if ctx.opset < 11:
        pads = [int(v) for v in a.get("pads", ())]
        value = float(a.get("value", 0.0))
        axes = list(range(4))
    else:
        pads = [int(v) for v in np.asarray(ctx.const(node.input[1], "pads")).reshape(-1)]
        cv = ctx.opt_const(node, 2, None)
        value = 0.0 if cv is None or np.asarray(cv).size == 0 else float(np.asarray(cv).reshape(-1)[0])
        ax = ctx.opt_const(node, 3, None)
        axes = list(range(4)) if ax is None else [int(v) % 4 for v in np.asarray(ax).reshape(-1)]
    if len(pads) != 2 * len(axes):
        raise ctx.error(f"pads {pads} do not match axes {axes}", "re-export the model")
    beg = dict.fromkeys(range(4), 0)
    end = dict.fromkeys(range(4), 0)
    for k, ax in enumerate(axes):
        beg[ax], end[ax] = pads[k], pads[k + len(axes)]
    if any(v < 0 for v in list(beg.values()) + list(end.values())):
        raise ctx.error(f"negative pads {pads} (cropping)", "crop with a strided Slice or export without cropping")
    if beg[0] or end[0]:
        raise ctx.error("pads the batch axis", "pad only spatial or channel axes")
    h, w, c = (f.perm[i] for i in (1, 2, 3))
    attrs_ = {"pads": (beg[h], beg[w], end[h], end[w]), "cpad": (beg[c], end[c]), "value": value}
    if a.get("mode", "constant") == "edge":
        # only MaxPool consumers (checked): the pool takes these pads over (see _pool)
        if attrs_["cpad"] != (0, 0):
            raise ctx.error("edge padding of the channel axis", "pad only the spatial axes")
        if not hasattr(ctx, "maxpool_pads"):
            ctx.maxpool_pads = {}   # Pad output name -> its spatial pads, for the MaxPool consumers
        ctx.maxpool_pads[node.output[0]] = attrs_["pads"]
        ctx.set(node.output[0], f)
        return
    if value != 0.0 and attrs_["cpad"] != (0, 0):
        raise ctx.error(f"channel padding with value {value}", "pad channels with zeros")
    if attrs_["pads"] == (0, 0, 0, 0) and attrs_["cpad"] == (0, 0):
        ctx.set(node.output[0], f)
        return
    nm = ctx.add("pad", [f.node], attrs_)
    ctx.set(node.output[0], Feat(nm, 4, f.perm))


def _slice_check(ctx: Ctx, node):
    for i in node.input[1:]:
        if i and not ctx.is_const(i):
            return "starts/ends/axes/steps are not constant"
    return None


@register("Slice", check=_slice_check)
def slice_(ctx: Ctx, node):
    """Strided spatial subsampling ``x[:, :, o::s, o::s]`` (option-A shortcut).

    IR: ``subsample`` | none (full slice)
    Accepts: constant starts/ends/axes/steps; slices of the spatial axes that run to the end of the
    axis with a positive step (consecutive slices are merged); full slices of other axes.
    Rejects: channel slicing (channel split/shuffle); crops that stop before the end of an axis;
    slicing the batch axis; negative steps.
    Opsets: starts/ends/axes are attributes before opset 10, inputs from opset 10.
    """
    f = ctx.feat(node.input[0])
    if f.rank != 4 or f.view is not None:
        raise ctx.error(f"slicing a rank-{f.rank} tensor", "slice (N, C, H, W) feature maps only")
    if ctx.opset < 10:
        a = attrs(node)
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = [int(v) for v in np.asarray(ctx.const(node.input[1], "starts")).reshape(-1)]
        ends = [int(v) for v in np.asarray(ctx.const(node.input[2], "ends")).reshape(-1)]
        ax = ctx.opt_const(node, 3, None)
        axes = list(range(len(starts))) if ax is None else [int(v) for v in np.asarray(ax).reshape(-1)]
        st = ctx.opt_const(node, 4, None)
        steps = [1] * len(starts) if st is None else [int(v) for v in np.asarray(st).reshape(-1)]
    shp = (None,) + tuple(ctx.onnx_shape(f))
    stride, offset = [1, 1], [0, 0]
    for s0, e0, ax, sp in zip(starts, ends, axes, steps):
        ax = ax + 4 if ax < 0 else ax
        if ax == 0:
            if not (s0 == 0 and e0 >= 2**31 - 1 and sp == 1):
                raise ctx.error("slices the batch axis", "slice only spatial axes")
            continue
        dim = shp[ax]
        idx = list(range(*slice(max(min(s0, 2**62), -2**62), max(min(e0, 2**62), -2**62), sp).indices(dim)))
        i = _ir_axis(f, ax)
        if i == 3:
            if idx != list(range(dim)):
                raise ctx.error(f"slices the channel axis ({s0}:{e0}:{sp} of {dim} channels)",
                                "channel slicing is not supported; only strided spatial subsampling "
                                "x[:, :, ::s, ::s] (option-A shortcuts)")
            continue
        if sp <= 0 or not idx or idx != list(range(idx[0], dim, sp)):
            raise ctx.error(f"spatial slice {s0}:{e0}:{sp} of size {dim} is not a subsampling x[o::s]",
                            "only strided subsampling to the end of the axis (x[:, :, o::s]) is supported")
        stride[i - 1] *= sp
        offset[i - 1] = idx[0]
    if stride == [1, 1] and offset == [0, 0]:
        ctx.set(node.output[0], f)
        return
    src = ctx.node_of(f)
    if src.op == "subsample" and _sole_alias(ctx, node.input[0], f):
        # merge x[o1::s1][o2::s2] = x[o1 + o2*s1 :: s1*s2] (exporters slice one axis per node)
        s1, o1 = src.attrs["stride"], src.attrs.get("offset", (0, 0))
        (pred,) = ctx.graph.preds(src.name)
        ctx.graph.remove_node(src.name)
        for k, v in list(ctx.values.items()):
            if v.node == src.name:
                del ctx.values[k]
        offset = [o1[k] + offset[k] * s1[k] for k in range(2)]
        stride = [s1[k] * stride[k] for k in range(2)]
        nm = ctx.add("subsample", [pred], {"stride": tuple(stride), "offset": tuple(offset)}, name=src.name)
    else:
        nm = ctx.add("subsample", [f.node], {"stride": tuple(stride), "offset": tuple(offset)})
    ctx.set(node.output[0], Feat(nm, 4, f.perm))


# -- pooling -------------------------------------------------------------------------------------
def _pool_check(ctx: Ctx, node):
    a = attrs(node)
    if any(int(d) != 1 for d in a.get("dilations", ())):
        return "dilated pooling is not supported: pool with dilations=1"
    if len(a.get("kernel_shape", ())) != 2:
        return "only 2-D pooling is supported: pool (N, C, H, W) feature maps"
    if node.op_type == "LpPool":
        return "Lp pooling"
    return None


def _pad_before_maxpool(ctx: Ctx, node, f: Feat):
    """(Feat, pads) of a Pad in front of a MaxPool that the pool can take over exactly: an edge
    Pad (replicated borders never change a max), or a zero Pad of a ReLU output (0 <= every value)."""
    extra = getattr(ctx, "maxpool_pads", {}).get(node.input[0])
    if extra is not None:
        return f, extra
    src = ctx.node_of(f)
    if src.op == "pad" and src.attrs["cpad"] == (0, 0) and float(src.attrs["value"]) == 0.0 \
            and _sole_alias(ctx, node.input[0], f):
        (pred,) = ctx.graph.preds(src.name)
        if ctx.graph.node(pred).op == "relu":
            extra = tuple(src.attrs["pads"])
            ctx.graph.remove_node(src.name)
            for t, v in list(ctx.values.items()):
                if v.node == src.name:
                    del ctx.values[t]
            return Feat(pred, 4, f.perm), extra
    return f, (0, 0, 0, 0)


def _pool(ctx: Ctx, node, op: str):
    f = ctx.feat(node.input[0])
    _spatial(ctx, f)
    _unused_extra_outputs(ctx, node)
    a = attrs(node)
    k = _ints(a["kernel_shape"])
    s = _ints(a.get("strides", (1, 1)))
    extra = (0, 0, 0, 0)
    if op == "maxpool":
        f, extra = _pad_before_maxpool(ctx, node, f)
    h, w, _ = ctx.ir_shape(f)
    pads = _pads(ctx, a, (h + extra[0] + extra[2], w + extra[1] + extra[3]), k, s, (1, 1))
    pads = tuple(p + e for p, e in zip(pads, extra))
    if int(a.get("ceil_mode", 0)):
        for i, (n_, pb, pe) in enumerate(((h, pads[0], pads[2]), (w, pads[1], pads[3]))):
            span = n_ + pb + pe - k[i]
            if span % s[i]:
                raise ctx.error("ceil_mode=1 changes the output size here",
                                "export pooling with ceil_mode=False (or adjust the input size)")
    if max(pads[0], pads[2]) >= k[0] or max(pads[1], pads[3]) >= k[1]:
        raise ctx.error(f"pads {pads} are not smaller than the kernel {k}", "use smaller pads")
    if op == "avgpool" and tuple(k) == (h, w) and not any(pads):
        # an average pool over the whole map (PyTorch's F.avg_pool2d(x, x.size(3))) is a
        # global average pool: later passes merge it with the classifier into one synapse
        nm = ctx.add("globalavgpool", [f.node], onnx_tensor=node.output[0], onnx_perm=tuple(f.perm))
        ctx.set(node.output[0], Feat(nm, 4, f.perm))
        return
    at = {"kernel": k, "stride": s, "pads": pads}
    if op == "avgpool":
        at["count_include_pad"] = bool(int(a.get("count_include_pad", 0)))
    nm = ctx.add(op, [f.node], at, onnx_tensor=node.output[0], onnx_perm=tuple(f.perm))
    ctx.set(node.output[0], Feat(nm, 4, f.perm))


@register("MaxPool", check=_pool_check)
def maxpool(ctx: Ctx, node):
    """2-D max pooling.

    IR: ``maxpool``
    Accepts: any 2-D kernel and stride, pads smaller than the kernel (explicit or ``auto_pad``),
    ``ceil_mode=1`` only where it does not change the output size. A ``Pad`` right before the pool
    is merged into its pads exactly when it cannot change a max: ``mode`` = edge (Keras
    ``MaxPooling2D(padding="same")``), or zero padding of a ReLU output (Keras ``ZeroPadding2D``
    + ``MaxPooling2D``, the keras.applications ResNet stem); the merged pads must stay smaller
    than the kernel.
    Rejects: dilations other than 1; 1-D/3-D pooling; using the ``Indices`` output; an input that
    can be negative (not a ReLU or pooled ReLU output), reported when the model is lowered.
    Notes: becomes a ``maxgate``: with ``--maxgate max`` (default preset) the output's spike count
    follows the window's highest input count; with ``leader`` (paper preset) the output spikes iff
    the input neuron with the highest spike count so far spiked at this step (docs/runtime.md).
    """
    _pool(ctx, node, "maxpool")


@register("AveragePool", check=_pool_check)
def avgpool(ctx: Ctx, node):
    """2-D average pooling.

    IR: ``avgpool`` | ``globalavgpool``
    Accepts: any 2-D kernel and stride, pads smaller than the kernel, ``count_include_pad`` 0 or 1,
    ``ceil_mode=1`` only where it does not change the output size; a pool over the whole map without
    pads (PyTorch ``F.avg_pool2d(x, x.size(3))``) is a global average pool.
    Rejects: dilations other than 1; 1-D/3-D pooling; an input that is not a ReLU or pooled ReLU
    output, reported when the model is lowered.
    Notes: a population with a fixed average-pooling synapse and zero bias; a global average pool
    merges into the following dense layer.
    """
    _pool(ctx, node, "avgpool")


@register("GlobalAveragePool")
def global_avgpool(ctx: Ctx, node):
    """Global average pooling.

    IR: ``globalavgpool``
    Accepts: an (N, C, H, W) feature map.
    Notes: merged into the following dense layer or 1x1 convolution (pass ``merge_linear``): no
    spiking layer of its own.
    """
    f = ctx.feat(node.input[0])
    _spatial(ctx, f)
    nm = ctx.add("globalavgpool", [f.node])
    ctx.set(node.output[0], Feat(nm, 4, f.perm))


@register("GlobalMaxPool")
def global_maxpool(ctx: Ctx, node):
    """Global max pooling.

    IR: ``maxpool`` (kernel = the whole map)
    Accepts: an (N, C, H, W) feature map that is a ReLU or pooled ReLU output.
    """
    f = ctx.feat(node.input[0])
    _spatial(ctx, f)
    h, w, _ = ctx.ir_shape(f)
    nm = ctx.add("maxpool", [f.node], {"kernel": (h, w), "stride": (1, 1), "pads": (0, 0, 0, 0)},
                 onnx_tensor=node.output[0], onnx_perm=tuple(f.perm))
    ctx.set(node.output[0], Feat(nm, 4, f.perm))


def _spatial_reduce(ctx: Ctx, node, what: str) -> Feat:
    """The operand of a ReduceMean/ReduceMax over exactly the two spatial axes of a feature map."""
    f = ctx.feat(node.input[0])
    if f.rank != 4 or f.view is not None:
        raise ctx.error(f"{node.op_type} of a rank-{f.rank} tensor", "reduce over the spatial axes of a feature map")
    axes = _axes(ctx, node)
    if axes is None:
        raise ctx.error("reduces over all axes", f"reduce over the two spatial axes ({what})")
    axes = {a + 4 if a < 0 else a for a in axes}
    if axes != {f.perm[1], f.perm[2]}:
        raise ctx.error(f"reduces axes {sorted(axes)}, not the spatial axes {sorted((f.perm[1], f.perm[2]))}",
                        f"only {what} over H and W is supported")
    return f


def _keepdims(ctx: Ctx, node, nm: str, f: Feat) -> None:
    if int(attrs(node).get("keepdims", 1)):
        ctx.set(node.output[0], Feat(nm, 4, f.perm))
    else:
        ctx.set(node.output[0], Feat(ctx.add("flatten", [nm], name=(node.name or node.output[0]) + "_flatten"), 2))


@register("ReduceMean")
def reduce_mean(ctx: Ctx, node):
    """Mean over the spatial axes (Keras ``GlobalAveragePooling2D``).

    IR: ``globalavgpool`` (+ ``flatten`` with ``keepdims=0``)
    Accepts: exactly the two spatial axes of a rank-4 feature map, in NCHW or NHWC order.
    Rejects: any other set of axes; no axes (reduce over everything).
    Opsets: ``axes`` is an attribute before opset 18, a constant input from opset 18.
    """
    f = _spatial_reduce(ctx, node, "global average pooling")
    _keepdims(ctx, node, ctx.add("globalavgpool", [f.node]), f)


@register("ReduceMax")
def reduce_max(ctx: Ctx, node):
    """Maximum over the spatial axes (``torch.amax(x, (2, 3))``, ``AdaptiveMaxPool2d(1)`` exported with
    ``dynamo=True``).

    IR: ``maxpool`` (kernel = the whole map; + ``flatten`` with ``keepdims=0``)
    Accepts: exactly the two spatial axes of a rank-4 feature map that is a ReLU or pooled ReLU output.
    Rejects: any other set of axes; no axes (reduce over everything).
    Opsets: ``axes`` is an attribute before opset 18, a constant input from opset 18.
    """
    f = _spatial_reduce(ctx, node, "global max pooling")
    h, w, _ = ctx.ir_shape(f)
    keep = int(attrs(node).get("keepdims", 1))
    nm = ctx.add("maxpool", [f.node], {"kernel": (h, w), "stride": (1, 1), "pads": (0, 0, 0, 0)},
                 onnx_tensor=node.output[0], onnx_perm=tuple(f.perm) if keep else None)
    _keepdims(ctx, node, nm, f)
