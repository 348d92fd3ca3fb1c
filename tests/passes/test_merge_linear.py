import numpy as np
import pytest

from helpers import assert_analog_equal, twice_equals_once
from opnets import OB, plain, resnet
from snncc.ir import verify
from snncc.passes import fold_batchnorm, merge_linear


def _prep(make):
    def f():
        g, x = make()
        return fold_batchnorm.run(g, None), x
    return f


@pytest.mark.parametrize("make", [resnet, plain])
def test_exact(make):
    g, x = _prep(make)()
    g0 = g.copy()
    g = merge_linear.run(g, None)
    verify(g)
    assert_analog_equal(g0, g, x)


def test_patterns_removed():
    g, _ = _prep(plain)()
    g = merge_linear.run(g, None)
    ops = g.summary()
    assert "pad" not in ops and "affine" not in ops
    pc = [n for n in g.by_op("conv") if n.attrs["pads"] == (1, 1, 1, 1)]
    assert len(pc) == 2                              # explicit Pad merged into the second conv
    g, _ = _prep(resnet)()
    g = merge_linear.run(g, None)
    assert "globalavgpool" not in g.summary()
    (d,) = g.by_op("dense")
    assert d.params["weight"].shape[0] == 2 * 2 * 12


def test_gap_dense_weight_layout():
    b = OB((3, 2, 4))
    d = b.dense(b.flatten(b.gap(b.relu(b.conv("in", 4)))), 3)
    g = b.done(d)
    w = g.node(d).params["weight"].copy()
    g = merge_linear.run(g, None)
    w2 = g.node(d).params["weight"]
    for h in range(3):
        for ww in range(2):
            for c in range(4):
                np.testing.assert_allclose(w2[(h * 2 + ww) * 4 + c], w[c] / 6)


def test_gap_conv1x1_and_dense_dense_and_affine_chain():
    rng = np.random.default_rng(3)
    b = OB((4, 4, 3), seed=3)
    r = b.relu(b.conv("in", 5))
    y = b.conv(b.gap(r), 6, k=1, pads=0)
    y = b.affine(b.affine(y))
    z = b.relu(y)
    z = b.dense(b.dense(b.flatten(z), 7), 2)
    g = b.done(z)
    g0 = g.copy()
    g = merge_linear.run(g, None)
    verify(g)
    assert g.summary() == {"input": 1, "conv": 2, "relu": 2, "flatten": 1, "dense": 1}
    assert_analog_equal(g0, g, rng.normal(size=(4, 4, 4, 3)))


def test_affine_before_padded_conv_is_left():
    b = OB((4, 4, 2))
    r = b.relu(b.conv("in", 3))
    g = b.done(b.conv(b.affine(r), 2, pads=1))
    g = merge_linear.run(g, None)
    assert len(g.by_op("affine")) == 1
    b = OB((4, 4, 2))
    r = b.relu(b.conv("in", 3))
    g = b.done(b.conv(b.affine(r), 2, pads=0))
    g0 = g.copy()
    g = merge_linear.run(g, None)
    assert not g.by_op("affine")
    assert_analog_equal(g0, g, np.random.default_rng(0).normal(size=(3, 4, 4, 2)))


def test_idempotent():
    twice_equals_once(merge_linear.run, _prep(resnet))
    twice_equals_once(merge_linear.run, _prep(plain))
