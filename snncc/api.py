"""Public Python API, mirroring the CLI.

>>> import snncc
>>> net = snncc.convert("model.onnx", "calib.npz", input_scale=1/255,
...                     mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
>>> net.save("model.snn")
>>> net = snncc.load("model.snn")
>>> res = net.run(x_test, timesteps=256)          # raw images, model's own layout
>>> res.predictions[:, -1]                         # class at the last step
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from snncc import data as _data
from snncc import snnfile
from snncc.errors import SnnccError, SnnFileError, one_line
from snncc.exitsearch import EXIT_IMAGES
from snncc.exitsearch import TOLERANCE as EXIT_TOLERANCE
from snncc.ir import Graph
from snncc.presets import (LAYERS_PER_GROUP, MAXGATE_RULES, PARAM_DTYPE, PARAM_DTYPES, PERCENTILE_OF,  # noqa: F401
                           PRESETS, ZETA_IMAGES, ZETA_TIMESTEPS)                                # (re-exported)


#: the largest fixed compensation factor accepted: the factor compounds over depth (2^19 on ResNet-20's
#: 19 layers), while the searched factors lie within 1.00-1.05 (docs/results.md)
ZETA_MAX = 2.0


@dataclass
class ConvertOptions:
    """Every conversion option, resolved (:func:`resolve_options`): a preset's values, then the overrides.

    The fields without a default are the ones each preset in ``PRESETS`` sets.
    """
    percentile: float
    percentile_of: str
    channel_wise: bool
    shortcut_norm: bool
    init_membrane: float | str          # a fraction of threshold, or "auto" (searched on calibration images)
    compensate: str | float             # "none", "auto" or a factor in (0, ZETA_MAX]
    calibrate_bias: int
    maxgate: str
    preset: str
    input_scale: float = 1.0
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    calib_limit: int | None = None
    zeta_timesteps: int = ZETA_TIMESTEPS   # --compensate auto: steps each zeta is simulated for
    zeta_images: int = ZETA_IMAGES         # --compensate auto: calibration images each zeta is scored on
    batch_size: int = 64
    rate_scale: float = 1.0                # every lambda x K: every firing rate / K (normalize)
    calibrate_bias_group: int = LAYERS_PER_GROUP   # bias calibration: layers corrected per simulation
    param_dtype: str = PARAM_DTYPE         # precision the .snn stores weights and biases in (snnfile.set_param_dtype)
    exit_stable: int | str | None = None   # the stable-prediction exit's window to store, or "auto" (snncc.exitsearch)
    exit_tolerance: float = EXIT_TOLERANCE  # --exit-stable auto: points of calibration accuracy a window may lose
    exit_images: int = EXIT_IMAGES         # --exit-stable auto: calibration images the window is chosen on
    extra: dict = field(default_factory=dict)


def resolve_options(preset: str = "best", **overrides) -> ConvertOptions:
    """Preset values, then every override that is not None."""
    if preset not in PRESETS:
        raise SnnccError(f"unknown preset {preset!r}", f"use one of {', '.join(PRESETS)}")
    vals = dict(PRESETS[preset])
    vals.update({k: v for k, v in overrides.items() if v is not None})
    opts = ConvertOptions(preset=preset, **vals)
    if not (0 < opts.percentile <= 100):
        raise SnnccError(f"percentile must be in (0, 100], got {opts.percentile}", "e.g. --percentile 99.9")
    if isinstance(opts.init_membrane, str) and opts.init_membrane != "auto":
        try:
            opts.init_membrane = float(opts.init_membrane)
        except ValueError:
            raise SnnccError(f"--init-membrane takes a fraction of threshold or auto, got {opts.init_membrane!r}",
                             "e.g. --init-membrane 0.5 or --init-membrane auto") from None
    if opts.init_membrane != "auto" and (isinstance(opts.init_membrane, bool) or not isinstance(
            opts.init_membrane, (int, float, np.integer, np.floating)) or not (0.0 <= opts.init_membrane < 1.0)):
        raise SnnccError(f"initial membrane must be in [0, 1) of threshold, got {opts.init_membrane}",
                         "e.g. --init-membrane 0.5")
    if opts.percentile_of not in PERCENTILE_OF:
        raise SnnccError(f"unknown percentile population {opts.percentile_of!r}",
                         f"use one of {', '.join(PERCENTILE_OF)}")
    if opts.param_dtype not in PARAM_DTYPES:
        raise SnnccError(f"unknown parameter precision {opts.param_dtype!r}", f"use one of {', '.join(PARAM_DTYPES)}")
    if opts.maxgate not in MAXGATE_RULES:
        raise SnnccError(f"unknown max-pool gate rule {opts.maxgate!r}", f"use one of {', '.join(MAXGATE_RULES)}")
    if isinstance(opts.rate_scale, bool) or not isinstance(opts.rate_scale, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(opts.rate_scale) and 0 < opts.rate_scale <= 1000):
        raise SnnccError(f"rate scale must be a number in (0, 1000], got {opts.rate_scale!r}",
                         "e.g. --rate-scale 4 (4x fewer spikes), or 1 for none")
    opts.rate_scale = float(opts.rate_scale)
    if (opts.rate_scale != 1.0 and overrides.get("calibrate_bias") is None and opts.calibrate_bias > 0):
        # the preset's calibration length is for rates of 1/1: a network firing K times slower needs K times the steps
        opts.calibrate_bias = int(round(opts.calibrate_bias * opts.rate_scale))
    if opts.calibrate_bias < 0:
        raise SnnccError(f"--calibrate-bias takes a number of time steps >= 0, got {opts.calibrate_bias}",
                         "e.g. --calibrate-bias 64, or 0 to disable")
    examples = {"zeta-timesteps": 350, "zeta-images": 512, "calibrate-bias-group": LAYERS_PER_GROUP,
                "exit-images": EXIT_IMAGES}
    for name, v in (("zeta-timesteps", opts.zeta_timesteps), ("zeta-images", opts.zeta_images),
                    ("calibrate-bias-group", opts.calibrate_bias_group), ("exit-images", opts.exit_images)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise SnnccError(f"--{name} takes a positive integer, got {v!r}", f"e.g. --{name} {examples[name]}")
    if opts.input_scale <= 0 or not np.isfinite(opts.input_scale):
        raise SnnccError(f"input scale must be a positive number, got {opts.input_scale}", "e.g. --input-scale 0.0039")
    try:  # a scalar, a list or an array: a list of floats
        opts.mean = None if opts.mean is None else [float(m) for m in np.ravel(opts.mean)]
        opts.std = None if opts.std is None else [float(m) for m in np.ravel(opts.std)]
    except (TypeError, ValueError):
        raise SnnccError(f"mean/std must be numbers, got {opts.mean!r} / {opts.std!r}",
                         "e.g. mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]") from None
    for name, v in (("mean", opts.mean), ("std", opts.std)):
        if v is not None and not all(np.isfinite(m) for m in v):
            raise SnnccError(f"--{name} values must be finite numbers, got {v}",
                             f"e.g. --{name} {'0.485,0.456,0.406' if name == 'mean' else '0.229,0.224,0.225'}")
    if opts.std is not None and any(s <= 0 for s in opts.std):
        raise SnnccError("every --std value must be positive", "e.g. --std 0.229,0.224,0.225")
    if isinstance(opts.exit_stable, str) and opts.exit_stable.strip().isdigit():
        opts.exit_stable = int(opts.exit_stable)
    if opts.exit_stable is not None and not (isinstance(opts.exit_stable, str) and opts.exit_stable == "auto") and (
            isinstance(opts.exit_stable, bool) or not isinstance(opts.exit_stable, (int, np.integer))
            or opts.exit_stable <= 0):
        raise SnnccError(f"--exit-stable takes a positive number of steps or auto, got {opts.exit_stable!r}",
                         "e.g. --exit-stable auto (chosen on calibration images) or --exit-stable 64")
    if isinstance(opts.exit_tolerance, bool) or not isinstance(opts.exit_tolerance, (int, float, np.integer, np.floating)) \
            or not (0 <= opts.exit_tolerance <= 100):
        raise SnnccError(f"--exit-tolerance takes accuracy points in [0, 100], got {opts.exit_tolerance!r}",
                         f"e.g. --exit-tolerance {EXIT_TOLERANCE:g}")
    opts.exit_tolerance = float(opts.exit_tolerance)
    if isinstance(opts.compensate, str) and opts.compensate not in ("none", "auto"):
        try:
            opts.compensate = float(opts.compensate)
        except ValueError:
            raise SnnccError(f"--compensate takes none, auto or a number, got {opts.compensate!r}",
                             "e.g. --compensate auto or --compensate 1.05") from None
    if isinstance(opts.compensate, (int, np.integer, np.floating)) and not isinstance(opts.compensate, bool):
        opts.compensate = float(opts.compensate)
    if isinstance(opts.compensate, float) and not (np.isfinite(opts.compensate) and 0 < opts.compensate <= ZETA_MAX):
        raise SnnccError(f"compensation factor must be a number in (0, {ZETA_MAX:g}], got {opts.compensate:g} (it "
                         "multiplies every layer's input, compounding over depth)",
                         "factors are slightly above 1, e.g. --compensate 1.02, or let --compensate auto search it")
    return opts


class SpikingNetwork:
    """A converted spiking network: the spiking-level :class:`Graph` plus its runtime."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._net = None

    # -- file -------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the ``.snn`` file atomically."""
        snnfile.save(self.graph, path)

    # -- properties ---------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Per-sample input shape, channels-last ``(H, W, C)``."""
        return tuple(self.graph.input.shape)

    @property
    def n_classes(self) -> int:
        return int(self.graph.output.shape[-1])

    def prepare(self, x: np.ndarray, what: str = "data", log: Callable | None = None) -> np.ndarray:
        """Raw images in either layout -> channels-last float32, checked."""
        return _data.to_channels_last(x, self.input_shape,
                                      self.graph.meta.get("input_layout", "NCHW"), what, log)

    # -- running --------------------------------------------------------------
    @property
    def runtime(self):
        if self._net is None:
            from snncc.runtime.network import Network
            self._net = Network(self.graph)
        return self._net

    def run(self, x: np.ndarray, timesteps: int, **kw):
        """Simulate raw images ``x`` (model's own layout or channels-last) for ``timesteps`` steps.

        Keyword arguments go to :meth:`snncc.runtime.network.Network.run`
        (``labels``, ``early_exit``, ``exit_stable``, ``threads``, ``batch_size``, ``callback``,
        ``progress``, ``record``, ``trace``).  Returns its ``RunResult``.
        """
        from snncc.runtime.network import check_timesteps
        T = check_timesteps(timesteps)          # before preparing a large batch
        return self.runtime.run(self.prepare(x), T, **kw)

    def analog(self, x: np.ndarray) -> np.ndarray:
        """The analog view (ReLU kept) of the spiking network as converted: the source model's
        logits / lambda_out when only the exact passes ran; after bias calibration (the default preset)
        or compensation (zeta != 1), the adjusted network the SNN approximates, close to but no longer
        exactly the source model."""
        from snncc.analog import run_analog
        return run_analog(self.graph, self.prepare(x))

    def __repr__(self) -> str:
        pops = [n for n in self.graph.populations() if n.op != "input"]
        return f"SpikingNetwork({len(pops)} populations, input {self.input_shape}, {self.n_classes} classes)"


