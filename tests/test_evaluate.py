"""``snncc eval`` end to end on the embedded digits ResNet, and the helpers of snncc.evaluate."""
import json
import os
import sys

import numpy as np
import pytest

import snncc
from snncc import evaluate
from snncc.cli import main
from clirun import cli
from digits import MODEL, CALIB, TEST, PRE_ARGS as PRE
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "runtime"))
from rt_nets import stable_exit_steps  # noqa: E402

T = 32




@pytest.fixture(scope="module")
def digits_snn(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("eval") / "digits.snn")
    assert main([MODEL, "-o", out, "--calib", CALIB, *PRE, "--calibrate-bias", "0", "--calib-limit", "200",
                 "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def full_eval(digits_snn, tmp_path_factory):
    """One eval with every report: JSON, plot, ANN accuracy (stdout kept for the assertions)."""
    d = tmp_path_factory.mktemp("evalout")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["eval", digits_snn, "--data", TEST, "-T", str(T), "--limit", "100", "--ann", MODEL,
                   "--json", str(d / "out.json"), "--plot", str(d / "out.png"), "--threads", "1", "-q"])
    assert rc == 0
    return d, json.loads((d / "out.json").read_text()), buf.getvalue()


def test_eval_json_report(full_eval, digits_snn):
    d, r, _ = full_eval
    for k in ("snn_accuracy", "timesteps", "images", "accuracy_at", "ann_accuracy", "sops_per_image",
              "spikes_per_image", "seconds_per_image", "layers", "energy_snn_uj", "energy_ann_uj",
              "ann_macs_per_image", "mean_steps_run"):
        assert k in r, k
    assert r["timesteps"] == T and r["images"] == 100
    assert list(r["accuracy_at"]) == ["1", "2", "4", "8", "16", "32"]
    assert r["accuracy_at"][str(T)] == r["snn_accuracy"]
    assert r["snn_accuracy"] >= 0.9
    assert r["ann_accuracy"] >= 0.95
    # agreement with the ANN bounds the accuracy gap; the paired standard error of the loss is
    # zero where they agree, so it is bounded by the disagreement
    assert list(r["ann_agreement_at"]) == list(r["accuracy_at"]) == list(r["loss_standard_error_at"])
    for t, agree in r["ann_agreement_at"].items():
        assert 0 <= agree <= 1
        assert abs(r["ann_accuracy"] - r["accuracy_at"][t]) <= 1 - agree + 1e-12
        assert 0 <= r["loss_standard_error_at"][t] <= np.sqrt((1 - agree) / 99) + 1e-12
    assert r["ann_agreement_at"][str(T)] >= 0.9
    # accuracy is a fraction of 100 images and rises with time overall
    for v in r["accuracy_at"].values():
        assert 0 <= v <= 1 and abs(v * 100 - round(v * 100)) < 1e-9
    assert r["accuracy_at"]["1"] < r["accuracy_at"]["32"]
    assert r["sops_per_image"] > r["spikes_per_image"] > 0 and r["seconds_per_image"] > 0
    assert r["mean_steps_run"] == T
    g = snncc.load(digits_snn).graph
    pops = [p for p in g.populations() if p.op != "input"]
    assert list(r["layers"]) == [p.name for p in pops]
    total_spikes = 0.0
    for p in pops:
        lay = r["layers"][p.name]
        for k in ("firing_rate", "propagation_error", "ann_snn_correlation", "rate_gap"):
            assert k in lay
        assert lay["op"] == p.op and lay["neurons"] == int(np.prod(p.shape))
        if p.op == "neuron":
            assert 0 < lay["firing_rate"] < 1
            assert abs(lay["propagation_error"]) < 1
            assert lay["ann_snn_correlation"] > 0.9          # rates track the normalised activations
            assert abs(lay["rate_gap"]) < 0.1
            # firing rate = spikes / (neurons x steps)
            assert lay["firing_rate"] == pytest.approx(lay["spikes_per_image"] / (lay["neurons"] * T), rel=1e-9)
            total_spikes += lay["spikes_per_image"]
    assert total_spikes == pytest.approx(r["spikes_per_image"], rel=1e-9)
    assert r["ann_macs_per_image"] == evaluate.ann_macs(g)
    # per image, for paired comparisons: the seeded --limit subset of the test file, its labels, the answers at T
    from snncc.data import load_arrays, subset_indices
    xt, yt = load_arrays(TEST)
    assert r["image_indices"] == subset_indices(len(yt), 100).tolist()
    assert r["labels"] == yt[r["image_indices"]].tolist()
    assert np.mean(np.asarray(r["predictions"]) == np.asarray(r["labels"])) == r["snn_accuracy"]
    lg = r["late_gain"]                      # T/2 and T are both checkpoints: the gain is their difference
    assert lg["from_step"] == T // 2
    assert lg["gain"] == pytest.approx(r["accuracy_at"][str(T)] - r["accuracy_at"][str(T // 2)])
    assert r["energy_snn_uj"] == pytest.approx(r["sops_per_image"] * 77e-9)
    assert r["energy_ann_uj"] == pytest.approx(r["ann_macs_per_image"] * 12.5e-6)
    # the per-layer figures, recomputed from a run of the same images: E = mean V(T)/T, rates,
    # correlation and gap against the analog view on the first 32 of them
    from snncc.analog import run_analog
    net = snncc.load(digits_snn)
    xc = net.prepare(xt[r["image_indices"]])
    names = [p.name for p in pops if p.op == "neuron"]
    res = net.runtime.run(xc, T, progress=False, threads=1, record=names)
    acts = run_analog(g, xc[:32], keep=True)
    res32 = net.runtime.run(xc[:32], T, progress=False, threads=1, record=names)
    for k in names:
        lay = r["layers"][k]
        assert lay["propagation_error"] == pytest.approx(float(np.mean(res.prop_error[k])), rel=1e-9, abs=1e-12)
        assert lay["firing_rate"] == pytest.approx(float(np.mean(res.rates[k])), rel=1e-9)
        a, rate = np.asarray(acts[k]).ravel(), np.asarray(res32.rates[k]).ravel()
        assert lay["ann_snn_correlation"] == pytest.approx(np.corrcoef(a, rate)[0, 1], rel=1e-9)
        assert lay["rate_gap"] == pytest.approx(np.mean(rate - np.clip(a, 0, 1)), rel=1e-9, abs=1e-12)


def test_eval_plot_is_a_png(full_eval):
    d, _, _ = full_eval
    raw = (d / "out.png").read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    img = matplotlib.image.imread(str(d / "out.png"))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert sorted(os.listdir(d)) == ["out.json", "out.png"]           # no temp files


def test_eval_console_report(full_eval):
    _, r, so = full_eval
    rows = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in so.splitlines()
            if ln.startswith("│") and ln.split("│")[1].strip().isdigit()}
    assert rows == {k: f"{100 * v:.2f}%" for k, v in r["accuracy_at"].items()}
    assert f"ANN accuracy {100 * r['ann_accuracy']:.2f}%" in so
    assert "SOPs per image" in so and "77 fJ/SOP" in so and "12.5 pJ" in so
    assert all(len(ln) <= 120 for ln in so.splitlines())
    assert f"digits.snn on {r['images']} images, T={r['timesteps']}" in so.splitlines()[0]   # one line


def test_eval_early_exit_same_accuracy_fewer_steps(full_eval, digits_snn, tmp_path, capsys):
    _, r, _ = full_eval
    rc, so, se = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", T, "--limit", "100", "--early-exit",
                     "--threads", "1", "--json", tmp_path / "e.json", "-q")
    assert rc == 0, se
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["early_exit"] is True
    assert e["snn_accuracy"] == r["snn_accuracy"]
    assert e["mean_steps_run"] < T
    assert f"early exit ran {e['mean_steps_run']:.1f} of {T} steps on average" in so


def test_eval_exit_stable_stops_at_the_rule(full_eval, digits_snn, tmp_path, capsys):
    _, r, _ = full_eval
    m = 8
    rc, so, se = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", T, "--limit", "100", "--exit-stable", m,
                     "--threads", "1", "--json", tmp_path / "s.json", "-q")
    assert rc == 0, se
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["exit_stable"] == m and s["early_exit"] is False
    assert s["image_indices"] == r["image_indices"]
    # the simulation is the full run's up to each image's exit: recompute the rule from a full traced run
    net = snncc.load(digits_snn)
    steps, full = stable_exit_steps(net.runtime, net.prepare(np.load(TEST)["x"][s["image_indices"]]), T, m, threads=1)
    assert s["mean_steps_run"] == pytest.approx(np.mean(steps)) and m <= s["mean_steps_run"] < T / 2
    assert s["predictions"] == [int(p[t - 1]) for p, t in zip(full, steps)]
    assert s["sops_per_image"] < r["sops_per_image"] / 2
    assert f"stopped after {m} equal predictions: ran {s['mean_steps_run']:.1f} of {T} steps on average" in so
    rc, _, se = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", T, "--exit-stable", "0")
    assert rc == 2 and "--exit-stable" in se and "\n" not in se.strip()


def test_eval_threads_and_energy_options(full_eval, digits_snn, tmp_path, capsys):
    _, r, _ = full_eval      # ran with --threads 1 --batch-size 64
    rc, so, se = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", T, "--limit", "100", "--threads", "1",
                     "--batch-size", "16", "--pj-per-flop", "4.6", "--fj-per-sop", "1", "--json",
                     tmp_path / "t.json", "-q")
    assert rc == 0, se
    t = json.loads((tmp_path / "t.json").read_text())
    assert r["threads"] == 1 and t["threads"] == 1
    # the simulation is deterministic: same numbers with another batch size
    assert t["accuracy_at"] == r["accuracy_at"]
    assert t["sops_per_image"] == r["sops_per_image"] and t["spikes_per_image"] == r["spikes_per_image"]
    assert t["energy_snn_uj"] == pytest.approx(t["sops_per_image"] * 1e-9)
    assert t["energy_ann_uj"] == pytest.approx(t["ann_macs_per_image"] * 4.6e-6)
    assert "1 fJ/SOP" in so and "4.6 pJ" in so


