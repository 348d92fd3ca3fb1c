"""Hand-computed tiny nets: the event-driven runtime and the numpy reference against arithmetic."""
import numpy as np
import pytest

from rt_nets import B
from snncc.runtime import Network, simulate_reference


def _spike_steps(train):
    return [int(t) + 1 for t in np.flatnonzero(train)]


def _single(value, bias=0.0, init=0.0):
    b = B((1, 1, 1), init_membrane=init)
    b.neuron("n", (1, 1, 1), bias)
    b.identity("in", "n", [1.0])
    b.output("out", 1)
    b.dense("n", "out", [[1.0]])
    return b.done(), np.full((1, 1, 1, 1), value, np.float32)


@pytest.mark.parametrize("sim", ["runtime", "reference"])
def test_constant_current_spike_times(sim):
    g, x = _single(0.3)
    if sim == "runtime":
        res = Network(g).run(x, 10, trace=True, progress=False)
        tr = res.trains["n"][0, :, 0]
        assert res.spikes["n"][0] == 3
        assert res.potentials[0, 0] == 3.0
    else:
        tr = simulate_reference(g, x, 10)["spikes"]["n"][0, :, 0, 0, 0]
    assert _spike_steps(tr) == [4, 7, 10]


def test_bias_only_neuron():
    g, x = _single(0.0, bias=0.25)
    res = Network(g).run(x, 12, trace=True, progress=False)
    assert _spike_steps(res.trains["n"][0, :, 0]) == [4, 8, 12]
    ref = simulate_reference(g, x, 12)
    assert _spike_steps(ref["spikes"]["n"][0, :, 0, 0, 0]) == [4, 8, 12]


def test_init_membrane_half():
    # V0 = 0.5, I = 0.25: 0.75, 1.0 -> spike at 2; then 0.25, 0.5, 0.75, 1.0 -> 6; -> 10
    g, x = _single(0.25, init=0.5)
    res = Network(g).run(x, 10, trace=True, progress=False)
    assert _spike_steps(res.trains["n"][0, :, 0]) == [2, 6, 10]
    # E = (V(T) - V(0))/T = (0 - 0.5)/10: 3 spikes for 2.5 of input, the head start of V(0)
    assert res.prop_error["n"] == pytest.approx(-0.05)
    g0, _ = _single(0.25, init=0.0)
    res0 = Network(g0).run(x, 10, trace=True, progress=False)
    assert _spike_steps(res0.trains["n"][0, :, 0]) == [4, 8]
    assert res0.prop_error["n"] == pytest.approx(0.5 / 10)


def test_two_layer_chain_weight_half():
    # n1 fires every step (I = 1); n2 gets 0.5 per step -> fires at 2, 4, 6, 8
    b = B((1, 1, 1))
    b.neuron("n1", (1, 1, 1))
    b.identity("in", "n1", [1.0])
    b.neuron("n2", (1, 1, 1))
    b.identity("n1", "n2", [0.5])
    b.output("out", 1)
    b.dense("n2", "out", [[1.0]])
    g = b.done()
    x = np.ones((1, 1, 1, 1), np.float32)
    res = Network(g).run(x, 8, trace=True, progress=False)
    assert _spike_steps(res.trains["n1"][0, :, 0]) == list(range(1, 9))
    assert _spike_steps(res.trains["n2"][0, :, 0]) == [2, 4, 6, 8]
    assert res.sops["n2"][0] == 8 and res.sops["out"][0] == 4
    assert res.firing_rate["n1"] == 1.0 and res.firing_rate["n2"] == 0.5


def test_maxgate_picks_highest_count():
    # 1x2 input; left neuron gets 0.5 (fires every 2nd step), right 0.75 (more often).
    # The gate must follow the right neuron's spikes; ties at the first step go to the left one.
    b = B((1, 2, 1))
    b.neuron("a", (1, 2, 1))
    b.identity("in", "a", [1.0])
    b.maxgate("m", "a", (1, 1, 1), (1, 2), (1, 2))
    b.output("out", 1)
    b.dense("m", "out", [[1.0]])
    g = b.done()
    x = np.array([0.5, 0.75], np.float32).reshape(1, 1, 2, 1)
    res = Network(g).run(x, 12, trace=True, progress=False)
    left, right = res.trains["a"][0, :, 0], res.trains["a"][0, :, 1]
    gate = res.trains["m"][0, :, 0]
    c_l, c_r = np.cumsum(left), np.cumsum(right)
    expect = np.where(c_r > c_l, right, left)
    assert np.array_equal(gate, expect)
    ref = simulate_reference(g, x, 12)
    assert np.array_equal(ref["spikes"]["m"][0, :, 0, 0, 0], gate)
    # output accumulates the gate's spikes
    assert res.potentials[0, 0] == gate.sum()


def test_output_is_sum_of_currents():
    # output potential after t steps = t * (W^T s + bias) for neurons firing every step
    b = B((1, 1, 2))
    b.neuron("n", (1, 1, 2))
    b.identity("in", "n", [1.0, 1.0])
    b.output("out", 3, [0.5, -0.25, 0.0])
    w = np.array([[1.0, -2.0, 0.5], [0.25, 1.0, 0.125]], np.float32)
    b.dense("n", "out", w)
    g = b.done()
    x = np.ones((1, 1, 1, 2), np.float32)
    res = Network(g).run(x, 5, trace=True, progress=False)
    per_step = w.sum(0) + np.array([0.5, -0.25, 0.0])
    assert np.array_equal(res.potential_trace[0], np.outer(np.arange(1, 6), per_step))
    assert np.array_equal(res.predictions[0], np.full(5, np.argmax(per_step)))
    assert res.sops["out"][0] == 2 * 3 * 5


