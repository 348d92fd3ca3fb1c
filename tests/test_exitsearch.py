"""Choosing the stable-prediction exit's window on calibration images (snncc/exitsearch.py)."""
import json

import numpy as np
import pytest

from clirun import cli
from digits import CALIB, MODEL, PRE, PRE_ARGS, TEST

import snncc
from snncc import snnfile
from snncc.errors import DataError, SnnccError, SnnFileError
from snncc.exitsearch import choose_window, exit_steps, search_exit_stable


# -- the rule, by hand ------------------------------------------------------------------
PRED = np.array([[0, 0, 1, 1, 1, 1]])


@pytest.mark.parametrize("first, m, steps, answer", [
    # run lengths 1 2 1 2 3 4; window from step 0: m=2 stops after step 2 on class 0
    (0, 1, 1, 0), (0, 2, 2, 0), (0, 3, 5, 1),
    (0, 4, 6, 1),            # the run of four ends at the last step: no exit, the full run's answer
    (2, 1, 3, 1),            # input from step 2 (0-based): the window may only start there
    (2, 2, 4, 1), (2, 3, 5, 1), (3, 2, 5, 1), (3, 3, 6, 1),
    (-1, 1, 6, 1),           # the output never received input: never stops
])
def test_exit_steps_by_hand(first, m, steps, answer):
    s, a = exit_steps(PRED, np.array([first]), m)
    assert (int(s[0]), int(a[0])) == (steps, answer)


def test_exit_steps_for_many_windows_at_once_match_one_at_a_time():
    rng = np.random.default_rng(0)
    pred = np.cumsum(rng.random((40, 50)) < 0.15, axis=1) % 3      # runs of random length
    first = rng.integers(-1, 10, size=40)
    ms = np.arange(1, 50)
    steps, answers = exit_steps(pred, first, ms)
    assert steps.shape == answers.shape == (40, 49)
    for j, m in enumerate(ms):
        s, a = exit_steps(pred, first, int(m))
        assert np.array_equal(steps[:, j], s) and np.array_equal(answers[:, j], a)
    # brute force: the first s >= first + m whose window of m predictions is constant
    for i in range(40):
        for m in (1, 3, 7, 20):
            want = 50
            if first[i] >= 0:
                want = next((s for s in range(max(first[i] + m, 1), 50) if (pred[i, s - m:s] == pred[i, s - 1]).all()),
                            50)
            assert steps[i, m - 1] == want


def _scored_case():
    """100 images of class 0, T=20.  Images 0-9 show class 1 at steps 1-2 (0-based): a window of 2 stops
    there on the wrong answer (10 points lost), windows 1 and >= 3 do not.  Image 10 shows class 3 at steps
    0-4: windows 1-5 stop on it (1 point lost), windows >= 6 do not."""
    pred = np.zeros((100, 20), np.int64)
    pred[:10, 1:3] = 1
    pred[10, :5] = 3
    return pred, np.zeros(100, np.int64), np.zeros(100, np.int64)


def test_choose_window_needs_every_longer_window_within_the_tolerance():
    pred, first, y = _scored_case()
    s, a = exit_steps(pred, first, np.arange(1, 20))
    loss = 100 * ((pred[:, -1:] == y[:, None]).mean(0) - (a == y[:, None]).mean(axis=0))
    assert np.allclose(loss[:6], [1, 11, 1, 1, 1, 0]) and (loss[5:] == 0).all()
    # one image lost = 1 point +- 1 point: over a 1-point tolerance, so after it, from window 6 on
    rec = choose_window(pred, first, y, 1.0)
    assert rec["m"] == 6 and rec["loss"] == 0 and rec["loss_se"] == 0
    assert rec["mean_steps"] == pytest.approx(s[:, 5].mean()) and rec["full_score"] == 1.0
    # 2.5 points: windows 1 and 3-5 pass, 2 does not: the smallest after it
    rec = choose_window(pred, first, y, 2.5)
    assert rec["m"] == 3 and rec["loss"] == pytest.approx(1.0) and rec["loss_se"] == pytest.approx(1.0)
    assert rec["loss_at"]["3"][:2] == [pytest.approx(1.0), pytest.approx(1.0)] and rec["loss_at"]["16"][0] == 0
    assert rec["agreement"] == 0.99
    # the full run wrong everywhere and no window better: nothing lost, window 1
    assert choose_window(pred, first, np.full(100, 7), 0.0)["m"] == 1
    # an answer that changes at the last step: every window stops before it, none is stored
    late = np.ones((100, 20), np.int64)
    late[:, -1] = 0
    none = choose_window(late, first, y, 1.0)
    assert none["m"] is None and none["mean_steps"] == 20


