import os
import zipfile

import numpy as np
import pytest

from snncc import snnfile
from snncc.errors import SnnFileError
from snncc.ir import EdgeKind, Graph, Node, Synapse, verify


def small_graph():
    rng = np.random.default_rng(0)
    g = Graph()
    g.add_node(Node("in", "input", (4, 4, 3)))
    g.add_node(Node("n1", "neuron", (4, 4, 3), attrs={"cap": None}, params={"bias": rng.random(3)}))
    g.add_node(Node("n2", "neuron", (4, 4, 3), params={"bias": np.zeros(3)}))
    g.add_node(Node("out", "output", (5,), params={"bias": rng.random(5)}))
    g.add_edge("in", "n1", EdgeKind.SYNAPSE, syn=Synapse("conv", {"stride": (1, 1), "pads": (1, 1, 1, 1)},
                                                        {"weight": rng.standard_normal((3, 3, 3, 3))}))
    g.add_edge("n1", "n2", EdgeKind.SYNAPSE, syn=Synapse("conv", {"stride": (1, 1), "pads": (1, 1, 1, 1)},
                                                        {"weight": rng.standard_normal((3, 3, 3, 3))}))
    g.add_edge("in", "n2", EdgeKind.SHORTCUT, syn=Synapse("identity", {}, {"scale": np.array([.5, 1., 2.])}))
    g.add_edge("n2", "out", EdgeKind.SYNAPSE, syn=Synapse("dense", {}, {"weight": rng.standard_normal((48, 5))}))
    g.meta = {"lambda": {"n1": 1.5, "n2": [1.0, 2.0, 3.0]}, "zeta": 1.02, "preprocess": {"scale": 0.5}}
    return g


def test_roundtrip_exact(tmp_path):
    from snncc.analog import run_analog
    g = small_graph()
    verify(g)
    p = str(tmp_path / "m.snn")
    snnfile.save(g, p)
    h = snnfile.load(p)
    x = np.random.default_rng(1).random((3, 4, 4, 3))
    assert np.array_equal(run_analog(g, x), run_analog(h, x))
    assert h.meta["lambda"]["n2"] == [1.0, 2.0, 3.0] and h.meta["zeta"] == 1.02
    assert [n.name for n in h.nodes()] == [n.name for n in g.nodes()]
    assert h.edge("in", "n2")["kind"] is EdgeKind.SHORTCUT
    with zipfile.ZipFile(p) as z:                      # no pickle anywhere
        assert all(n == "manifest.json" or n.endswith(".npy") for n in z.namelist())


def test_arrays_stored_uncompressed_manifest_deflated(tmp_path):
    p = str(tmp_path / "m.snn")
    snnfile.save(small_graph(), p)
    with zipfile.ZipFile(p) as z:
        kinds = {i.filename: i.compress_type for i in z.infolist()}
    assert kinds.pop("manifest.json") == zipfile.ZIP_DEFLATED
    assert kinds and set(kinds.values()) == {zipfile.ZIP_STORED}


def test_deflated_arrays_still_load(tmp_path):
    """Files written before the arrays were stored uncompressed (all members deflated) load unchanged."""
    from snncc.analog import run_analog
    g = small_graph()
    p = tmp_path / "m.snn"
    snnfile.save(g, str(p))
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, v in members.items():
            z.writestr(n, v)
    x = np.random.default_rng(2).random((2, 4, 4, 3))
    assert np.array_equal(run_analog(g, x), run_analog(snnfile.load(str(p)), x))


def test_bit_flip_in_a_stored_array_fails_its_crc(tmp_path):
    """A flipped bit inside an array's bytes (CRC-32 left as written): named as a checksum error."""
    p = tmp_path / "m.snn"
    snnfile.save(small_graph(), str(p))
    with zipfile.ZipFile(p) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(".npy") and i.file_size > 400)
    raw = bytearray(p.read_bytes())
    off = info.header_offset                   # local file header: 30 bytes, then name and extra field
    name_len, extra_len = (int.from_bytes(raw[off + i:off + i + 2], "little") for i in (26, 28))
    data = off + 30 + name_len + extra_len
    assert raw[data:data + 6] == b"\x93NUMPY"
    raw[data + info.file_size - 1] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(SnnFileError) as e:
        snnfile.load(str(p))
    assert f"checksum error in {info.filename}" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "version", "flip", "missing"])
