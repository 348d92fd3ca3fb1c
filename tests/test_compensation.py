"""Propagation-error compensation search (snncc.compensation, Eq. 9-14) on synthetic data and the digits net."""
from types import SimpleNamespace

import numpy as np
import pytest

import snncc
from snncc import compensation as C
from snncc.data import subset
from digits import MODEL, CALIB, PRE



# ---------------------------------------------------------------------------------------------
# fit, candidates, depths
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p,q", [(0.02, 1.3), (0.5, 0.8), (1e-3, 1.05)])
def test_fit_exponential_recovers_p_q(p, q):
    depths = np.arange(1, 11)
    fit = C.fit_exponential(depths, p * q ** depths)
    assert fit["p"] == pytest.approx(p, rel=1e-9)
    assert fit["q"] == pytest.approx(q, rel=1e-9)
    assert fit["adj_r2"] == pytest.approx(1.0, abs=1e-9)
    assert fit["n"] == 10


def test_fit_exponential_noisy_data():
    rng = np.random.default_rng(0)
    depths = np.arange(1, 21)
    e = 0.02 * 1.2 ** depths * np.exp(rng.normal(0, 0.3, depths.size))
    fit = C.fit_exponential(depths, e)
    assert fit["adj_r2"] < 0.999
    assert fit["adj_r2"] > 0.8                       # still clearly exponential
    assert fit["q"] == pytest.approx(1.2, rel=0.05)
    # adjusted R^2 from its definition, independently
    y = np.log(e)
    A = np.stack([np.ones(depths.size), depths], axis=1)
    res = y - A @ np.linalg.lstsq(A, y, rcond=None)[0]
    r2 = 1 - res @ res / np.sum((y - y.mean()) ** 2)
    assert fit["adj_r2"] == pytest.approx(1 - (1 - r2) * (depths.size - 1) / (depths.size - 2), rel=1e-12)
    # pure noise: no fit
    flat = C.fit_exponential(depths, np.exp(rng.normal(0, 1, depths.size)))
    assert flat["adj_r2"] < 0.3


def test_fit_exponential_skips_nonpositive_and_needs_three_points():
    fit = C.fit_exponential([1, 2, 3, 4, 5], [0.1, 0.0, 0.1 * 1.5 ** 2, -1.0, 0.1 * 1.5 ** 4])
    assert fit["n"] == 3 and fit["q"] == pytest.approx(1.5) and fit["p"] == pytest.approx(0.1 / 1.5)
    few = C.fit_exponential([1, 2], [0.1, 0.2])
    assert few["n"] == 2 and np.isnan(few["p"]) and np.isnan(few["q"]) and np.isnan(few["adj_r2"])


@pytest.mark.parametrize("q,tau_max", [(1.05, 1.5), (1.3, 1.33), (0.8, 2.0), (float("nan"), 1.2), (1.02, 1.0),
                                       (1.001, 1.004)])
def test_candidates_inside_open_interval(q, tau_max):
    c = C.candidates(q, tau_max, steps=6, step=0.01)
    assert c == sorted(c) and c[0] == 1.0 and len(set(c)) == len(c)
    for z in c[1:]:
        assert 1.0 < z < tau_max
    assert len(c) <= 13
    if np.isfinite(q) and q > 1 and 1 < q < tau_max:
        assert round(q, 6) in c                       # the fitted growth factor itself is tried


def test_candidates_saturated_network_gets_no_compensation():
    assert C.candidates(1.2, 1.0) == [1.0]
    assert C.candidates(1.2, 0.5) == [1.0]


# ---------------------------------------------------------------------------------------------
# on the digits ResNet
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calib():
    c = np.load(CALIB)
    return c["x"], c["y"]


def _paper_net():
    # the paper's layer-wise conversion, compensation left to the test
    return snncc.convert(MODEL, CALIB, **PRE, preset="paper", compensate="none", progress=False)


def test_depth_of_digits_resnet():
    g = _paper_net().graph
    d = C.depth_of(g)
    assert d == {"input": 0, "Relu": 1, "layer1/Relu": 2, "layer1/Relu_1": 3, "layer2/Relu": 4,
                 "layer2/Relu_1": 5, "layer3/Relu": 6, "layer3/Relu_1": 7, "linear/Gemm": 7}
    for n in g.populations():                         # a neuron is one deeper than its deepest source
        if n.op == "neuron":
            assert d[n.name] == 1 + max(d[u] for u in g.preds(n.name))


def test_layer_errors_groups_by_depth():
    g = _paper_net().graph
    depth = C.depth_of(g)
    names = [n.name for n in g.populations() if n.op == "neuron"]
    fake = SimpleNamespace(prop_error={n: (-1) ** i * 0.01 * (i + 1) for i, n in enumerate(names)})
    ds, es = C.layer_errors(g, fake)
    assert ds == sorted({depth[n] for n in names})
    want = {}
    for i, n in enumerate(names):
        want.setdefault(depth[n], []).append(0.01 * (i + 1))
    assert es == pytest.approx([np.mean(want[k]) for k in ds])


