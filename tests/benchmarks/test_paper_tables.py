"""benchmarks/paper_tables.py: a cached run is reused only for the settings it was made with."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import paper_tables  # noqa: E402


def test_cached_run_only_for_the_same_images_T_and_calib_limit(tmp_path):
    p = tmp_path / "resnet20_paper.json"
    assert paper_tables._cached_run(str(p), 1000, 350, 2000) is None
    p.write_text(json.dumps({"images": 1000, "T": 350, "calib_limit": 2000, "accuracy_at": {"350": 0.8}}))
    assert paper_tables._cached_run(str(p), 1000, 350, 2000)["accuracy_at"]["350"] == 0.8
    assert paper_tables._cached_run(str(p), 300, 350, 2000) is None       # other test subset
    assert paper_tables._cached_run(str(p), 1000, 256, 2000) is None      # other T
    assert paper_tables._cached_run(str(p), 1000, 350, 500) is None       # other calibration set