# -- on the digits network --------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_net():
    return snncc.convert(MODEL, CALIB, calibrate_bias=0, calib_limit=300, progress=False, **PRE)


def test_search_stores_the_window_and_auto_runs_with_it(digits_net, tmp_path):
    net = digits_net
    d = np.load(CALIB)
    x = net.prepare(d["x"])
    rec = search_exit_stable(net, x, d["y"], timesteps=64, images=200, tolerance=1.0, progress=False)
    assert net.graph.meta["exit_stable"] is rec and rec["images"] == 200 and rec["timesteps"] == 64
    assert rec["criterion"] == "labels"
    # the window is the rule's on the same images, recomputed from a full run
    from snncc.exitsearch import exit_images
    xs, ys = exit_images(x, d["y"], 200)
    full = net.runtime.run(xs, 64, progress=False)
    s, a = exit_steps(full.predictions, full.first_input, np.arange(1, 64))
    ok = (a == ys[:, None]).astype(float)
    diff = (full.predictions[:, -1] == ys)[:, None] - ok
    bound = 100 * (diff.mean(0) + diff.std(0, ddof=1) / np.sqrt(200))
    m = rec["m"]
    assert m is not None and 1 < m < 64
    assert (bound[m - 1:] <= 1.0 + 1e-9).all() and bound[m - 2] > 1.0 + 1e-9
    assert rec["loss"] == pytest.approx(100 * diff[:, m - 1].mean())
    assert rec["mean_steps"] == pytest.approx(s[:, m - 1].mean()) and rec["mean_steps"] < 64
    # stored in the file; "auto" runs the stored window
    path = str(tmp_path / "d.snn")
    net.save(path)
    back = snncc.load(path)
    assert back.graph.meta["exit_stable"]["m"] == m
    from snncc.ir import META_KEYS
    assert set(back.graph.meta) <= set(META_KEYS), sorted(set(back.graph.meta) - set(META_KEYS))   # documented
    xt = np.load(TEST)["x"][:50]
    auto = back.run(xt, 64, exit_stable="auto", progress=False)
    given = back.run(xt, 64, exit_stable=m, progress=False)
    assert np.array_equal(auto.steps_run, given.steps_run) and auto.steps_run.min() < 64
    assert np.array_equal(auto.predictions, given.predictions)
    # without labels: scored against the source model's answers
    rec2 = search_exit_stable(net, x, None, timesteps=64, images=200, progress=False)
    assert rec2["criterion"] == "ann_agreement" and rec2["m"] is not None


def test_auto_without_a_stored_window_is_an_error_and_a_null_window_runs_all_steps(digits_net):
    g = digits_net.graph.copy()
    g.meta.pop("exit_stable", None)
    net = snncc.SpikingNetwork(g)
    x = np.load(TEST)["x"][:8]
    with pytest.raises(DataError, match="exit_stable='auto' needs the window chosen at conversion"):
        net.run(x, 16, exit_stable="auto", progress=False)
    g.meta["exit_stable"] = {"m": None}
    r = net.run(x, 16, exit_stable="auto", progress=False)
    assert (r.steps_run == 16).all()


@pytest.mark.parametrize("bad, msg", [({"m": 0}, "'meta.exit_stable.m' must be null or a positive integer"),
                                      ({"m": 2.5}, "'meta.exit_stable.m'"), ({"x": 1}, "without 'm'"),
                                      (7, "got a int")])
