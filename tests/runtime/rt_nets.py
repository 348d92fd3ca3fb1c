"""Hand-built spiking-level graphs for the runtime tests."""
from __future__ import annotations

import numpy as np

from snncc.ir import EdgeKind, Graph, Node, Synapse, verify


class B:
    """Tiny builder: ``b = B((H, W, C)); b.neuron('n1', shape, bias); b.conv('in', 'n1', w, ...)``."""

    def __init__(self, in_shape, init_membrane=0.0):
        self.g = Graph()
        self.g.meta["preprocess"] = {"scale": 1.0, "mean": None, "std": None}
        self.g.meta["init_membrane"] = init_membrane
        self.g.add_node(Node("in", "input", tuple(in_shape)))

    def neuron(self, name, shape, bias=None):
        c = shape[-1]
        b = np.zeros(c, np.float32) if bias is None else np.broadcast_to(np.asarray(bias, np.float32), (c,)).copy()
        self.g.add_node(Node(name, "neuron", tuple(shape), params={"bias": b}))
        return name

    def output(self, name, n, bias=None):
        b = np.zeros(n, np.float32) if bias is None else np.asarray(bias, np.float32)
        self.g.add_node(Node(name, "output", (n,), params={"bias": b}))
        return name

    def maxgate(self, name, src, shape, kernel, stride, pads=(0, 0, 0, 0)):
        self.g.add_node(Node(name, "maxgate", tuple(shape),
                             attrs={"kernel": tuple(kernel), "stride": tuple(stride), "pads": tuple(pads)}))
        self.g.add_edge(src, name, EdgeKind.DATA)
        return name

    def conv(self, src, dst, w, stride=(1, 1), pads=(0, 0, 0, 0), groups=1, kind=EdgeKind.SYNAPSE):
        self.g.add_edge(src, dst, kind, syn=Synapse("conv", {"stride": tuple(stride), "pads": tuple(pads),
                                                             "groups": groups},
                                                    {"weight": np.asarray(w, np.float32)}))

    def dense(self, src, dst, w):
        self.g.add_edge(src, dst, EdgeKind.SYNAPSE, syn=Synapse("dense", {}, {"weight": np.asarray(w, np.float32)}))

    def avgpool(self, src, dst, kernel, stride, scale, pads=(0, 0, 0, 0)):
        self.g.add_edge(src, dst, EdgeKind.SYNAPSE,
                        syn=Synapse("avgpool", {"kernel": tuple(kernel), "stride": tuple(stride), "pads": tuple(pads)},
                                    {"scale": np.asarray(scale, np.float32)}))

    def identity(self, src, dst, scale, kind=EdgeKind.SHORTCUT):
        self.g.add_edge(src, dst, kind, syn=Synapse("identity", {}, {"scale": np.asarray(scale, np.float32)}))

    def subsample_pad(self, src, dst, stride, cpad, scale, offset=(0, 0)):
        self.g.add_edge(src, dst, EdgeKind.SHORTCUT,
                        syn=Synapse("subsample_pad", {"stride": tuple(stride), "offset": tuple(offset),
                                                      "cpad": tuple(cpad)},
                                    {"scale": np.asarray(scale, np.float32)}))

    def done(self):
        verify(self.g)
        return self.g


def dyadic(rng, shape, lo=-4, hi=5, den=8):
    """Random multiples of 1/den in [lo/den, hi/den): float arithmetic on them is exact."""
    return (rng.integers(lo, hi, size=shape) / den).astype(np.float32)


def random_resnet(seed=0, hw=8, c0=2, c1=4, c2=8, n_out=5):
    """A small ResNet-like DAG exercising every synapse op and a maxgate.

    in -conv3x3-> a1 -maxgate 2x2-> m1 -conv3x3-> r1 -conv3x3-> r2 (+identity m1)
       -conv3x3 s2-> d1 -conv3x3-> d2 (+subsample_pad r2) -avgpool 2x2-> p -dense-> out
       plus a dense skip d1 -> out.
    """
    rng = np.random.default_rng(seed)
    b = B((hw, hw, c0))
    h1 = hw
    b.neuron("a1", (h1, h1, c1), dyadic(rng, c1, 0, 3))
    b.conv("in", "a1", dyadic(rng, (3, 3, c0, c1), -2, 4), pads=(1, 1, 1, 1))
    h2 = h1 // 2
    b.maxgate("m1", "a1", (h2, h2, c1), (2, 2), (2, 2))
    b.neuron("r1", (h2, h2, c1), dyadic(rng, c1, 0, 2))
    b.conv("m1", "r1", dyadic(rng, (3, 3, c1, c1), -3, 5), pads=(1, 1, 1, 1))
    b.neuron("r2", (h2, h2, c1), dyadic(rng, c1, -1, 2))
    b.conv("r1", "r2", dyadic(rng, (3, 3, c1, c1), -3, 5), pads=(1, 1, 1, 1))
    b.identity("m1", "r2", dyadic(rng, c1, 4, 9))
    h3 = (h2 + 2 - 3) // 2 + 1
    b.neuron("d1", (h3, h3, c2), dyadic(rng, c2, 0, 2))
    b.conv("r2", "d1", dyadic(rng, (3, 3, c1, c2), -3, 5), stride=(2, 2), pads=(1, 1, 1, 1))
    b.neuron("d2", (h3, h3, c2), dyadic(rng, c2, -1, 2))
    b.conv("d1", "d2", dyadic(rng, (3, 3, c2, c2), -3, 5), pads=(1, 1, 1, 1))
    cp = (c2 - c1) // 2
    b.subsample_pad("r2", "d2", (2, 2), (cp, c2 - c1 - cp), dyadic(rng, c2, 4, 9))
    h4 = h3 // 2
    b.neuron("p", (h4, h4, c2))
    b.avgpool("d2", "p", (2, 2), (2, 2), dyadic(rng, c2, 4, 9))
    b.output("out", n_out, dyadic(rng, n_out, -2, 3))
    b.dense("p", "out", dyadic(rng, (h4 * h4 * c2, n_out), -4, 5))
    b.dense("d1", "out", dyadic(rng, (h3 * h3 * c2, n_out), -2, 3))
    g = b.done()
    x = dyadic(rng, (6, hw, hw, c0), 0, 9)
    return g, x


def stable_exit_steps(net, x, T, m, **kw):
    """What ``net.run(x, T, exit_stable=m)`` must do, from a full traced run of ``net`` (a runtime ``Network``):
    the step after which each image stops -- the first ``s < T`` with ``s >= first + m`` (``first``: the first
    step, 0-based, at which a spike reached the output, 0 if the input feeds it) whose prediction the ``m - 1``
    steps before it share, else ``T`` -- and the full run's per-step predictions."""
    res = net.run(x, T, progress=False, trace=True, **kw)
    out = next(p for p in net.pops if p.op == "output")
    srcs = [s for s, _ in net.graph.in_edges(out.name)]
    n = len(x)
    if net.input_name in srcs:
        first = np.zeros(n, np.int64)
    else:
        fired = sum(res.trains[s].reshape(n, T, -1).sum(-1) for s in srcs) > 0
        first = np.where(fired.any(1), fired.argmax(1), T)
    steps = np.full(n, T)
    for i, p in enumerate(res.predictions):
        for s in range(max(first[i] + m, 1), T):
            if (p[s - m:s] == p[s - 1]).all():
                steps[i] = s
                break
    return steps, res.predictions
