"""The snncc intermediate representation: a DAG of small dataclasses on networkx.

One IR serves every stage of compilation:

* **op level** (what the ONNX front end produces): nodes are ANN operations
  (``conv``, ``batchnorm``, ``relu``, ``add``...) connected by ``EdgeKind.DATA``
  edges (``port`` orders the operands);
* **spiking level** (what the pass pipeline ends with): nodes are *populations*
  (``input``, ``neuron``, ``maxgate``, ``output``) and every edge between them is
  an ``EdgeKind.SYNAPSE`` or ``EdgeKind.SHORTCUT`` edge carrying a
  :class:`Synapse` (a linear map from the source population to the target).

Intermediate states mix both, and :func:`snncc.analog.run_analog` executes any
of them in floating point, so each pass can be checked against onnxruntime.

Conventions
-----------
* Every tensor is **channels-last**: a node's ``shape`` is the per-sample shape
  ``(H, W, C)`` or ``(F,)``; batches are ``(N, H, W, C)`` / ``(N, F)``.
* Conv weights are ``(KH, KW, Cin/groups, Cout)``; dense weights ``(Fin, Fout)``
  where ``Fin`` indexes the source flattened in ``(H, W, C)`` order.
* Spatial pads are ``(top, left, bottom, right)``.
* Analysis results live in ``graph.meta`` (see :data:`META_KEYS`).
"""
from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any, Iterator

import networkx as nx
import numpy as np


class EdgeKind(str, enum.Enum):
    """What an edge means."""

    DATA = "data"          # op-level data flow (ANN tensor passed unchanged)
    SYNAPSE = "synapse"    # weighted connection between populations
    SHORTCUT = "shortcut"  # residual shortcut synapse (identity / option-A map), Eq. 6


class IRError(ValueError):
    """Raised by :func:`verify` when the graph breaks an invariant."""


#: node ops of the op level (produced by the front end, removed by passes)
OP_LEVEL_OPS = frozenset({
    "conv", "dense", "batchnorm", "affine", "relu", "add", "pad", "avgpool",
    "globalavgpool", "maxpool", "flatten", "subsample",
})
#: population ops of the spiking level
POPULATION_OPS = frozenset({"input", "neuron", "maxgate", "output"})
#: synapse operators carried by SYNAPSE / SHORTCUT edges
SYNAPSE_OPS = frozenset({"conv", "dense", "avgpool", "identity", "subsample_pad"})

#: documented ``graph.meta`` keys
META_KEYS = {
    "preprocess": "dict(scale: float, mean: list[C], std: list[C]) applied to raw data before the input node",
    "input_layout": "'NCHW' or 'NHWC': layout of the ONNX model's input",
    "input_name": "name of the ONNX graph input",
    "onnx_input_shape": "ONNX input shape without batch, in the model's own layout",
    "output_name": "name of the ONNX output tensor (logits)",
    "activations": "profiling result: {node: {'layer': float, 'channel': list[float] | None, 'max': float}}",
    "percentile": "percentile used for lambda (e.g. 99.9, or 100 for max)",
    "percentile_of": "which activations the percentile is taken over: 'all' or 'positive' (nonzero ReLU outputs)",
    "lambda": "{population: float | list[float]} normalisation factors actually applied (rate scale included)",
    "rate_scale": "K: every lambda was multiplied by K, so every firing rate is 1/K of the unscaled network's",
    "channel_wise": "bool, whether lambda is per channel",
    "shortcut_norm": "bool, whether shortcut edges were scaled by lambda_in/lambda_out",
    "init_membrane": "initial membrane potential as a fraction of threshold",
    "init_membrane_search": "record of --init-membrane auto: timesteps, images, criterion, candidates (accuracy "
                            "per initial membrane), the chosen init_membrane",
    "zeta": "compensation factor applied (1.0 = none)",
    "param_dtype": "'float32' or 'float64' (absent: float64): the precision the .snn stores weights and biases in",
    "compensation": "fit and search record of compensation (p, q, adj_r2, candidates)",
    "provenance": "source model hash, options, snncc version",
    "passes": "names of the passes applied, in order",
    "preprocess_external": "the preprocessing the ONNX model itself expects of raw data (before "
                           "fold_input_affine moved in-graph normalisation into 'preprocess')",
    "onnx_output_name": "name of the ONNX graph output (after a dropped Softmax, 'output_name' is its input)",
    "onnx_batch": "the ONNX model's fixed batch size, or None when the batch is dynamic",
    "frontend": "import record: opset, dropped_output_ops, folded_ops, unused_nodes",
    "normalized": "bool, set by normalize (lambda applied)",
    "profile": "how activations were profiled: images, source ('onnxruntime' or 'analog')",
    "bias_calibration": "record of the post-training bias calibration: timesteps, images, rounds, groups, "
                        "mean_abs_gap per round",
    "summary": "ops before conversion and seconds taken",
    "exit_stable": "the stable-prediction exit's window: {'m': int, 'chosen': 'given'} (--exit-stable M) or the "
                   "--exit-stable auto record (m, mean_steps, loss, loss_se, tolerance, timesteps, images, criterion, loss_at)",
}


