"""``import_onnx``: ONNX ModelProto -> op-level :class:`snncc.ir.Graph`.

Steps: :func:`load_model` (checker, shape inference) -> :func:`fold_constants`
-> scan every remaining node for a handler (one :class:`UnsupportedOpError`
lists all problems) -> walk the nodes the output depends on, in order, calling
one handler per node -> set ``onnx_tensor``/``onnx_perm`` on the sink and the
``graph.meta`` keys of ``docs/CONTRACTS.md``.

Layout tracking
---------------
Every ONNX feature tensor maps to a :class:`Feat`: the IR node holding its value
and, for rank 4, ``perm`` with ``ir_value == onnx_value.transpose(perm)``
(batch included; ``(0, 2, 3, 1)`` for NCHW, identity for NHWC).  A Transpose
only changes ``perm``.  For rank 2, ``fperm`` (or None = identity) says that
ONNX feature ``i`` is IR feature ``fperm[i]``: a Flatten of an NCHW map is an
IR ``flatten`` (channels-last order) and the next Gemm/MatMul has its weight
rows permuted, so the IR computes exactly what ONNX computes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx

from snncc import ops as _ops
from snncc.errors import ModelError, SnnccError, one_line
from snncc.frontend import registry
from snncc.frontend.fold import Folded, fold_constants
from snncc.frontend.loader import check_input, graph_input, load_model, opset_of
from snncc.ir import EdgeKind, Graph, IRError, Node

NCHW = (0, 2, 3, 1)
NHWC = (0, 1, 2, 3)


@dataclass
class Feat:
    """An ONNX feature tensor's value in the IR (see module doc)."""

    node: str
    rank: int
    perm: tuple | None = None
    fperm: np.ndarray | None = None
    #: ONNX per-sample shape when the tensor is a pure reshape ("view") of the IR
    #: node's value in flattening order (e.g. (C, 1) between two Squeezes)
    view: tuple | None = None


def _clean(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_./:-]", "_", name).strip("/")
    return s or "node"


class Ctx:
    """Conversion state shared by the handlers."""

    def __init__(self, folded: Folded):
        self.model = folded.model
        self.consts = folded.consts
        self.pairs = folded.pairs
        self.opset = opset_of(self.model)
        self.graph = Graph()
        self.values: dict[str, Feat] = {}
        self.consumers: dict[str, int] = {}
        for n in self.model.graph.node:
            for i in n.input:
                if i:
                    self.consumers[i] = self.consumers.get(i, 0) + 1
        gi = graph_input(self.model)
        #: tensors holding the raw integer (uint8) image, before any arithmetic: integer casts of them
        #: (Keras writes Cast(to=UINT8) of a uint8 input) are no-ops
        self.raw_int = {gi.name} if gi.type.tensor_type.elem_type == onnx.TensorProto.UINT8 else set()
        d0 = gi.type.tensor_type.shape.dim[0]
        #: the model's batch size if it is static (else None: dynamic batch)
        self.static_batch = int(d0.dim_value) if d0.HasField("dim_value") and d0.dim_value > 0 else None
        self.output_name = self.model.graph.output[0].name
        self.logits_name = self.output_name
        self.dropped: list[str] = []
        self.node: onnx.NodeProto | None = None

    # -- operands ---------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return bool(name) and name in self.consts

    def const(self, name: str, what: str = "operand") -> np.ndarray:
        if not name or name not in self.consts:
            raise self.error(f"{what} {name!r} must be a constant (weights/attributes), but it is computed "
                             "from the input", "export with constant weights and static shapes")
        return self.consts[name]

    def opt_const(self, node, idx: int, default=None):
        if len(node.input) > idx and node.input[idx]:
            return self.const(node.input[idx], f"input {idx}")
        return default

    def feat(self, name: str) -> Feat:
        if name in self.values:
            return self.values[name]
        if name in self.consts or name in self.pairs:
            raise self.error(f"expects a feature map for {name!r} but got a constant",
                             "this op must act on the network's activations")
        raise self.error(f"operand {name!r} is not produced by any converted node",
                         "the model graph is malformed; re-export it")

    def set(self, name: str, f: Feat) -> None:
        self.values[name] = f

    def node_of(self, f: Feat) -> Node:
        return self.graph.node(f.node)

    def ir_shape(self, f: Feat) -> tuple:
        return tuple(self.node_of(f).shape)

    def onnx_shape(self, f: Feat) -> tuple:
        """ONNX per-sample shape (batch dropped) of a feature tensor."""
        if f.view is not None:
            return tuple(f.view)
        s = (None,) + self.ir_shape(f)
        if f.rank == 4:
            o = [0] * 4
            for i, p in enumerate(f.perm):
                o[p] = s[i]
            return tuple(o[1:])
        return tuple(s[1:])

    # -- construction -----------------------------------------------------------
    def error(self, msg: str, hint: str | None = None) -> ModelError:
        n = self.node
        where = f"{n.op_type} node {n.name or n.output[0]!r}: " if n is not None else ""
        return ModelError(where + msg, hint)

    def add(self, op: str, srcs: list[str], attrs: dict | None = None, params: dict | None = None,
            name: str | None = None, onnx_tensor: str | None = None, onnx_perm=None) -> str:
        """Add an IR node fed by IR nodes ``srcs`` (ports in order); returns its name."""
        base = _clean(name or (self.node.name if self.node is not None and self.node.name else
                               (self.node.output[0] if self.node is not None else op)))
        nm = self.graph.unique_name(base)
        params = {k: np.asarray(v, dtype=np.float64) for k, v in (params or {}).items()}
        node = Node(nm, op, (), dict(attrs or {}), params, onnx_tensor, onnx_perm)
        try:
            shape = _ops.OPS[op].infer_shape(node, [tuple(self.graph.node(s).shape) for s in srcs])
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise self.error(f"cannot be converted: {e}", "check the model's shapes") from None
        node.shape = tuple(int(v) for v in shape)
        self.graph.add_node(node)
        for port, s in enumerate(srcs):
            try:
                self.graph.add_edge(s, nm, EdgeKind.DATA, port)
            except IRError as e:
                raise self.error(str(e), "feed the two operands from different tensors") from None
        return nm


