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


def _merge_checked(make):
    """merge_linear on ``make()``'s graph: verified, analog-equal to the original and idempotent."""
    g, x = make()
    g0 = g.copy()
    g = merge_linear.run(g, None)
    verify(g)
    assert_analog_equal(g0, g, x)
    twice_equals_once(merge_linear.run, make)
    return g


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


def _nin(stride=1, pads=1, groups=1, k=3, dilation=1, pool="gap", dense_after=False):
    """relu(conv) -> conv (no ReLU) -> global average -> flatten [-> dense]: the NiN / all-conv head."""
    def make():
        b = OB((6, 6, 4), seed=3)
        h = b.relu(b.conv("in", 4))
        cin, cout = 4, 6
        w = b.r(k, k, cin // groups, cout)
        c = b._add("conv", [h], {"stride": (stride, stride), "pads": (pads,) * 4, "groups": groups,
                                 "dilation": (dilation, dilation)}, {"weight": w, "bias": b.r(cout)})
        if pool == "gap":
            p = b.gap(c)
        else:                                       # an unpadded average pool whose window is the whole map
            oh, ow, _ = b.shape(c)
            p = b._add("avgpool", [c], {"kernel": (oh, ow), "stride": (1, 1), "pads": (0, 0, 0, 0),
                                        "count_include_pad": False})
        y = b.flatten(p)
        if dense_after:
            y = b.dense(y, 3)
        x = b.rng.normal(size=(5, 6, 6, 4))
        return b.done(y), x
    return make


@pytest.mark.parametrize("kw", [dict(), dict(stride=2), dict(groups=2), dict(k=1, pads=0), dict(dilation=2, pads=2),
                                dict(pool="avgpool"), dict(stride=2, dense_after=True)],
                         ids=["3x3", "stride2", "groups2", "1x1", "dilated", "full-window-avgpool", "then-dense"])
def test_conv_then_global_average_becomes_one_dense(kw):
    g = _merge_checked(_nin(**kw))
    ops = [n.op for n in g.nodes()]
    assert ops == ["input", "conv", "relu", "flatten", "dense"], ops     # the head is one dense on the ReLU map
    (d,) = g.by_op("dense")
    assert d.params["weight"].shape == (6 * 6 * 4, 3 if kw.get("dense_after") else 6)


def test_conv1x1_then_gap_dense_weights_by_hand():
    """1x1 conv, stride 1, no padding, then the mean over the 6x6 map: D[(h, w, c), o] = W[c, o] / 36."""
    g, _ = _nin(k=1, pads=0)()
    w = g.node(next(n.name for n in g.by_op("conv") if n.params["weight"].shape[:2] == (1, 1))).params["weight"]
    g = merge_linear.run(g, None)
    (d,) = g.by_op("dense")
    np.testing.assert_allclose(d.params["weight"], np.tile(w[0, 0], (36, 1)) / 36, rtol=1e-12)


def _separable(groups=4, stride=1, k2=1, pads2=0, dilation=1):
    """relu -> conv kxk (grouped: depthwise when groups = C) -> conv k2 x k2 -> relu -> GAP head."""
    def make():
        b = OB((7, 7, 4), seed=5)
        h = b.relu(b.conv("in", 4))
        c1 = b._add("conv", [h], {"stride": (stride, stride), "pads": (dilation,) * 4, "groups": groups,
                                  "dilation": (dilation, dilation)},
                    {"weight": b.r(3, 3, 4 // groups, 8), "bias": b.r(8)})
        c2 = b.conv(c1, 6, k=k2, pads=pads2)
        y = b.dense(b.flatten(b.gap(b.relu(c2))), 3)
        return b.done(y), b.rng.normal(size=(4, 7, 7, 4))
    return make


@pytest.mark.parametrize("kw", [dict(), dict(groups=1), dict(stride=2), dict(dilation=2)],
                         ids=["depthwise-like", "dense-3x3", "stride2", "dilated"])
def test_conv_then_pointwise_conv_is_one_conv(kw):
    g = _merge_checked(_separable(**kw))
    convs = g.by_op("conv")
    assert len(convs) == 2 and convs[1].params["weight"].shape == (3, 3, 4, 6) and convs[1].attrs["groups"] == 1


@pytest.mark.parametrize("kw", [dict(k2=3, pads2=1), dict(k2=1, pads2=1)], ids=["second-3x3", "second-padded"])
def test_conv_then_non_pointwise_conv_is_left(kw):
    """Only a 1x1, unpadded, stride-1 second conv commutes with the first's padding: others stay (and
    eliminate_sums reports two linear layers with no ReLU between)."""
    g, x = _separable(**kw)()
    g = merge_linear.run(g, None)
    assert len(g.by_op("conv")) == 3


def _bn_after_relu(pool, negative=False, pads=(0, 0, 0, 0), cip=False):
    """relu -> affine (a BatchNorm after the ReLU) -> pool -> [flatten ->] dense."""
    def make():
        b = OB((6, 6, 3), seed=7)
        h = b.relu(b.conv("in", 3))
        s = b.r(3, lo=0.5, hi=2.0)
        if negative:
            s[1] = -s[1]
        a = b.affine(h, s=s)
        if pool == "max":
            p = b.maxpool(a, k=3, s=2, pads=pads)
        elif pool == "avg":
            p = b.avgpool(a, k=3, s=2, pads=pads, cip=cip)
        else:
            p = b.gap(a)
        y = b.dense(b.flatten(p), 4)
        return b.done(y), b.rng.normal(size=(4, 6, 6, 3))
    return make


@pytest.mark.parametrize("kw", [dict(pool="max"), dict(pool="max", pads=(1, 1, 1, 1)), dict(pool="avg"),
                                dict(pool="avg", pads=(1, 1, 1, 1)), dict(pool="gap")],
                         ids=["maxpool", "maxpool-padded", "avgpool", "avgpool-padded-cip-false", "gap"])
def test_batchnorm_after_relu_moves_past_the_pool(kw):
    g = _merge_checked(_bn_after_relu(**kw))
    assert "affine" not in g.summary()                    # moved past the pool, then merged into the dense
    (r,) = g.by_op("relu")
    assert g.node(g.succs(r.name)[0]).op in ("maxpool", "avgpool", "flatten")     # the pool reads the ReLU


@pytest.mark.parametrize("kw", [dict(pool="max", negative=True), dict(pool="avg", pads=(1, 1, 1, 1), cip=True)],
                         ids=["maxpool-negative-scale", "avgpool-count-include-pad"])
def test_batchnorm_stays_before_a_pool_it_does_not_commute_with(kw):
    g, x = _bn_after_relu(**kw)()
    g0 = g.copy()
    g = merge_linear.run(g, None)
    assert_analog_equal(g0, g, x)
    (a,) = g.by_op("affine")
    assert g.node(g.succs(a.name)[0]).op in ("maxpool", "avgpool")


def _pool_then_relu(pad=None, cap=None, pool_pads=(0, 0, 0, 0)):
    """conv -> [zero pad ->] maxpool -> relu -> GAP head: the pool sees negative values."""
    def make():
        b = OB((7, 7, 3), seed=9)
        c = b.conv(b.relu(b.conv("in", 3)), 4)
        if pad is not None:
            c = b.pad(c, pad)
        r = b.relu(b.maxpool(c, k=3, s=2, pads=pool_pads), cap=cap)
        y = b.dense(b.flatten(b.gap(r)), 3)
        return b.done(y), b.rng.normal(size=(4, 7, 7, 3))
    return make


@pytest.mark.parametrize("kw", [dict(), dict(cap=0.5), dict(pool_pads=(1, 1, 1, 1)), dict(pad=(1, 1, 1, 1)),
                                dict(pad=(0, 0, 1, 1), pool_pads=(1, 1, 0, 0))],
                         ids=["plain", "capped", "pool-padded", "zero-pad", "zero-pad-and-pool-pads"])
def test_relu_after_maxpool_moves_in_front_of_it(kw):
    g = _merge_checked(_pool_then_relu(**kw))
    (p,) = g.by_op("maxpool")
    assert g.node(g.preds(p.name)[0]).op == "relu" and "pad" not in g.summary()
    assert p.attrs["pads"] == tuple(a + b for a, b in zip(kw.get("pool_pads", (0,) * 4), kw.get("pad") or (0,) * 4))


def test_relu_stays_after_a_pool_whose_merged_pads_reach_the_kernel():
    g, x = _pool_then_relu(pad=(2, 2, 2, 2), pool_pads=(1, 1, 1, 1))()
    g = merge_linear.run(g, None)
    (p,) = g.by_op("maxpool")
    assert g.node(g.succs(p.name)[0]).op == "relu"
