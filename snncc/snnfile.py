"""The ``.snn`` file: one self-describing, code-free file per spiking network.

Layout (a standard zip archive, readable with any zip tool)::

    manifest.json        format name + version, snncc version, nodes, edges,
                         meta (lambda table, zeta, preprocessing, provenance...); deflated
    arrays/<k>.npy       every weight/bias array, numpy .npy format; stored uncompressed
                         (deflate saved only 4-18% on weights and cost ~8 s per GB to load)

Loading uses ``json`` and ``numpy.load(allow_pickle=False)`` only, so a file
cannot execute code.  Integrity comes from the zip CRC-32 of every member
(checked on load, as each member is read) and ``manifest['arrays_sha256']``: the SHA-256 of, for each array
in numeric key order (a0, a1, ..., a10), its key followed by its ``.npy`` bytes (docs/usage.md
shows a check in a few lines).  The manifest's structure and preprocessing record are
validated on load.
Writing is atomic: a temporary file in the target directory is fsynced and
renamed over the destination, so a failure never leaves a half-written file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from snncc.errors import SnnFileError, one_line
from snncc.ir import EdgeKind, Graph, Node, Synapse
from snncc.presets import PARAM_DTYPES

FORMAT = "snncc-snn"
FORMAT_VERSION = 1


def param_dtype(graph: Graph) -> str:
    """The precision ``graph``'s weights and biases are stored in (``meta['param_dtype']``, default float64)."""
    return graph.meta.get("param_dtype") or "float64"


def _param_arrays(graph: Graph):
    for n in graph.nodes():
        yield n.params
        for _, d in graph.in_edges(n.name):
            if d["syn"] is not None:
                yield d["syn"].params


def set_param_dtype(graph: Graph, dtype: str) -> Graph:
    """Store ``graph``'s weights and biases in ``dtype`` (in place; returns the graph).

    ``"float32"`` rounds every float64 parameter to the nearest float32 value (kept as float64 in
    memory, so the IR's arithmetic is unchanged) and records ``meta['param_dtype']``: the file then
    stores them as float32 -- half the size -- and loading gives back exactly these values, so the
    saved network is the one in memory.  The runtime simulates in float32 anyway; what changes is
    the first layer's analog current, computed once in float64 from the rounded weights
    (about 1e-7 relative).  ``"float64"`` records the full precision (the rounding is not undone).
    """
    if dtype not in PARAM_DTYPES:
        raise SnnFileError(f"unknown parameter precision {dtype!r}", f"use one of {', '.join(PARAM_DTYPES)}")
    if dtype == "float32":
        for params in _param_arrays(graph):
            for k, a in params.items():
                if a.dtype == np.float64:
                    params[k] = a.astype(np.float32).astype(np.float64)
    graph.meta["param_dtype"] = dtype
    return graph


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, EdgeKind):
        return obj.value
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _attrs_in(d: dict) -> dict:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}


