"""The event-driven runtime must reproduce the dense numpy reference exactly (dyadic weights)."""
import numpy as np
import pytest

from rt_nets import B, dyadic, random_resnet, stable_exit_steps

from snncc.exitsearch import exit_steps
from snncc.ir import EdgeKind, Node, Synapse
from snncc.nn import conv_out_hw
from snncc.runtime import Network, simulate_reference
from snncc.runtime.network import pack_trains, unpack_trains


def _check_identical(g, x, T, **kw):
    ref = simulate_reference(g, x, T)
    res = Network(g).run(x, T, trace=True, progress=False, **kw)
    n = x.shape[0]
    active_any = False
    for name, tr in ref["spikes"].items():
        got = res.trains[name]
        assert np.array_equal(got, tr.reshape(n, T, -1)), f"spike trains differ in {name}"
        assert np.array_equal(res.spikes[name], tr.reshape(n, -1).sum(1))
        active_any |= bool(tr.any())
    assert active_any
    assert np.array_equal(res.potential_trace, ref["potentials"].reshape(n, T, -1))
    assert np.array_equal(res.predictions, ref["predictions"])
    assert np.array_equal(res.potentials, ref["potentials"][:, -1].reshape(n, -1))
    v0 = float(g.meta.get("init_membrane", 0.0))      # E = (V(T) - V(0)) / T
    for name, v in ref["membrane"].items():
        assert res.prop_error[name] == pytest.approx(float(np.mean((v.astype(np.float64) - v0) / T)), rel=1e-6,
                                                     abs=1e-9)
    # the untraced run goes in time blocks (populations run several steps each, in order):
    # the same simulation, whatever the block length, partial last block included
    for block in (1, 5, 64):
        net = Network(g)
        net.block = block
        kw2 = {k: v for k, v in kw.items() if k != "early_exit"}
        run = net.run(x, T, progress=False, record=list(ref["counts"]), **kw2)
        assert np.array_equal(run.predictions, ref["predictions"]), f"block {block}"
        assert np.array_equal(run.potentials, ref["potentials"][:, -1].reshape(n, -1))
        for name, c in ref["counts"].items():
            assert np.array_equal(run.spikes[name], c.reshape(n, -1).sum(1)), f"block {block}: {name}"
            np.testing.assert_allclose(run.rates[name] * T, c.reshape(n, -1), rtol=1e-12, err_msg=name)
        for name, v in ref["membrane"].items():
            assert run.prop_error[name] == pytest.approx(float(np.mean((v.astype(np.float64) - v0) / T)),
                                                         rel=1e-6, abs=1e-9)
    # `until`: a prefix of the populations (topological order) runs exactly as in the full run
    names = [p.name for p in Network(g).pops]
    for cut in sorted({0, (len(names) - 1) // 2, len(names) - 2}):     # names[-1] is the output
        until = names[cut]
        pre = names[:names.index(until) + 1]
        run = Network(g).run(x, T, progress=False, record=pre, until=until,
                             **{k: v for k, v in kw.items() if k != "early_exit"})
        assert set(run.spikes) <= set(pre) and set(run.rates) == set(pre)
        assert (run.predictions == -1).all() and not run.accuracy_at
        for name in pre:
            if name in ref["counts"]:
                np.testing.assert_allclose(run.rates[name] * T, ref["counts"][name].reshape(n, -1), rtol=1e-12,
                                           err_msg=f"until {until}: {name}")
    # segments replaying recorded spike trains (bias calibration's plan, groups of 1 and 2 populations):
    # every segment's populations spike exactly as in the full run
    from snncc.calibration import _segments
    spiking = [p for p in g.populations() if p.op != "input" and p.op != "output"]
    neurons = [p for p in spiking if p.op == "neuron"]       # max gates then fall between groups
    for pops, size in ((spiking, 1), (spiking, 2), (neurons, 1)):
        groups = [pops[i:i + size] for i in range(0, len(pops), size)]
        for seg in _segments(g, groups):
            rates, kept = Network(g).run_segment(x, T, seg["first"], seg["last"], seg["replay"], keep=seg["keep"],
                                                 record=[p.name for p in seg["group"]], batch_size=3)
            seg["store"].update(kept)
            for p in seg["group"]:
                np.testing.assert_allclose(rates[p.name] * T, ref["counts"][p.name].reshape(n, -1), rtol=1e-12,
                                           err_msg=f"segment {seg['first']}..{seg['last']}: {p.name}")
            for k, tr in kept.items():
                want = ref["spikes"][k].reshape(n, T, -1)
                assert tr.shape == (n, T, -(-want.shape[2] // 8)), k          # bit-packed
                assert np.array_equal(unpack_trains(tr, want.shape[2]), want), k
                assert np.array_equal(tr, pack_trains(want)), k
    return ref, res


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resnet_block_dag_identical(seed):
    g, x = random_resnet(seed)
    _, res = _check_identical(g, x, 24, batch_size=4)
    assert all(v.sum() > 0 for k, v in res.spikes.items())


def test_odd_sizes_identical():
    """Populations whose sizes are not multiples of 8 (108, 27, 20, 5 neurons): the segments' bit-packed
    spike trains end in a partial byte."""
    g, x = random_resnet(3, hw=6, c0=1, c1=3, c2=5)
    assert any(p.size % 8 for p in Network(g).pops)
    _, res = _check_identical(g, x, 24, batch_size=4)
    assert sum(v.sum() > 0 for v in res.spikes.values()) >= 4


def test_wide_channels_identical():
    """16/20 channels: the scatters' whole-vector path (16 and 48-float rows), vectors plus a scalar
    tail (20, 40, 60 floats), runs of 2 and 4 spikes at one position, and the strided generic conv."""
    g, x = random_resnet(4, hw=6, c0=3, c1=16, c2=20)
    _, res = _check_identical(g, x, 24, batch_size=4)
    assert sum(v.sum() > 0 for v in res.spikes.values()) >= 5


def test_channels_multiple_of_16_without_own_body_identical():
    """48 channels: the fast conv's body for a multiple of 16 other than 16/32/64 (vector count known only
    at run time), and 48-float rows in the strided generic conv."""
    g, x = random_resnet(5, hw=8, c0=2, c1=16, c2=48)
    _, res = _check_identical(g, x, 20, batch_size=3)
    assert res.spikes["d2"].sum() > 0 and res.spikes["d1"].sum() > 0


def test_varied_geometry_identical():
    """Strided conv with asymmetric pads, grouped conv, overlapping padded maxgate,
    padded avgpool, subsample_pad with offset, dense from a maxgate, init membrane."""
    rng = np.random.default_rng(7)
    b = B((7, 7, 2), init_membrane=0.5)
    b.neuron("a", (7, 7, 4), dyadic(rng, 4, 0, 3))
    b.conv("in", "a", dyadic(rng, (3, 3, 2, 4), -2, 5), pads=(1, 1, 1, 1))
    # overlapping maxgate 3x3 stride 1 pad 1 on a (7x7x4)
    b.maxgate("m", "a", (7, 7, 4), (3, 3), (1, 1), (1, 1, 1, 1))
    # stride 2, pads (0, 0, 1, 1): (7 + 1 - 3)//2 + 1 = 3
    b.neuron("s", (3, 3, 4), dyadic(rng, 4, 0, 2))
    b.conv("a", "s", dyadic(rng, (3, 3, 4, 4), -3, 5), stride=(2, 2), pads=(0, 0, 1, 1))
    # subsample_pad offset (1, 1) stride 2 from 7x7 -> 3x3, channel pad (0, 0)
    b.subsample_pad("m", "s", (2, 2), (0, 0), dyadic(rng, 4, 2, 9), offset=(1, 1))
    # grouped conv 4 -> 6 channels, groups 2, 2x2 kernel, no pad: 3x3 -> 2x2
    b.neuron("gc", (2, 2, 6), dyadic(rng, 6, 0, 2))
    b.conv("s", "gc", dyadic(rng, (2, 2, 2, 6), -2, 6), groups=2)
    # padded avgpool 2x2 stride 2 pads (1,1,1,1) on 7x7 -> 4x4 (divisors 1, 2, 4)
    b.neuron("p", (4, 4, 4))
    b.avgpool("m", "p", (2, 2), (2, 2), dyadic(rng, 4, 4, 9), pads=(1, 1, 1, 1))
    b.output("out", 4, dyadic(rng, 4, -2, 3))
    b.dense("gc", "out", dyadic(rng, (24, 4), -4, 5))
    b.dense("p", "out", dyadic(rng, (64, 4), -2, 3))
    b.dense("m", "out", dyadic(rng, (196, 4), -1, 2))
    g = b.done()
    x = dyadic(rng, (5, 7, 7, 2), 0, 9)
    _check_identical(g, x, 20, batch_size=3, threads=2)   # the parallel path too


def test_input_edge_into_output_and_threads():
    rng = np.random.default_rng(3)
    b = B((4, 4, 1))
    b.neuron("a", (4, 4, 2), [0.125, 0.25])
    b.conv("in", "a", dyadic(rng, (1, 1, 1, 2), 0, 8))
    b.output("out", 3)
    b.dense("a", "out", dyadic(rng, (32, 3)))
    b.dense("in", "out", dyadic(rng, (16, 3)))
    g = b.done()
    x = dyadic(rng, (4, 4, 4, 1), 0, 9)
    _check_identical(g, x, 10, threads=1)


def test_preprocess_applied():
    g, x = random_resnet(4)
    g.meta["preprocess"] = {"scale": 0.5, "mean": [0.25, 0.0], "std": [0.5, 0.25]}
    _check_identical(g, x, 12)


def _exit_case(seed, T=60):
    """A random ResNet with 4 classes, its images plus 10 dyadic ones, and its full run of T steps."""
    g, x = random_resnet(seed, n_out=4)
    rng = np.random.default_rng(seed)
    x = np.concatenate([x, dyadic(rng, (10,) + x.shape[1:], 0, 9)])
    net = Network(g)
    return net, x, T, net.run(x, T, progress=False, batch_size=7)


@pytest.mark.parametrize("seed", [0, 5])
def test_early_exit_is_certified(seed):
    net, x, T, full = _exit_case(seed)
    ee = net.run(x, T, progress=False, early_exit=True, batch_size=7)
    assert np.array_equal(ee.predictions[:, -1], full.predictions[:, -1])
    assert (ee.steps_run <= T).all()
    saved = ee.steps_run < T
    # predictions after the exit repeat the certified answer
    for i in np.flatnonzero(saved):
        assert (ee.predictions[i, ee.steps_run[i]:] == full.predictions[i, -1]).all()
    # up to the exit step the run is the full run
    for i in range(len(x)):
        s = ee.steps_run[i]
        assert np.array_equal(ee.predictions[i, :s], full.predictions[i, :s])
    for k in full.sops:
        assert (ee.sops[k] <= full.sops[k]).all()


@pytest.mark.parametrize("seed, m", [(0, 1), (0, 4), (5, 9), (7, 25)])
def test_exit_stable_stops_after_m_equal_predictions(seed, m):
    net, x, T, full = _exit_case(seed)
    want, pred = stable_exit_steps(net, x, T, m)
    assert np.array_equal(pred, full.predictions)
    assert want.min() < T                       # the rule fires on these nets
    st = net.run(x, T, progress=False, exit_stable=m, batch_size=7)
    assert np.array_equal(st.steps_run, want)
    # the numpy form of the rule (snncc.exitsearch), from the full run's predictions and first inputs
    steps, answers = exit_steps(full.predictions, full.first_input, m)
    assert np.array_equal(steps, want) and np.array_equal(answers, st.predictions[:, -1])
    for i, s in enumerate(want):                # the full run up to the exit, then its answer then
        assert np.array_equal(st.predictions[i, :s], full.predictions[i, :s])
        assert (st.predictions[i, s:] == full.predictions[i, s - 1]).all()
    for k in full.sops:
        assert (st.sops[k] <= full.sops[k]).all()
    # with the certified exit as well, an image stops at whichever rule fires first
    ee = net.run(x, T, progress=False, early_exit=True, batch_size=7)
    both = net.run(x, T, progress=False, early_exit=True, exit_stable=m, batch_size=7)
    assert np.array_equal(both.steps_run, np.minimum(ee.steps_run, want))
    # off: 0 or None is the full run
    assert np.array_equal(net.run(x, T, progress=False, exit_stable=0).predictions, full.predictions)


def test_early_exit_saves_steps():
    # a net whose output is dominated by a constant bias gap: certified early
    b = B((2, 2, 1))
    b.neuron("a", (2, 2, 2), [0.125, 0.0])
    b.conv("in", "a", np.full((1, 1, 1, 2), 0.25, np.float32))
    b.output("out", 3, [0.0, 0.5, 0.0])
    b.dense("a", "out", np.array([[0.125, -0.125, 0.0]] * 8, np.float32))
    g = b.done()
    x = np.ones((3, 2, 2, 1), np.float32)
    T = 100
    full = Network(g).run(x, T, progress=False)
    ee = Network(g).run(x, T, progress=False, early_exit=True)
    assert np.array_equal(ee.predictions[:, -1], full.predictions[:, -1])
    assert (ee.steps_run < T).all()
    assert ee.sops["out"].sum() < full.sops["out"].sum()


def test_early_exit_random_nets_save_steps():
    saved = 0
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        b = B((6, 6, 1))
        b.neuron("a", (6, 6, 4), dyadic(rng, 4, 0, 2))
        b.conv("in", "a", dyadic(rng, (3, 3, 1, 4), -1, 4), pads=(1, 1, 1, 1))
        b.output("out", 3, dyadic(rng, 3, -4, 5))
        b.dense("a", "out", dyadic(rng, (144, 3), -1, 2) / 8)
        g = b.done()
        x = dyadic(rng, (16, 6, 6, 1), 0, 9)
        full = Network(g).run(x, 80, progress=False)
        ee = Network(g).run(x, 80, progress=False, early_exit=True)
        assert np.array_equal(ee.predictions[:, -1], full.predictions[:, -1])
        saved += int((ee.steps_run < 80).sum())
    assert saved > 0


@pytest.mark.parametrize("stride,pads,dilation,groups,cout", [
    ((2, 1), (1, 0, 0, 2), (1, 1), 1, 6),     # fast path with stride along H only, asymmetric pads
    ((2, 1), (1, 0, 0, 2), (1, 1), 1, 16),    # the same into 16 channels (the spike-by-spike body)
    ((1, 1), (2, 1, 2, 1), (2, 1), 1, 16),    # fast path with dilation along H only
    ((1, 1), (2, 2, 2, 2), (2, 2), 1, 6),     # dilation -> general path
    ((1, 2), (0, 1, 1, 0), (1, 1), 2, 6),     # stride along W, grouped
])
def test_conv_geometries_identical(stride, pads, dilation, groups, cout):
    rng = np.random.default_rng(11)
    b = B((6, 7, 2))
    b.neuron("a", (6, 7, 4), dyadic(rng, 4, 0, 3))
    b.conv("in", "a", dyadic(rng, (1, 1, 2, 4), 0, 6))
    oh, ow = conv_out_hw(6, 7, (3, 3), stride, pads, dilation)
    b.neuron("c", (oh, ow, cout), dyadic(rng, cout, 0, 2))
    b.g.add_edge("a", "c", EdgeKind.SYNAPSE, syn=Synapse(
        "conv", {"stride": stride, "pads": pads, "dilation": dilation, "groups": groups},
        {"weight": dyadic(rng, (3, 3, 4 // groups, cout), -3, 5)}))
    b.output("out", 3)
    b.dense("c", "out", dyadic(rng, (oh * ow * cout, 3)))
    g = b.done()
    x = dyadic(rng, (3, 6, 7, 2), 0, 9)
    _, res = _check_identical(g, x, 12)
    assert res.spikes["c"].sum() > 0


def test_early_exit_pairwise_bound():
    """Two classes fed identical weights differ only by a bias: the per-step current
    difference is exactly the bias gap, so the pairwise bound certifies at once, while the
    per-class bounds (lo_c vs hi_k) never could."""
    b = B((2, 2, 1))
    b.neuron("a", (2, 2, 2), [0.25, 0.125])
    b.conv("in", "a", np.full((1, 1, 1, 2), 0.5, np.float32))
    b.output("out", 2, [0.125, 0.0])
    b.dense("a", "out", np.array([[0.5, 0.5]] * 8, np.float32))
    g = b.done()
    net = Network(g)
    assert net._pair[0, 1] == pytest.approx(0.125)
    assert net._lo[0] - net._hi[1] < 0          # the per-class bound cannot certify class 0
    x = np.ones((3, 2, 2, 1), np.float32)
    full = net.run(x, 100, progress=False)
    ee = net.run(x, 100, progress=False, early_exit=True)
    assert np.array_equal(ee.predictions[:, -1], full.predictions[:, -1])
    assert (ee.steps_run <= 2).all()


def test_early_exit_pairwise_bound_conv_into_output():
    """A non-dense synapse into the output: its effective matrix comes from one-hot sources;
    the bound must equal the brute-force one and the exit must stay certified."""
    rng = np.random.default_rng(3)
    b = B((4, 4, 1))
    b.neuron("a", (2, 2, 3), dyadic(rng, 3, 0, 3))
    b.conv("in", "a", dyadic(rng, (3, 3, 1, 3), -2, 5), stride=(2, 2), pads=(1, 1, 1, 1))
    b.g.add_node(Node("out", "output", (1, 1, 3), params={"bias": dyadic(rng, 3, -2, 3)}))
    w = dyadic(rng, (2, 2, 3, 3), -3, 4)
    b.conv("a", "out", w)
    g = b.done()
    net = Network(g)
    m = w.reshape(12, 3).astype(np.float64)
    bias = g.node("out").params["bias"].astype(np.float64)
    want = np.array([[bias[c] - bias[k] + np.minimum(m[:, c] - m[:, k], 0).sum() for k in range(3)] for c in range(3)])
    assert np.allclose(net._pair, want)
    x = dyadic(rng, (24, 4, 4, 1), 0, 9)
    full = net.run(x, 60, progress=False)
    ee = net.run(x, 60, progress=False, early_exit=True)
    assert np.array_equal(ee.predictions[:, -1], full.predictions[:, -1])


@pytest.mark.parametrize("seed", [0, 3])
def test_maxgate_rule_max_identical_and_follows_window_max(seed):
    """Rule ``max`` on the random ResNet (2x2 stride-2 gate): identical to the reference, and
    every gate neuron's cumulative count equals its window's highest source count at every step."""
    g, x = random_resnet(seed)
    for n in g.populations():
        if n.op == "maxgate":
            n.attrs["rule"] = "max"
    _, res = _check_identical(g, x, 24, batch_size=4)
    src = np.cumsum(res.trains["a1"].reshape(len(x), 24, 8, 8, 4), axis=1)
    win = src.reshape(len(x), 24, 4, 2, 4, 2, 4).max(axis=(3, 5))
    gate = np.cumsum(res.trains["m1"].reshape(len(x), 24, 4, 4, 4), axis=1)
    assert np.array_equal(gate, win)


def test_scratch_cap_shortens_blocks(monkeypatch):
    """A network whose block of spike lists would exceed the scratch budget runs in shorter
    blocks (here 2 steps), with the same result."""
    import snncc.runtime.network as rn
    g, x = random_resnet(0)
    ref = simulate_reference(g, x, 12)
    net = Network(g)
    monkeypatch.setattr(rn, "_SCRATCH_BYTES", 4 * net._prog.NS * 2)
    seen = []
    real = rn.K.run_steps
    monkeypatch.setattr(rn.K, "run_steps", lambda *a: (seen.append(a[-4]), real(*a))[1])   # block, count, stable, first_in
    run = net.run(x, 12, progress=False)
    assert seen and set(seen) == {2}
    assert np.array_equal(run.predictions, ref["predictions"])
    assert np.array_equal(run.potentials, ref["potentials"][:, -1].reshape(x.shape[0], -1))


def test_run_segment_rejects_incomplete_plans():
    """A segment needs the spike train of every earlier population feeding it, simulates only its own
    populations and runs forwards: each mistake is a one-line DataError."""
    from snncc.errors import DataError
    g, x = random_resnet(0)
    net = Network(g)
    names = [p.name for p in net.pops]
    fed = next(i for i, p in enumerate(names) if i > 1 and any(s in names[:i] for s in g.preds(p)))
    for args, kw, words in (
            ((names[fed], names[fed], {}), {}, ["needs the spike train of"]),
            ((names[fed], names[fed - 1], {}), {}, ["is empty"]),
            ((names[0], names[0], {}), {"keep": [names[1]]}, [f"{names[1]!r} is not simulated"]),
            (("nope", names[0], {}), {}, ["segment end 'nope' is not a population"]),
            ((names[fed], names[fed], {s: np.zeros((1, 4, 2), np.uint8) for s in g.preds(names[fed])}), {},
             ["has shape (1, 4, 2), expected"])):
        with pytest.raises(DataError) as e:
            net.run_segment(x, 4, *args, **kw)
        msg = str(e.value)
        assert "\n" not in msg and "fix:" in msg and all(w in msg for w in words), msg
