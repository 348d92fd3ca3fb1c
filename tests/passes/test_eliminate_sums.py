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
    with pytest.raises(ModelError, match="constant shift .* before a zero-padded conv") as e:
        eliminate_sums.run(g, None)
    assert "put the BatchNorm before the ReLU" in e.value.hint


def test_idempotent():
    twice_equals_once(eliminate_sums.run, _prep(resnet))
    twice_equals_once(eliminate_sums.run, _prep(plain))


def _one_source_block(branches, c=4, hw=5, seed=3):
    """relu(sum of branches(r)) for r = relu(conv(in)); each branch a conv spec dict or "id"."""
    b = OB((hw, hw, 3), seed=seed)
    r = b.relu(b.conv("in", c))
    terms = []
    for spec in branches:
        if spec == "id":
            terms.append(b.affine(r))
            continue
        k, dil, g = spec.get("k", 3), spec.get("dil", 1), spec.get("groups", 1)
        p = spec.get("pads", dil * (k // 2))
        w = b.r(k, k, c // g, c) * 0.5
        terms.append(b._add("conv", [r], {"stride": (1, 1), "pads": (p,) * 4, "groups": g, "dilation": (dil, dil)},
                            {"weight": w, "bias": b.r(c, lo=-0.2, hi=0.2)}))
    z = terms[0]
    for t in terms[1:]:
        z = b.add(z, t)
    z = b.relu(z)
    return b.done(b.dense(b.flatten(b.conv(z, 2)), 3)), r, z


@pytest.mark.parametrize("branches", [
    [{"k": 3}, "id"], ["id", {"k": 3}], [{"k": 5}, "id"], [{"k": 1, "pads": 0}, "id"],   # one-conv residual blocks
    [{"k": 3, "groups": 4}, "id"], [{"k": 3, "groups": 2}, "id"],                         # depthwise / grouped
    [{"k": 3}, {"k": 1, "pads": 0}, "id"],                                                # RepVGG block
    [{"k": 1, "pads": 0}, {"k": 3}], [{"k": 3, "dil": 2}, "id"], [{"k": 5}, {"k": 3}],
])
def test_nested_convs_and_identity_of_one_source_merge_exactly(branches):
    """Convs of one population whose kernels nest, and the identity (a 1x1 diag conv), become one conv
    synapse: the smaller kernel added into the larger at the offset the pads imply -- exact."""
    g, r, z = _one_source_block(branches)
    g0 = g.copy()
    g = eliminate_sums.run(merge_linear.run(g, None), None)
    verify(g)
    assert kinds(g)[(r, z)] == (EdgeKind.SYNAPSE, "conv") and len(g.in_edges(z)) == 1
    assert_analog_equal(g0, g, np.random.default_rng(1).normal(size=(6, 5, 5, 3)))


@pytest.mark.parametrize("branches", [[{"k": 3}, {"k": 3, "dil": 2}], [{"k": 3}, {"k": 3, "groups": 2}]])
def test_convs_that_do_not_nest_still_refused(branches):
    """Different dilations or groups: no single kernel of the same geometry holds both -- one-line error."""
    g, _, _ = _one_source_block(branches)
    with pytest.raises(ModelError, match="two different linear maps") as e:
        eliminate_sums.run(merge_linear.run(g, None), None)
    assert "nest" in e.value.hint
