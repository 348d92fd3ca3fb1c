"""The pass pipeline: op-level IR -> spiking-level IR (see docs/passes.md).

>>> from snncc.passes import PassContext, run_pipeline
>>> g = run_pipeline(import_onnx("model.onnx"), PassContext(calib=x_nhwc_raw))

Each pass is a module with ``run(graph, ctx) -> Graph`` and a docstring giving
its maths, pre/post-conditions and guarantee.  ``PIPELINE`` is the literal
ordered list of pass functions.
"""
from __future__ import annotations

import copy
import os
from typing import Callable

from snncc.ir import Graph, verify as _verify

from . import (compensate, eliminate_sums, fold_batchnorm, fold_input_affine, merge_linear, normalize,
               profile_activations)
from .compensate import apply_zeta
from .context import PassContext
from .dump import dump_text

#: the passes, in order (op level -> spiking level)
PIPELINE = [
    fold_batchnorm.run,
    fold_input_affine.run,
    merge_linear.run,
    eliminate_sums.run,
    profile_activations.run,
    normalize.run,
    compensate.run,
]

PASS_NAMES = [fold_batchnorm.NAME, fold_input_affine.NAME, merge_linear.NAME, eliminate_sums.NAME,
              profile_activations.NAME, normalize.NAME, compensate.NAME]


def pass_name(fn) -> str:
    return fn.__module__.rsplit(".", 1)[-1]


def run_pipeline(graph: Graph, ctx: PassContext, verify: bool = False, dump_ir: str | None = None,
                 on_pass: Callable[[str, Graph], None] | None = None, passes=None) -> Graph:
    """Run ``PIPELINE`` (or ``passes``) in order.

    ``verify``: :func:`snncc.ir.verify` after every pass.  ``dump_ir``: write
    ``DIR/NN_passname.txt`` after every pass (``00_input.txt`` = the graph as
    received).  ``on_pass(name, graph)`` is called after every pass.
    """
    graph.meta.setdefault("preprocess_external", copy.deepcopy(graph.meta.get("preprocess")
                                                               or {"scale": 1.0, "mean": None, "std": None}))
    graph.meta["init_membrane"] = float(ctx.init_membrane)
    if dump_ir:
        os.makedirs(dump_ir, exist_ok=True)
        with open(os.path.join(dump_ir, "00_input.txt"), "w") as f:
            f.write(dump_text(graph, "input (op level)"))
    if verify:
        _verify(graph)
    for i, fn in enumerate(PIPELINE if passes is None else passes, 1):
        name = pass_name(fn)
        graph = fn(graph, ctx)
        graph.meta.setdefault("passes", []).append(name)
        if verify:
            _verify(graph)
        if dump_ir:
            with open(os.path.join(dump_ir, f"{i:02d}_{name}.txt"), "w") as f:
                f.write(dump_text(graph, f"after pass {i}: {name}"))
        if on_pass is not None:
            on_pass(name, graph)
    return graph


__all__ = ["PIPELINE", "PASS_NAMES", "PassContext", "run_pipeline", "apply_zeta", "dump_text"]