def test_corrupt_files_rejected(tmp_path, damage):
    p = tmp_path / "m.snn"
    snnfile.save(small_graph(), str(p))
    raw = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        p.write_bytes(b"\x00" * 100)
    elif damage == "flip":
        with zipfile.ZipFile(p) as z:
            members = {n: z.read(n) for n in z.namelist()}
        k = next(n for n in members if n.endswith(".npy"))
        b = bytearray(members[k])
        b[-1] ^= 0xFF
        members[k] = bytes(b)
        with zipfile.ZipFile(p, "w") as z:            # valid zip, consistent CRC, wrong content
            for n, v in members.items():
                z.writestr(n, v)
    elif damage == "version":
        import json
        with zipfile.ZipFile(p) as z:
            members = {n: z.read(n) for n in z.namelist()}
        m = json.loads(members["manifest.json"])
        m["format_version"] = 99
        members["manifest.json"] = json.dumps(m).encode()
        with zipfile.ZipFile(p, "w") as z:
            for n, v in members.items():
                z.writestr(n, v)
    elif damage == "missing":
        p.unlink()
    with pytest.raises(SnnFileError) as e:
        snnfile.load(str(p))
    assert "\n" not in str(e.value) and "fix:" in str(e.value)
    if damage == "version":
        assert "version 99" in str(e.value)


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "m.snn"
    p.write_bytes(b"old")

    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(SnnFileError, match="cannot write .*m.snn.*disk full"):
        snnfile.save(small_graph(), str(p))
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["m.snn"]


def test_atomic_write_many_is_all_or_nothing(tmp_path):
    """A failure on a later file (here: its directory is missing) leaves none of the files written."""
    a, b = tmp_path / "a.json", tmp_path / "nope" / "b.png"
    with pytest.raises(SnnFileError, match="does not exist"):
        snnfile.atomic_write_many([(str(a), b"1"), (str(b), b"2")])
    assert list(tmp_path.iterdir()) == []
    snnfile.atomic_write_many([(str(a), b"1"), (str(tmp_path / "c.png"), b"2")])
    assert a.read_bytes() == b"1" and (tmp_path / "c.png").read_bytes() == b"2"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", "c.png"]


def test_check_writable_rejects_overlong_names(tmp_path):
    with pytest.raises(SnnFileError, match="shorter file name"):
        snnfile.check_writable(str(tmp_path / ("a" * 300 + ".snn")))


def test_check_outputs_refuses_inputs_and_duplicates(tmp_path):
    src = tmp_path / "m.snn"
    src.write_bytes(b"x")
    with pytest.raises(SnnFileError, match="--json .* is the .snn file"):
        snnfile.check_outputs({"--json": str(src)}, {"the .snn file": str(src)})
    with pytest.raises(SnnFileError, match="--json and --plot are the same path"):
        snnfile.check_outputs({"--json": str(tmp_path / "r"), "--plot": str(tmp_path / "." / "r")}, {})
    snnfile.check_outputs({"--json": str(tmp_path / "r.json"), "--plot": None}, {"the .snn file": str(src)})


def test_unwritable_output(tmp_path):
    with pytest.raises(SnnFileError, match="does not exist"):
        snnfile.save(small_graph(), str(tmp_path / "nope" / "m.snn"))


def test_arrays_sha256_follows_the_documented_recipe(tmp_path):
    """docs/usage.md: sha256 over (key, .npy bytes) in numeric key order -- checkable without snncc."""
    import hashlib
    import json
    g = small_graph()
    for i in range(12):            # more than 10 arrays: numeric, not lexicographic, order matters
        g.node("n2").params[f"extra{i}"] = np.full(3, float(i))
    p = str(tmp_path / "m.snn")
    snnfile.save(g, p)
    with zipfile.ZipFile(p) as z:
        names = z.namelist()
        keys = sorted((n[7:-4] for n in names if n.startswith("arrays/")), key=lambda k: int(k[1:]))
        assert len(keys) > 10 and set(names) == {"manifest.json"} | {f"arrays/{k}.npy" for k in keys}
        h = hashlib.sha256()
        for k in keys:
            h.update(k.encode())
            h.update(z.read(f"arrays/{k}.npy"))
        assert h.hexdigest() == json.loads(z.read("manifest.json"))["arrays_sha256"]


