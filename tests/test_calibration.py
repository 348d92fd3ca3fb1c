"""Post-training bias calibration (snncc.calibration) on the digits ResNet."""

import numpy as np
import pytest

import snncc
from snncc.analog import run_analog
from snncc.calibration import calibrate_bias
from snncc.data import subset
from digits import MODEL, CALIB, TEST, PRE

T = 32


def _targets(graph, x):
    """Per-channel mean of the clipped normalised ANN activation of every neuron layer."""
    acts = run_analog(graph, x, keep=True)
    return {p.name: np.clip(np.asarray(acts[p.name]), 0, 1).reshape(len(x), -1, p.channels).mean(axis=(0, 1))
            for p in graph.populations() if p.op == "neuron"}


def _gaps(net, x, targets):
    """Per layer: mean over channels of |target - SNN rate| after T steps."""
    res = net.runtime.run(x, T, progress=False, threads=1, record=list(targets))
    out = {}
    for p in net.graph.populations():
        if p.name in targets:
            rate = np.asarray(res.rates[p.name]).reshape(len(x), -1, p.channels).mean(axis=(0, 1))
            out[p.name] = float(np.mean(np.abs(targets[p.name] - rate)))
    return out


@pytest.mark.parametrize("preset", ["paper", "best"])
def test_calibrate_bias_reduces_rate_gap(preset, monkeypatch, tmp_path):
    from snncc.runtime import network as rn
    net = snncc.convert(MODEL, CALIB, **PRE, preset=preset, calibrate_bias=0, compensate="none", progress=False)
    before = net.graph.copy()
    c, t = np.load(CALIB), np.load(TEST)
    x = net.prepare(c["x"])
    xt, yt = net.prepare(t["x"])[:150], t["y"][:150]
    xs, _ = subset(x, None, 32, seed=2)
    # targets from the uncalibrated network: calibration moves the rates towards them
    tgt_cal, tgt_test = _targets(before, xs), _targets(before, xt)
    gap0_cal, gap0_test = _gaps(net, xs, tgt_cal), _gaps(net, xt, tgt_test)
    acc0 = float(np.mean(net.runtime.run(xt, T, progress=False, threads=1).predictions[:, -1] == yt))

    seen = []
    orig, orig_seg = rn.Network.run, rn.Network.run_segment

    def spy(self, xx, *a, **k):
        seen.append(np.asarray(xx))
        return orig(self, xx, *a, **k)

    def spy_seg(self, xx, *a, **k):
        seen.append(np.asarray(xx))
        return orig_seg(self, xx, *a, **k)
    monkeypatch.setattr(rn.Network, "run", spy)
    monkeypatch.setattr(rn.Network, "run_segment", spy_seg)
    rec = calibrate_bias(net, x, timesteps=T, images=32, progress=False)
    monkeypatch.setattr(rn.Network, "run", orig)
    monkeypatch.setattr(rn.Network, "run_segment", orig_seg)

    # only calibration images were simulated
    calib_rows = {r.tobytes() for r in x}
    assert seen and all(r.tobytes() in calib_rows for s in seen for r in s)

    assert net.graph.meta["bias_calibration"] is rec
    assert rec["timesteps"] == T and rec["images"] == 32
    assert len(rec["mean_abs_gap"]) == 1 and rec["mean_abs_gap"][0] > 0      # rounds=1: one entry

    gap1_cal, gap1_test = _gaps(net, xs, tgt_cal), _gaps(net, xt, tgt_test)
    m0, m1 = np.mean(list(gap0_cal.values())), np.mean(list(gap1_cal.values()))
    assert m1 < 0.5 * m0, (gap0_cal, gap1_cal)
    # it generalises to images it was not fitted on
    assert np.mean(list(gap1_test.values())) < 0.5 * np.mean(list(gap0_test.values()))
    # the deepest layers, where the drift accumulates, improve most
    deep = [p.name for p in net.graph.populations() if p.op == "neuron"][-3:]
    assert all(gap1_cal[k] < gap0_cal[k] for k in deep)

    # only hidden neuron biases moved; weights and the output layer are untouched
    for p in net.graph.populations():
        b0 = before.node(p.name).params.get("bias")
        if p.op == "neuron":
            assert not np.array_equal(p.params["bias"], b0)
            assert p.params["bias"].dtype == b0.dtype and p.params["bias"].shape == b0.shape
        elif b0 is not None:
            np.testing.assert_array_equal(p.params["bias"], b0)
        for u, d in net.graph.in_edges(p.name):
            for k, v in d["syn"].params.items():
                np.testing.assert_array_equal(v, before.edge(u, p.name)["syn"].params[k])
    acc1 = float(np.mean(net.runtime.run(xt, T, progress=False, threads=1).predictions[:, -1] == yt))
    assert acc1 >= acc0 - 0.02
    # and it survives a save/load round trip
    net.save(str(tmp_path / "cal.snn"))
    back = snncc.load(str(tmp_path / "cal.snn")).graph
    assert back.meta["bias_calibration"]["mean_abs_gap"] == pytest.approx(rec["mean_abs_gap"])
    for p in net.graph.populations():
        if p.op == "neuron":
            np.testing.assert_array_equal(back.node(p.name).params["bias"], p.params["bias"])


