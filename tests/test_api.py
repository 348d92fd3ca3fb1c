"""The public Python API (``snncc.convert``, ``snncc.load``, ``SpikingNetwork``) on the digits ResNet."""
import os

import numpy as np
import onnx
import pytest

import snncc
from snncc.errors import DataError, ModelError, SnnccError, SnnFileError

DATA = os.path.join(os.path.dirname(snncc.__file__), "data")
MODEL = os.path.join(DATA, "digits_resnet.onnx")
CALIB = os.path.join(DATA, "digits_calib.npz")
TEST = os.path.join(DATA, "digits_test.npz")
PRE = dict(input_scale=0.0625, mean=[0.3052], std=[0.376])
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
    for model, c in ((proto, CALIB), (raw, CALIB), (MODEL, calib)):
        other = snncc.convert(model, c, **PRE, **FAST)
        assert isinstance(other, snncc.SpikingNetwork)
        _lambdas_equal(other.graph.meta["lambda"], net.graph.meta["lambda"])
        prov = other.graph.meta["provenance"]
        assert prov["source_sha256"] is not None and prov["calibration_images"] == 100
    import hashlib
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


@pytest.mark.parametrize("bad", [0, -5, 2.5, "8", None])
def test_timesteps_must_be_positive_integer(net, test_data, bad):
    x, _ = test_data
    with pytest.raises(DataError) as e:
        net.run(x[:2], timesteps=bad, progress=False)
    assert "timesteps" in str(e.value) and "fix:" in str(e.value)
    assert net.run(x[:2], timesteps=np.int64(2), progress=False).predictions.shape == (2, 2)


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
