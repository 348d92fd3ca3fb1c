"""benchmarks/rate_windows.py: early/late rates against the ANN on the embedded digits network."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import rate_windows  # noqa: E402
from digits import MODEL, CALIB, PRE



def test_rate_windows_on_digits(tmp_path, capsys):
    import snncc
    net = snncc.convert(MODEL, CALIB, **PRE, calib_limit=64, calibrate_bias=0,
                        preset="paper", compensate="none", progress=False)
    p = str(tmp_path / "d.snn")
    net.save(p)
    out = str(tmp_path / "w.json")
    assert rate_windows.main([p, "--data", CALIB, "--images", "16", "-T", "128",
                              "--json", out]) == 0
    rec = json.load(open(out))
    rows = rec["layers"]
    # a seeded random subset, not the first images (calibration files are often sorted by class)
    idx = rec["image_indices"]
    assert len(idx) == 16 == len(set(idx)) and idx == sorted(idx) and idx != list(range(16))
    assert [r["layer"] for r in rows] == [q.name for q in net.graph.populations() if q.op == "neuron"]
    for r in rows:
        assert 0 <= r["rate_early"] <= 1 and 0 <= r["rate_late"] <= 1
    # the steady state (late window) follows the ANN at least as well as the start-up window
    late = np.mean([r["corr_late"] for r in rows])
    early = np.mean([r["corr_early"] for r in rows])
    assert late > 0.95 and late >= early - 0.01
    assert "rate[64,128)" in capsys.readouterr().out