def test_negative_std_from_a_folded_input_affine_round_trips(tmp_path):
    """fold_input_affine may store std < 0 (an in-graph Mul(-1)); such a file must load."""
    g = small_graph()
    g.meta["preprocess"] = {"scale": 1.0, "mean": [1.0], "std": [-1.0]}
    p = str(tmp_path / "neg.snn")
    snnfile.save(g, p)
    assert snnfile.load(p).meta["preprocess"]["std"] == [-1.0]
    g.meta["preprocess"]["std"] = [0.0]
    with pytest.raises(SnnFileError, match="not fit to be saved.*nonzero"):
        snnfile.save(g, p)                                   # save refuses it; a file made otherwise:
    assert snnfile.load(p).meta["preprocess"]["std"] == [-1.0]    # the earlier file is untouched
    snnfile.atomic_write(p, snnfile.to_bytes(g))
    with pytest.raises(SnnFileError, match="nonzero"):
        snnfile.load(p)


def _float_params(g):
    for n in g.nodes():
        yield from n.params.values()
        for _, d in g.in_edges(n.name):
            if d["syn"] is not None:
                yield from d["syn"].params.values()


def test_float32_storage_halves_the_arrays_and_round_trips_exactly(tmp_path):
    """set_param_dtype('float32') rounds every float parameter to float32 (in memory, still float64):
    the file stores them as float32, and loading gives back exactly the rounded network."""
    from snncc.analog import run_analog
    g = small_graph()
    p64, p32 = str(tmp_path / "m64.snn"), str(tmp_path / "m32.snn")
    snnfile.save(g, p64)
    r = snnfile.set_param_dtype(small_graph(), "float32")
    assert snnfile.param_dtype(r) == "float32" and snnfile.param_dtype(g) == "float64"
    for a, b in zip(_float_params(g), _float_params(r)):
        assert b.dtype == np.float64 and np.array_equal(b, a.astype(np.float32))   # rounded, not truncated
        assert np.abs(b - a).max() <= 2 ** -24 * np.abs(a).max()
    snnfile.save(r, p32)
    with zipfile.ZipFile(p32) as z:
        dtypes = {np.load(z.open(n)).dtype for n in z.namelist() if n.startswith("arrays/")}
    assert dtypes == {np.dtype(np.float32)}
    h = snnfile.load(p32)
    assert snnfile.param_dtype(h) == "float32"
    for a, b in zip(_float_params(r), _float_params(h)):
        assert b.dtype == np.float64 and np.array_equal(a, b)
    x = np.random.default_rng(3).random((2, 4, 4, 3))
    assert np.array_equal(run_analog(r, x), run_analog(h, x))
    size = lambda p: sum(i.file_size for i in zipfile.ZipFile(p).infolist() if i.filename.startswith("arrays/"))
    assert size(p64) - size(p32) == sum(a.nbytes for a in _float_params(g)) // 2    # 4 bytes a number, not 8
    assert snnfile.set_param_dtype(r, "float32") is r                        # idempotent
    assert all(np.array_equal(a, b) for a, b in zip(_float_params(r), _float_params(h)))


def test_int_params_and_old_files_keep_their_dtype(tmp_path):
    g = snnfile.set_param_dtype(small_graph(), "float32")
    g.node("n1").params["idx"] = np.arange(3, dtype=np.int64)       # not a float: stored as is
    p = str(tmp_path / "m.snn")
    snnfile.save(g, p)
    assert snnfile.load(p).node("n1").params["idx"].dtype == np.int64
    old = small_graph()                     # no meta['param_dtype']: float64 on disk and in memory
    old.node("n1").params["bias"] = old.node("n1").params["bias"].astype(np.float32)   # a float32 param stays so
    snnfile.save(old, p)
    h = snnfile.load(p)
    assert snnfile.param_dtype(h) == "float64" and h.node("n1").params["bias"].dtype == np.float32
    assert h.node("n2").params["bias"].dtype == np.float64


