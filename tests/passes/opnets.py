"""Hand-built op-level graphs (what the front end produces) for the pass tests."""
from __future__ import annotations

import numpy as np

from snncc.ir import EdgeKind, Graph, Node, verify
from snncc.ops import OPS


class OB:
    """Op-level builder; every node's shape is inferred from its operands."""

    def __init__(self, in_shape, seed=0, dtype=np.float64):
        self.g = Graph()
        self.g.meta.update({"preprocess": {"scale": 1.0, "mean": None, "std": None},
                            "input_layout": "NHWC", "input_name": "x"})
        self.rng = np.random.default_rng(seed)
        self.dt = dtype
        self.k = 0
        self.g.add_node(Node("in", "input", tuple(in_shape)))

    def _add(self, op, srcs, attrs=None, params=None, name=None):
        self.k += 1
        name = name or f"{op}{self.k}"
        n = Node(name, op, (), dict(attrs or {}), {k: np.asarray(v, self.dt) for k, v in (params or {}).items()})
        n.shape = tuple(OPS[op].infer_shape(n, [self.g.node(s).shape for s in srcs]))
        self.g.add_node(n)
        for i, s in enumerate(srcs):
            self.g.add_edge(s, name, EdgeKind.DATA, i)
        return name

    def shape(self, n):
        return self.g.node(n).shape

    def r(self, *shape, lo=-1.0, hi=1.0):
        return self.rng.uniform(lo, hi, size=shape)

    def conv(self, src, cout, k=3, stride=1, pads=None, bias=True, groups=1):
        cin = self.shape(src)[-1]
        p = k // 2 if pads is None else pads
        p = (p,) * 4 if np.isscalar(p) else tuple(p)
        w = self.r(k, k, cin // groups, cout) * np.sqrt(2.0 / (k * k * cin / groups))
        params = {"weight": w}
        if bias:
            params["bias"] = self.r(cout, lo=-0.2, hi=0.2)
        return self._add("conv", [src], {"stride": (stride, stride), "pads": p, "groups": groups}, params)

    def bn(self, src):
        c = self.shape(src)[-1]
        return self._add("batchnorm", [src], {"eps": 1e-5},
                         {"scale": self.r(c, lo=0.5, hi=1.5), "bias": self.r(c, lo=-0.3, hi=0.3),
                          "mean": self.r(c, lo=-0.3, hi=0.3), "var": self.r(c, lo=0.5, hi=2.0)})

    def relu(self, src, cap=None, tensor=True):
        n = self._add("relu", [src], {"cap": cap})
        if tensor:
            self.g.node(n).onnx_tensor = n
        return n

    def add(self, *srcs):
        return self._add("add", list(srcs))

    def dense(self, src, fout, bias=True):
        fin = self.shape(src)[0]
        p = {"weight": self.r(fin, fout) * np.sqrt(2.0 / fin)}
        if bias:
            p["bias"] = self.r(fout, lo=-0.2, hi=0.2)
        return self._add("dense", [src], {}, p)

    def affine(self, src, s=None, t=None):
        c = self.shape(src)[-1]
        s = self.r(c, lo=0.5, hi=2.0) if s is None else s
        t = self.r(c, lo=-0.5, hi=0.5) if t is None else t
        return self._add("affine", [src], {}, {"scale": s, "shift": t})

    def flatten(self, src):
        return self._add("flatten", [src])

    def gap(self, src):
        return self._add("globalavgpool", [src])

    def maxpool(self, src, k=2, s=2, pads=(0, 0, 0, 0)):
        n = self._add("maxpool", [src], {"kernel": (k, k), "stride": (s, s), "pads": pads})
        self.g.node(n).onnx_tensor = n
        return n

    def avgpool(self, src, k=2, s=2, pads=(0, 0, 0, 0), cip=False):
        n = self._add("avgpool", [src], {"kernel": (k, k), "stride": (s, s), "pads": pads, "count_include_pad": cip})
        self.g.node(n).onnx_tensor = n
        return n

    def pad(self, src, pads=(0, 0, 0, 0), cpad=(0, 0)):
        return self._add("pad", [src], {"pads": pads, "cpad": cpad, "value": 0.0})

    def subsample(self, src, stride=2, offset=(0, 0)):
        return self._add("subsample", [src], {"stride": (stride, stride), "offset": offset})

    def done(self, sink):
        self.g.node(sink).onnx_tensor = sink
        verify(self.g)
        return self.g


def resnet(seed=0, hw=8, c=(3, 4, 8, 12), n_out=5, with_input_affine=True, dtype=np.float64):
    """Stem, an identity block, an option-A block (subsample + channel pad), an
    option-B block (conv+BN projection), GAP + flatten + dense."""
    b = OB((hw, hw, c[0]), seed, dtype)
    x = b.affine("in") if with_input_affine else "in"
    x = b.relu(b.bn(b.conv(x, c[1], bias=False)))
    # identity block
    y = b.relu(b.bn(b.conv(x, c[1])))
    y = b.bn(b.conv(y, c[1]))
    x = b.relu(b.add(y, x))
    # option A
    y = b.relu(b.bn(b.conv(x, c[2], stride=2)))
    y = b.bn(b.conv(y, c[2]))
    cp = c[2] - c[1]
    s = b.pad(b.subsample(x, 2), cpad=(cp // 2, cp - cp // 2))
    x = b.relu(b.add(y, s))
    # option B
    y = b.relu(b.bn(b.conv(x, c[3], stride=2)))
    y = b.bn(b.conv(y, c[3]))
    s = b.bn(b.conv(x, c[3], k=1, stride=2, pads=0, bias=False))
    x = b.relu(b.add(s, y))
    out = b.dense(b.flatten(b.gap(x)), n_out)
    g = b.done(out)
    xs = b.rng.uniform(0, 1, size=(16, hw, hw, c[0]))
    return g, xs


def plain(seed=0, hw=12, n_out=4, dtype=np.float64):
    """Capped ReLU, max pool, avg pool, explicit zero pad before a conv, a
    standalone BN, dense hidden layer."""
    b = OB((hw, hw, 2), seed, dtype)
    x = b.relu(b.bn(b.conv("in", 6)), cap=6.0)
    x = b.maxpool(x)
    x = b.relu(b.conv(b.pad(x, (1, 1, 1, 1)), 8, pads=0))
    x = b.bn(x)                                   # standalone BN after a ReLU -> affine
    x = b.relu(b.conv(x, 8, k=1, pads=0))         # affine before an unpadded conv: merged
    x = b.avgpool(x)
    x = b.relu(b.dense(b.flatten(x), 10))
    out = b.dense(x, n_out)
    g = b.done(out)
    xs = b.rng.uniform(-1, 1, size=(16, hw, hw, 2))
    return g, xs
