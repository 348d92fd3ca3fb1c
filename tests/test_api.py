"""The public Python API (``snncc.convert``, ``snncc.load``, ``SpikingNetwork``) on the digits ResNet."""
import os

import numpy as np
import onnx
import pytest

import snncc
from snncc.errors import DataError, ModelError, SnnccError, SnnFileError
from digits import MODEL, CALIB, TEST, PRE

FAST = dict(calibrate_bias=0, calib_limit=100, progress=False)
T = 32


@pytest.fixture(scope="module")
def test_data():
    d = np.load(TEST)
    return d["x"], d["y"]          # (450, 1, 8, 8) uint8, the model's NCHW layout


@pytest.fixture(scope="module")
def net():
    return snncc.convert(MODEL, CALIB, **PRE, **FAST)


def _lambdas_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_convert_from_path_modelproto_bytes_and_array(net):
    calib = np.load(CALIB)["x"]
    proto = onnx.load(MODEL)
    raw = open(MODEL, "rb").read()
    import hashlib
    # the hash of what was given: the file's bytes, or the ModelProto as serialised
    for model, c, digest in ((proto, CALIB, hashlib.sha256(proto.SerializeToString()).hexdigest()),
                             (raw, CALIB, hashlib.sha256(raw).hexdigest()),
                             (MODEL, calib, hashlib.sha256(raw).hexdigest())):
        other = snncc.convert(model, c, **PRE, **FAST)
        assert isinstance(other, snncc.SpikingNetwork)
        _lambdas_equal(other.graph.meta["lambda"], net.graph.meta["lambda"])
        prov = other.graph.meta["provenance"]
        assert prov["source_sha256"] == digest and prov["calibration_images"] == 100
    assert net.graph.meta["provenance"]["source_sha256"] == hashlib.sha256(raw).hexdigest()
    assert net.graph.meta["provenance"]["source_name"] == "digits_resnet.onnx"


def test_properties(net):
    assert net.input_shape == (8, 8, 1) and net.n_classes == 10
    assert repr(net) == "SpikingNetwork(8 populations, input (8, 8, 1), 10 classes)"
    assert net.graph.is_spiking_level()


def test_save_load_roundtrip_identical_simulation(net, tmp_path, test_data):
    x, y = test_data
    p = tmp_path / "d.snn"
    net.save(str(p))
    back = snncc.load(str(p))
    assert snncc.load(p).n_classes == 10                              # os.PathLike works too
    a = net.run(x[:64], timesteps=T, labels=y[:64], progress=False, threads=1)
    b = back.run(x[:64], timesteps=T, labels=y[:64], progress=False, threads=1)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    assert a.spikes.keys() == b.spikes.keys()
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k])
        np.testing.assert_array_equal(a.sops[k], b.sops[k])
    np.testing.assert_array_equal(a.potentials, b.potentials)
    np.testing.assert_array_equal(net.analog(x[:64]), back.analog(x[:64]))
    assert back.graph.meta["preprocess"] == {"scale": 0.0625, "mean": [0.3052], "std": [0.376]}


def test_run_nchw_and_nhwc_uint8_agree_and_are_accurate(net, test_data):
    x, y = test_data
    xs, ys = x[:200], y[:200]
    assert xs.dtype == np.uint8
    a = net.run(xs, timesteps=T, labels=ys, progress=False, threads=1)
    b = net.run(np.ascontiguousarray(xs.transpose(0, 2, 3, 1)), timesteps=T, labels=ys, progress=False, threads=1)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    assert a.predictions.shape == (200, T)
    assert a.accuracy() == b.accuracy() >= 0.9
    assert a.accuracy_at[T] == a.accuracy()
    # one-channel images without the channel axis work too
    c = net.run(xs[:, 0], timesteps=T, progress=False, threads=1)
    np.testing.assert_array_equal(a.predictions, c.predictions)


def test_analog_argmax_matches_onnxruntime(net, test_data):
    import onnxruntime as ort
    x, _ = test_data
    sess = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    xin = ((x.astype(np.float32) * 0.0625 - 0.3052) / 0.376).astype(np.float32)
    logits = sess.run(None, {sess.get_inputs()[0].name: xin})[0]
    ours = net.analog(x)
    assert ours.shape == (450, 10)
    np.testing.assert_array_equal(np.argmax(ours, axis=1), np.argmax(logits, axis=1))
    # the normalised view is the ANN's logits over the output lambda (one positive scale per network)
    lam_out = net.graph.meta["lambda"][net.graph.output.name]
    assert np.ndim(lam_out) == 0 and lam_out > 0
    np.testing.assert_allclose(ours * lam_out, logits, rtol=1e-4, atol=1e-4)