@pytest.mark.parametrize("accs, patience, n_tried", [
    ([.80, .84, .86, .85, .83, .82, .70, .60], 3, 6),    # peak at the 3rd, three below it: stop at the 6th
    ([.80, .84, .86, .85, .86, .85, .83, .82], 3, 8),    # a tie with the best resets the count: all tried
    ([.80, .84, .86, .85, .83, .82, .70, .60], None, 8),  # no patience: all tried
    ([.80, .79, .78, .90, .50, .40, .30, .20], 3, 7),    # a late peak is still found
    ([.80, .79, .78, .77, .90], 3, 4),                   # ...unless 3 in a row fall below the best first
])
def test_scan_stops_after_patience_candidates_below_the_best(accs, patience, n_tried):
    zs = [1.0 + i / 100 for i in range(len(accs))]
    called = []

    def score(z):
        called.append(z)
        return {"zeta": z, "accuracy": accs[zs.index(z)]}
    out = C.scan(zs, score, patience)
    assert called == zs[:n_tried] and [s["zeta"] for s in out] == called
    assert [s["accuracy"] for s in out] == accs[:n_tried]


def test_search_zeta_on_digits_uses_calibration_data_only(calib, monkeypatch):
    from snncc.passes import apply_zeta
    from snncc.runtime import network as rn
    x, y = calib
    net = _paper_net()
    before = net.graph.copy()
    xs_all = net.prepare(x)
    seen = []
    orig_run = rn.Network.run

    def spy(self, xx, *a, **k):
        seen.append(np.asarray(xx).copy())
        return orig_run(self, xx, *a, **k)
    monkeypatch.setattr(rn.Network, "run", spy)
    rec = C.search_zeta(net, xs_all, y, timesteps=32, images=32, progress=False)
    monkeypatch.setattr(rn.Network, "run", orig_run)

    # record: the fit, the range and the choice, stored in the graph
    assert net.graph.meta["compensation"] is rec
    fit = rec["fit"]
    assert set(fit) >= {"p", "q", "adj_r2"}
    assert fit["n"] == 7 and np.isfinite(fit["p"]) and fit["p"] > 0 and np.isfinite(fit["q"]) and fit["q"] > 0
    assert fit["adj_r2"] <= 1.0
    assert rec["depths"] == list(range(1, 8)) and len(rec["errors"]) == 7
    assert rec["tau_max"] > 1.0
    zs = [c["zeta"] for c in rec["candidates"]]
    assert zs + rec["untried"] == C.candidates(fit["q"], rec["tau_max"])
    if rec["untried"]:   # stopped early: the last `patience` (3) tried all scored below the best
        best = max(c["accuracy"] for c in rec["candidates"])
        assert all(c["accuracy"] < best for c in rec["candidates"][-3:])
    assert rec["zeta"] in zs and 1.0 <= rec["zeta"] < rec["tau_max"]
    assert net.graph.meta["zeta"] == rec["zeta"]
    assert rec["criterion"] == "labels" and rec["images"] == 32 and rec["timesteps"] == 32
    # the rule: best calibration accuracy, ties to the smaller factor
    best = max(c["accuracy"] for c in rec["candidates"])
    assert rec["zeta"] == min(c["zeta"] for c in rec["candidates"] if c["accuracy"] == best)

    # every simulation ran on calibration images, and only on the seeded subset of them
    xsub, ysub = subset(xs_all, y, 32, seed=1)
    assert len(seen) == len(zs)                       # one baseline + one per zeta != 1
    for s in seen:
        np.testing.assert_array_equal(s, xsub)
    # the recorded accuracies are those of the candidates on that calibration subset
    ok = {}
    for c in rec["candidates"]:
        trial = before.copy()
        apply_zeta(trial, c["zeta"])
        r = rn.Network(trial).run(xsub, 32, progress=False, threads=1)
        ok[c["zeta"]] = (r.predictions[:, -1] == ysub).astype(float)
        assert c["accuracy"] == float(np.mean(ok[c["zeta"]]))
    # ... and their gain over zeta = 1 is the paired per-image difference, with its standard error
    for c in rec["candidates"]:
        d = ok[c["zeta"]] - ok[1.0]
        assert c["gain"] == pytest.approx(c["accuracy"] - rec["candidates"][0]["accuracy"])
        assert c["gain_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(d.size))
    assert rec["candidates"][0]["zeta"] == 1.0 and rec["candidates"][0]["gain_se"] == 0.0
    # the fit and tau_max, recomputed from a baseline run of the uncompensated network
    depth = C.depth_of(before)
    last = max((p for p in before.populations() if p.op == "neuron"), key=lambda p: depth[p.name])
    r0 = rn.Network(before).run(xsub, 32, progress=False, record=(last.name,))
    per_depth: dict = {}
    for p in before.populations():
        if p.op == "neuron":
            per_depth.setdefault(depth[p.name], []).append(abs(float(np.mean(r0.prop_error[p.name]))))
    es = [float(np.mean(per_depth[d])) for d in sorted(per_depth)]
    assert rec["depths"] == sorted(per_depth) and rec["errors"] == pytest.approx(es, rel=1e-9)
    assert rec["tau_max"] == pytest.approx(1 / np.max(np.mean(r0.rates[last.name], axis=0)), rel=1e-9)
    slope, icpt = np.polyfit(rec["depths"], np.log(es), 1)          # E = p q^l, least squares in log space
    r2 = np.corrcoef(rec["depths"], np.log(es))[0, 1] ** 2
    assert fit["q"] == pytest.approx(np.exp(slope)) and fit["p"] == pytest.approx(np.exp(icpt))
    assert fit["adj_r2"] == pytest.approx(1 - (1 - r2) * 6 / 5)     # n = 7 depths, one regressor
    # the chosen zeta was applied to the network: hidden biases scaled, output untouched
    for p in net.graph.populations():
        b0 = before.node(p.name).params.get("bias")
        if p.op == "neuron":
            np.testing.assert_allclose(p.params["bias"], rec["zeta"] * b0, rtol=1e-5, atol=1e-7)
        elif p.op == "output":
            np.testing.assert_array_equal(p.params["bias"], b0)
    assert net._net is None                           # the runtime is rebuilt from the compensated graph


def test_compensated_conversion_saves_exactly_what_it_returns(tmp_path):
    """--compensate auto scales the rounded float32 parameters by zeta: apply_zeta rounds them again, so the
    file loads exactly the network the conversion returned."""
    from snncc import snnfile
    net = snncc.convert(MODEL, CALIB, **PRE, preset="paper", zeta_timesteps=16, zeta_images=16, progress=False)
    assert net.graph.meta["zeta"] > 1.0 and net.graph.meta["param_dtype"] == "float32"
    net.save(str(tmp_path / "z.snn"))
    back = snncc.load(str(tmp_path / "z.snn")).graph
    for a, b in zip(snnfile._param_arrays(net.graph), snnfile._param_arrays(back)):
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
            if a[k].dtype == np.float64:
                assert np.array_equal(a[k], a[k].astype(np.float32))


def test_search_zeta_without_labels_uses_ann_agreement(calib):
    x, _ = calib
    net = _paper_net()
    rec = C.search_zeta(net, net.prepare(x), None, timesteps=16, images=16, steps=2, progress=False)
    assert rec["criterion"] == "ann_agreement"
    tried = [c["zeta"] for c in rec["candidates"]]
    assert tried + rec["untried"] == C.candidates(rec["fit"]["q"], rec["tau_max"], 2)
    assert net.graph.meta["compensation"]["zeta"] == rec["zeta"] == net.graph.meta["zeta"]


def test_search_zeta_starts_from_the_uncompensated_network(calib):
    """Searching a network that already has a zeta gives the same record as searching it uncompensated."""
    from snncc.passes import apply_zeta
    x, y = calib
    a, b = _paper_net(), _paper_net()
    apply_zeta(b.graph, 1.05)
    ra = C.search_zeta(a, a.prepare(x), y, timesteps=16, images=16, steps=2, progress=False)
    rb = C.search_zeta(b, b.prepare(x), y, timesteps=16, images=16, steps=2, progress=False)
    assert ra["errors"] == pytest.approx(rb["errors"], rel=1e-5)
    assert [c["accuracy"] for c in ra["candidates"]] == [c["accuracy"] for c in rb["candidates"]]
    assert a.graph.meta["zeta"] == b.graph.meta["zeta"] == ra["zeta"] == rb["zeta"]


def test_search_zeta_without_labels_targets_the_given_source_predictions(calib):
    """ann_pred (the source model's predictions on the zeta images) is what label-free candidates agree with."""
    x, _ = calib
    net = _paper_net()
    xs, _ = C.zeta_images(net.prepare(x), None, 16)
    wrong = (np.argmax(net.analog(xs), axis=1) + 1) % net.n_classes     # never the network's own answer
    rec = C.search_zeta(net, net.prepare(x), None, timesteps=64, images=16, steps=1, progress=False, ann_pred=wrong)
    assert rec["criterion"] == "ann_agreement"
    assert max(c["accuracy"] for c in rec["candidates"]) < 0.5