def _live_nodes(m: onnx.ModelProto, pairs: dict, output: str) -> list:
    prod = {}
    for n in m.graph.node:
        for o in n.output:
            if o:
                prod[o] = n
    need, live, stack = set(), set(), [output]
    while stack:
        t = stack.pop()
        if t in need:
            continue
        need.add(t)
        n = prod.get(t)
        if n is None or id(n) in live:
            continue
        live.add(id(n))
        stack.extend(i for i in n.input if i)
    return [n for n in m.graph.node if id(n) in live]


#: ops that do not reveal the layout of their (rank-4) input
_LAYOUT_AGNOSTIC = frozenset({"Cast", "Identity", "Pad", "Sub", "Mul", "Div", "Add", "Relu", "Clip", "Dropout"})


def _input_is_nhwc(m: onnx.ModelProto, in_name: str) -> bool:
    """NHWC iff the input reaches a Transpose(perm=[0, 3, 1, 2]) through layout-agnostic
    ops (Cast, Pad, normalisation arithmetic...) before any op that reads axis 1 as channels."""
    cons: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    frontier, seen = [in_name], set()
    while frontier:
        nxt = []
        for t in frontier:
            for n in cons.get(t, []):
                if id(n) in seen:
                    continue
                seen.add(id(n))
                if n.op_type == "Transpose":
                    perm = [list(onnx.helper.get_attribute_value(a)) for a in n.attribute if a.name == "perm"]
                    return perm == [[0, 3, 1, 2]]
                if n.op_type in _LAYOUT_AGNOSTIC:
                    nxt.extend(o for o in n.output if o)
                else:
                    return False
        frontier = nxt
    return False


def _is_pair_node(n, pairs) -> bool:
    outs = [o for o in n.output if o]
    return bool(outs) and all(o in pairs for o in outs)


def _scan(folded: Folded, ctx: Ctx | None = None) -> list[tuple[str, str, int, str | None]]:
    m = folded.model
    ctx = ctx or Ctx(folded)
    items = []
    for n in m.graph.node:
        if _is_pair_node(n, folded.pairs):
            continue
        name = n.name or (n.output[0] if n.output else "?")
        opset = opset_of(m, n.domain) if n.domain not in ("", "ai.onnx") else ctx.opset
        h = registry.HANDLERS.get(n.op_type) if n.domain in ("", "ai.onnx") else None
        if h is None:
            t = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
            items.append((t, name, opset, None))
            continue
        if h.check is not None:
            ctx.node = n
            try:
                reason = h.check(ctx, n)
            except SnnccError as e:
                reason = e.message
            except Exception as e:  # noqa: BLE001
                reason = f"{type(e).__name__}: {e}"
            ctx.node = None
            if reason:
                items.append((n.op_type, name, opset, f"{n.op_type} {name!r}: {reason}"))
    return items


def _prepare(model) -> Folded:
    m = load_model(model)
    if len(m.graph.output) != 1:
        raise ModelError(f"the model has {len(m.graph.output)} outputs; snncc needs exactly one (the logits)",
                         "export the model with a single logits output")
    check_input(m)
    return fold_constants(m)


def _guarded(fn):
    """No raw KeyError/AttributeError/...: anything unexpected becomes one ModelError line."""
    import functools

    @functools.wraps(fn)
    def wrapper(model):
        try:
            return fn(model)
        except SnnccError:
            raise
        except RecursionError:
            raise ModelError("the model graph is too deep to process", "simplify the model") from None
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"the model cannot be read ({type(e).__name__}: {one_line(e, 160)})",
                             "the model looks malformed; re-export it with a current exporter") from None
    return wrapper


