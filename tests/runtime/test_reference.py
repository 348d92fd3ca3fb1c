"""The numpy reference (runtime/reference.py) against hand arithmetic, on the parts the other hand-computed
nets do not reach: padded average pooling, the option-A subsample+pad map, a padded leader gate, the initial
membrane and the raw/preprocessed input.  The event-driven runtime must give the same trains (it is tested
against the reference on random nets elsewhere; here both answer to arithmetic)."""
import numpy as np
import pytest

from rt_nets import B
from snncc.runtime import Network, simulate_reference


def _steps(train):
    return [int(t) + 1 for t in np.flatnonzero(train)]


def _both(g, x, T, name, **kw):
    """Spike trains of population ``name`` from the reference and the runtime: two (N, T, neurons) arrays."""
    ref = simulate_reference(g, x, T, **kw)["spikes"][name]
    ref = ref.reshape(ref.shape[0], T, -1)
    run = Network(g).run(x, T, trace=True, progress=False).trains[name]
    return ref, run


def _head(b, src, n_in):
    b.output("out", 2)
    b.dense(src, "out", np.ones((n_in, 2), np.float32))
    return b.done()


@pytest.mark.parametrize("x00, expect", [(1.0, [1, 2, 3, 4, 5, 6]), (0.5, [2, 4, 6])])
def test_padded_average_pool_divides_by_the_valid_inputs(x00, expect):
    """2x2 source, 2x2 pool, stride 2, padding 1 on every side: four windows of one valid input each
    (count_include_pad false), so output (0, 0) receives exactly source (0, 0)'s spikes; the other
    sources are silent and so are their windows."""
    b = B((2, 2, 1))
    b.neuron("a", (2, 2, 1))
    b.identity("in", "a", [1.0])
    b.neuron("p", (2, 2, 1))
    b.avgpool("a", "p", (2, 2), (2, 2), [1.0], pads=(1, 1, 1, 1))
    g = _head(b, "p", 4)
    x = np.zeros((1, 2, 2, 1), np.float32)
    x[0, 0, 0, 0] = x00
    for tr in _both(g, x, 6, "p"):
        assert _steps(tr[0, :, 0]) == expect          # the divisor is 1, not 4
        assert not tr[0, :, 1:].any()


def test_unpadded_average_pool_is_a_quarter_per_spike():
    """One of four inputs firing every step gives the pooled neuron 1/4 per step: spikes at 4 and 8."""
    b = B((2, 2, 1))
    b.neuron("a", (2, 2, 1))
    b.identity("in", "a", [1.0])
    b.neuron("p", (1, 1, 1))
    b.avgpool("a", "p", (2, 2), (2, 2), [1.0])
    g = _head(b, "p", 1)
    x = np.zeros((1, 2, 2, 1), np.float32)
    x[0, 1, 0, 0] = 1.0
    for tr in _both(g, x, 8, "p"):
        assert _steps(tr[0, :, 0]) == [4, 8]


@pytest.mark.parametrize("offset, target", [((0, 0), (1, 1)), ((1, 1), (0, 0))])
def test_subsample_pad_picks_strided_positions_and_shifts_channels(offset, target):
    """Source (4, 4, 1) firing every step at (1, 1) and (2, 2) only.  Stride 2 from ``offset`` samples
    rows/cols offset, offset+2: from (0, 0) it sees (2, 2) -> output (1, 1); from (1, 1) it sees (1, 1) ->
    output (0, 0).  Channel padding (1, 1) puts the source channel at index 1 of 3; its scale 0.5 gives
    spikes every 2nd step; every other output neuron gets nothing."""
    b = B((4, 4, 1))
    b.neuron("a", (4, 4, 1))
    b.identity("in", "a", [1.0])
    b.neuron("d", (2, 2, 3))
    b.subsample_pad("a", "d", (2, 2), (1, 1), [1.0, 0.5, 1.0], offset=offset)
    g = _head(b, "d", 12)
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 1, 0] = x[0, 2, 2, 0] = 1.0
    flat = (target[0] * 2 + target[1]) * 3 + 1
    for tr in _both(g, x, 8, "d"):
        assert _steps(tr[0, :, flat]) == [2, 4, 6, 8]
        assert tr[0].sum() == 4


