"""Conversion presets and the option vocabularies the CLI and the API share.

Plain Python with no imports beyond typing, so ``snncc --help`` (cli.py) can offer the
same choices the API validates without loading numpy/onnx.
"""
from __future__ import annotations

from typing import Any

#: conversion presets; explicit arguments override them
PRESETS: dict[str, dict[str, Any]] = {
    # exactly the paper: layer-wise 99.9th-percentile lambda (of the positive activations, as in the
    # reference code of the data-based normalisation it cites), shortcut lambda (Eq. 6),
    # membranes start at 0, compensation factor searched on calibration data (Eq. 12-14)
    "paper": dict(percentile=99.9, percentile_of="positive", channel_wise=False, shortcut_norm=True, init_membrane=0.0,
                  compensate="auto", calibrate_bias=0, maxgate="leader"),
    # the most accurate post-training conversion snncc can show (docs/results.md)
    "best": dict(percentile=99.9, percentile_of="positive", channel_wise=True, shortcut_norm=True, init_membrane=0.5,
                 compensate="none", calibrate_bias=64, maxgate="max"),
}


#: the compensation search's defaults (``--zeta-timesteps``, ``--zeta-images``): each zeta candidate is
#: simulated for this many steps on this many calibration images
ZETA_TIMESTEPS = 256
ZETA_IMAGES = 256

#: bias calibration (``--calibrate-bias-group``): hidden layers corrected per simulation, in topological
#: order; chosen on held-out calibration images (snncc.calibration)
LAYERS_PER_GROUP = 2

#: spiking max pooling rules (docs/runtime.md): ``leader`` -- the paper's gate, pass the spikes of the
#: input with the highest count so far; ``max`` -- the output's count follows the window's highest count
MAXGATE_RULES = ("leader", "max")

#: which activations lambda's percentile is taken over: ``all`` of them, or only the ``positive`` ones
#: (the nonzero ReLU outputs, as in Rueckauer et al.'s reference implementation)
PERCENTILE_OF = ("all", "positive")

#: precisions a ``.snn`` can store its weights and biases in (``--param-dtype``, ``meta['param_dtype']``):
#: float32 is the runtime's own precision and half the file; float64 keeps the IR's values exactly
PARAM_DTYPES = ("float32", "float64")
PARAM_DTYPE = "float32"