def test_sop_count_conv_interior():
    # a single spike at the centre of a 5x5 map through a 3x3 conv ('same' padding) -> 9*Cout SOPs
    cout = 4
    b = B((5, 5, 1))
    b.neuron("a", (5, 5, 1))
    b.identity("in", "a", [1.0])
    b.neuron("c", (5, 5, cout))
    b.conv("a", "c", np.full((3, 3, 1, cout), 0.125, np.float32), pads=(1, 1, 1, 1))
    b.output("out", 2)
    b.dense("c", "out", np.zeros((25 * cout, 2), np.float32))
    g = b.done()
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 2, 2, 0] = 1.0
    res = Network(g).run(x, 1, progress=False)
    assert res.spikes["a"][0] == 1
    assert res.sops["c"][0] == 9 * cout
    # a corner spike is seen by 4 output positions only
    x2 = np.zeros((1, 5, 5, 1), np.float32)
    x2[0, 0, 0, 0] = 1.0
    assert Network(g).run(x2, 1, progress=False).sops["c"][0] == 4 * cout


def test_rates_record_and_accuracy():
    g, x = _single(0.25)
    x = np.concatenate([x, np.full_like(x, 0.5)])
    res = Network(g).run(x, 8, labels=np.array([0, 0]), record=["n", "out"], progress=False)
    assert np.allclose(res.rates["n"][:, 0], [0.25, 0.5])
    assert np.allclose(res.rates["out"][:, 0], [0.25, 0.5])
    assert list(res.steps_run) == [8, 8]


def test_predictions_and_accuracy_per_step():
    """Two classes: class 1 wins once the neuron has fired (its spikes push class 0 down; ties go to
    class 0).  Input 0.25 fires at steps 4, 8, input 0.5 at 2, 4, 6, 8; labels 1 and 0."""
    b = B((1, 1, 1))
    b.neuron("n", (1, 1, 1))
    b.identity("in", "n", [1.0])
    b.output("out", 2)
    b.dense("n", "out", [[-1.0, 0.0]])
    x = np.array([0.25, 0.5], np.float32).reshape(2, 1, 1, 1)
    res = Network(b.done()).run(x, 8, labels=np.array([1, 0]), progress=False)
    assert res.predictions.tolist() == [[0, 0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1]]
    # step 1: only image 2 right; steps 2-3: neither; from step 4: only image 1
    assert [res.accuracy_at[t] for t in (1, 2, 4, 8)] == [0.5, 0.0, 0.5, 0.5]
    assert res.accuracy() == 0.5 and res.accuracy(3) == 0.0


def test_callback_and_batches():
    g, x = _single(0.25)
    x = np.repeat(x, 5, axis=0)
    seen = []
    res = Network(g).run(x, 4, batch_size=2, progress=False,
                         callback=lambda t, p, sl: seen.append((t, len(p), sl.start)))
    assert len(seen) == 4 * 3 and seen[0] == (1, 2, 0) and seen[-1] == (4, 1, 4)
    assert res.predictions.shape == (5, 4)


def _gate_net(rule):
    b = B((1, 2, 1))
    b.neuron("a", (1, 2, 1))
    b.identity("in", "a", [1.0])
    b.maxgate("m", "a", (1, 1, 1), (1, 2), (1, 2))
    b.g.node("m").attrs["rule"] = rule
    b.output("out", 1)
    b.dense("m", "out", [[1.0]])
    return b.done()


def test_maxgate_rules_leader_overcounts_max_follows_highest_count():
    """Inputs 0.5 and 0.625: left fires at steps 2, 4, 6, 8; right at 2, 4, 5, 7, 8.
    The paper's gate (leader, ties to the left neuron) passes left's spike at step 6 on a
    3-3 tie although the window's highest count does not rise: 6 output spikes by step 8
    for a highest count of 5.  The ``max`` rule's output count equals the highest count
    at every step."""
    x = np.array([0.5, 0.625], np.float32).reshape(1, 1, 2, 1)
    T = 8
    lead = Network(_gate_net("leader")).run(x, T, trace=True, progress=False)
    mx = Network(_gate_net("max")).run(x, T, trace=True, progress=False)
    left, right = lead.trains["a"][0, :, 0], lead.trains["a"][0, :, 1]
    assert list(np.flatnonzero(left) + 1) == [2, 4, 6, 8]
    assert list(np.flatnonzero(right) + 1) == [2, 4, 5, 7, 8]
    highest = np.maximum(np.cumsum(left), np.cumsum(right))
    assert list(np.cumsum(lead.trains["m"][0, :, 0])) == [0, 1, 1, 2, 3, 4, 5, 6]
    assert list(np.cumsum(mx.trains["m"][0, :, 0])) == list(highest) == [0, 1, 1, 2, 3, 3, 4, 5]
    for rule, res in (("leader", lead), ("max", mx)):
        ref = simulate_reference(_gate_net(rule), x, T)
        assert np.array_equal(ref["spikes"]["m"][0, :, 0, 0, 0], res.trains["m"][0, :, 0])
