"""End-to-end tests of the command line on the embedded digits ResNet: convert, inspect, bad input.

The CLI runs in-process (``snncc.cli.main``, output through capsys) and, for exit codes and the
absence of tracebacks in a real process, through ``python -m snncc``.  ``snncc eval`` is in
test_evaluate.py.
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import snncc
from snncc.cli import main
from clirun import cli
from digits import MODEL, CALIB, TEST, PRE_ARGS as PRE

UNSUPPORTED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "bad", "unsupported",
                           "sigmoid_net.onnx")
FAST = ["--calibrate-bias", "0", "--calib-limit", "100"]




def one_line_error(rc, err):
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("snncc: error: ") and "(fix: " in lines[0], err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def digits_snn(tmp_path_factory):
    """The digits ResNet converted once (fast options)."""
    out = str(tmp_path_factory.mktemp("cli") / "digits.snn")
    assert main([MODEL, "-o", out, "--calib", CALIB, *PRE, *FAST, "-q"]) == 0
    return out


# ---------------------------------------------------------------------------------------------
# convert

def test_first_compile_notice(tmp_path, capsys, monkeypatch):
    """Before a simulation that compiles the runtime first (tens of seconds), convert and eval say so."""
    from snncc.runtime import kernels
    monkeypatch.setattr(kernels, "compile_pending", lambda: True)
    out = tmp_path / "n.snn"
    rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE, "--calibrate-bias", "4", "--calib-limit", "20")
    assert rc == 0, se
    assert so.count("compiling the runtime with numba") == 1
    rc, so, se = cli(capsys, "eval", out, "--data", TEST, "-T", "2", "--limit", "4")
    assert rc == 0, se
    assert so.count("compiling the runtime with numba") == 1
    rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE, *FAST)     # no simulation: no notice
    assert rc == 0 and "compiling" not in so, se
    rc, so, se = cli(capsys, "eval", out, "--data", TEST, "-T", "2", "--limit", "4", "-q")
    assert rc == 0 and "compiling" not in so, se
    monkeypatch.setattr(kernels, "compile_pending", lambda: False)
    rc, so, se = cli(capsys, "eval", out, "--data", TEST, "-T", "2", "--limit", "4")
    assert rc == 0 and "compiling" not in so
# ---------------------------------------------------------------------------------------------
def test_convert_default_spelling_writes_loadable_file_and_summary(tmp_path, capsys):
    out = tmp_path / "d.snn"
    rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE, *FAST)
    assert rc == 0, se
    assert "Traceback" not in se
    net = snncc.load(str(out))
    assert net.input_shape == (8, 8, 1) and net.n_classes == 10
    assert [f.name for f in tmp_path.iterdir()] == ["d.snn"]        # no temp file left
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600
    # the summary: one unwrapped line each, with the real numbers of the network
    g = net.graph
    pops = [p for p in g.populations() if p.op != "input"]
    neurons = [p for p in pops if p.op == "neuron"]
    wrote = [ln for ln in so.splitlines() if ln.startswith("wrote ")]
    assert len(wrote) == 1
    assert f"{len(pops)} populations ({len(neurons)} IF neuron layers" in wrote[0]
    assert f"{len(pops)} populations" in repr(net)          # the same count as inspect's title
    assert f"{sum(int(np.prod(p.shape)) for p in neurons):,} neurons" in wrote[0]
    assert wrote[0].endswith(f"{g.nx.number_of_edges()} synapse edges")
    lam = [ln for ln in so.splitlines() if ln.strip().startswith("lambda ")]
    assert len(lam) == 1 and "channel-wise, p99.9" in lam[0] and lam[0].rstrip().endswith(" s")
    assert "zeta 1," in lam[0] and "initial membrane 0.5" in lam[0]
    size = [ln for ln in so.splitlines() if ln.strip().endswith("weights and biases stored as float32")]
    assert len(size) == 1 and size[0].split()[0] == f"{out.stat().st_size / 1e6:.3g}"
    # provenance
    prov = g.meta["provenance"]
    assert prov["source_name"] == "digits_resnet.onnx" and prov["calibration_images"] == 100
    assert prov["options"]["calib_limit"] == 100 and prov["options"]["preset"] == "best"
    import hashlib
    assert prov["source_sha256"] == hashlib.sha256(open(MODEL, "rb").read()).hexdigest()


def _umask():
    u = os.umask(0)
    os.umask(u)
    return u


def test_convert_explicit_spelling_verify_and_dump_ir(tmp_path, capsys):
    from snncc.passes import PASS_NAMES
    out, dump = tmp_path / "d.snn", tmp_path / "ir"
    rc, so, se = cli(capsys, "convert", MODEL, "-o", out, "--calib", CALIB, *PRE, *FAST, "--verify",
                     "--dump-ir", dump)
    assert rc == 0, se
    g = snncc.load(str(out)).graph
    assert g.meta["passes"] == PASS_NAMES
    want = ["00_input.txt"] + [f"{i:02d}_{n}.txt" for i, n in enumerate(PASS_NAMES, 1)]
    assert sorted(os.listdir(dump)) == want
    for f in want:
        assert (dump / f).stat().st_size > 0
    # the last dump is the spiking-level graph: every population appears in it
    last = (dump / want[-1]).read_text()
    for p in g.populations():
        assert p.name in last


def test_quiet_prints_nothing(tmp_path, capsys):
    rc, so, se = cli(capsys, MODEL, "-o", tmp_path / "q.snn", "--calib", CALIB, *PRE, *FAST, "-q")
    assert rc == 0 and so == "" and se == ""


def test_paper_preset_with_fixed_zeta(tmp_path, capsys):
    nets = {}
    for z in ("1", "1.05"):
        out = tmp_path / f"p{z}.snn"
        rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE, "--calib-limit", "100",
                         "--preset", "paper", "--compensate", z, "-q")
        assert rc == 0, se
        nets[z] = snncc.load(str(out)).graph
    g = nets["1.05"]
    m = g.meta
    assert m["zeta"] == 1.05
    assert m["channel_wise"] is False and m["init_membrane"] == 0.0 and m["shortcut_norm"] is True
    assert m["percentile"] == 99.9
    assert "bias_calibration" not in m and "compensation" not in m   # fixed zeta: no search
    opts = m["provenance"]["options"]
    assert opts["preset"] == "paper" and opts["compensate"] == 1.05 and opts["calibrate_bias"] == 0
    # layer-wise: one scalar lambda per population
    assert all(np.ndim(v) == 0 for v in m["lambda"].values())
    # zeta multiplies every hidden layer's bias and incoming weights (Eq. 14), not the output's
    g1 = nets["1"]
    for p in g.populations():
        if p.op == "neuron":
            np.testing.assert_allclose(p.params["bias"], 1.05 * g1.node(p.name).params["bias"], rtol=1e-5,
                                       atol=1e-7)
            for u, d in g.in_edges(p.name):
                key = "weight" if "weight" in d["syn"].params else "scale"
                np.testing.assert_allclose(d["syn"].params[key], 1.05 * g1.edge(u, p.name)["syn"].params[key],
                                           rtol=1e-5, atol=1e-7)
        elif p.op == "output":
            np.testing.assert_array_equal(p.params["bias"], g1.node(p.name).params["bias"])


def test_zeta_search_options(tmp_path, capsys):
    """--zeta-timesteps/--zeta-images set the search's simulation length and calibration subset."""
    out = tmp_path / "z.snn"
    rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE, "--calib-limit", "100", "--preset", "paper",
                     "--compensate", "auto", "--zeta-timesteps", "24", "--zeta-images", "20", "-q")
    assert rc == 0, se
    m = snncc.load(str(out)).graph.meta
    assert m["compensation"]["timesteps"] == 24 and m["compensation"]["images"] == 20
    assert m["provenance"]["options"]["zeta_timesteps"] == 24 and m["provenance"]["options"]["zeta_images"] == 20
    assert m["zeta"] == m["compensation"]["zeta"]


