import numpy as np

from helpers import ctx, signature
from opnets import resnet
from snncc.analog import run_analog
from snncc.ir import EdgeKind, verify
from snncc.passes import PIPELINE, apply_zeta, compensate, run_pipeline


def _normalised():
    g, x = resnet()
    return run_pipeline(g, ctx(x), passes=PIPELINE[:-1]), x


def test_zeta_scales_hidden_inputs_and_bias():
    g, x = _normalised()
    g0 = g.copy()
    g = compensate.run(g, ctx(x, zeta=1.25))
    verify(g)
    assert g.meta["zeta"] == 1.25
    for p in g.populations():
        for u, d in g.in_edges(p.name):
            if d["kind"] is EdgeKind.DATA:
                continue
            f = 1.25 if p.op == "neuron" else 1.0
            for k, v in d["syn"].params.items():
                np.testing.assert_allclose(v, g0.edge(u, p.name)["syn"].params[k] * f, rtol=1e-12)
        if "bias" in p.params:
            f = 1.25 if p.op == "neuron" else 1.0
            np.testing.assert_allclose(p.params["bias"], g0.node(p.name).params["bias"] * f, rtol=1e-12)
    # analog view: every hidden layer's pre-activation is multiplied by zeta (ReLU is homogeneous),
    # so the first hidden layer's activation is zeta times larger
    first = g.by_op("neuron")[0].name
    a0 = run_analog(g0, x, keep=True)[first]
    a1 = run_analog(g, x, keep=True)[first]
    np.testing.assert_allclose(a1, 1.25 * a0, rtol=1e-9, atol=1e-12)


def test_apply_zeta_sets_total_and_is_idempotent():
    g1, _ = _normalised()
    g2, _ = _normalised()
    apply_zeta(g1, 1.1)
    apply_zeta(g2, 1.1)
    apply_zeta(g2, 1.1)
    assert signature(g1) == signature(g2)
    apply_zeta(g2, 1.0)                      # back to none
    g3, _ = _normalised()
    apply_zeta(g3, 1.0)
    for (u, v, d2) in g2.nx.edges(data=True):
        d3 = g3.edge(u, v)
        if d2["syn"] is not None:
            for k in d2["syn"].params:
                np.testing.assert_allclose(d2["syn"].params[k], d3["syn"].params[k], rtol=1e-12)


def test_none_is_noop():
    g, x = _normalised()
    s = signature(g)[:2]
    g = compensate.run(g, ctx(x))
    assert signature(g)[:2] == s and g.meta["zeta"] == 1.0
