import numpy as np
import pytest

from helpers import EdgeKind, assert_analog_equal, ctx, signature
from opnets import plain, resnet
from snncc.analog import run_analog
from snncc.errors import ModelError
from snncc.ir import verify
from snncc.passes import (eliminate_sums, fold_batchnorm, fold_input_affine, merge_linear, normalize,
                          profile_activations)


def _profiled(make, **kw):
    g, x = make()
    c = ctx(x, **kw)
    for p in (fold_batchnorm, fold_input_affine, merge_linear, eliminate_sums, profile_activations):
        g = p.run(g, c)
    return g, x, c


@pytest.mark.parametrize("make", [resnet, plain])
@pytest.mark.parametrize("cw", [False, True])
@pytest.mark.parametrize("pct", [99.9, 100.0])
def test_output_scaled_and_percentile_one(make, cw, pct):
    g, x, c = _profiled(make, channel_wise=cw, percentile=pct)
    g0 = g.copy()
    g = normalize.run(g, c)
    verify(g)
    lam_out = g.meta["lambda"][g.output.name]
    assert isinstance(lam_out, float)
    assert_analog_equal(g0, g, x, scale=lam_out)
    acts = run_analog(g, x, keep=True)
    for p in g.by_op("neuron"):
        a = np.asarray(acts[p.name])
        rec = g0.meta["activations"][p.name]
        if cw:
            q = np.percentile(a.reshape(-1, p.channels), pct, axis=0)
            live = np.asarray(rec["channel"]) > 0
            np.testing.assert_allclose(q[live], 1.0, rtol=1e-9)
        elif rec["layer"] > 0:
            np.testing.assert_allclose(np.percentile(a, pct), 1.0, rtol=1e-9)
    assert g.meta["channel_wise"] is cw and g.meta["shortcut_norm"] is True
    assert g.meta["percentile"] == pct


def test_maxgate_and_cap():
    g, x, c = _profiled(plain, channel_wise=True)
    g = normalize.run(g, c)
    lam = g.meta["lambda"]
    (mg,) = g.by_op("maxgate")
    (src,) = g.preds(mg.name)
    assert lam[mg.name] == lam[src]
    capped = g.node(src)
    np.testing.assert_allclose(capped.attrs["cap"], 6.0 / np.asarray(lam[src]))
    assert np.all(np.asarray(capped.attrs["cap"]) >= 1.0 - 1e-12)


def test_shortcut_norm_off_keeps_unit_shortcuts():
    g, x, c = _profiled(resnet, shortcut_norm=False)
    g = normalize.run(g, c)
    n = 0
    for u, v, d in g.nx.edges(data=True):
        if d["kind"] is EdgeKind.SHORTCUT and d["syn"].op in ("identity", "subsample_pad"):
            sc = d["syn"].params["scale"]
            assert np.all((sc == 1) | (sc == 0))
            n += 1
        if d["kind"] is EdgeKind.SHORTCUT and d["syn"].op == "conv":
            n += 1
    assert n == 3
    assert g.meta["shortcut_norm"] is False


def test_shortcut_weight_is_lambda_ratio():
    g, x, c = _profiled(resnet)
    g = normalize.run(g, c)
    lam = g.meta["lambda"]
    for u, v, d in g.nx.edges(data=True):
        if d["kind"] is EdgeKind.SHORTCUT and d["syn"].op == "identity":
            np.testing.assert_allclose(d["syn"].params["scale"], lam[u] / lam[v])   # Eq. 6


def test_dead_layer_gets_lambda_one():
    g, x, c = _profiled(resnet)
    first = g.by_op("neuron")[0].name
    g.meta["activations"][first]["layer"] = 0.0
    g = normalize.run(g, c)
    assert g.meta["lambda"][first] == 1.0


def test_idempotent_and_needs_profile():
    g, x, c = _profiled(resnet, channel_wise=True)
    g = normalize.run(g, c)
    s = signature(g)
    g = normalize.run(g, c)
    assert signature(g) == s
    g, x, c = _profiled(resnet)
    del g.meta["activations"]
    with pytest.raises(ModelError):
        normalize.run(g, c)


@pytest.mark.parametrize("make", [resnet, plain])
@pytest.mark.parametrize("cw", [False, True])
def test_rate_scale_divides_every_normalised_activation(make, cw):
    """rate_scale K: lambda x K everywhere, so every population's analog activation is 1/K of the
    unscaled network's (caps included), max gates follow their source, the output keeps its argmax."""
    g, x, c = _profiled(make, channel_wise=cw)
    ref = normalize.run(g.copy(), c)
    c.rate_scale = 4.0
    g = normalize.run(g, c)
    verify(g)
    assert g.meta["rate_scale"] == 4.0 and ref.meta["rate_scale"] == 1.0
    for name, lam in g.meta["lambda"].items():
        want = np.asarray(ref.meta["lambda"][name]) * (1.0 if g.node(name).op == "input" else 4.0)
        np.testing.assert_allclose(lam, want, rtol=1e-12)
    a, b = run_analog(ref, x, keep=True), run_analog(g, x, keep=True)
    for p in g.populations():
        if p.op != "input":
            np.testing.assert_allclose(np.asarray(b[p.name]) * 4.0, np.asarray(a[p.name]), rtol=1e-6, atol=1e-9)
    for p in g.by_op("neuron"):
        if p.attrs.get("cap") is not None:
            np.testing.assert_allclose(np.asarray(p.attrs["cap"]) * 4.0, np.asarray(ref.node(p.name).attrs["cap"]))
    s = signature(g)
    assert signature(normalize.run(g, c)) == s          # still idempotent


def test_rate_scale_rejects_nonpositive():
    g, x, c = _profiled(plain)
    c.rate_scale = 0.0
    with pytest.raises(ModelError, match="rate scale"):
        normalize.run(g, c)
