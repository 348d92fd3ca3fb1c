"""benchmarks/ab_runtime.py: the package copies, the ratio summary, bad arguments."""
import math
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import ab_runtime  # noqa: E402

REPO = ab_runtime.REPO


def _is_git_checkout():
    return subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True).returncode == 0


@pytest.mark.parametrize("rev", [None, "HEAD"])
def test_export_package_lays_out_the_installed_package(tmp_path, rev):
    if rev is not None and not _is_git_checkout():
        pytest.skip("not a git checkout")
    pkg = ab_runtime.export_package(rev, str(tmp_path / "p"))
    for f in ("snncc/__init__.py", "snncc/passes/__init__.py", "snncc/runtime/kernels.py"):
        assert os.path.isfile(os.path.join(pkg, f)), f
    assert not any("__pycache__" in d for d, _, _ in os.walk(pkg))     # its own numba cache
    out = subprocess.run([sys.executable, "-c", "import sys; sys.meta_path[:] = [f for f in sys.meta_path if "
                          "'editable' not in repr(f).lower()]; sys.path.insert(0, sys.argv[1]); "
                          "import snncc.runtime.kernels as k; print(k.__file__)", pkg],
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(pkg)


def test_summary_ratios_and_geometric_mean():
    rounds = [{"base": {"m": {"ms_per_image": 100.0}}, "new": {"m": {"ms_per_image": 80.0}}},
              {"base": {"m": {"ms_per_image": 200.0}}, "new": {"m": {"ms_per_image": 250.0}}}]
    s = ab_runtime.summarise(rounds, ["m"])["m"]
    assert s["ratios"] == [0.8, 1.25]
    assert s["geomean"] == pytest.approx(1.0) and s["min"] == 0.8 and s["max"] == 1.25
    assert s["median"] == pytest.approx(1.025)
    assert ab_runtime.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert math.isclose(ab_runtime.geomean([0.9]), 0.9)


def test_missing_model_is_an_error(tmp_path, capsys):
    assert ab_runtime.main([str(tmp_path / "nope.snn"), "--rounds", "1"]) == 2
    assert "no such .snn file" in capsys.readouterr().err