def test_options_recorded_in_meta_and_provenance(tmp_path, capsys):
    out = tmp_path / "o.snn"
    rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE, *FAST, "--layer-wise",
                     "--init-membrane", "0.25", "--percentile", "99.99", "--no-shortcut-norm",
                     "--percentile-of", "positive", "-q")
    assert rc == 0, se
    g = snncc.load(str(out)).graph
    m = g.meta
    assert m["channel_wise"] is False and m["init_membrane"] == 0.25 and m["percentile"] == 99.99
    assert m["percentile_of"] == "positive" and m["provenance"]["options"]["percentile_of"] == "positive"
    assert m["shortcut_norm"] is False
    assert m["provenance"]["options"] == {**m["provenance"]["options"], "channel_wise": False,
                                          "init_membrane": 0.25, "percentile": 99.99, "shortcut_norm": False}
    # --no-shortcut-norm: shortcut synapses keep weight 1 (zero for zero-padded channels)
    shortcuts = [d["syn"] for p in g.populations() for _, d in g.in_edges(p.name) if d["kind"].value == "shortcut"]
    assert len(shortcuts) == 3
    for syn in shortcuts:
        assert set(np.unique(syn.params["scale"]).tolist()) <= {0.0, 1.0}
        assert np.max(syn.params["scale"]) == 1.0
    assert snncc.load(str(out)).runtime.init_membrane == 0.25

    out2 = tmp_path / "c.snn"
    rc, so, se = cli(capsys, MODEL, "-o", out2, "--calib", CALIB, *PRE, *FAST, "--channel-wise", "-q")
    assert rc == 0, se
    m2 = snncc.load(str(out2)).graph.meta
    assert m2["channel_wise"] is True and m2["shortcut_norm"] is True
    assert m["param_dtype"] == m2["param_dtype"] == "float32"       # the default
    rc, _, se = cli(capsys, MODEL, "-o", tmp_path / "w.snn", "--calib", CALIB, *PRE, *FAST, "--channel-wise",
                    "--param-dtype", "float64", "-q")
    assert rc == 0, se
    w = snncc.load(str(tmp_path / "w.snn")).graph
    assert w.meta["param_dtype"] == "float64" and w.meta["provenance"]["options"]["param_dtype"] == "float64"
    assert 0.45 < out2.stat().st_size / (tmp_path / "w.snn").stat().st_size < 0.6
    assert any(np.ndim(v) == 1 for v in m2["lambda"].values())
    # a higher percentile gives lambdas at least as large (same layer-wise profile otherwise)
    rc, _, se = cli(capsys, MODEL, "-o", tmp_path / "l.snn", "--calib", CALIB, *PRE, *FAST, "--layer-wise",
                    "--no-shortcut-norm", "-q")
    assert rc == 0, se
    m3 = snncc.load(str(tmp_path / "l.snn")).graph.meta
    assert all(m["lambda"][k] >= m3["lambda"][k] - 1e-9 for k in m3["lambda"])
    assert any(m["lambda"][k] > m3["lambda"][k] for k in m3["lambda"])