@dataclass
class Node:
    """One IR node: an ANN op (op level) or a population (spiking level).

    ``onnx_tensor``/``onnx_perm``: the ONNX tensor whose value equals this node's
    output, and the axes permutation taking that tensor (batch included) to
    channels-last; used by activation profiling through onnxruntime.
    """

    name: str
    op: str
    shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    onnx_tensor: str | None = None
    onnx_perm: tuple[int, ...] | None = None

    @property
    def channels(self) -> int:
        return int(self.shape[-1])


@dataclass
class Synapse:
    """A linear map carried by a SYNAPSE/SHORTCUT edge (see :mod:`snncc.synapses`)."""

    op: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


class Graph:
    """A DAG of :class:`Node` on a ``networkx.DiGraph``.

    Node ``n`` is stored as ``g.nx.nodes[n]['node']``; edge data are
    ``kind`` (:class:`EdgeKind`), ``port`` (operand order, DATA edges) and
    ``syn`` (:class:`Synapse` or ``None``).
    """

    def __init__(self) -> None:
        self.nx = nx.DiGraph()
        self.meta: dict[str, Any] = {}
        #: the ONNX ModelProto this graph came from (not serialised)
        self.onnx_model = None

    # -- construction ----------------------------------------------------
    def add_node(self, node: Node) -> Node:
        if node.name in self.nx:
            raise IRError(f"duplicate node name {node.name!r}")
        self.nx.add_node(node.name, node=node)
        return node

    def add_edge(self, src: str, dst: str, kind: EdgeKind = EdgeKind.DATA,
                 port: int = 0, syn: Synapse | None = None) -> None:
        if self.nx.has_edge(src, dst):
            raise IRError(f"parallel edge {src!r} -> {dst!r} is not supported")
        for end in (src, dst):
            if end not in self.nx:
                raise IRError(f"edge {src!r} -> {dst!r} names no node {end!r}")
        self.nx.add_edge(src, dst, kind=EdgeKind(kind), port=port, syn=syn)

    def remove_node(self, name: str) -> None:
        self.nx.remove_node(name)

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.nx:
            name, i = f"{base}_{i}", i + 1
        return name

    # -- access ------------------------------------------------------------
    def node(self, name: str) -> Node:
        return self.nx.nodes[name]["node"]

    def __contains__(self, name: str) -> bool:
        return name in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def nodes(self) -> Iterator[Node]:
        """Nodes in a deterministic topological order."""
        for n in nx.lexicographical_topological_sort(self.nx, key=self._topo_key):
            yield self.node(n)

    def _topo_key(self, n: str) -> str:
        return n

    def edge(self, src: str, dst: str) -> dict:
        return self.nx.edges[src, dst]

    def in_edges(self, name: str) -> list[tuple[str, dict]]:
        """Incoming ``(src, data)`` pairs sorted by port, then source name."""
        es = [(u, d) for u, _, d in self.nx.in_edges(name, data=True)]
        return sorted(es, key=lambda e: (e[1]["port"], e[0]))

    def preds(self, name: str) -> list[str]:
        return [u for u, _ in self.in_edges(name)]

    def succs(self, name: str) -> list[str]:
        return sorted(self.nx.successors(name))

    def by_op(self, *ops: str) -> list[Node]:
        return [n for n in self.nodes() if n.op in ops]

    @property
    def input(self) -> Node:
        (n,) = self.by_op("input")
        return n

    @property
    def output(self) -> Node:
        outs = [n for n in self.nodes() if self.nx.out_degree(n.name) == 0]
        if len(outs) != 1:
            raise IRError(f"graph must have exactly one sink, found {[o.name for o in outs]}")
        return outs[0]

    def populations(self) -> list[Node]:
        """Spiking-level populations in topological order (input first)."""
        return [n for n in self.nodes() if n.op in POPULATION_OPS]

    def is_spiking_level(self) -> bool:
        return all(n.op in POPULATION_OPS for n in self.nodes())

    def copy(self) -> "Graph":
        g = Graph()
        g.nx = copy.deepcopy(self.nx)
        g.meta = copy.deepcopy(self.meta)
        g.onnx_model = self.onnx_model
        return g

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes():
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts


