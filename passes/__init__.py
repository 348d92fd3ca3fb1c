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
import re
from typing import Callable

from snncc.ir import Graph, verify as _verify

from . import (compact_dense, compensate, eliminate_sums, fold_batchnorm, fold_input_affine, merge_linear,
               normalize, profile_activations)
from .compensate import apply_zeta
from .context import PassContext
from .dump import dump_text

#: the passes, in order (op level -> spiking level)
PIPELINE = [
    fold_batchnorm.run,
    fold_input_affine.run,
    merge_linear.run,
    eliminate_sums.run,
    compact_dense.run,
    profile_activations.run,
    normalize.run,
    compensate.run,
]

PASS_NAMES = [fold_batchnorm.NAME, fold_input_affine.NAME, merge_linear.NAME, eliminate_sums.NAME,
              compact_dense.NAME, profile_activations.NAME, normalize.NAME, compensate.NAME]


def pass_name(fn) -> str:
    """A pass's name: its module's for the pipeline's ``module.run`` functions, else the function's
    own name (``functools.partial`` objects give their function's)."""
    f = getattr(fn, "func", fn)
    name = getattr(f, "__name__", type(f).__name__)
    mod = getattr(f, "__module__", None) or ""
    return mod.rsplit(".", 1)[-1] if name == "run" and mod else name


#: what ``--dump-ir`` writes: ``NN_<pass>.txt``; files of this form left by an earlier run are removed
_DUMP_FILE = re.compile(r"^\d{2}_[A-Za-z0-9_.-]+\.txt$")


def _is_dump(path: str) -> bool:
    """A file ``run_pipeline`` wrote: ``NN_name.txt`` whose first line is a dump title."""
    if not (_DUMP_FILE.match(os.path.basename(path)) and os.path.isfile(path)):
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline().startswith(("# input (", "# after pass "))


def _fresh_dump_dir(d: str) -> None:
    """Create ``d``, or empty it of an earlier run's dump files (anything else, a user's
    ``01_notes.txt`` included, is left alone), so the directory never mixes two runs' passes."""
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if _is_dump(os.path.join(d, f)):
            os.unlink(os.path.join(d, f))


def run_pipeline(graph: Graph, ctx: PassContext, verify: bool = False, dump_ir: str | None = None,
                 on_pass: Callable[[str, Graph], None] | None = None, passes=None) -> Graph:
    """Run ``PIPELINE`` (or ``passes``) in order.

    ``verify``: :func:`snncc.ir.verify` after every pass.  ``dump_ir``: write
    ``DIR/NN_passname.txt`` after every pass (``00_input.txt`` = the graph as
    received; dump files of an earlier run in DIR are removed first).  ``on_pass(name, graph)``
    is called after every pass.  Names: :func:`pass_name`.
    """
    graph.meta.setdefault("preprocess_external", copy.deepcopy(graph.meta.get("preprocess")
                                                               or {"scale": 1.0, "mean": None, "std": None}))
    graph.meta["init_membrane"] = float(ctx.init_membrane)
    if dump_ir:
        _fresh_dump_dir(dump_ir)
        level = "spiking level" if graph.is_spiking_level() else "op level"
        with open(os.path.join(dump_ir, "00_input.txt"), "w") as f:
            f.write(dump_text(graph, f"input ({level})"))
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
