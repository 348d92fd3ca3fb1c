"""Event-driven integrate-and-fire runtime for spiking-level graphs (see docs/runtime.md).

* :class:`Network` / :class:`RunResult` -- the numba event-driven simulator;
* :func:`simulate_reference` -- the dense numpy reference of the same semantics.
"""
from snncc.runtime.network import Network, RunResult
from snncc.runtime.reference import simulate_reference

__all__ = ["Network", "RunResult", "simulate_reference"]