def test_run_callback_streams_every_step(net, test_data):
    x, _ = test_data
    calls = []
    res = net.run(x[:40], timesteps=8, batch_size=16, progress=False, threads=1,
                  callback=lambda t, pred, sl: calls.append((t, pred.copy(), sl)))
    assert len(calls) == 3 * 8                                    # batches of 16, 16, 8
    assert [c[0] for c in calls] == list(range(1, 9)) * 3
    assert [(c[2].start, c[2].stop) for c in calls[::8]] == [(0, 16), (16, 32), (32, 40)]
    for t, pred, sl in calls:
        np.testing.assert_array_equal(pred, res.predictions[sl, t - 1])


@pytest.mark.parametrize("bad", [0, -5, 2.5, "8", None, True, 2_000_000])
def test_timesteps_must_be_positive_integer(net, test_data, bad):
    x, _ = test_data
    for run in (lambda T: net.run(x[:2], timesteps=T, progress=False),
                lambda T: net.runtime.run(np.transpose(x[:2], (0, 2, 3, 1)), T, progress=False)):
        with pytest.raises(DataError) as e:
            run(bad)
        assert "time steps" in str(e.value) or "timesteps" in str(e.value)
        assert "fix:" in str(e.value) and "\n" not in str(e.value)
    assert net.run(x[:2], timesteps=np.int64(2), progress=False).predictions.shape == (2, 2)


