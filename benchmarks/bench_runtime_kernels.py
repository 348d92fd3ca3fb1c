"""Throughput of the event-driven runtime on a synthetic ResNet-20-sized spiking graph.

    python benchmarks/bench_runtime_kernels.py --n 64 --T 350 --threads 2

Builds CIFAR-10 ResNet-20 (option-A shortcuts, 3x16/32/64 channel stages, global
average pool, dense 64->10) at the spiking level with random weights whose scale
gives firing rates of roughly 10-45% (converted networks show a few percent to ~40%),
then reports SOPs, firing rates and GSOP/s (total and per thread).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from snncc.argtypes import positive_int
from snncc.ir import EdgeKind, Graph, Node, Synapse, verify


def resnet20_graph(seed: int = 0, gain: float = 1.0, bias: float = 0.01, classes: int = 10) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph()
    g.meta["preprocess"] = {"scale": 1 / 255, "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
    g.meta["init_membrane"] = 0.5
    g.add_node(Node("input", "input", (32, 32, 3)))

    def conv_w(cin, cout):
        return (rng.standard_normal((3, 3, cin, cout)) * gain / np.sqrt(9 * cin)).astype(np.float32)

    def neuron(name, shape):
        b = np.full(shape[-1], bias, np.float32) + rng.uniform(-bias, bias, shape[-1]).astype(np.float32)
        g.add_node(Node(name, "neuron", shape, params={"bias": b}))

    def conv(src, dst, cin, cout, stride=1):
        g.add_edge(src, dst, EdgeKind.SYNAPSE,
                   syn=Synapse("conv", {"stride": (stride, stride), "pads": (1, 1, 1, 1)}, {"weight": conv_w(cin, cout)}))

    neuron("conv1", (32, 32, 16))
    conv("input", "conv1", 3, 16)
    prev, hw, c = "conv1", 32, 16
    for stage, cout in enumerate((16, 32, 64)):
        for blk in range(3):
            stride = 2 if (stage > 0 and blk == 0) else 1
            ohw = hw // stride
            a, b = f"s{stage}b{blk}a", f"s{stage}b{blk}b"
            neuron(a, (ohw, ohw, cout))
            conv(prev, a, c, cout, stride)
            neuron(b, (ohw, ohw, cout))
            conv(a, b, cout, cout)
            if stride == 1 and c == cout:
                g.add_edge(prev, b, EdgeKind.SHORTCUT,
                           syn=Synapse("identity", {}, {"scale": np.full(cout, 0.8, np.float32)}))
            else:
                cp = (cout - c) // 2
                g.add_edge(prev, b, EdgeKind.SHORTCUT,
                           syn=Synapse("subsample_pad", {"stride": (2, 2), "offset": (0, 0), "cpad": (cp, cout - c - cp)},
                                       {"scale": np.full(cout, 0.8, np.float32)}))
            prev, hw, c = b, ohw, cout
    g.add_node(Node("pool", "neuron", (1, 1, 64), params={"bias": np.zeros(64, np.float32)}))
    g.add_edge(prev, "pool", EdgeKind.SYNAPSE,
               syn=Synapse("avgpool", {"kernel": (8, 8), "stride": (8, 8), "pads": (0, 0, 0, 0)},
                           {"scale": np.full(64, 2.0, np.float32)}))
    g.add_node(Node("logits", "output", (classes,), params={"bias": np.zeros(classes, np.float32)}))
    g.add_edge("pool", "logits", EdgeKind.SYNAPSE,
               syn=Synapse("dense", {}, {"weight": (rng.standard_normal((64, classes)) * 0.2).astype(np.float32)}))
    verify(g)
    return g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=positive_int, default=32, help="images")
    ap.add_argument("--T", type=positive_int, default=350, help="time steps")
    ap.add_argument("--threads", type=positive_int, default=None)
    ap.add_argument("--batch", type=positive_int, default=32)
    ap.add_argument("--gain", type=float, default=1.0)
    ap.add_argument("--early-exit", action="store_true")
    a = ap.parse_args()

    import numba

    from snncc.runtime import Network

    g = resnet20_graph(gain=a.gain)
    net = Network(g)
    x = np.random.default_rng(1).integers(0, 256, (a.n, 32, 32, 3)).astype(np.float32)
    net.run(x[:2], 2, progress=False, threads=a.threads)           # compile / load the numba cache
    t0 = time.perf_counter()
    res = net.run(x, a.T, progress=False, threads=a.threads, batch_size=a.batch, early_exit=a.early_exit)
    wall = time.perf_counter() - t0
    threads = min(a.threads, numba.config.NUMBA_NUM_THREADS) if a.threads else numba.get_num_threads()   # used
    sops = float(res.total_sops.sum())
    spikes = float(sum(v.sum() for v in res.spikes.values()))
    print(f"{a.n} images x T={a.T}, {threads} threads, batch {a.batch}: {wall:.2f} s "
          f"({wall / a.n * 1e3:.1f} ms/image, mean steps {res.mean_steps:.1f})")
    print(f"SOPs/image {sops / a.n / 1e6:.1f} M, spikes/image {spikes / a.n / 1e3:.1f} k")
    print(f"throughput {sops / wall / 1e9:.2f} GSOP/s = {sops / wall / 1e9 / threads:.2f} GSOP/s per thread")
    rates = ", ".join(f"{k}:{v:.3f}" for k, v in res.firing_rate.items())
    print(f"firing rates: {rates}")


if __name__ == "__main__":
    main()
