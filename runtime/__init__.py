"""Event-driven integrate-and-fire runtime for spiking-level graphs (see docs/runtime.md).

* :class:`Network` / :class:`RunResult` -- the numba event-driven simulator;
* :func:`simulate_reference` -- the dense numpy reference of the same semantics.
"""
import os as _os
import sys as _sys

# Each time step launches several short parallel kernels.  OpenMP's default "active"
# wait makes idle threads spin between them, which on a machine with other work (or
# when another library -- e.g. PyTorch, imported first -- already owns the OpenMP
# runtime) slows the simulation down many times over.  Threads therefore sleep when
# idle, and when the OpenMP runtime is already initialised by PyTorch, numba's own
# "workqueue" layer is used.  Explicit user settings always win.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "NUMBA_THREADING_LAYER" not in _os.environ and "torch" in _sys.modules:
    import numba as _numba
    _numba.config.THREADING_LAYER = "workqueue"

from snncc.runtime.network import Network, RunResult  # noqa: E402
from snncc.runtime.reference import simulate_reference  # noqa: E402

__all__ = ["Network", "RunResult", "simulate_reference"]