def test_channel_and_layer_wise_are_exclusive(capsys, tmp_path):
    rc, _, se = cli(capsys, MODEL, "-o", tmp_path / "x.snn", "--calib", CALIB, "--channel-wise", "--layer-wise")
    one_line_error(rc, se)
    assert "not allowed with" in se


def test_calib_npy_and_nhwc_layout(tmp_path, capsys):
    x = np.load(CALIB)["x"]                       # (N, 1, 8, 8) uint8, the model's NCHW layout
    np.save(tmp_path / "nhwc.npy", np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    rc, so, se = cli(capsys, MODEL, "-o", tmp_path / "a.snn", "--calib", tmp_path / "nhwc.npy", *PRE, *FAST)
    assert rc == 0, se
    notice = [ln for ln in so.splitlines() if "transposed automatically" in ln]
    assert len(notice) == 1 and "(N,H,W,C)" in notice[0] and "NCHW" in notice[0]
    rc, so, se = cli(capsys, MODEL, "-o", tmp_path / "b.snn", "--calib", CALIB, *PRE, *FAST)
    assert rc == 0 and "transposed" not in so
    # the same images (same seeded subset) in either layout give the same network
    a = snncc.load(str(tmp_path / "a.snn")).graph.meta["lambda"]
    b = snncc.load(str(tmp_path / "b.snn")).graph.meta["lambda"]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6)


def test_bias_calibration_option(tmp_path, capsys):
    out = tmp_path / "b.snn"
    rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE, "--calib-limit", "32",
                     "--calibrate-bias", "8", "-q")
    assert rc == 0, se
    m = snncc.load(str(out)).graph.meta
    assert m["bias_calibration"]["timesteps"] == 8 and m["bias_calibration"]["images"] == 32


# ---------------------------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------------------------
def _lambda_str(v):
    if v is None:
        return "-"
    if np.ndim(v) == 0:
        return f"{float(v):.4g}"
    a = np.asarray(v, dtype=float)
    return f"{a.min():.3g}..{a.max():.3g}"


def test_inspect_lists_every_population_and_lambda(digits_snn, capsys):
    rc, so, se = cli(capsys, "inspect", digits_snn)
    assert rc == 0 and se == ""
    g = snncc.load(digits_snn).graph
    rows = [ln for ln in so.splitlines() if ln.startswith("│")]
    lam = g.meta["lambda"]
    for p in g.populations():
        row = [r for r in rows if r.split("│")[1].strip() == p.name]
        assert len(row) == 1, (p.name, so)
        cells = [c.strip() for c in row[0].split("│")[1:-1]]
        assert cells[1] == p.op and cells[2] == "x".join(map(str, p.shape))
        assert cells[3] == f"{int(np.prod(p.shape)):,}"
        assert cells[5] == _lambda_str(lam.get(p.name))
    assert "…" not in so
    assert max(len(ln) for ln in rows) <= 120          # fits the 120-column log width
    assert "preprocess {'scale': 0.0625, 'mean': [0.3052], 'std': [0.376]}" in so
    assert "digits_resnet.onnx" in so and "options " in so and "calib_limit=100" in so


