import numpy as np

from helpers import assert_analog_equal, twice_equals_once
from opnets import OB, resnet
from snncc.ir import verify
from snncc.passes import fold_batchnorm, fold_input_affine


def _make():
    g, x = resnet()
    g.meta["preprocess"] = {"scale": 1 / 255, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    return fold_batchnorm.run(g, None), x * 255


def test_exact_and_folded():
    g, x = _make()
    g0 = g.copy()
    ext = dict(g.meta["preprocess"])
    g = fold_input_affine.run(g, None)
    verify(g)
    (s,) = g.succs("in")
    assert g.node(s).op == "conv"
    assert g.meta["preprocess_external"] == ext
    assert g.meta["preprocess"]["scale"] == ext["scale"]
    assert len(g.meta["preprocess"]["mean"]) == 3
    assert_analog_equal(g0, g, x)


def test_chain_of_affines_and_no_user_preprocessing():
    b = OB((4, 4, 2))
    a = b.affine(b.affine("in"))
    g = b.done(b.conv(b.relu(b.conv(a, 3)), 2))
    g0 = g.copy()
    g = fold_input_affine.run(g, None)
    assert not g.by_op("affine")
    assert g.meta["preprocess_external"] == {"scale": 1.0, "mean": None, "std": None}
    x = np.random.default_rng(1).uniform(0, 1, (5, 4, 4, 2))
    assert_analog_equal(g0, g, x)


def test_not_folded_when_input_has_other_consumers():
    b = OB((4, 4, 2))
    a = b.affine("in")
    g = b.done(b.add(b.conv(a, 2), b.conv("in", 2)))
    g = fold_input_affine.run(g, None)
    assert len(g.by_op("affine")) == 1


def test_idempotent():
    twice_equals_once(fold_input_affine.run, _make)
