import numpy as np
import pytest

import tinyonnx
from helpers import ctx
from opnets import plain, resnet
from snncc.analog import run_analog
from snncc.errors import DataError
from snncc.passes import eliminate_sums, fold_batchnorm, fold_input_affine, merge_linear, profile_activations
from snncc.passes import profile_activations as pa
from snncc.passes.profile_activations import TopK, topk_needed


@pytest.fixture
def no_slack(monkeypatch):
    """Trim the streaming top-k as often as allowed (every 2k columns), so small tests exercise the
    filter by the k-th largest value and the trims."""
    monkeypatch.setattr(pa, "TRIM_SLACK", 0)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000, 4099])
@pytest.mark.parametrize("p", [100, 99.9, 99.99, 99, 50, 0.5, 33.3])
def test_streaming_percentile_is_numpy_exact(n, p, no_slack):
    rng = np.random.default_rng(n)
    v = rng.normal(size=n) * rng.integers(0, 2, size=n)        # many ties (zeros), like ReLU outputs
    t = TopK(1, n, p)
    for i in range(0, n, 97):
        t.update(v[None, i:i + 97])
    assert t.buf.shape[1] <= 2 * topk_needed(n, p)
    assert t.result()[0] == np.percentile(v, p)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000, 4099])
@pytest.mark.parametrize("p", [100, 99.9, 99.99, 50, 0.5])
def test_streaming_percentile_of_positive_values(n, p, no_slack):
    rng = np.random.default_rng(n + 7)
    v = np.maximum(rng.normal(size=(3, n)), 0) * (rng.random((3, n)) < 0.3)    # sparse ReLU-like rows
    v[2] = 0.0                                                                   # a dead row
    t = TopK(3, n, p, positive=True)
    for i in range(0, n, 97):
        t.update(v[:, i:i + 97])
    assert t.buf.shape[1] <= 2 * topk_needed(n, p)
    for r in range(2):
        pos = v[r][v[r] > 0]
        assert t.result()[r] == (np.percentile(pos, p) if pos.size else 0.0)
    assert t.result()[2] == 0.0


@pytest.mark.parametrize("positive", [False, True])
def test_streaming_percentile_rows_of_different_scales(positive, no_slack):
    """Once a row's top k is full only values above its k-th largest are kept (a ragged, padded batch):
    rows of very different scales and trends still give numpy's percentile exactly."""
    rng = np.random.default_rng(5)
    n = 5000
    v = np.maximum(rng.normal(size=(4, n)), 0) * np.array([1.0, 100.0, 0.01, 1.0])[:, None]
    v[3] *= np.linspace(0, 3, n)                       # rising: late batches keep many values
    t = TopK(4, n, 99.9, positive=positive)
    for i in range(0, n, 128):
        t.update(v[:, i:i + 128])
    assert t.buf.shape[1] <= 2 * topk_needed(n, 99.9)
    for r in range(4):
        ref = np.percentile(v[r][v[r] > 0] if positive else v[r], 99.9)
        assert t.result()[r] == ref


def test_topk_size():
    assert topk_needed(10 ** 6, 100) == 2
    # np.percentile interpolates between sorted positions lo = floor((n-1) p/100) and lo + 1, so the top
    # n - lo values suffice; one more is kept.  n = 1e6, p = 99.9: (1e6-1)*0.999 = 998999.001, lo = 998999,
    # 1001 + 1.  n = 1000, p = 50: 499.5 -> lo = 499, 501 + 1.  n = 1001, p = 50: lo = 500, 501 + 1.
    assert topk_needed(10 ** 6, 99.9) == 1002
    assert topk_needed(1000, 50) == 502 and topk_needed(1001, 50) == 502


def _lowered(make):
    g, x = make()
    for p in (fold_batchnorm, fold_input_affine, merge_linear, eliminate_sums):
        g = p.run(g, None)
    return g, x


@pytest.mark.parametrize("make", [resnet, plain])
@pytest.mark.parametrize("cw", [False, True])
def test_equals_np_percentile_over_stacked(make, cw):
    g, x = _lowered(make)
    g = profile_activations.run(g, ctx(x, channel_wise=cw, batch_size=5, percentile=99.0))
    acts = run_analog(g, x, keep=True)
    for p in g.populations():
        if p.op == "input":
            continue
        a = np.asarray(acts[p.name], np.float64)
        rec = g.meta["activations"][p.name]
        # the same numbers up to the last bit: profiling ran the network in batches of 5, this
        # reference in one batch of 16, and a BLAS may round a matrix product differently for a
        # different batch size (numpy 2.4's OpenBLAS does, by 1 ulp); the percentile arithmetic
        # itself is bit-exact (test_streaming_percentile_is_numpy_exact)
        exact = dict(rtol=4e-16, atol=0)
        np.testing.assert_allclose(rec["layer"], np.percentile(a, 99.0), **exact)
        np.testing.assert_allclose(rec["max"], a.max(), **exact)
        if cw and p.op != "output":
            np.testing.assert_allclose(rec["channel"], np.percentile(a.reshape(-1, p.channels), 99.0, axis=0),
                                       **exact)
        else:
            assert rec["channel"] is None


