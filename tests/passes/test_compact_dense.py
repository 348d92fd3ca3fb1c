import numpy as np

import tinyonnx
from helpers import assert_analog_equal, ctx, twice_equals_once
from opnets import resnet
from snncc.ir import verify
from snncc.passes import compact_dense, eliminate_sums, fold_batchnorm, fold_input_affine, merge_linear
from snncc.passes import normalize, profile_activations
from snncc.runtime import Network


def _lowered(make=resnet, **kw):
    g, x = make(**kw)
    for p in (fold_batchnorm, fold_input_affine, merge_linear, eliminate_sums):
        g = p.run(g, None)
    return g, x


def _classifier(g):
    (src, d), = [(u, d) for u, d in g.in_edges(g.output.name) if d["syn"].op == "dense"]
    return src, d["syn"]


def test_global_average_pool_rows_stored_once_per_channel():
    g, x = _lowered(hw=8)
    src, syn = _classifier(g)
    h, w, c = g.node(src).shape
    full = syn.params["weight"].copy()
    assert full.shape[0] == h * w * c and h * w > 1          # merge_linear's one row per position
    g0 = g.copy()
    g = compact_dense.run(g, None)
    verify(g)
    _, syn = _classifier(g)
    assert syn.attrs["tile"] == h * w and syn.params["weight"].shape == (c, full.shape[1])
    assert np.array_equal(np.tile(syn.params["weight"], (h * w, 1)), full)
    assert_analog_equal(g0, g, x)
    twice_equals_once(compact_dense.run, lambda: _lowered(hw=8))


def test_rows_that_do_not_repeat_are_left_alone():
    g, _ = _lowered(hw=8)
    _, syn = _classifier(g)
    syn.params["weight"][-1, 0] += 1e-12                      # one position differs by one ulp-ish
    w = syn.params["weight"].copy()
    g = compact_dense.run(g, None)
    _, syn = _classifier(g)
    assert "tile" not in syn.attrs and np.array_equal(syn.params["weight"], w)


def test_matches_onnxruntime_through_normalisation():
    g, x = tinyonnx.make()
    for p in (fold_batchnorm, fold_input_affine, merge_linear, eliminate_sums, compact_dense):
        g = p.run(g, None)
    assert _classifier(g)[1].attrs.get("tile", 1) > 1
    g = profile_activations.run(g, ctx(x, channel_wise=True))
    g = normalize.run(g, ctx(x, channel_wise=True))
    from snncc.analog import run_analog
    lam_out = float(np.max(g.meta["lambda"][g.output.name]))
    np.testing.assert_allclose(run_analog(g, x) * lam_out, tinyonnx.ort_logits(g, x), rtol=1e-4, atol=1e-4)


def test_runtime_identical_with_and_without_tiling():
    """The runtime adds the same float32 weights either way: identical outputs, SOPs and bounds."""
    g, x = _lowered(hw=8)
    x = np.abs(x)
    g0 = g.copy()
    g = compact_dense.run(g, None)
    a, b = Network(g0), Network(g)
    ra, rb = a.run(x, 12, progress=False), b.run(x, 12, progress=False)
    assert np.array_equal(ra.potentials, rb.potentials) and np.array_equal(ra.predictions, rb.predictions)
    assert all(np.array_equal(ra.sops[k], rb.sops[k]) for k in ra.sops)
    assert np.array_equal(a._pair, b._pair) and np.allclose(a._lo, b._lo, rtol=1e-12, atol=0)
    assert b._prog.wts.size < a._prog.wts.size
    re = b.run(x, 12, progress=False, early_exit=True)
    assert np.array_equal(re.predictions[:, -1], rb.predictions[:, -1])
