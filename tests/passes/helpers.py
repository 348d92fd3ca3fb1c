import numpy as np

from snncc.analog import run_analog
from snncc.ir import EdgeKind, Graph, verify
from snncc.passes import PassContext


def ctx(x=None, **kw):
    kw.setdefault("progress", False)
    return PassContext(calib=x, **kw)


def assert_analog_equal(g0: Graph, g1: Graph, x, scale=1.0, tol=1e-9):
    a, b = run_analog(g0, x), run_analog(g1, x) * scale
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol * max(1.0, float(np.abs(a).max())))


def signature(g: Graph):
    """Everything that matters about a graph, for idempotence checks."""
    nodes = []
    for n in g.nodes():
        nodes.append((n.name, n.op, tuple(n.shape), repr(sorted(n.attrs.items())),
                      tuple((k, v.tobytes()) for k, v in sorted(n.params.items()))))
    edges = []
    for u, v, d in sorted(g.nx.edges(data=True), key=lambda e: (e[0], e[1])):
        s = d["syn"]
        edges.append((u, v, d["kind"], d["port"], None if s is None else
                      (s.op, repr(sorted(s.attrs.items())), tuple((k, w.tobytes()) for k, w in sorted(s.params.items())))))
    return nodes, edges, repr(sorted((k, repr(v)) for k, v in g.meta.items() if k != "passes"))


def twice_equals_once(run, make, c=None):
    g1, _ = make()
    g2, _ = make()
    g1 = run(g1, c)
    g2 = run(run(g2, c), c)
    verify(g1)
    verify(g2)
    assert signature(g1) == signature(g2)


def kinds(g):
    return {(u, v): (d["kind"], None if d["syn"] is None else d["syn"].op) for u, v, d in g.nx.edges(data=True)}


__all__ = ["ctx", "assert_analog_equal", "signature", "twice_equals_once", "kinds", "EdgeKind"]
