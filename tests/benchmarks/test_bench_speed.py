"""benchmarks/bench_speed.py: the floor row's network is the same network with nothing firing."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bench_speed  # noqa: E402
from digits import CALIB, MODEL, PRE, TEST  # noqa: E402

import snncc  # noqa: E402
from snncc.data import load_arrays  # noqa: E402


def test_silent_network_same_structure_no_spikes_original_untouched():
    cx, _ = load_arrays(CALIB)
    net = snncc.convert(MODEL, cx[:64], calibrate_bias=0, progress=False, **PRE)
    x, y = load_arrays(TEST)
    before = {n.name: {k: v.copy() for k, v in n.params.items()} for n in net.graph.nodes()}
    quiet = bench_speed.silent_network(net)
    assert [n.name for n in quiet.graph.nodes()] == [n.name for n in net.graph.nodes()]
    r = bench_speed.bench_event(quiet, quiet.prepare(x[:8]), y[:8], 20, 1, 8, False)
    assert r["spikes_per_image"] == 0 and r["sops_per_image"] == 0
    for n in net.graph.nodes():                       # the benchmarked network keeps its parameters
        for k, v in n.params.items():
            assert np.array_equal(v, before[n.name][k])
    live = bench_speed.bench_event(net, net.prepare(x[:8]), y[:8], 20, 1, 8, False)
    assert live["spikes_per_image"] > 0


def test_dense_onnxruntime_simulation_predicts_what_the_runtime_predicts():
    """The dense baseline (one onnxruntime session per step) runs the same network: its predictions equal
    the event-driven runtime's at every step, the tiled classifier (compact_dense) included."""
    from snncc import synapses
    cx, _ = load_arrays(CALIB)
    net = snncc.convert(MODEL, cx[:64], calibrate_bias=0, progress=False, **PRE)
    tiles = [synapses.dense_tile(d["syn"]) for p in net.graph.populations() for _, d in net.graph.in_edges(p.name)
             if d["syn"] is not None and d["syn"].op == "dense"]
    assert max(tiles) > 1                     # the classifier after the folded global average pool
    x, _ = load_arrays(TEST)
    xc = net.prepare(x[:16])
    d = bench_speed.bench_dense_ort(net.graph, xc, 24, 1, 8)
    ev = net.runtime.run(xc, 24, progress=False, threads=1).predictions
    assert d["pred_steps"].shape == ev.shape == (16, 24)
    assert np.mean(d["pred_steps"] == ev) >= 0.98       # float32 sums in another order: rare late flips