@_guarded
def scan_unsupported(model) -> list[tuple[str, str, int]]:
    """Every node that cannot be converted, as ``(op_type, node name, opset)``, after folding."""
    return [(t, n, v) for t, n, v, _ in _scan(_prepare(model))]


@_guarded
def import_onnx(model) -> Graph:
    """Convert an ONNX model (path, bytes or ModelProto) into an op-level IR graph."""
    from snncc.frontend import handlers  # noqa: F401 - registers the handlers

    folded = _prepare(model)
    ctx = Ctx(folded)
    registry.raise_unsupported(_scan(folded, ctx))
    m = folded.model
    g = ctx.graph
    vi = graph_input(m)
    dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    in_name = vi.name
    nhwc = _input_is_nhwc(m, in_name)
    layout = "NHWC" if nhwc else "NCHW"
    hwc = tuple(dims[1:]) if nhwc else (dims[2], dims[3], dims[1])
    inp = Node(g.unique_name(_clean(in_name)), "input", tuple(int(v) for v in hwc))
    g.add_node(inp)
    ctx.set(in_name, Feat(inp.name, 4, NHWC if nhwc else NCHW))

    if ctx.output_name in ctx.consts or ctx.output_name in ctx.pairs:
        raise ModelError(f"the model output {ctx.output_name!r} does not depend on the input",
                         "export the trained network, not a constant graph")
    live = _live_nodes(m, ctx.pairs, ctx.output_name)
    live_ids = {id(n) for n in live}
    unused = [n.name or n.output[0] for n in m.graph.node
              if id(n) not in live_ids and not _is_pair_node(n, ctx.pairs)]
    for n in live:
        if _is_pair_node(n, ctx.pairs):
            continue
        ctx.node = n
        h = registry.HANDLERS[n.op_type]
        try:
            h.fn(ctx, n)
        except SnnccError:
            raise
        except Exception as e:  # noqa: BLE001 - malformed graphs: one clean error
            raise ctx.error(f"conversion failed ({type(e).__name__}: {str(e)[:160]})",
                            "the node looks malformed; re-export the model with a current exporter") from None
    ctx.node = None
    out = ctx.values.get(ctx.output_name)
    if out is None:
        raise ModelError(f"the model output {ctx.output_name!r} was not produced",
                         "the model graph is malformed; re-export it")
    if out.fperm is not None:
        raise ModelError("the model output is a flattened NCHW feature map (not logits)",
                         "end the network with a Linear/Gemm layer")
    # IR nodes left unused by reshape aliasing (e.g. a flatten undone by an Unsqueeze) are dropped
    dead = [n for n in g.nx if g.nx.out_degree(n) == 0 and n != out.node and g.node(n).op != "input"]
    while dead:
        for n in dead:
            g.remove_node(n)
        dead = [n for n in g.nx if g.nx.out_degree(n) == 0 and n != out.node and g.node(n).op != "input"]
    sinks = [n.name for n in g.nodes() if g.nx.out_degree(n.name) == 0]
    if sinks != [out.node]:
        raise ModelError(f"the converted graph has dangling branches {sorted(set(sinks) - {out.node})}",
                         "remove unused outputs/branches before exporting")
    sink = g.node(out.node)
    if sink.op in ("relu", "input"):
        raise ModelError(f"the model output {ctx.output_name!r} is a {sink.op} (no logits layer)",
                         "end the network with a Linear/Gemm (or 1x1 conv) logits layer")
    sink.onnx_tensor = ctx.logits_name
    sink.onnx_perm = tuple(out.perm) if out.rank == 4 else None
    g.meta.update({
        "input_layout": layout,
        "input_name": in_name,
        "onnx_input_shape": tuple(int(d) for d in dims[1:]),
        "onnx_batch": ctx.static_batch,     # the exported model's fixed batch size (None: dynamic)
        "output_name": ctx.logits_name,
        "onnx_output_name": ctx.output_name,
        "preprocess": {"scale": 1.0, "mean": None, "std": None},
        "frontend": {"opset": ctx.opset, "dropped_output_ops": list(ctx.dropped),
                     "folded_ops": len(folded.folded),
                     "unused_nodes": unused},   # nodes the output does not depend on (not converted)
    })
    g.onnx_model = m
    try:
        from snncc.ir import verify
        verify(g)
    except IRError as e:
        if "non-finite" in str(e):   # the model's own weights: NaN/inf from a diverged or broken checkpoint
            raise ModelError(f"the model's weights contain NaN or inf ({e})",
                             "check the trained checkpoint and re-export it") from None
        raise ModelError(f"the converted graph is inconsistent: {e}", "please report this model") from None
    return g