def test_eval_nhwc_data_and_odd_T(digits_snn, tmp_path, capsys):
    d = np.load(TEST)
    np.savez(tmp_path / "nhwc.npz", x=d["x"][:40].transpose(0, 2, 3, 1), y=d["y"][:40])
    np.savez(tmp_path / "nchw.npz", x=d["x"][:40], y=d["y"][:40])
    res = {}
    for name in ("nhwc", "nchw"):
        rc, so, se = cli(capsys, "eval", digits_snn, "--data", tmp_path / f"{name}.npz", "-T", "20",
                         "--threads", "1", "--json", tmp_path / f"{name}.json")
        assert rc == 0, se
        assert ("transposed automatically" in so) == (name == "nhwc")
        res[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert list(res["nchw"]["accuracy_at"]) == ["1", "2", "4", "8", "16", "20"]
    assert res["nhwc"]["accuracy_at"] == res["nchw"]["accuracy_at"]


def test_checkpoints():
    assert evaluate.checkpoints(1) == [1]
    assert evaluate.checkpoints(32) == [1, 2, 4, 8, 16, 32]
    assert evaluate.checkpoints(100) == [1, 2, 4, 8, 16, 32, 64, 100]


def test_ann_macs_counts_every_synapse(digits_snn):
    """Independent count: conv k*k*Cin/groups, dense F_in (rows x tile), identity/subsample 1, avgpool k*k per target."""
    g = snncc.load(digits_snn).graph
    total = 0
    for p in g.populations():
        for u, d in g.in_edges(p.name):
            syn = d["syn"]
            if syn is None:
                continue
            if syn.op == "conv":
                kh, kw, cin_g, _ = syn.params["weight"].shape
                fan = kh * kw * cin_g
            elif syn.op == "dense":      # a tiled classifier (compact_dense) reads rows x tile neurons
                fan = syn.params["weight"].shape[0] * syn.attrs.get("tile", 1)
            else:
                fan = 1
            total += fan * int(np.prod(p.shape))
    assert evaluate.ann_macs(g) == total
    # the digits ResNet: 3x3 convs 1->16, 16->16 (x2), 16->32 (stride 2), 32->32 (x3), dense 512->10
    convs = 64 * 9 * 16 + 2 * 64 * 16 * 144 + 16 * 32 * 144 + 3 * 16 * 32 * 288
    shortcuts = 1024 + 512 + 512
    assert total == convs + shortcuts + 512 * 10


def test_layer_agreement_correlation_high_and_rate_gap_small(digits_snn):
    net = snncc.load(digits_snn)
    x = net.prepare(np.load(TEST)["x"][:16])
    c = evaluate.layer_agreement(net, x, 32, images=16)
    assert set(c) == {p.name for p in net.graph.populations() if p.op in ("neuron", "maxgate")}
    assert all(0.9 < corr <= 1.0 + 1e-12 for corr, _ in c.values())
    assert all(abs(gap) < 0.05 for _, gap in c.values())          # rates within 0.05 of the activations
    # the gap is rate - clip(act, 0, 1) exactly: recompute it for the first layer
    from snncc.analog import run_analog
    p = next(iter(c))
    r = net.runtime.run(x, 32, progress=False, record=(p,)).rates[p].ravel()
    a = np.clip(np.asarray(run_analog(net.graph, x, keep=True)[p]).ravel(), 0, 1)
    assert c[p][1] == pytest.approx(float(np.mean(r - a)), abs=1e-12)


def test_eval_warns_when_ann_is_not_the_source_and_notes_a_large_limit(digits_snn, tmp_path, capsys):
    """--ann of another file than the recorded source (same function, other bytes): a warning on
    stderr, the eval still runs; --limit beyond the data uses all of it and says so."""
    import onnx
    m = onnx.load(MODEL)
    m.doc_string = "re-saved"
    other = tmp_path / "other.onnx"
    onnx.save(m, str(other))
    rc, so, se = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", 4, "--limit", 100000, "--ann", other)
    assert rc == 0, se
    assert se.count("\n") == 1 and se.startswith("snncc: warning: --ann") and "not the model" in se
    assert "--limit 100000 is more than the 450 images" in so
    rc, so, se = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", 4, "--limit", 8, "--ann", MODEL, "-q")
    assert rc == 0 and se == ""


def test_eval_writes_json_and_plot_together_or_neither(digits_snn, tmp_path, capsys, monkeypatch):
    """A plot that cannot be rendered leaves no JSON behind (both files are written at the end)."""
    def boom(out, path):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(evaluate, "render_plot", boom)
    j, p = tmp_path / "r.json", tmp_path / "r.png"
    rc, so, se = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", 4, "--limit", 8, "--json", j, "--plot", p,
                     "-q")
    assert rc == 2 and "No space left" in se and se.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_fixed_batch_onnx_converts_and_evaluates(tmp_path, capsys):
    """A model exported with a fixed batch size (torch.onnx.export without dynamic_axes) profiles and
    runs as the ANN in batches of exactly that size, the last one padded (101 = 33 x 3 + 2 images)."""
    import onnx
    m = onnx.load(MODEL)
    for vi in (m.graph.input[0], *m.graph.output):
        d0 = vi.type.tensor_type.shape.dim[0]
        d0.ClearField("dim_param")
        d0.dim_value = 3
    del m.graph.value_info[:]
    fixed = tmp_path / "fixed3.onnx"
    onnx.save(m, str(fixed))
    snn = tmp_path / "fixed3.snn"
    rc, so, se = cli(capsys, fixed, "-o", snn, "--calib", CALIB, *PRE, "--calibrate-bias", "0", "--calib-limit", 100,
                     "-q")
    assert rc == 0, se
    assert snncc.load(str(snn)).graph.meta["onnx_batch"] == 3
    j = tmp_path / "r.json"
    rc, so, se = cli(capsys, "eval", snn, "--data", TEST, "-T", 16, "--limit", 101, "--ann", fixed, "--json", j, "-q")
    assert rc == 0, se
    r = json.load(open(j))
    rc, so, se = cli(capsys, "eval", snn, "--data", TEST, "-T", 16, "--limit", 101, "--ann", MODEL, "--json", j, "-q")
    assert rc == 0 and "warning" in se       # the dynamic-batch original: same predictions
    assert json.load(open(j))["ann_accuracy"] == r["ann_accuracy"] and r["images"] == 101