def to_bytes(graph: Graph) -> bytes:
    """Serialise a spiking-level graph (any IR state works) to ``.snn`` bytes."""
    arrays: dict[str, np.ndarray] = {}

    store32 = param_dtype(graph) == "float32"

    def put(arr: np.ndarray) -> str:
        key = f"a{len(arrays)}"
        if store32 and arr.dtype == np.float64:     # rounded by set_param_dtype: stored exactly
            arr = arr.astype(np.float32)
        arrays[key] = np.ascontiguousarray(arr)
        return key

    nodes, edges = [], []
    for n in graph.nodes():
        nodes.append({"name": n.name, "op": n.op, "shape": list(n.shape), "attrs": _jsonable(n.attrs),
                      "params": {k: put(v) for k, v in n.params.items()},
                      "onnx_tensor": n.onnx_tensor,
                      "onnx_perm": None if n.onnx_perm is None else list(n.onnx_perm)})
        for src, d in graph.in_edges(n.name):
            syn = d["syn"]
            edges.append({"src": src, "dst": n.name, "kind": d["kind"].value, "port": int(d["port"]),
                          "syn": None if syn is None else {
                              "op": syn.op, "attrs": _jsonable(syn.attrs),
                              "params": {k: put(v) for k, v in syn.params.items()}}})
    h = hashlib.sha256()
    bufs = {}
    for k, a in arrays.items():
        b = io.BytesIO()
        np.lib.format.write_array(b, a, allow_pickle=False)
        bufs[k] = b.getvalue()
        h.update(k.encode())
        h.update(bufs[k])
    from snncc import __version__
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "snncc_version": __version__,
                "arrays_sha256": h.hexdigest(), "nodes": nodes, "edges": edges,
                "meta": _jsonable(graph.meta)}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        for k, b in bufs.items():     # stored: deflate saved 4-18% on weights and made loading ~8 s/GB slower
            z.writestr(f"arrays/{k}.npy", b, compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def _check_dir(d: str) -> None:
    if not os.path.isdir(d):
        if os.path.exists(d):
            raise SnnFileError(f"output directory {d!r} is not a directory", "choose another output path")
        raise SnnFileError(f"output directory {d!r} does not exist", "create it or choose another output path")


def _new_file_mode(path: str) -> int:
    """Mode of a replaced file, else what ``open()`` would give (0o666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    atomic_write_many([(path, data)])


def atomic_write_many(items: list[tuple[str, bytes]]) -> None:
    """Write several files all or nothing: every temp file is written and fsynced first, then
    each is renamed over its destination; a failure before the renames leaves no file behind."""
    temps: list[tuple[str, str]] = []
    try:
        for path, data in items:
            d = os.path.dirname(os.path.abspath(path))
            _check_dir(d)
            if os.path.isdir(path):
                raise SnnFileError(f"output path {path!r} is a directory", "give a file name")
            try:
                fd, tmp = tempfile.mkstemp(prefix=".snncc-", suffix=".tmp", dir=d)
            except OSError as e:
                raise SnnFileError(f"cannot write to {d!r} ({e.strerror})", "choose a writable output path") from None
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _new_file_mode(path))   # mkstemp creates 0600 files
        for tmp, path in temps:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise SnnFileError(f"cannot write {path!r} ({e.strerror or e})", "choose a writable output path") \
                    from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def save(graph: Graph, path: str) -> None:
    """Write ``graph`` to ``path`` (atomically), after checking it is a network :func:`load` accepts: the IR
    invariants (finite parameters included) and the metadata the runtime relies on."""
    from snncc.ir import IRError, verify
    try:
        verify(graph)
        _check_meta(graph.meta, graph.input.shape[-1])
    except (IRError, ValueError) as e:
        raise SnnFileError(f"the network is not fit to be saved to {path!r} ({e})",
                           "check the conversion options (e.g. a huge --compensate or --rate-scale); nothing was "
                           "written") from None
    atomic_write(path, to_bytes(graph))


def check_writable(path: str) -> None:
    """Fail early (before long work) if ``path`` cannot be written."""
    d = os.path.dirname(os.path.abspath(path))
    _check_dir(d)
    if not os.access(d, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise SnnFileError(f"output path {path!r} is not writable", "choose a writable output path")
    if os.path.isdir(path):
        raise SnnFileError(f"output path {path!r} is a directory", "give a file name such as model.snn")
    try:
        name_max = os.pathconf(d, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    n = len(os.fsencode(os.path.basename(path)))
    if n > name_max:
        raise SnnFileError(f"output file name {os.path.basename(path)[:40]!r}... is {n} bytes long; the file system "
                           f"allows {name_max}", "choose a shorter file name")


def same_path(a: str, b: str) -> bool:
    """Whether two paths name the same file (existing or not)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Before long work: no output path is an input file, and no two outputs are the same path (each file
    output is also checked with :func:`check_writable` by the caller).

    ``outputs``/``inputs`` map an option or role (``'--json'``, ``'the model'``) to a path (``None`` = not given).
    """
    outs = [(k, v) for k, v in outputs.items() if v]
    for opt, path in outs:
        for what, src in inputs.items():
            if src and same_path(src, path):
                raise SnnFileError(f"{opt} {path!r} is {what}", f"choose another {opt} path; it would be overwritten")
    for i, (o1, p1) in enumerate(outs):
        for o2, p2 in outs[i + 1:]:
            if same_path(p1, p2):
                raise SnnFileError(f"{o1} and {o2} are the same path {p1!r}", f"give {o2} another file name")


def load(path: str) -> Graph:
    """Read a ``.snn`` file into a :class:`Graph`; :class:`SnnFileError` on any defect."""
    if not os.path.exists(path):
        raise SnnFileError(f"{path!r} not found", "check the path, or create it with `snncc MODEL.onnx -o FILE.snn`")
    fix = "re-create it with `snncc MODEL.onnx -o FILE.snn`"
    try:
        with zipfile.ZipFile(path) as z:
            def read(name):            # zipfile checks each member's CRC-32 as it reads it
                try:
                    return z.read(name)
                except zipfile.BadZipFile as e:
                    if "CRC" in str(e):
                        raise SnnFileError(f"{path!r} is corrupt (checksum error in {name})", fix) from None
                    raise
            try:
                manifest = json.loads(read("manifest.json"))
            except KeyError:
                raise SnnFileError(f"{path!r} is not a .snn file (no manifest)", fix) from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise SnnFileError(f"{path!r} is not a .snn file", fix)
            ver = manifest.get("format_version")
            if type(ver) is not int or ver != FORMAT_VERSION:
                raise SnnFileError(f"{path!r} has .snn format version {ver!r}; this snncc reads version "
                                   f"{FORMAT_VERSION}", "re-convert the model with this snncc version")
            h = hashlib.sha256()
            arrays = {}
            for name in sorted(z.namelist(), key=lambda s: int(s[8:-4]) if s.startswith("arrays/a") else -1):
                if not name.startswith("arrays/"):
                    continue
                raw = read(name)
                k = name[len("arrays/"):-len(".npy")]
                h.update(k.encode())
                h.update(raw)
                arrays[k] = np.load(io.BytesIO(raw), allow_pickle=False)
                if arrays[k].dtype.kind not in "fiub":
                    raise SnnFileError(f"{path!r} is corrupt (array {k} has dtype {arrays[k].dtype}, not numbers)", fix)
            if h.hexdigest() != manifest.get("arrays_sha256"):
                raise SnnFileError(f"{path!r} is corrupt (weights do not match their checksum)", fix)
            if isinstance(manifest.get("meta"), dict) and manifest["meta"].get("param_dtype") == "float32":
                for k, a in arrays.items():      # float32 on disk, float64 in the IR (exact)
                    if a.dtype == np.float32:
                        arrays[k] = a.astype(np.float64)
    except SnnFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, json.JSONDecodeError) as e:
        msg = one_line(e, 120)
        raise SnnFileError(f"{path!r} is not a readable .snn file ({msg})", fix) from None
    try:
        g = Graph()
        for n in manifest["nodes"]:
            g.add_node(Node(n["name"], n["op"], tuple(n["shape"]), _attrs_in(n["attrs"]),
                            {k: arrays[v] for k, v in n["params"].items()}, n.get("onnx_tensor"),
                            None if n.get("onnx_perm") is None else tuple(n["onnx_perm"])))
        for e in manifest["edges"]:
            s = e["syn"]
            syn = None if s is None else Synapse(s["op"], _attrs_in(s["attrs"]),
                                                 {k: arrays[v] for k, v in s["params"].items()})
            g.add_edge(e["src"], e["dst"], EdgeKind(e["kind"]), int(e["port"]), syn)
        g.meta = manifest["meta"]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SnnFileError(f"{path!r} has a malformed manifest ({type(e).__name__}: {e})", fix) from None
    from snncc.ir import IRError, verify
    try:
        verify(g)
    except (IRError, ValueError, TypeError, IndexError) as e:     # IRError, or params verify cannot even read
        raise SnnFileError(f"{path!r} holds an invalid network ({type(e).__name__}: {e})", fix) from None
    try:
        _check_meta(g.meta, g.input.shape[-1])
    except ValueError as e:
        raise SnnFileError(f"{path!r} has a malformed manifest ({e})", fix) from None
    return g


def _check_meta(meta: Any, channels: int) -> None:
    """The metadata the runtime relies on: a dict whose ``preprocess`` is ``{scale > 0, mean, std != 0}``
    (``mean``/``std`` null or 1 or ``channels`` finite numbers, ``std`` nonzero), and an ``exit_stable``
    window, where there is one, null or a positive integer.  Raises ``ValueError`` naming the field."""
    if not isinstance(meta, dict):
        raise ValueError(f"'meta' is a {type(meta).__name__}, not an object")
    if meta.get("param_dtype") not in (None,) + PARAM_DTYPES:
        raise ValueError(f"'meta.param_dtype' must be one of {', '.join(PARAM_DTYPES)}, got {meta['param_dtype']!r}")
    pre = meta.get("preprocess")
    if not isinstance(pre, dict):
        raise ValueError("'meta.preprocess' (the input scaling) is missing")
    scale = pre.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"'meta.preprocess.scale' must be a positive number, got {scale!r}")
    for key in ("mean", "std"):
        v = pre.get(key)
        if v is None:
            continue
        if not isinstance(v, list) or len(v) not in (1, channels) or \
                not all(isinstance(m, (int, float)) and not isinstance(m, bool) and np.isfinite(m) for m in v):
            raise ValueError(f"'meta.preprocess.{key}' must be null or a list of 1 or {channels} finite numbers, "
                             f"got {v!r}")
        if key == "std" and any(m == 0 for m in v):      # negative is fine: a folded in-graph Mul(-1)
            raise ValueError(f"'meta.preprocess.std' must be nonzero, got {v!r}")
    im = meta.get("init_membrane", 0.0)
    if im is not None and (isinstance(im, bool) or not isinstance(im, (int, float)) or not 0.0 <= im < 1.0):
        raise ValueError(f"'meta.init_membrane' must be a fraction of threshold in [0, 1), got {im!r}")
    ex = meta.get("exit_stable")       # the window exit_stable='auto' runs with (snncc.exitsearch)
    if ex is not None:
        if not isinstance(ex, dict) or "m" not in ex:
            raise ValueError(f"'meta.exit_stable' must be an object with a window 'm', got a {type(ex).__name__}"
                             + (" without 'm'" if isinstance(ex, dict) else ""))
        m = ex["m"]
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m <= 0):
            raise ValueError(f"'meta.exit_stable.m' must be null or a positive integer, got {m!r}")
