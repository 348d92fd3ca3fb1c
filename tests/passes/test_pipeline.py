import glob
import json
import os

import numpy as np
import pytest

import tinyonnx
from helpers import ctx
from opnets import plain, resnet
from snncc.analog import run_analog
from snncc.frontend import import_onnx
from snncc.ir import verify
from snncc.passes import PASS_NAMES, PIPELINE, pass_name, run_pipeline
from digits import MODEL, CALIB

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def test_pipeline_is_literal_and_ordered():
    assert [pass_name(f) for f in PIPELINE] == PASS_NAMES == [
        "fold_batchnorm", "fold_input_affine", "merge_linear", "eliminate_sums", "compact_dense",
        "profile_activations", "normalize", "compensate"]


@pytest.mark.parametrize("make", [resnet, plain])
def test_run_pipeline_verify_dump_on_pass(make, tmp_path):
    g, x = make()
    ref = run_analog(g, x)
    seen = []

    def on_pass(name, graph):
        seen.append(name)
        lam = graph.meta.get("lambda", {}).get(graph.output.name, 1.0)
        np.testing.assert_allclose(run_analog(graph, x) * lam, ref, rtol=1e-9, atol=1e-9)

    g = run_pipeline(g, ctx(x, channel_wise=True, init_membrane=0.5), verify=True, dump_ir=str(tmp_path),
                     on_pass=on_pass)
    assert seen == PASS_NAMES
    assert g.is_spiking_level()
    assert g.meta["passes"] == PASS_NAMES and g.meta["init_membrane"] == 0.5 and g.meta["zeta"] == 1.0
    files = sorted(os.listdir(tmp_path))
    assert files == ["00_input.txt"] + [f"{i:02d}_{n}.txt" for i, n in enumerate(PASS_NAMES, 1)]
    text = (tmp_path / "04_eliminate_sums.txt").read_text()
    assert "neuron" in text and "syn=conv" in text and "<-" in text


def test_tiny_onnx_end_to_end():
    g, x = tinyonnx.make()
    ref = tinyonnx.ort_logits(g, x)
    g = run_pipeline(g, ctx(x), verify=True)
    y = run_analog(g, x) * g.meta["lambda"][g.output.name]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert np.array_equal(np.argmax(y, 1), np.argmax(ref, 1))


# -- committed ONNX fixtures through the real front end ---------------------------
def _fixtures():
    return sorted(glob.glob(os.path.join(FIX, "*.onnx")) + glob.glob(os.path.join(FIX, "*", "*.onnx")))


def test_fixtures_are_committed():
    """The parametrised test below runs on every committed fixture: there must be some."""
    names = {os.path.basename(p) for p in _fixtures()}
    assert {"projection_resnet.onnx", "bottleneck_resnet.onnx", "vgg_maxpool.onnx", "plain20.onnx"} <= names


def _check_against_ort(path, g, raw, pre):
    import onnxruntime as ort

    g.meta["preprocess"] = pre
    hwc = tuple(g.input.shape)
    # onnxruntime on the original model, fed the externally preprocessed input in its own layout
    xin = raw * pre["scale"]
    if pre["mean"] is not None:
        xin = xin - np.asarray(pre["mean"])
    if pre["std"] is not None:
        xin = xin / np.asarray(pre["std"])
    if len(hwc) == 3 and g.meta.get("input_layout", "NCHW") == "NCHW":
        xin = xin.transpose(0, 3, 1, 2)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: xin.astype(np.float32)})[0].reshape(raw.shape[0], -1)
    tol = 1e-4 * float(np.abs(ref).max())

    def on_pass(name, graph):
        lam = graph.meta.get("lambda", {}).get(graph.output.name, 1.0)
        y = (run_analog(graph, raw) * lam).reshape(raw.shape[0], -1)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=tol, err_msg=f"after {name}")
        assert np.array_equal(np.argmax(y, 1), np.argmax(ref, 1)), name

    c = ctx(raw, channel_wise=True, percentile=99.9, batch_size=16)
    g = run_pipeline(g, c, verify=True, on_pass=on_pass)
    verify(g)
    assert g.is_spiking_level()
    acts = run_analog(g, raw, keep=True)
    for p in g.by_op("neuron"):
        a = np.asarray(acts[p.name]).reshape(-1, p.channels)
        live = np.asarray(g.meta["activations"][p.name]["channel"]) > 0
        np.testing.assert_allclose(np.percentile(a, 99.9, axis=0)[live], 1.0, rtol=1e-4)
    return g


@pytest.mark.parametrize("path", _fixtures(), ids=os.path.basename)
def test_fixture_every_pass_matches_onnxruntime(path):
    g = import_onnx(path)
    hwc = tuple(g.input.shape)
    side = os.path.splitext(path)[0] + ".json"
    pre = {"scale": 1.0, "mean": None, "std": None}
    if os.path.exists(side):
        meta = json.load(open(side)).get("preprocessing") or {}
        if meta:
            sc = meta.get("scale", 1.0)
            pre = {"scale": 1 / 255 if sc == "1/255" else float(sc), "mean": meta.get("mean"),
                   "std": meta.get("std")}
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 255 if pre["scale"] != 1.0 else 1.0, size=(12,) + hwc)
    _check_against_ort(path, g, raw, pre)


def test_embedded_digits_resnet_option_a():
    path = MODEL
    d = np.load(CALIB)
    raw = d["x"][:100].astype(np.float64).transpose(0, 2, 3, 1)
    pre = {"scale": float(d["scale"][0]), "mean": [float(d["mean"][0])], "std": [float(d["std"][0])]}
    g = _check_against_ort(path, import_onnx(path), raw, pre)
    short = sorted(dd["syn"].op for _, _, dd in g.nx.edges(data=True) if dd["kind"].value == "shortcut")
    assert short == ["identity", "identity", "subsample_pad"]


def test_dump_dir_never_mixes_runs_and_custom_passes_keep_their_names(tmp_path):
    """A second run into the same --dump-ir directory removes the first run's NN_*.txt (other files
    stay); a custom pass is named after its function (a partial after the wrapped function)."""
    import functools
    g, x = resnet()
    run_pipeline(g, ctx(x), dump_ir=str(tmp_path))
    (tmp_path / "notes.md").write_text("mine")
    (tmp_path / "01_notes.txt").write_text("mine too, named like a dump")

    def widen(graph, c, k=1):
        return graph

    g, x = resnet()
    g = run_pipeline(g, ctx(x), dump_ir=str(tmp_path), passes=PIPELINE[:2] + [widen, functools.partial(widen, k=2)])
    assert g.meta["passes"] == PASS_NAMES[:2] + ["widen", "widen"]
    assert sorted(os.listdir(tmp_path)) == ["00_input.txt", "01_fold_batchnorm.txt", "01_notes.txt",
                                            "02_fold_input_affine.txt", "03_widen.txt", "04_widen.txt", "notes.md"]
    assert (tmp_path / "00_input.txt").read_text().startswith("# input (op level)")
    h = run_pipeline(g, ctx(x), dump_ir=str(tmp_path / "again"), passes=PIPELINE[2:])
    assert (tmp_path / "again" / "00_input.txt").read_text().startswith("# input (op level)")
    run_pipeline(h, ctx(x), dump_ir=str(tmp_path / "spiking"), passes=[])
    assert (tmp_path / "spiking" / "00_input.txt").read_text().startswith("# input (spiking level)")
