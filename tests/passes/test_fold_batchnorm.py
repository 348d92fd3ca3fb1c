import numpy as np
import pytest

from helpers import assert_analog_equal, twice_equals_once
from opnets import OB, plain, resnet
from snncc.ir import verify
from snncc.passes import fold_batchnorm


@pytest.mark.parametrize("make", [resnet, plain])
def test_exact_and_no_bn_left(make):
    g, x = make()
    g0 = g.copy()
    g = fold_batchnorm.run(g, None)
    verify(g)
    assert not g.by_op("batchnorm")
    assert_analog_equal(g0, g, x)


def test_conv_bn_folded_standalone_becomes_affine():
    g, _ = plain()
    n_conv = len(g.by_op("conv"))
    g = fold_batchnorm.run(g, None)
    assert len(g.by_op("conv")) == n_conv
    (aff,) = g.by_op("affine")                   # the BN after a ReLU
    assert set(aff.params) == {"scale", "shift"}


def test_eq1_values():
    b = OB((4, 4, 2))
    c = b.conv("in", 3)
    bn = b.bn(c)
    g = b.done(b.conv(b.relu(bn), 2))
    w, bias = g.node(c).params["weight"].copy(), g.node(c).params["bias"].copy()
    p = g.node(bn).params
    sigma = np.sqrt(p["var"] + 1e-5)
    g = fold_batchnorm.run(g, None)
    np.testing.assert_allclose(g.node(c).params["weight"], p["scale"] * w / sigma, rtol=1e-14)
    np.testing.assert_allclose(g.node(c).params["bias"], p["scale"] * (bias - p["mean"]) / sigma + p["bias"],
                               rtol=1e-14)


def test_conv_with_two_consumers_keeps_bn_as_affine():
    b = OB((4, 4, 2))
    c = b.conv("in", 2)
    r1 = b.relu(b.bn(c))
    r2 = b.relu(c)
    g = b.done(b.add(r1, r2))
    g0 = g.copy()
    g = fold_batchnorm.run(g, None)
    assert len(g.by_op("affine")) == 1
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 2))
    assert_analog_equal(g0, g, x)


def test_idempotent():
    twice_equals_once(fold_batchnorm.run, resnet)
    twice_equals_once(fold_batchnorm.run, plain)