@pytest.mark.parametrize("per_group, max_sims", [(1, None), (2, None), (3, None), (2, 2), (100, None)])
def test_calibrate_bias_groups_consecutive_layers(per_group, max_sims, monkeypatch):
    """Layers are corrected in consecutive topological groups of ``layers_per_group`` (at most ``max_sims``
    groups), one simulation each, recording exactly that group; every group is corrected from a simulation
    in which all upstream groups already carry their corrected biases."""
    from snncc.runtime import network as rn
    net = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=0, calib_limit=100, progress=False)
    layers = [p.name for p in net.graph.populations() if p.op == "neuron" and "bias" in p.params]
    n = len(layers)
    assert n >= 4
    sims = []                   # per simulation: the layers it recorded and the biases it ran with
    orig = rn.Network.run_segment

    def spy(self, xx, *a, **k):
        sims.append((tuple(k["record"]), {q: net.graph.node(q).params["bias"].copy() for q in layers}))
        return orig(self, xx, *a, **k)
    monkeypatch.setattr(rn.Network, "run_segment", spy)
    x = net.prepare(np.load(CALIB)["x"])
    kw = {} if max_sims is None else {"max_sims": max_sims}
    rec = calibrate_bias(net, x, timesteps=8, images=16, layers_per_group=per_group, progress=False, **kw)
    k = min(-(-n // per_group), max_sims or n)
    assert len(sims) == k == rec["groups"] and rec["layers_per_group"] == per_group
    assert [q for rs, _ in sims for q in rs] == layers          # consecutive, in order, each layer once
    assert max(len(rs) for rs, _ in sims) - min(len(rs) for rs, _ in sims) <= 1
    final = {q: net.graph.node(q).params["bias"] for q in layers}
    done = []
    for rs, biases in sims:
        for q in layers:        # upstream groups corrected already, this group and the later ones not yet
            assert np.array_equal(biases[q], final[q]) == (q in done), (rs, q)
        done += rs
    with pytest.raises(ValueError, match="layers_per_group"):
        calibrate_bias(net, x, timesteps=8, images=16, layers_per_group=0, progress=False)


@pytest.mark.parametrize("per_group, budget", [(1, None), (2, None), (3, None), (2, 0)])
def test_segmented_calibration_equals_whole_prefix_simulations(per_group, budget, monkeypatch):
    """The calibration simulates each group as a segment replaying recorded spike trains (or, over the
    trains' memory budget, with every layer before it); either way it must give bit for bit the biases of
    the plain algorithm, which simulates the whole network once per group."""
    from snncc import calibration
    from snncc.runtime.network import Network
    if budget is not None:
        monkeypatch.setattr(calibration, "TRAINS_BUDGET", budget)
        monkeypatch.setattr(Network, "run_segment", None)      # must not be used
    net = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=0, calib_limit=100, progress=False)
    plain, before = net.graph.copy(), net.graph.copy()
    x = net.prepare(np.load(CALIB)["x"])
    calibrate_bias(net, x, timesteps=12, images=24, layers_per_group=per_group, progress=False)
    xs, _ = subset(x, None, 24, seed=2)
    target = {k: v.reshape(-1) for k, v in _targets(plain, xs).items()}
    layers = [p for p in plain.populations() if p.op == "neuron" and "bias" in p.params]
    groups = [list(g) for g in np.array_split(np.array(layers, dtype=object), -(-len(layers) // per_group))]
    for grp in groups:
        res = Network(plain).run(xs, 12, progress=False, record=[p.name for p in grp])
        for p in grp:
            rate = res.rates[p.name].reshape(len(xs), -1, p.channels).mean(axis=(0, 1))
            # rounded to float32 as it is corrected: the network is stored so (--param-dtype default)
            b = (p.params["bias"] + (target[p.name] - rate)).astype(np.float32)
            p.params["bias"] = b.astype(p.params["bias"].dtype)
    for p in layers:
        np.testing.assert_array_equal(net.graph.node(p.name).params["bias"], p.params["bias"], err_msg=p.name)
        assert not np.array_equal(p.params["bias"], before.node(p.name).params["bias"]), p.name


def test_shared_simulation_rounds_with_damping_equal_the_plain_algorithm():
    """``sequential=False, rounds=2, damping=0.5``: each round corrects every layer from one simulation of
    the whole network, by half its rate gap; the biases and the per-round history must equal a plain
    re-implementation (targets: clipped normalised ANN activations of the uncalibrated network)."""
    from snncc.runtime.network import Network
    net = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=0, calib_limit=100, progress=False)
    plain, before = net.graph.copy(), net.graph.copy()
    x = net.prepare(np.load(CALIB)["x"])
    rec = calibrate_bias(net, x, timesteps=12, images=24, rounds=2, damping=0.5, sequential=False, progress=False)
    xs, _ = subset(x, None, 24, seed=2)
    target = _targets(plain, xs)
    layers = [p for p in plain.populations() if p.op == "neuron" and "bias" in p.params]
    history = []
    for _ in range(2):
        res = Network(plain).run(xs, 12, progress=False, record=[p.name for p in layers])
        gaps = []
        for p in layers:
            gap = target[p.name] - res.rates[p.name].reshape(len(xs), -1, p.channels).mean(axis=(0, 1))
            p.params["bias"] = (p.params["bias"] + 0.5 * gap).astype(np.float32).astype(p.params["bias"].dtype)
            gaps.append(float(np.mean(np.abs(gap))))
        history.append(float(np.mean(gaps)))
    assert rec["rounds"] == 2 and rec["sequential"] is False and rec["groups"] == 1
    assert rec["mean_abs_gap"] == pytest.approx(history, rel=1e-12)
    assert history[1] < history[0]                             # the second round starts closer to the targets
    for p in layers:
        np.testing.assert_array_equal(net.graph.node(p.name).params["bias"], p.params["bias"], err_msg=p.name)
        assert not np.array_equal(p.params["bias"], before.node(p.name).params["bias"]), p.name


def test_calibrate_bias_group_option_reaches_the_network(tmp_path):
    """``calibrate_bias_group`` (``--calibrate-bias-group``) is used by the conversion and recorded in the .snn."""
    said = []
    net = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=8, calibrate_bias_group=3, calib_limit=100, progress=False,
                        log=said.append)
    n = sum(1 for p in net.graph.populations() if p.op == "neuron" and "bias" in p.params)
    assert any(s.startswith(f"bias calibration round 1/1 ({-(-n // 3)} simulations of 100 images, 8 steps)")
               for s in said), said
    assert net.graph.meta["provenance"]["options"]["calibrate_bias_group"] == 3
    assert net.graph.meta["bias_calibration"]["groups"] == -(-n // 3)
    net.save(str(tmp_path / "g.snn"))
    assert snncc.load(str(tmp_path / "g.snn")).graph.meta["bias_calibration"]["layers_per_group"] == 3


def test_init_membrane_search_picks_the_best_scored_start():
    """--init-membrane auto: every candidate is scored on the zeta-search subset; the chosen start is the
    best (ties to the larger), it is what the saved network uses, and re-simulating it reproduces its score."""
    from snncc.calibration import INIT_CANDIDATES, search_init_membrane
    from snncc.compensation import zeta_images
    d = np.load(CALIB)
    net = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=0, calib_limit=200, rate_scale=4, progress=False)
    x = net.prepare(d["x"])
    y = d["y"].astype(np.int64)
    rec = search_init_membrane(net, x, y, timesteps=T, images=64, progress=False)
    accs = {c["init_membrane"]: c["accuracy"] for c in rec["candidates"]}
    assert sorted(accs) == sorted(INIT_CANDIDATES) and rec["criterion"] == "labels" and rec["images"] == 64
    top = max(accs.values())
    assert rec["init_membrane"] == max(v for v, a in accs.items() if a == top)
    assert net.graph.meta["init_membrane"] == rec["init_membrane"] and net.graph.meta["init_membrane_search"] is rec
    assert len(set(accs.values())) > 1                       # the start matters at this T and rate scale
    xs, ys = zeta_images(x, y, 64)
    r = net.run(xs, T, progress=False)
    assert np.mean(r.predictions[:, -1] == ys) == pytest.approx(top)


def test_init_membrane_auto_through_convert_without_labels():
    """Without calibration labels the candidates are scored by agreement with the source model."""
    x = np.load(CALIB)["x"][:200]
    logs = []
    net = snncc.convert(MODEL, x, **PRE, calibrate_bias=0, init_membrane="auto", zeta_timesteps=16, zeta_images=32,
                        progress=False, log=logs.append)
    rec = net.graph.meta["init_membrane_search"]
    assert rec["criterion"] == "ann_agreement" and rec["timesteps"] == 16
    assert net.graph.meta["init_membrane"] == rec["init_membrane"]
    assert net.graph.meta["provenance"]["options"]["init_membrane"] == "auto"
    assert any(s.startswith("initial membrane: chose") for s in logs)
    # the chosen start scores best (ties to the larger), and re-simulating it against the source model's
    # answers on the same images reproduces its score
    from snncc.compensation import zeta_images
    accs = {c["init_membrane"]: c["accuracy"] for c in rec["candidates"]}
    top = max(accs.values())
    assert rec["init_membrane"] == max(v for v, a in accs.items() if a == top)
    xs, _ = zeta_images(net.prepare(x), None, 32)
    r = net.run(xs, 16, progress=False)
    assert np.mean(r.predictions[:, -1] == np.argmax(net.analog(xs), axis=1)) == pytest.approx(top)