def _check_param(what: str, v) -> None:
    """A parameter: an array of finite numbers."""
    if np.asarray(v).dtype.kind not in "fiub":
        raise IRError(f"{what} has dtype {np.asarray(v).dtype}, not numbers")
    if not np.all(np.isfinite(v)):
        raise IRError(f"{what} has non-finite values")


def verify(graph: Graph) -> None:
    """Check the IR invariants; raise :class:`IRError` naming the first violation.

    * the graph is a DAG with one ``input`` node (no in-edges) and one sink;
    * every node op is known and every node is reachable from the input;
    * DATA edges carry no synapse; SYNAPSE/SHORTCUT edges carry a known one;
    * populations (``neuron``/``output``) receive only SYNAPSE/SHORTCUT edges;
    * shapes are consistent: each node's declared shape equals the shape its
      op infers from its operands (synapses included), and params are finite.
    """
    from snncc import ops as _ops          # local: ops imports ir
    from snncc import synapses as _syn

    g = graph.nx
    if not nx.is_directed_acyclic_graph(g):
        raise IRError("graph has a cycle")
    inputs = [n for n in graph.nodes() if n.op == "input"]
    if len(inputs) != 1:
        raise IRError(f"expected exactly one input node, found {len(inputs)}")
    inp = inputs[0]
    if g.in_degree(inp.name):
        raise IRError("input node has incoming edges")
    sink = graph.output
    reach = nx.descendants(g, inp.name) | {inp.name}
    for node in graph.nodes():
        if node.name not in reach:
            raise IRError(f"node {node.name!r} is not reachable from the input")
        if node.op not in _ops.OPS:
            raise IRError(f"node {node.name!r} has unknown op {node.op!r}")
        if any(int(d) <= 0 for d in node.shape):
            raise IRError(f"node {node.name!r} has shape {tuple(node.shape)} with an empty dimension")
        for k, v in node.params.items():
            _check_param(f"node {node.name!r} param {k!r}", v)
        if node.op in ("neuron", "output") and "bias" in node.params and node.shape \
                and np.shape(node.params["bias"]) != (node.shape[-1],):
            raise IRError(f"node {node.name!r} bias has shape {np.shape(node.params['bias'])}, expected "
                          f"({node.shape[-1]},) (one per channel)")
        cap = node.attrs.get("cap")
        if cap is not None:
            c = np.asarray(cap)
            if c.dtype.kind not in "fiu" or not np.all(np.isfinite(c)) or not np.all(c > 0):
                raise IRError(f"node {node.name!r} has cap {cap!r}; expected positive finite numbers")
        in_shapes = []
        for src, d in graph.in_edges(node.name):
            kind = d["kind"]
            if not isinstance(kind, EdgeKind):
                raise IRError(f"edge {src}->{node.name} has no EdgeKind")
            src_shape = graph.node(src).shape
            if kind is EdgeKind.DATA:
                if d["syn"] is not None:
                    raise IRError(f"DATA edge {src}->{node.name} carries a synapse")
                if node.op in ("neuron", "output"):
                    raise IRError(f"population {node.name!r} has a DATA in-edge from {src!r}")
                in_shapes.append(tuple(src_shape))
            else:
                syn = d["syn"]
                if syn is None or syn.op not in _syn.SYNAPSES:
                    raise IRError(f"{kind.value} edge {src}->{node.name} has no known synapse")
                for k, v in syn.params.items():
                    _check_param(f"synapse {src}->{node.name} param {k!r}", v)
                try:
                    in_shapes.append(tuple(_syn.SYNAPSES[syn.op].out_shape(syn, tuple(src_shape))))
                except (ValueError, KeyError, IndexError) as e:
                    raise IRError(f"synapse {src}->{node.name}: {e}") from None
        try:
            inferred = _ops.OPS[node.op].infer_shape(node, in_shapes)
        except (ValueError, KeyError, IndexError) as e:
            raise IRError(f"node {node.name!r} ({node.op}): {e}") from None
        if tuple(inferred) != tuple(node.shape):
            raise IRError(f"node {node.name!r} ({node.op}) declares shape {tuple(node.shape)} "
                          f"but its operands give {tuple(inferred)}")
    if sink.op not in ("output", "dense", "conv", "flatten", "add", "affine", "globalavgpool"):
        raise IRError(f"sink {sink.name!r} has op {sink.op!r}; expected logits")