BAD_RUN_ARGS = {   # keyword arguments of run() -> words of the one-line DataError
    "labels out of range": (dict(labels=np.arange(100, 104)), ["labels range over 100..103", "10 classes"]),
    "labels negative": (dict(labels=-np.ones(4, int)), ["labels range over -1..-1"]),
    "labels float": (dict(labels=np.zeros(4) + 0.5), ["dtype float64", "integer"]),
    "labels str": (dict(labels=np.array(["1", "2", "3", "4"])), ["dtype <U1"]),
    "labels 2-D": (dict(labels=np.zeros((2, 2), int)), ["shape (2, 2) for 4 images"]),
    "labels too few": (dict(labels=np.zeros(3, int)), ["shape (3,) for 4 images"]),
    "batch_size None": (dict(batch_size=None), ["batch_size", "None"]),
    "batch_size 0": (dict(batch_size=0), ["batch_size", "got 0"]),
    "threads negative": (dict(threads=-1), ["threads", "got -1"]),
    "threads float": (dict(threads=1.5), ["threads", "1.5"]),
    "callback not callable": (dict(callback=5), ["callback must be callable", "int"]),
    "exit_stable negative": (dict(exit_stable=-3), ["exit_stable", "got -3"]),
    "exit_stable float": (dict(exit_stable=2.5), ["exit_stable", "2.5"]),
    "exit_stable bool": (dict(exit_stable=True), ["exit_stable", "True"]),
    "record unknown": (dict(record=["nope"]), ["unknown or unsimulated population 'nope'"]),
    "until unknown": (dict(until="nope"), ["until unknown population 'nope'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_RUN_ARGS))
def test_run_rejects_bad_arguments_with_one_line(net, test_data, case):
    kw, words = BAD_RUN_ARGS[case]
    with pytest.raises(DataError) as e:
        net.run(test_data[0][:4], timesteps=4, progress=False, **kw)
    msg = str(e.value)
    assert "\n" not in msg and "fix:" in msg and all(w in msg for w in words), msg


def test_run_until_rejects_early_exit_and_later_records(net, test_data):
    first, second = (p.name for p in net.runtime.pops[:2])
    for kw, words in ((dict(until=first, early_exit=True), ["early exit needs the output population"]),
                      (dict(until=first, exit_stable=8), ["early exit needs the output population"]),
                      (dict(until=first, record=[second]), [f"unsimulated population {second!r}"])):
        with pytest.raises(DataError) as e:
            net.run(test_data[0][:4], timesteps=4, progress=False, **kw)
        msg = str(e.value)
        assert "\n" not in msg and "fix:" in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("x, words", [
    ([[1, 2], [3]], ["not a rectangular array"]),
    (np.zeros((0, 1, 8, 8), np.uint8), ["no images"]),
    (np.full((2, 1, 8, 8), 1e300), ["1e+300", "beyond float32"]),
    (np.full((2, 1, 8, 8), "a"), ["dtype <U1"]),
    (np.zeros((2, 1, 8, 8), complex), ["dtype complex128"]),
])
def test_run_and_analog_reject_bad_images(net, x, words):
    for f in (lambda: net.run(x, timesteps=4, progress=False), lambda: net.analog(x)):
        with pytest.raises(DataError) as e:
            f()
        assert all(w in str(e.value) for w in words), str(e.value)


def test_runtime_run_validates_like_the_api(net, test_data):
    """Network.run (embedding without SpikingNetwork) checks its images as well."""
    xh = np.transpose(test_data[0][:2], (0, 2, 3, 1)).astype(np.float32)
    xh[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or inf"):
        net.runtime.run(xh, 4, progress=False)


def test_record_accepts_one_name_or_none_and_accuracy_checks_t(net, test_data):
    x, y = test_data[0][:4], test_data[1][:4]
    pop = [p.name for p in net.graph.populations() if p.op == "neuron"][0]
    r = net.run(x, timesteps=4, labels=y, record=pop, progress=False)
    assert list(r.rates) == [pop] and r.rates[pop].shape[0] == 4
    assert net.run(x, timesteps=4, record=None, progress=False).rates == {}
    assert net.run(x, timesteps=4, labels=y.reshape(4, 1), progress=False).accuracy() == r.accuracy()
    for bad in (0, 5, 2.5, "3"):
        with pytest.raises(DataError, match="accuracy"):
            r.accuracy(bad)
    assert r.accuracy(np.int64(4)) == r.accuracy()
    # lenient where the meaning is plain: whole-number float labels, a numpy array of names, threads=0 (default)
    r2 = net.run(x, timesteps=4, labels=y.astype(float), record=np.array([pop]), threads=0, progress=False)
    assert r2.accuracy() == r.accuracy() and list(r2.rates) == [pop]


def test_run_wrong_shape_raises_data_error(net):
    with pytest.raises(DataError, match=r"\(N, 1, 8, 8\)"):
        net.run(np.zeros((3, 3, 8, 8), np.uint8), timesteps=4)
    with pytest.raises(DataError, match="NaN or inf"):
        net.analog(np.full((2, 1, 8, 8), np.nan, np.float32))


def test_convert_bad_inputs_raise_snncc_errors(tmp_path):
    x = np.load(CALIB)["x"].astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        snncc.convert(MODEL, x, **PRE, **FAST)
    with pytest.raises(ModelError, match="not a valid ONNX"):
        snncc.convert(open(MODEL, "rb").read()[:4000], CALIB, **PRE, **FAST)
    with pytest.raises(SnnccError, match="unknown preset"):
        snncc.convert(MODEL, CALIB, preset="fast", **PRE, **FAST)
    with pytest.raises(SnnccError, match="--std values must be finite"):
        snncc.convert(MODEL, CALIB, input_scale=0.0625, std=[float("inf")], **FAST)
    with pytest.raises(SnnccError, match="compensation factor"):
        snncc.convert(MODEL, CALIB, compensate=float("nan"), **PRE, **FAST)
    with pytest.raises(DataError, match="no images"):
        snncc.convert(MODEL, np.zeros((0, 1, 8, 8)), **PRE, **FAST)
    with pytest.raises(DataError, match="real numbers"):
        snncc.convert(MODEL, np.zeros((4, 1, 8, 8), np.complex128), **PRE, **FAST)
    with pytest.raises(SnnFileError, match="not found"):
        snncc.load(str(tmp_path / "nope.snn"))


def test_convert_accepts_scalar_mean_std_and_integer_zeta():
    net = snncc.convert(MODEL, CALIB, input_scale=0.0625, mean=0.3052, std=np.float32(0.376), compensate=2,
                        **FAST)
    assert net.graph.meta["preprocess"]["mean"] == [0.3052]
    assert net.graph.meta["zeta"] == 2.0                       # an int zeta is applied, not dropped
    assert net.graph.meta["provenance"]["options"]["compensate"] == 2.0


def test_convert_log_reports_transpose(tmp_path):
    x = np.load(CALIB)["x"].transpose(0, 2, 3, 1)
    msgs = []
    snncc.convert(MODEL, x, **PRE, **FAST, log=msgs.append)
    assert any("transposed automatically" in m for m in msgs)


def test_maxgate_rule_follows_preset_and_option(tmp_path):
    """Max pools become gates with the preset's rule (best: ``max``, paper: ``leader``), an
    explicit ``maxgate=`` wins, the rule survives save/load, and a bad rule is one error."""
    model = os.path.join(os.path.dirname(__file__), "fixtures", "vgg_maxpool.onnx")
    x = np.random.default_rng(0).uniform(0, 1, (32, 3, 16, 16)).astype(np.float32)

    def rules(net):
        return {n.attrs.get("rule") for n in net.graph.populations() if n.op == "maxgate"}
    best = snncc.convert(model, x, **FAST)
    assert rules(best) == {"max"}
    assert rules(snncc.convert(model, x, preset="paper", compensate="none", **FAST)) == {"leader"}
    forced = snncc.convert(model, x, maxgate="leader", **FAST)
    assert rules(forced) == {"leader"}
    forced.save(str(tmp_path / "m.snn"))
    assert rules(snncc.load(str(tmp_path / "m.snn"))) == {"leader"}
    with pytest.raises(SnnccError, match="max-pool gate rule"):
        snncc.convert(model, x, maxgate="median", **FAST)


def test_percentile_of_positive_values(tmp_path, net):
    """``percentile_of='positive'`` (both presets' default) takes lambda
    over the nonzero ReLU outputs: never a smaller lambda than over all activations, larger where a
    layer has zeros; recorded in the file."""
    pos = net
    alls = snncc.convert(MODEL, CALIB, **PRE, **FAST, percentile_of="all")
    assert pos.graph.meta["percentile_of"] == "positive" and alls.graph.meta["percentile_of"] == "all"
    paper = snncc.convert(MODEL, CALIB, **PRE, **FAST, preset="paper", compensate="none")
    assert paper.graph.meta["percentile_of"] == "positive"
    la, lp = alls.graph.meta["lambda"], pos.graph.meta["lambda"]
    larger = 0
    for k in la:
        a, p = np.asarray(la[k], float), np.asarray(lp[k], float)
        assert np.all(p >= a - 1e-12 * np.abs(a)), k
        larger += int(np.any(p > a))
    assert larger >= 3
    pos.save(str(tmp_path / "p.snn"))
    assert snncc.load(str(tmp_path / "p.snn")).graph.meta["percentile_of"] == "positive"
    with pytest.raises(SnnccError, match="percentile population"):
        snncc.convert(MODEL, CALIB, **PRE, **FAST, percentile_of="nonzero")


@pytest.mark.parametrize("preset", sorted(snncc.api.PRESETS))
def test_resolve_options_takes_every_preset_value_and_overrides(preset):
    from dataclasses import MISSING, fields

    from snncc.api import PRESETS, resolve_options
    # the fields without a default are exactly the ones every preset sets
    required = {f.name for f in fields(snncc.api.ConvertOptions)
                if f.default is MISSING and f.default_factory is MISSING} - {"preset"}
    assert required == set(PRESETS[preset])
    o = resolve_options(preset)
    assert {k: getattr(o, k) for k in PRESETS[preset]} == PRESETS[preset]
    assert o.preset == preset and o.zeta_timesteps == 256 and o.zeta_images == 256
    o2 = resolve_options(preset, percentile=99.99, zeta_timesteps=350, zeta_images=None)
    assert o2.percentile == 99.99 and o2.zeta_timesteps == 350 and o2.zeta_images == 256
    with pytest.raises(SnnccError, match="zeta-images"):
        resolve_options(preset, zeta_images=0)


def test_every_meta_key_is_documented(net):
    from snncc.ir import META_KEYS
    assert set(net.graph.meta) <= set(META_KEYS), sorted(set(net.graph.meta) - set(META_KEYS))


def test_convert_ignores_labels_it_does_not_use(tmp_path):
    """Only the zeta search reads calibration labels: 1-based labels are fine without it, an error with it."""
    c = np.load(CALIB)
    p = tmp_path / "calib1.npz"
    np.savez(p, x=c["x"], y=c["y"] + 1)
    snncc.convert(MODEL, str(p), **PRE, **FAST)
    with pytest.raises(DataError, match="calibration labels range over 1..10"):
        snncc.convert(MODEL, str(p), **PRE, **FAST, compensate="auto")


def test_rate_scale_fires_k_times_less_with_the_same_answer(net, test_data):
    """rate_scale=2: every lambda doubles (meta), the analog output halves (same argmax), and the first
    layer -- constant current c = its normalised activation / 2, membrane from 0.5 -- fires exactly
    floor(0.5 + T c) times per neuron (one spike per step at most)."""
    from snncc.analog import run_analog
    x, y = test_data
    x = x[:64]
    half = snncc.convert(MODEL, CALIB, **PRE, **FAST, rate_scale=2)
    m0, m2 = net.graph.meta, half.graph.meta
    assert m2["rate_scale"] == 2.0 and m0["rate_scale"] == 1.0
    for k, lam in m2["lambda"].items():
        f = 1.0 if half.graph.node(k).op == "input" else 2.0
        np.testing.assert_allclose(lam, np.asarray(m0["lambda"][k]) * f, rtol=1e-12)
    np.testing.assert_allclose(half.analog(x) * 2.0, net.analog(x), rtol=1e-5, atol=1e-6)
    first = next(p.name for p in half.graph.populations() if p.op == "neuron")
    Tn = 64
    r2 = half.run(x, timesteps=Tn, record=[first], progress=False)
    r1 = net.run(x, timesteps=Tn, progress=False)
    c = np.asarray(run_analog(half.graph, half.prepare(x), keep=True)[first]).reshape(len(x), -1)
    want = np.clip(np.floor(0.5 + Tn * c), 0, Tn)
    got = np.rint(np.asarray(r2.rates[first]) * Tn)
    assert np.abs(got - want).max() <= 1 and np.mean(got == want) > 0.99
    s1 = sum(v.sum() for v in r1.spikes.values())
    s2 = sum(v.sum() for v in r2.spikes.values())
    assert 0.35 < s2 / s1 < 0.65, s2 / s1


def test_rate_scale_options():
    from snncc.api import resolve_options
    assert resolve_options("best", rate_scale=4).calibrate_bias == 4 * resolve_options("best").calibrate_bias
    assert resolve_options("best", rate_scale=4, calibrate_bias=64).calibrate_bias == 64   # explicit: kept
    assert resolve_options("paper", rate_scale=4).calibrate_bias == 0
    for bad in (0, -1, float("nan"), float("inf"), 1e6, True, "4"):
        with pytest.raises(SnnccError, match="rate scale"):
            resolve_options("best", rate_scale=bad)
    assert resolve_options("best", init_membrane="auto").init_membrane == "auto"
    assert resolve_options("best", init_membrane="0.25").init_membrane == 0.25
    for bad in ("soon", 1.0, -0.1, True, [0.5]):
        with pytest.raises(SnnccError, match="initial membrane|--init-membrane"):
            resolve_options("best", init_membrane=bad)


def test_param_dtype_float32_is_the_float64_network_rounded(net, tmp_path, test_data):
    """Default: every parameter rounded to float32 (stored so, half the bytes); --param-dtype float64
    keeps the IR's values. Without bias calibration or zeta the two differ by that rounding only."""
    from snncc import snnfile
    assert snnfile.param_dtype(net.graph) == "float32"
    wide = snncc.convert(MODEL, CALIB, **PRE, **FAST, param_dtype="float64")
    assert snnfile.param_dtype(wide.graph) == "float64"
    n_diff = 0
    for a, b in zip(snnfile._param_arrays(wide.graph), snnfile._param_arrays(net.graph)):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k].dtype == a[k].dtype == np.float64
            np.testing.assert_array_equal(b[k], a[k].astype(np.float32))
            n_diff += int(np.sum(b[k] != a[k]))
    assert n_diff > 0                                           # float64 really kept more
    p32, p64 = tmp_path / "n32.snn", tmp_path / "n64.snn"
    net.save(str(p32))
    wide.save(str(p64))
    assert 0.45 < os.path.getsize(p32) / os.path.getsize(p64) < 0.6
    x, y = test_data
    a = net.run(x, timesteps=T, progress=False).predictions[:, -1]
    b = wide.run(x, timesteps=T, progress=False).predictions[:, -1]
    assert np.mean(a == b) >= 0.99
    with pytest.raises(SnnccError, match="float32, float64"):
        snncc.convert(MODEL, CALIB, **PRE, **FAST, param_dtype="float16")