def test_padded_leader_gate():
    """Source (1, 2, 1) at 0.5 and 0.75: left fires at 2, 4, 6, 8, right at 2, 3, 4, 6, 7, 8.  A (1, 2) gate,
    stride 1, one column of padding on the left: window 0 = [padding, left], window 1 = [left, right].
    Padding never leads, so window 0 passes left's spikes; in window 1 the leader (highest count so far,
    this step included; ties to the left) is left on the 0-0 and 1-1 ties of steps 1-2, right from step 3."""
    b = B((1, 2, 1))
    b.neuron("a", (1, 2, 1))
    b.identity("in", "a", [1.0])
    b.maxgate("m", "a", (1, 2, 1), (1, 2), (1, 1), pads=(0, 1, 0, 0))
    g = _head(b, "m", 2)
    x = np.array([0.5, 0.75], np.float32).reshape(1, 1, 2, 1)
    for name, want in (("a", ([2, 4, 6, 8], [2, 3, 4, 6, 7, 8])), ("m", ([2, 4, 6, 8], [2, 3, 4, 6, 7, 8]))):
        for tr in _both(g, x, 8, name):
            assert (_steps(tr[0, :, 0]), _steps(tr[0, :, 1])) == want, name


def test_leader_gate_window_one_passes_the_leaders_spikes_only():
    """Window [0.75, 0.5]: left fires at 2, 3, 4, 6, 7, 8, right at 2, 4, 6, 8, so left's count is never
    below right's and it leads at every step (ties go to it): the gate passes exactly left's spikes."""
    b = B((1, 2, 1))
    b.neuron("a", (1, 2, 1))
    b.identity("in", "a", [1.0])
    b.maxgate("m", "a", (1, 1, 1), (1, 2), (1, 2))
    g = _head(b, "m", 1)
    x = np.array([0.75, 0.5], np.float32).reshape(1, 1, 2, 1)
    for tr in _both(g, x, 8, "m"):
        assert _steps(tr[0, :, 0]) == [2, 3, 4, 6, 7, 8]


@pytest.mark.parametrize("init, expect", [(0.0, [4, 8]), (0.5, [2, 6, 10]), (0.75, [1, 5, 9])])
def test_initial_membrane(init, expect):
    """Input 0.25 per step from V(0) = init: the first spike when init + 0.25 t reaches 1, then every 4."""
    b = B((1, 1, 1), init_membrane=init)
    b.neuron("n", (1, 1, 1))
    b.identity("in", "n", [1.0])
    g = _head(b, "n", 1)
    x = np.full((1, 1, 1, 1), 0.25, np.float32)
    for tr in _both(g, x, 10, "n"):
        assert _steps(tr[0, :, 0]) == [t for t in expect if t <= 10]
    # the argument overrides the graph's value
    ref = simulate_reference(g, x, 10, init_membrane=0.0)["spikes"]["n"][0, :, 0, 0, 0]
    assert _steps(ref) == [4, 8]


def test_raw_input_is_preprocessed_and_preprocessed_input_is_not():
    """With preprocessing scale 0.5, raw 0.5 becomes the current 0.25 (spikes at 4, 8); ``raw=False`` takes
    0.5 as the current itself (every 2nd step)."""
    b = B((1, 1, 1))
    b.g.meta["preprocess"] = {"scale": 0.5, "mean": None, "std": None}
    b.neuron("n", (1, 1, 1))
    b.identity("in", "n", [1.0])
    g = _head(b, "n", 1)
    x = np.full((1, 1, 1, 1), 0.5, np.float32)
    assert _steps(simulate_reference(g, x, 8)["spikes"]["n"][0, :, 0, 0, 0]) == [4, 8]
    assert _steps(simulate_reference(g, x, 8, raw=False)["spikes"]["n"][0, :, 0, 0, 0]) == [2, 4, 6, 8]
    assert _steps(Network(g).run(x, 8, trace=True, progress=False).trains["n"][0, :, 0]) == [4, 8]