def test_unknown_param_dtype_rejected(tmp_path):
    with pytest.raises(SnnFileError, match="float32, float64"):
        snnfile.set_param_dtype(small_graph(), "float16")
    g = small_graph()
    g.meta["param_dtype"] = "float16"
    p = str(tmp_path / "m.snn")
    with pytest.raises(SnnFileError, match="not fit to be saved.*param_dtype"):
        snnfile.save(g, p)
    assert not os.path.exists(p)
    snnfile.atomic_write(p, snnfile.to_bytes(g))         # a file made otherwise
    with pytest.raises(SnnFileError, match="param_dtype"):
        snnfile.load(p)


def _edited(tmp_path, edit):
    """A .snn written from ``small_graph()`` after ``edit(graph)`` without save's checks (a file
    snncc never writes), or with ``edit(manifest_dict)`` when ``edit.manifest`` is set."""
    import json
    g = small_graph()
    p = tmp_path / "m.snn"
    if getattr(edit, "manifest", False):
        snnfile.save(g, str(p))
        with zipfile.ZipFile(p) as z:
            members = {n: z.read(n) for n in z.namelist()}
        m = json.loads(members["manifest.json"])
        edit(m)
        members["manifest.json"] = json.dumps(m).encode()
        with zipfile.ZipFile(p, "w") as z:
            for n, v in members.items():
                z.writestr(n, v)
    else:
        edit(g)
        snnfile.atomic_write(str(p), snnfile.to_bytes(g))
    return str(p)


def _ghost(m):
    m["edges"][0]["src"] = "ghost"


_ghost.manifest = True


def _init_nan(m):
    m["meta"]["init_membrane"] = float("nan")                # json writes NaN, and reads it back


_init_nan.manifest = True


def _stride0(g):
    g.nx.edges["n1", "n2"]["syn"].attrs["stride"] = (0, 0)


def _groups3(g):
    g.nx.edges["n1", "n2"]["syn"].attrs["groups"] = 2          # 3 output channels: not divisible


@pytest.mark.parametrize("edit, words", [
    (_ghost, ["malformed manifest", "names no node 'ghost'"]),
    (_stride0, ["invalid network", "stride (0, 0)", "at least 1"]),
    (_groups3, ["invalid network", "groups=2"]),
    (_init_nan, ["'meta.init_membrane'", "[0, 1)", "nan"]),
    (lambda g: g.meta.update(init_membrane=1.5), ["'meta.init_membrane'", "1.5"]),
], ids=["edge to no node", "stride 0", "groups", "init membrane nan", "init membrane 1.5"])
def test_edited_manifests_are_corrupt_files(tmp_path, edit, words):
    p = _edited(tmp_path, edit)
    with pytest.raises(SnnFileError) as e:
        snnfile.load(p)
    msg = str(e.value)
    assert "\n" not in msg and "fix:" in msg and all(w in msg for w in words), msg


def test_save_refuses_non_finite_parameters(tmp_path):
    """What a huge compensation factor once produced: overflowed weights are refused before writing."""
    g = small_graph()
    g.nx.edges["n1", "n2"]["syn"].params["weight"][0, 0, 0, 0] = np.inf
    p = tmp_path / "m.snn"
    with pytest.raises(SnnFileError, match="not fit to be saved.*non-finite"):
        snnfile.save(g, str(p))
    assert list(tmp_path.iterdir()) == []


def test_input_scale_beyond_float32_is_a_data_error(tmp_path):
    """A stored input scale that overflows the input: the run stops with a one-line DataError."""
    from snncc.errors import DataError
    from snncc.runtime import Network
    p = _edited(tmp_path, lambda g: g.meta["preprocess"].update(scale=1e308))
    g = snnfile.load(p)
    with pytest.raises(DataError, match="beyond float32's range") as e:
        Network(g).run(np.full((1, 4, 4, 3), 255.0), 4, progress=False)
    assert "--input-scale" in str(e.value)
