"""The options and data every pass receives (:class:`PassContext`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def _nolog(msg: str) -> None:
    pass


@dataclass
class PassContext:
    """Options of one pipeline run.

    ``calib``: raw calibration images, channels-last ``(N, H, W, C)`` (or ``(N, F)``),
    already layout-checked by the caller; the user preprocessing in
    ``graph.meta['preprocess']`` has *not* been applied to them.
    ``percentile``: p of Eq. 4-5 (100 = maximum), over all activations
    (``percentile_of='all'``) or the positive ones only (``'positive'``).  ``channel_wise``:
    one lambda per channel instead of per layer.  ``shortcut_norm``: scale shortcut synapses by
    lambda_in/lambda_out (Eq. 6); False keeps them at weight 1 (the paper's Table 2
    baseline).  ``init_membrane``: recorded in ``meta`` only (the runtime uses it).
    ``zeta``: compensation factor of Eq. 14 (None = no compensation).  ``rate_scale``: K > 0
    multiplies every lambda (``normalize``): every firing rate / K.
    """

    calib: np.ndarray | None = None
    percentile: float = 99.9
    percentile_of: str = "all"
    channel_wise: bool = False
    shortcut_norm: bool = True
    init_membrane: float = 0.0
    zeta: float | None = None
    rate_scale: float = 1.0
    batch_size: int = 64
    progress: bool = True
    log: Callable[[str], None] = field(default=_nolog)
