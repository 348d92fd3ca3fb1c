"""benchmarks/compare_evals.py: paired comparison of two snncc eval runs on the same images."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import compare_evals  # noqa: E402

from snncc.cli import main as snncc_main  # noqa: E402
from digits import MODEL, CALIB, TEST, PRE_ARGS  # noqa: E402



@pytest.fixture(scope="module")
def evals(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    snn = str(d / "d.snn")
    assert snncc_main([MODEL, "-o", snn, "--calib", CALIB, *PRE_ARGS, "--calibrate-bias", "0",
                       "--calib-limit", "100", "-q"]) == 0
    out = {}
    for name, T, limit in (("t4", 4, 120), ("t32", 32, 120), ("other", 32, 80)):
        out[name] = str(d / f"{name}.json")
        assert snncc_main(["eval", snn, "--data", TEST, "-T", str(T), "--limit", str(limit), "--json", out[name],
                           "--threads", "1", "-q"]) == 0
    return out


def test_paired_difference_of_two_runs(evals, capsys):
    a, b = (json.load(open(evals[k])) for k in ("t4", "t32"))
    c = compare_evals.compare(a, b)
    assert c["images"] == 120
    assert c["accuracy_a"] == a["snn_accuracy"] and c["accuracy_b"] == b["snn_accuracy"]
    assert c["diff"] == pytest.approx(b["snn_accuracy"] - a["snn_accuracy"])
    assert c["only_b"] - c["only_a"] == round(120 * c["diff"])
    # the paired standard error from the per-image differences (each -1, 0 or +1)
    k = c["only_a"] + c["only_b"]
    mean = c["diff"]
    var = (c["only_b"] * (1 - mean) ** 2 + c["only_a"] * (1 + mean) ** 2 + (120 - k) * mean ** 2) / 119
    assert c["diff_se"] == pytest.approx(np.sqrt(var / 120))
    assert c["diff"] > 0                          # 32 steps beat 4 on the digits net
    assert compare_evals.main([evals["t4"], evals["t32"]]) == 0
    assert "B - A: +" in capsys.readouterr().out


def test_refuses_runs_on_different_images_and_old_runs(evals, tmp_path, capsys):
    assert compare_evals.main([evals["t32"], evals["other"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the two runs are not on the same images") and "\n" not in err
    old = json.load(open(evals["t4"]))
    del old["predictions"]
    p = tmp_path / "old.json"
    p.write_text(json.dumps(old))
    assert compare_evals.main([str(p), evals["t32"]]) == 2
    assert "re-run snncc eval --json" in capsys.readouterr().err