def test_run_batched_pads_to_a_fixed_batch():
    from snncc.analog import run_batched
    x = np.arange(7)[:, None] * np.ones((1, 2))
    seen = []

    def fn(xb):
        seen.append(len(xb))
        return [xb.sum(axis=1), xb[:, :1]]
    s, first = run_batched(fn, x, 3, 100)
    assert seen == [3, 3, 3] and np.array_equal(s, 2 * np.arange(7)) and first.shape == (7, 1)
    seen.clear()
    run_batched(fn, x, None, 4)
    assert seen == [4, 3]


def test_late_gain_by_hand():
    y = np.zeros(100, int)
    pred = np.ones((100, 8), int)            # all wrong ...
    pred[:60, 3] = 0                         # ... 60 right at step 4
    pred[:80, 7] = 0                         # 80 at step 8: 20 images gained, none lost
    lg = evaluate.late_gain(pred, y, 8)
    assert lg["from_step"] == 4 and lg["gain"] == pytest.approx(0.2)
    assert lg["standard_error"] == pytest.approx(np.sqrt(0.2 * 0.8 * 100 / 99) / 10)
    assert lg["still_rising"]
    pred[:, 7] = 1
    pred[18:79, 7] = 0                       # 19 gained (60..78), 18 lost (0..17): +1 point, within the noise
    lg = evaluate.late_gain(pred, y, 8)
    assert lg["gain"] == pytest.approx(0.01) and not lg["still_rising"]
    assert evaluate.late_gain(pred, y, 3) is None and evaluate.late_gain(pred[:1], y[:1], 8) is None


def test_eval_says_when_accuracy_is_still_rising(digits_snn, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc, text, _ = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", "8", "--limit", "100", "--json", out,
                      "--threads", "1", "-q")
    r = json.loads(out.read_text())
    assert rc == 0 and r["late_gain"]["still_rising"]        # 4 -> 8 steps: the digits net is far from done
    assert "accuracy was still rising" in text and "-T 16" in text
    rc, text, _ = cli(capsys, "eval", digits_snn, "--data", TEST, "-T", "128", "--limit", "100", "--threads", "1",
                      "-q")
    assert rc == 0 and "still rising" not in text