@pytest.mark.parametrize("cw", [False, True])
def test_percentile_of_positive_values(cw):
    g, x = _lowered(resnet)
    g0 = profile_activations.run(g.copy(), ctx(x, channel_wise=cw, batch_size=5, percentile=99.0))
    g1 = profile_activations.run(g, ctx(x, channel_wise=cw, batch_size=5, percentile=99.0, percentile_of="positive"))
    assert g0.meta["percentile_of"] == "all" and g1.meta["percentile_of"] == "positive"
    acts = run_analog(g, x, keep=True)
    larger = 0
    for p in g.populations():
        if p.op == "input":
            continue
        a = np.asarray(acts[p.name], np.float64)
        rec, rec0 = g1.meta["activations"][p.name], g0.meta["activations"][p.name]
        assert rec["layer"] == np.percentile(a[a > 0], 99.0)
        larger += rec["layer"] > rec0["layer"]
        if cw and p.op != "output":
            ch = a.reshape(-1, p.channels)
            assert rec["channel"] == [float(np.percentile(c[c > 0], 99.0)) if (c > 0).any() else 0.0 for c in ch.T]
    assert larger > 0          # ReLU layers with zeros: the positive-only percentile is higher


def test_onnxruntime_path_matches_analog():
    g, x = tinyonnx.make()
    np.testing.assert_allclose(run_analog(g, x), tinyonnx.ort_logits(g, x), rtol=1e-5, atol=1e-5)
    g = fold_batchnorm.run(g, None)
    g = fold_input_affine.run(g, None)
    g = eliminate_sums.run(merge_linear.run(g, None), None)
    g = profile_activations.run(g, ctx(x, channel_wise=True, batch_size=8))
    assert g.meta["profile"]["source"] == "onnxruntime"
    acts = run_analog(g, x, keep=True)
    for p in g.populations():
        if p.op == "input":
            continue
        a = np.asarray(acts[p.name])
        rec = g.meta["activations"][p.name]
        np.testing.assert_allclose(rec["layer"], np.percentile(a, 99.9), rtol=1e-5)
        np.testing.assert_allclose(rec["max"], a.max(), rtol=1e-5)


def test_graph_unchanged_and_errors():
    g, x = _lowered(plain)
    from helpers import signature
    before = signature(g)[:2]
    g = profile_activations.run(g, ctx(x))
    assert signature(g)[:2] == before
    with pytest.raises(DataError):
        profile_activations.run(g, ctx(None))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        profile_activations.run(g, ctx(bad))


def test_non_finite_activation_names_the_calibration_image():
    """Batches go in a shuffled order; the error still names the image whose activations overflowed."""
    import os

    import snncc
    data = os.path.join(os.path.dirname(snncc.__file__), "data")
    x = np.load(os.path.join(data, "digits_calib.npz"))["x"].astype(np.float32)[:100].copy()
    x[37] = 3e38                 # within float32, but its activations overflow
    with pytest.raises(DataError) as e:
        snncc.convert(os.path.join(data, "digits_resnet.onnx"), x, input_scale=0.0625, mean=[0.3052], std=[0.376],
                      progress=False)
    assert "non-finite activations" in str(e.value) and "calibration image 37" in str(e.value)


def test_profiling_batches_shrink_to_the_memory_budget(monkeypatch):
    """Big networks are profiled in smaller batches (snncc.data.BATCH_BYTES); the percentiles are exact
    whatever the batch, so the recorded activations are identical."""
    from snncc import data
    g, x = _lowered(resnet)
    ref = profile_activations.run(g.copy(), ctx(x, channel_wise=True, batch_size=64, percentile=99.0))
    per_image = 24 * sum(int(np.prod(p.shape)) for p in g.populations() if p.op != "input")
    monkeypatch.setattr(data, "BATCH_BYTES", 2 * per_image)
    seen = []
    real = run_analog

    def spy(graph, xb, **k):
        seen.append(xb.shape[0])
        return real(graph, xb, **k)

    monkeypatch.setattr("snncc.analog.run_analog", spy)
    got = profile_activations.run(g, ctx(x, channel_wise=True, batch_size=64, percentile=99.0))
    assert seen and max(seen) == 2 and len(x) > 2
    assert got.meta["activations"] == ref.meta["activations"]