def _model_hash(model) -> str:
    import onnx
    if isinstance(model, (str, os.PathLike)):
        h = hashlib.sha256()
        with open(model, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    if isinstance(model, onnx.ModelProto):
        return hashlib.sha256(model.SerializeToString()).hexdigest()
    return hashlib.sha256(bytes(model)).hexdigest()


def convert(model, calib, *, preset: str = "best", input_scale: float | None = None,
            mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
            percentile: float | None = None, percentile_of: str | None = None,
            channel_wise: bool | None = None, shortcut_norm: bool | None = None, init_membrane: float | None = None,
            compensate: str | float | None = None, calibrate_bias: int | None = None,
            maxgate: str | None = None, calib_limit: int | None = None,
            zeta_timesteps: int | None = None, zeta_images: int | None = None,
            rate_scale: float | None = None, calibrate_bias_group: int | None = None,
            batch_size: int | None = None, param_dtype: str | None = None,
            exit_stable: int | str | None = None, exit_tolerance: float | None = None,
            exit_images: int | None = None, verify: bool = False,
            dump_ir: str | None = None, progress: bool = True, log: Callable[[str], None] | None = None) -> SpikingNetwork:
    """Convert an ONNX model (path, bytes or ``onnx.ModelProto``) into a :class:`SpikingNetwork`.

    ``calib`` is a path to ``.npz``/``.npy`` calibration images or an array.
    Preprocessing ``(x * input_scale - mean) / std`` is stored in the network and
    re-applied to raw data at run time.  See ``snncc convert --help`` for every option.
    """
    from snncc import __version__
    from snncc.frontend import import_onnx
    from snncc.passes import PassContext, run_pipeline

    log = log or (lambda s: None)
    t0 = time.time()
    opts = resolve_options(preset, input_scale=input_scale, mean=mean, std=std, percentile=percentile,
                           percentile_of=percentile_of, channel_wise=channel_wise, shortcut_norm=shortcut_norm, init_membrane=init_membrane,
                           compensate=compensate, calibrate_bias=calibrate_bias, maxgate=maxgate, calib_limit=calib_limit,
                           zeta_timesteps=zeta_timesteps, zeta_images=zeta_images, rate_scale=rate_scale,
                           calibrate_bias_group=calibrate_bias_group, batch_size=batch_size, param_dtype=param_dtype,
                           exit_stable=exit_stable, exit_tolerance=exit_tolerance, exit_images=exit_images)
    if opts.rate_scale != 1.0 and calibrate_bias is None and opts.calibrate_bias:
        log(f"rate scale {opts.rate_scale:g}: bias calibration runs for {opts.calibrate_bias} steps "
            f"(the preset's {PRESETS[preset]['calibrate_bias']} x {opts.rate_scale:g}; --calibrate-bias T to choose)")
    graph = import_onnx(model)
    ops_before = sum(1 for _ in graph.nodes())
    hwc = tuple(graph.input.shape)
    c = hwc[-1]
    for name, v in (("mean", opts.mean), ("std", opts.std)):
        if v is not None and len(v) not in (1, c):
            raise SnnccError(f"--{name} has {len(v)} values but the model input has {c} channel{'s' * (c != 1)}",
                             "give one value" if c == 1 else f"give 1 or {c} comma-separated values")
    graph.meta["preprocess"] = {"scale": float(opts.input_scale),
                                "mean": None if opts.mean is None else [float(m) for m in opts.mean],
                                "std": None if opts.std is None else [float(s) for s in opts.std]}

    if isinstance(calib, (str, os.PathLike)):
        cx, cy = _data.load_arrays(str(calib), "calibration data")
    else:
        cx, cy = np.asarray(calib), None
    if opts.calib_limit and opts.calib_limit > cx.shape[0] and log:
        log(f"calibration limit {opts.calib_limit} is more than the {cx.shape[0]} calibration images: using all of them")
    cx, cy = _data.subset(cx, cy, opts.calib_limit)
    searches = opts.compensate == "auto" or opts.init_membrane == "auto"
    if cy is not None and (searches or opts.exit_stable == "auto"):   # the searches read them; nothing else does
        cy = _data.check_labels(cy, cx.shape[0], int(graph.output.shape[-1]), "calibration labels")
    cx = _data.to_channels_last(cx, hwc, graph.meta.get("input_layout", "NCHW"), "calibration data", log)

    zeta = opts.compensate if isinstance(opts.compensate, float) else None
    v0 = 0.5 if opts.init_membrane == "auto" else float(opts.init_membrane)   # "auto": searched after the pipeline
    ctx = PassContext(calib=cx, percentile=opts.percentile, percentile_of=opts.percentile_of,
                      channel_wise=opts.channel_wise,
                      shortcut_norm=opts.shortcut_norm,
                      init_membrane=v0, zeta=zeta,
                      rate_scale=opts.rate_scale, batch_size=opts.batch_size, progress=progress, log=log)
    graph = run_pipeline(graph, ctx, verify=verify, dump_ir=dump_ir)   # keeps meta['preprocess_external']
    graph.meta["init_membrane"] = v0
    for n in graph.populations():
        if n.op == "maxgate":
            n.attrs["rule"] = opts.maxgate
    # the searches and bias calibration tune the stored weights; calibrate_bias and apply_zeta keep the precision,
    # so the network returned is the one the file loads
    snnfile.set_param_dtype(graph, opts.param_dtype)
    net = SpikingNetwork(graph)
    if searches or opts.calibrate_bias or opts.exit_stable == "auto":    # simulations follow
        from snncc.runtime.kernels import COMPILE_NOTICE, compile_pending
        if compile_pending():
            log(COMPILE_NOTICE)
    ann_pred = exit_ann = None
    if cy is None and (searches or opts.exit_stable == "auto"):   # no labels: the searches score by agreement
        from snncc.analog import run_analog     # with the *source* model, taken before bias calibration changes it
        from snncc.compensation import zeta_images
        from snncc.exitsearch import exit_images
        if searches:
            ann_pred = np.argmax(run_analog(graph, zeta_images(cx, None, opts.zeta_images)[0]), axis=1)
        if opts.exit_stable == "auto":
            exit_ann = np.argmax(run_analog(graph, exit_images(cx, None, opts.exit_images)[0]), axis=1)
    if opts.init_membrane == "auto":   # before bias calibration, which then corrects the chosen start's drift
        from snncc.calibration import search_init_membrane
        search_init_membrane(net, cx, cy, timesteps=opts.zeta_timesteps, images=opts.zeta_images, ann_pred=ann_pred,
                             log=log, progress=progress)
    if opts.calibrate_bias:
        from snncc.calibration import calibrate_bias as _calibrate
        _calibrate(net, cx, timesteps=int(opts.calibrate_bias), layers_per_group=int(opts.calibrate_bias_group),
                   log=log, progress=progress)
    if opts.compensate == "auto":
        from snncc.compensation import search_zeta
        search_zeta(net, cx, cy, timesteps=opts.zeta_timesteps, images=opts.zeta_images, log=log, progress=progress,
                    ann_pred=ann_pred)
    if opts.exit_stable == "auto":      # last: the window of the network as stored
        from snncc.exitsearch import search_exit_stable
        search_exit_stable(net, cx, cy, timesteps=opts.zeta_timesteps, images=opts.exit_images,
                           tolerance=opts.exit_tolerance, ann_pred=exit_ann, log=log, progress=progress)
    elif opts.exit_stable:
        graph.meta["exit_stable"] = {"m": int(opts.exit_stable), "chosen": "given"}
    graph.meta["provenance"] = {
        "source_sha256": _model_hash(model) if not isinstance(model, (str, os.PathLike))
        or os.path.exists(model) else None,
        "source_name": os.path.basename(str(model)) if isinstance(model, (str, os.PathLike)) else None,
        "options": {k: v for k, v in vars(opts).items() if k != "extra"},
        "calibration_images": int(cx.shape[0]),
        "snncc_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    graph.meta["summary"] = {"ops_before": ops_before, "seconds": round(time.time() - t0, 2)}
    return net


def load(path: str) -> SpikingNetwork:
    """Read a ``.snn`` file (no code is executed; corrupt files raise :class:`SnnFileError`).

    The runtime program is built here too, so a file whose arrays do not fit its network (an
    edited manifest) is reported on load, not half-way through a simulation."""
    net = SpikingNetwork(snnfile.load(str(path)))
    try:
        net.runtime
    except SnnccError:
        raise
    except (ValueError, TypeError, IndexError, KeyError) as e:
        raise SnnFileError(f"{str(path)!r} holds a network the runtime cannot build ({type(e).__name__}: "
                           f"{one_line(e, 120)})",
                           "re-create it with `snncc MODEL.onnx -o FILE.snn`") from None
    return net