def test_a_malformed_stored_window_is_a_corrupt_file(digits_net, tmp_path, bad, msg):
    g = digits_net.graph.copy()
    g.meta["exit_stable"] = bad
    path = str(tmp_path / "bad.snn")
    with pytest.raises(SnnFileError, match="not fit to be saved"):
        snnfile.save(g, path)                               # never written by snncc; made otherwise:
    snnfile.atomic_write(path, snnfile.to_bytes(g))
    with pytest.raises(SnnFileError, match=msg):
        snncc.load(path)


@pytest.mark.parametrize("value, words", [(0, "positive"), (-2, "got -2"), ("soon", "'soon'"), (True, "True"),
                                          (2.5, "2.5")])
def test_convert_rejects_bad_windows(value, words):
    with pytest.raises(SnnccError, match="--exit-stable") as e:
        snncc.api.resolve_options("best", exit_stable=value)
    assert words in str(e.value)
    for a in (101, -0.1, True, float("nan")):
        with pytest.raises(SnnccError, match="--exit-tolerance"):
            snncc.api.resolve_options("best", exit_tolerance=a)
    with pytest.raises(SnnccError, match="--exit-images takes a positive integer, got 0"):
        snncc.api.resolve_options("best", exit_images=0)
    assert snncc.api.resolve_options("best", exit_stable="12").exit_stable == 12




def test_cli_converts_with_auto_and_eval_uses_the_window(tmp_path, capsys):
    out = tmp_path / "d.snn"
    rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE_ARGS, "--calibrate-bias", "0",
                     "--calib-limit", "300", "--exit-stable", "auto", "--zeta-timesteps", "64", "--exit-images", "200",
                     "--exit-tolerance", "1.5")
    assert rc == 0, se
    m = snncc.load(str(out)).graph.meta["exit_stable"]["m"]
    assert f"exit window: m = {m}" in so.replace("\n", " ")
    assert f"exit window {m} steps (chosen on 200 calibration images at T=64;" in so.replace("\n", " ")
    rc, so, _ = cli(capsys, "inspect", out)
    assert rc == 0 and f"exit window {m} steps" in so.replace("\n", " ")
    js = tmp_path / "e.json"
    rc, so, se = cli(capsys, "eval", out, "--data", TEST, "-T", "64", "--limit", "100", "--exit-stable", "auto",
                     "--json", js, "--threads", "1")
    assert rc == 0, se
    r = json.loads(js.read_text())
    assert r["exit_stable"] == m and r["exit_stable_auto"] is True and r["mean_steps_run"] < 64
    assert f"the window chosen at conversion, {m} steps" in so and "chosen against the answer" not in so
    rc, so, se = cli(capsys, "eval", out, "--data", TEST, "-T", "32", "--limit", "20", "--exit-stable", "auto")
    assert rc == 0, se
    assert ("no image can stop early" if m >= 32 else
            "the window was chosen against the answer at T=64, this run's T is 32") in so.replace("\n", " ")
    # a window given at conversion is stored as given
    out2 = tmp_path / "g.snn"
    assert cli(capsys, MODEL, "-o", out2, "--calib", CALIB, *PRE_ARGS, "--calibrate-bias", "0",
               "--calib-limit", "100", "--exit-stable", "24", "-q")[0] == 0
    assert snncc.load(str(out2)).graph.meta["exit_stable"] == {"m": 24, "chosen": "given"}


def test_cli_bad_exit_values_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "n.snn"
    rc, _, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE_ARGS, "--exit-stable", "often")
    assert rc == 2 and "positive integer or auto" in se and "\n" not in se.strip() and not out.exists()
    assert cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE_ARGS, "--calibrate-bias", "0", "--calib-limit",
               "100", "-q")[0] == 0
    rc, so, se = cli(capsys, "eval", out, "--data", TEST, "-T", "16", "--exit-stable", "auto")
    assert rc != 0 and "--exit-stable auto needs the window chosen at conversion" in se and str(out) in se
    assert "\n" not in se.strip() and "Traceback" not in se
