import numpy as np
import pytest

from helpers import EdgeKind, assert_analog_equal, kinds, twice_equals_once
from opnets import OB, plain, resnet
from snncc.errors import ModelError
from snncc.ir import verify
from snncc.passes import eliminate_sums, fold_batchnorm, fold_input_affine, merge_linear


def _prep(make, **kw):
    def f():
        g, x = make(**kw)
        for p in (fold_batchnorm, fold_input_affine, merge_linear):
            g = p.run(g, None)
        return g, x
    return f


@pytest.mark.parametrize("make", [resnet, plain])
def test_exact_and_spiking_level(make):
    g, x = _prep(make)()
    g0 = g.copy()
    g = eliminate_sums.run(g, None)
    verify(g)
    assert g.is_spiking_level()
    assert_analog_equal(g0, g, x)


def test_resnet_edges():
    g, _ = _prep(resnet)()
    relus = [n.name for n in g.by_op("relu")]
    g = eliminate_sums.run(g, None)
    assert g.summary() == {"input": 1, "neuron": 7, "output": 1}
    assert {n.name for n in g.by_op("neuron")} == set(relus)
    for n in g.by_op("neuron"):
        assert n.onnx_tensor == n.name
    k = kinds(g)
    short = {e: v for e, v in k.items() if v[0] is EdgeKind.SHORTCUT}
    assert sorted(v[1] for v in short.values()) == ["conv", "identity", "subsample_pad"]
    sp = [g.edge(*e)["syn"] for e, v in short.items() if v[1] == "subsample_pad"][0]
    assert sp.attrs["stride"] == (2, 2) and sp.attrs["cpad"] == (2, 2)
    # the projection conv comes from the block input, which is an ancestor of the residual branch
    (proj,) = [e for e, v in short.items() if v[1] == "conv"]
    assert g.edge(*proj)["syn"].params["weight"].shape[:2] == (1, 1)
    assert all(v[1] in ("conv", "dense") for v in k.values() if v[0] is EdgeKind.SYNAPSE)
    (out,) = g.by_op("output")
    assert out.params["bias"].shape == (5,)


def test_plain_pools_and_cap():
    g, _ = _prep(plain)()
    g = eliminate_sums.run(g, None)
    ops = {n.name: n.op for n in g.nodes()}
    assert list(ops.values()).count("maxgate") == 1
    mg = g.by_op("maxgate")[0]
    ((src, d),) = g.in_edges(mg.name)
    assert d["kind"] is EdgeKind.DATA and g.node(src).attrs["cap"] == 6.0
    pool = [n for n in g.by_op("neuron") if n.name.startswith("avgpool")]
    assert len(pool) == 1
    ((_, d),) = g.in_edges(pool[0].name)
    assert d["syn"].op == "avgpool" and np.all(pool[0].params["bias"] == 0)


def test_affine_on_shortcut_and_dense_materialisation():
    # relu -> affine feeding an add (scale on an identity synapse, shift into the bias);
    # conv -> flatten -> dense with no ReLU (materialised as one dense synapse)
    b = OB((4, 4, 3), seed=5)
    r = b.relu(b.conv("in", 4))
    y = b.conv(b.relu(b.conv(r, 4)), 4)
    z = b.relu(b.add(y, b.affine(r)))
    out = b.dense(b.flatten(b.conv(z, 2)), 3)
    g = b.done(out)
    g0 = g.copy()
    g = eliminate_sums.run(merge_linear.run(g, None), None)
    verify(g)
    k = kinds(g)
    assert k[(r, z)] == (EdgeKind.SHORTCUT, "identity")
    assert k[(z, out)] == (EdgeKind.SYNAPSE, "dense")
    assert_analog_equal(g0, g, np.random.default_rng(0).normal(size=(4, 4, 4, 3)))


def test_errors():
    b = OB((4, 4, 2))
    g = b.done(b.conv(b.relu(b.maxpool(b.conv("in", 2))), 2))
    with pytest.raises(ModelError, match="MaxPool|negative"):
        eliminate_sums.run(g, None)
    b = OB((4, 4, 2))
    g = b.done(b.conv(b.relu(b.conv(b.conv("in", 2), 2)), 2))
    with pytest.raises(ModelError, match="no ReLU"):
        eliminate_sums.run(g, None)
    b = OB((4, 4, 2))
    r = b.relu(b.conv("in", 3))
    g = b.done(b.conv(b.relu(b.conv(b.affine(r), 2, pads=1)), 2))
    with pytest.raises(ModelError) as e:
        eliminate_sums.run(g, None)
    assert e.value.hint


def test_idempotent():
    twice_equals_once(eliminate_sums.run, _prep(resnet))
    twice_equals_once(eliminate_sums.run, _prep(plain))


@pytest.mark.parametrize("k, pads, conv_first", [(3, 1, True), (3, 1, False), (5, 2, True), (1, 0, True)])
def test_one_conv_residual_block_is_one_conv(k, pads, conv_first):
    """relu(x + conv(x)) (and the affine-scaled identity of a folded BN): the identity is added to the
    conv's centre tap, exactly, whichever operand of the add comes first."""
    b = OB((5, 5, 3), seed=3)
    r = b.relu(b.conv("in", 4))
    c = b.conv(r, 4, k=k, pads=pads)
    s = b.affine(r)
    z = b.relu(b.add(c, s) if conv_first else b.add(s, c))
    g = b.done(b.dense(b.flatten(b.conv(z, 2)), 3))
    g0 = g.copy()
    g = eliminate_sums.run(merge_linear.run(g, None), None)
    verify(g)
    assert kinds(g)[(r, z)] == (EdgeKind.SYNAPSE, "conv") and len(g.in_edges(z)) == 1
    assert_analog_equal(g0, g, np.random.default_rng(1).normal(size=(6, 5, 5, 3)))


def test_two_different_convs_of_one_source_still_refused():
    """Two convs of one population with different kernels (no identity to fold) stay a one-line error."""
    b = OB((4, 4, 2), seed=1)
    r = b.relu(b.conv("in", 2))
    g = b.done(b.conv(b.relu(b.add(b.conv(r, 2, stride=2), b.conv(r, 2, k=1, stride=2))), 2))
    g = merge_linear.run(g, None)
    with pytest.raises(ModelError, match="two different linear maps"):
        eliminate_sums.run(g, None)