def _rename_population(src, dst, old, new):
    """Copy a .snn with one population renamed (the manifest is not covered by the array checksum)."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    m = json.loads(files["manifest.json"])
    for n in m["nodes"]:
        if n["name"] == old:
            n["name"] = new
    for e in m["edges"]:
        e["src"] = new if e["src"] == old else e["src"]
        e["dst"] = new if e["dst"] == old else e["dst"]
    m["meta"]["lambda"][new] = m["meta"]["lambda"].pop(old)
    files["manifest.json"] = json.dumps(m).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)


def test_inspect_never_truncates_names(digits_snn, tmp_path, capsys):
    long = "/model/very_long_module_name/layer3.2/residual_block/activation_function_relu_1/Relu[bold]"
    f = tmp_path / "long.snn"
    _rename_population(digits_snn, f, "layer3/Relu_1", long)
    rc, so, se = cli(capsys, "inspect", f)
    assert rc == 0, se
    rows = [ln for ln in so.splitlines() if ln.startswith("│")]
    assert any(r.split("│")[1].strip() == long for r in rows), so       # whole, markup text kept literally
    assert any(f"<- {long}" in r for r in rows)                          # and in the output's in-edges
    assert "…" not in so


# ---------------------------------------------------------------------------------------------
# bad input: one line naming problem and fix, exit 2, nothing written
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def bad_inputs(tmp_path, digits_snn):
    d = tmp_path / "in"
    d.mkdir()
    raw = open(MODEL, "rb").read()
    (d / "trunc.onnx").write_bytes(raw[: len(raw) // 2])
    (d / "text.onnx").write_text("this is not an ONNX model\n")
    c = np.load(CALIB)
    x = c["x"].astype(np.float32)
    for name, val in (("nan", np.nan), ("inf", np.inf)):
        xb = x.copy()
        xb[5, 0, 3, 3] = val
        np.savez(d / f"{name}.npz", x=xb)
    np.savez(d / "rgb.npz", x=np.zeros((10, 3, 8, 8), np.uint8))
    np.savez(d / "flat.npz", x=np.zeros((10, 8), np.float32))
    np.savez(d / "complex.npz", x=np.zeros((10, 1, 8, 8), np.complex64))
    np.savez(d / "empty.npz", x=np.zeros((0, 1, 8, 8), np.uint8))
    (d / "zero.npz").write_bytes(b"")
    (d / "somefile.txt").write_text("a file, not a directory\n")
    # corrupt .snn files
    (d / "random.snn").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    good = open(digits_snn, "rb").read()
    (d / "half.snn").write_bytes(good[: len(good) // 2])
    with zipfile.ZipFile(digits_snn) as z:
        files = {n: z.read(n) for n in z.namelist()}
    k = sorted(n for n in files if n.startswith("arrays/"))[0]
    a = np.load(io.BytesIO(files[k])).copy()
    a.flat[0] += 0.5
    buf = io.BytesIO()
    np.save(buf, a)
    _write_zip(d / "tampered.snn", {**files, k: buf.getvalue()})
    m = json.loads(files["manifest.json"])
    _write_zip(d / "version.snn", {**files, "manifest.json": json.dumps({**m, "format_version": 99}).encode()})
    _write_zip(d / "noedges.snn", {**files, "manifest.json": json.dumps({k2: v for k2, v in m.items()
                                                                         if k2 != "edges"}).encode()})
    meta_nopre = {k2: v for k2, v in m["meta"].items() if k2 != "preprocess"}
    _write_zip(d / "nopre.snn", {**files, "manifest.json": json.dumps({**m, "meta": meta_nopre}).encode()})
    _write_zip(d / "zerostd.snn", {**files, "manifest.json": json.dumps(
        {**m, "meta": {**m["meta"], "preprocess": {**m["meta"]["preprocess"], "std": [0.0]}}}).encode()})
    bias_key = next(n["params"]["bias"] for n in m["nodes"] if n["op"] == "neuron")
    b = np.load(io.BytesIO(files[f"arrays/{bias_key}.npy"]))
    b2 = np.zeros((2, b.size), b.dtype)                  # a bias of the wrong shape, checksum recomputed
    raw = io.BytesIO()
    np.save(raw, b2)
    files2 = {**files, f"arrays/{bias_key}.npy": raw.getvalue()}
    h = hashlib.sha256()
    for n in sorted((n for n in files2 if n.startswith("arrays/a")), key=lambda s: int(s[8:-4])):
        h.update(n[len("arrays/"):-len(".npy")].encode())
        h.update(files2[n])
    _write_zip(d / "badbias.snn", {**files2, "manifest.json": json.dumps({**m, "arrays_sha256": h.hexdigest()}).encode()})
    (d / "text.npz").write_text("x,y\n1,2\n")
    np.savez(d / "object.npz", x=np.array([np.zeros((1, 8, 8)), None], dtype=object))
    np.savez(d / "calib_labels100.npz", x=c["x"][:16], y=np.arange(100, 116))
    np.savez(d / "huge.npz", x=np.full((4, 1, 8, 8), 1e300))
    mlp = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["input", "w"], ["logits"], transB=1)], "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.zeros((10, 64), np.float32), "w")]), opset_imports=[helper.make_opsetid("", 17)])
    (d / "mlp.onnx").write_bytes(mlp.SerializeToString())
    import onnx
    nanm = onnx.load(MODEL)
    w = next(i for i in nanm.graph.initializer if len(i.dims) == 4)
    arr = numpy_helper.to_array(w).copy()
    arr.flat[0] = np.nan
    w.CopyFrom(numpy_helper.from_array(arr, w.name))
    onnx.save(nanm, str(d / "nanweights.onnx"))
    o99 = onnx.load(MODEL)
    o99.opset_import[0].version = 99
    onnx.save(o99, str(d / "opset99.onnx"))
    t = np.load(TEST)
    np.savez(d / "test_rgb.npz", x=np.zeros((10, 3, 8, 8), np.uint8), y=t["y"][:10])
    np.savez(d / "test_nolabels.npz", x=t["x"][:10])
    np.savez(d / "test_labels1.npz", x=t["x"][:10], y=np.arange(1, 11))     # 1-based labels
    out = tmp_path / "out"
    out.mkdir()
    return d, out


def _write_zip(path, files):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, b in files.items():
            z.writestr(n, b)


CONVERT = lambda model, calib, *extra: [model, "-o", "{out}/x.snn", "--calib", calib, *PRE, *FAST, *extra]  # noqa

BAD_CASES = {
    # name: (argv template, words the message must contain)
    "truncated onnx": (CONVERT("{in}/trunc.onnx", CALIB), ["trunc.onnx", "not a valid ONNX"]),
    "text file as onnx": (CONVERT("{in}/text.onnx", CALIB), ["text.onnx", "not a valid ONNX"]),
    "missing model": (CONVERT("{in}/nope.onnx", CALIB), ["nope.onnx", "not found"]),
    "missing calib": (CONVERT(MODEL, "{in}/nope.npz"), ["nope.npz", "not found"]),
    "unsupported ops": (CONVERT(UNSUPPORTED, CALIB), ["Sigmoid", "LeakyRelu", "unsupported"]),
    "calib nan": (CONVERT(MODEL, "{in}/nan.npz"), ["NaN", "1 of 300"]),
    "calib inf": (CONVERT(MODEL, "{in}/inf.npz"), ["inf", "1 of 300"]),
    "calib 3 channels": (CONVERT(MODEL, "{in}/rgb.npz"), ["(10, 3, 8, 8)", "(N, 1, 8, 8)"]),
    "calib 2-d": (CONVERT(MODEL, "{in}/flat.npz"), ["(10, 8)"]),
    "calib complex": (CONVERT(MODEL, "{in}/complex.npz"), ["complex64", "real numbers"]),
    "calib no images": (CONVERT(MODEL, "{in}/empty.npz"), ["(0, 1, 8, 8)", "N > 0"]),
    "calib empty file": (CONVERT(MODEL, "{in}/zero.npz"), ["zero.npz", "not a readable"]),
    "output dir missing": ([MODEL, "-o", "{out}/nodir/x.snn", "--calib", CALIB, *PRE, *FAST], ["does not exist"]),
    "output under a file": ([MODEL, "-o", "{in}/somefile.txt/x.snn", "--calib", CALIB, *PRE, *FAST],
                            ["not a directory"]),
    "output is the model": ([MODEL, "-o", MODEL, "--calib", CALIB, *PRE, *FAST], ["is the model file"]),
    "dump-ir is a file": (CONVERT(MODEL, CALIB, "--dump-ir", "{in}/somefile.txt"), ["--dump-ir", "not a directory"]),
    "unknown preset": (CONVERT(MODEL, CALIB, "--preset", "fastest"), ["--preset", "fastest"]),
    "percentile 0": (CONVERT(MODEL, CALIB, "--percentile", "0"), ["percentile", "(0, 100]"]),
    "percentile 101": (CONVERT(MODEL, CALIB, "--percentile", "101"), ["percentile", "101"]),
    "percentile nan": (CONVERT(MODEL, CALIB, "--percentile", "nan"), ["percentile", "nan"]),
    "std 0": ([MODEL, "-o", "{out}/x.snn", "--calib", CALIB, "--input-scale", "0.0625", "--mean", "0.3",
               "--std", "0", *FAST], ["--std", "positive"]),
    "std inf": ([MODEL, "-o", "{out}/x.snn", "--calib", CALIB, "--std", "inf", *FAST], ["--std", "finite"]),
    "mean nan": ([MODEL, "-o", "{out}/x.snn", "--calib", CALIB, "--mean", "nan", *FAST], ["--mean", "finite"]),
    "mean 3 values": ([MODEL, "-o", "{out}/x.snn", "--calib", CALIB, "--mean", "0.4,0.4,0.4", "--std", "0.4",
                       *FAST], ["--mean has 3 values", "1 channel", "give one value"]),
    "mean not numbers": ([MODEL, "-o", "{out}/x.snn", "--calib", CALIB, "--mean", "a,b", *FAST], ["--mean"]),
    "zeta negative": (CONVERT(MODEL, CALIB, "--compensate", "-1"), ["compensat", "-1"]),
    "zeta nan": (CONVERT(MODEL, CALIB, "--compensate", "nan"), ["compensat", "nan"]),
    "zeta word": (CONVERT(MODEL, CALIB, "--compensate", "lots"), ["--compensate", "lots"]),
    "init membrane 1": (CONVERT(MODEL, CALIB, "--init-membrane", "1"), ["initial membrane", "[0, 1)"]),
    "input scale 0": (CONVERT(MODEL, CALIB, "--input-scale", "0"), ["input scale", "positive"]),
    "calib-limit 0": (CONVERT(MODEL, CALIB, "--calib-limit", "0"), ["--calib-limit", "positive"]),
    "zeta-timesteps 0": (CONVERT(MODEL, CALIB, "--zeta-timesteps", "0"), ["--zeta-timesteps", "positive"]),
    "zeta-images x": (CONVERT(MODEL, CALIB, "--zeta-images", "x"), ["--zeta-images", "x"]),
    "calibrate-bias -1": (CONVERT(MODEL, CALIB, "--calibrate-bias", "-1"), ["--calibrate-bias", ">= 0"]),
    "calibrate-bias-group 0": (CONVERT(MODEL, CALIB, "--calibrate-bias-group", "0"), ["--calibrate-bias-group", "positive"]),
    "no -o": ([MODEL, "--calib", CALIB], ["-o/--output"]),
    # inspect / eval on corrupt files
    **{f"{cmd} {kind}": ([cmd, "{in}/" + f, *([] if cmd == "inspect" else ["--data", TEST, "-T", "4"])], words)
       for cmd in ("inspect", "eval")
       for kind, f, words in (("random bytes", "random.snn", ["random.snn", "not a readable .snn"]),
                              ("truncated", "half.snn", ["half.snn", ".snn"]),
                              ("tampered array", "tampered.snn", ["tampered.snn", "checksum"]),
                              ("format version", "version.snn", ["format version 99", "reads version 1"]),
                              ("malformed manifest", "noedges.snn", ["noedges.snn", "malformed manifest"]),
                              ("no preprocessing", "nopre.snn", ["nopre.snn", "meta.preprocess"]),
                              ("zero std", "zerostd.snn", ["zerostd.snn", "std", "nonzero"]),
                              ("bias of the wrong shape", "badbias.snn", ["badbias.snn", "invalid network", "bias has shape (2,"]),
                              ("missing", "nope.snn", ["nope.snn", "not found"]))},
    "eval data 3 channels": (["eval", "{snn}", "--data", "{in}/test_rgb.npz", "-T", "4"],
                             ["test data", "(10, 3, 8, 8)", "(N, 1, 8, 8)"]),
    "eval data no labels": (["eval", "{snn}", "--data", "{in}/test_nolabels.npz", "-T", "4"], ["labels"]),
    "eval labels out of range": (["eval", "{snn}", "--data", "{in}/test_labels1.npz", "-T", "4"],
                                 ["labels", "10 classes"]),
    "eval data missing": (["eval", "{snn}", "--data", "{in}/nope.npz", "-T", "4"], ["nope.npz", "not found"]),
    "eval data is an onnx": (["eval", "{snn}", "--data", MODEL, "-T", "4"], ["not a readable"]),
    "eval T 0": (["eval", "{snn}", "--data", TEST, "-T", "0"], ["-T/--timesteps", "positive", "got 0"]),
    "eval T -5": (["eval", "{snn}", "--data", TEST, "-T", "-5"], ["-T/--timesteps", "got -5"]),
    "eval T word": (["eval", "{snn}", "--data", TEST, "-T", "many"], ["-T/--timesteps", "integer"]),
    "eval limit 0": (["eval", "{snn}", "--data", TEST, "-T", "4", "--limit", "0"], ["--limit", "got 0"]),
    "eval threads 0": (["eval", "{snn}", "--data", TEST, "-T", "4", "--threads", "0"], ["--threads"]),
    "eval json dir missing": (["eval", "{snn}", "--data", TEST, "-T", "4", "--json", "{out}/nodir/r.json"],
                              ["does not exist"]),
    "eval plot under a file": (["eval", "{snn}", "--data", TEST, "-T", "4", "--plot", "{in}/somefile.txt/p.png"],
                               ["not a directory"]),
    "eval negative energy": (["eval", "{snn}", "--data", TEST, "-T", "4", "--fj-per-sop", "-77"],
                             ["--fj-per-sop", "non-negative"]),
    "eval ann missing": (["eval", "{snn}", "--data", TEST, "-T", "4", "--limit", "8", "--ann", "{in}/nope.onnx"],
                         ["nope.onnx", "not found"]),
    "eval ann corrupt": (["eval", "{snn}", "--data", TEST, "-T", "4", "--limit", "8", "--ann", "{in}/trunc.onnx"],
                         ["trunc.onnx"]),
    "eval ann other input": (["eval", "{snn}", "--data", TEST, "-T", "4", "--limit", "8", "--ann", "{in}/mlp.onnx"],
                             ["mlp.onnx", "cannot run on this .snn's inputs"]),
    "eval json is the snn": (["eval", "{snn}", "--data", TEST, "-T", "4", "--json", "{snn}"],
                             ["--json", "is the .snn file"]),
    "eval plot is the data": (["eval", "{snn}", "--data", "{in}/test_rgb.npz", "-T", "4", "--plot",
                               "{in}/test_rgb.npz"], ["--plot", "is the --data file"]),
    "eval json and plot same path": (["eval", "{snn}", "--data", TEST, "-T", "4", "--json", "{out}/r",
                                      "--plot", "{out}/r"], ["--json and --plot are the same path"]),
    "eval json name too long": (["eval", "{snn}", "--data", TEST, "-T", "4", "--json", "{out}/" + "j" * 300],
                                ["300 bytes", "shorter file name"]),
    "eval T beyond the runtime": (["eval", "{snn}", "--data", TEST, "-T", "2000000", "--limit", "2"],
                                  ["2000000 time steps", "-T 1000000 or fewer"]),
    "model weights NaN": (CONVERT("{in}/nanweights.onnx", CALIB), ["weights contain NaN or inf",
                                                                   "re-export"]),
    "model opset 99": (CONVERT("{in}/opset99.onnx", CALIB), ["onnxruntime cannot run the model", "Opset 99"]),
    "dump-ir is -o": (CONVERT(MODEL, CALIB, "--dump-ir", "{out}/x.snn"), ["-o and --dump-ir are the same path"]),
    "calib labels out of range": (CONVERT(MODEL, "{in}/calib_labels100.npz", "--compensate", "auto"),
                                  ["calibration labels", "100..115", "10 classes"]),
    "rate scale 0": (CONVERT(MODEL, CALIB, "--rate-scale", "0"), ["rate scale", "got 0.0", "--rate-scale 4"]),
    "rate scale nan": (CONVERT(MODEL, CALIB, "--rate-scale", "nan"), ["rate scale", "got nan"]),
    "compensate huge": (CONVERT(MODEL, CALIB, "--compensate", "1e300"), ["compensation factor", "(0, 2]",
                                                                        "--compensate auto"]),
    "input scale overflows": ([MODEL, "-o", "{out}/x.snn", "--calib", CALIB, "--input-scale", "1e300", *FAST],
                              ["beyond float32's range", "--input-scale"]),
    "std underflows": ([MODEL, "-o", "{out}/x.snn", "--calib", CALIB, "--input-scale", "0.0625", "--std", "1e-320",
                        *FAST], ["beyond float32's range", "--std"]),
    "init membrane word": (CONVERT(MODEL, CALIB, "--init-membrane", "soon"), ["--init-membrane", "auto", "'soon'"]),
    "calib is a text file": (CONVERT(MODEL, "{in}/text.npz"), ["text.npz", "neither a zip"]),
    "calib object arrays": (CONVERT(MODEL, "{in}/object.npz"), ["object.npz", "object arrays"]),
    "calib beyond float32": (CONVERT(MODEL, "{in}/huge.npz"), ["huge.npz", "beyond float32"]),
    "unknown command option": (["inspect", "{snn}", "--frobnicate"], ["--frobnicate"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_error(case, bad_inputs, digits_snn, capsys):
    ind, out = bad_inputs
    template, words = BAD_CASES[case]
    args = [a.replace("{in}", str(ind)).replace("{out}", str(out)).replace("{snn}", digits_snn) for a in template]
    before = sorted(os.listdir(ind))
    rc, so, se = cli(capsys, *args)
    line = one_line_error(rc, se)
    for w in words:
        assert w in line, (w, line)
    assert os.listdir(out) == []                      # no output, no temp file
    assert sorted(os.listdir(ind)) == before          # nothing written beside the inputs either
    assert _sha(MODEL) == MODEL_SHA                    # "-o MODEL" must not have touched the model


def _sha(path):
    import hashlib
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


MODEL_SHA = _sha(MODEL)


def test_unreadable_output_dir_non_root(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, so, se = cli(capsys, MODEL, "-o", ro / "x.snn", "--calib", CALIB, *PRE, *FAST)
        assert "not writable" in one_line_error(rc, se)
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


def test_unwritable_output_dir_reported_for_any_user(tmp_path, capsys, monkeypatch):
    """The same check where the test runs as root (who may write anywhere): the directory is made
    unwritable in the eyes of ``os.access``, which is what the check asks."""
    import snncc.snnfile
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(snncc.snnfile.os, "access",
                        lambda p, mode, *a, **k: False if os.path.abspath(p) == str(ro) and mode & os.W_OK
                        else real(p, mode, *a, **k))
    rc, so, se = cli(capsys, MODEL, "-o", ro / "x.snn", "--calib", CALIB, *PRE, *FAST)
    line = one_line_error(rc, se)
    assert "not writable" in line and str(ro / "x.snn") in line and "choose a writable output path" in line
    assert os.listdir(ro) == []


def test_internal_errors_are_one_line_too(tmp_path, capsys, monkeypatch):
    import snncc.api
    monkeypatch.delenv("SNNCC_DEBUG", raising=False)

    def boom(*a, **k):
        raise RuntimeError("simulated bug\nwith a second line")
    monkeypatch.setattr(snncc.api, "convert", boom)
    rc, so, se = cli(capsys, MODEL, "-o", tmp_path / "x.snn", "--calib", CALIB)
    assert rc == 1 and "Traceback" not in se
    lines = [ln for ln in se.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("snncc: internal error: RuntimeError: simulated bug with")
    assert "SNNCC_DEBUG=1" in lines[0]
    assert os.listdir(tmp_path) == []
    monkeypatch.setenv("SNNCC_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main([MODEL, "-o", str(tmp_path / "x.snn"), "--calib", CALIB])


def test_options_before_the_model_still_mean_convert(tmp_path, capsys):
    rc, so, se = cli(capsys, "-q", MODEL, "-o", tmp_path / "x.snn", "--calib", CALIB, *PRE, *FAST)
    assert rc == 0 and so == "" and se == "" and (tmp_path / "x.snn").exists()
    rc, so, se = cli(capsys, "--help")
    assert rc == 0 and "{convert,inspect,eval}" in so


def test_no_arguments_is_a_one_line_error(capsys):
    rc, so, se = cli(capsys)
    line = one_line_error(rc, se)
    assert rc == 2 and so == "" and "no model given" in line and "snncc --help" in line


# ---------------------------------------------------------------------------------------------
# a real process: exit codes, stderr without tracebacks
# ---------------------------------------------------------------------------------------------
def _proc(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "SNNCC_DEBUG"}
    return subprocess.run([sys.executable, "-m", "snncc", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_subprocess_convert_inspect_and_errors(tmp_path, digits_snn):
    r = _proc(MODEL, "-o", "p.snn", "--calib", CALIB, *PRE, *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip() == ""      # no progress bars off a terminal
    assert "wrote p.snn" in r.stdout
    assert all(len(ln) <= 120 for ln in r.stdout.splitlines() if not ln.startswith("options "))
    r = _proc("inspect", "p.snn", cwd=tmp_path)
    assert r.returncode == 0 and "…" not in r.stdout and "layer3/Relu_1" in r.stdout
    (tmp_path / "bad.onnx").write_bytes(open(MODEL, "rb").read()[:5000])
    r = _proc("bad.onnx", "-o", "q.snn", "--calib", CALIB, *PRE, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "not a valid ONNX" in r.stderr
    (tmp_path / "bad.snn").write_bytes(b"PK\x03\x04garbage")
    r = _proc("eval", "bad.snn", "--data", TEST, "-T", "0", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "-T/--timesteps" in r.stderr
    r = _proc("eval", "bad.snn", "--data", TEST, "-T", "8", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "bad.snn" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.onnx", "bad.snn", "p.snn"]


def test_rate_scale_scales_the_presets_bias_calibration(tmp_path, capsys):
    """--rate-scale 2 without --calibrate-bias: the best preset's 64 calibration steps become 128 (said in
    the log), the summary names the rate scale, and the .snn records it."""
    out = tmp_path / "r.snn"
    rc, so, se = cli(capsys, MODEL, "-o", out, "--calib", CALIB, *PRE, "--calib-limit", "100", "--rate-scale", "2")
    assert rc == 0, se
    text = " ".join((so + se).split())
    assert "bias calibration runs for 128 steps" in text and "rate scale 2," in text
    m = snncc.load(str(out)).graph.meta
    assert m["rate_scale"] == 2.0 and m["bias_calibration"]["timesteps"] == 128
    assert m["provenance"]["options"]["rate_scale"] == 2.0
