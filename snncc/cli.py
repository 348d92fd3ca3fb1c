"""Command line: ``snncc [convert] MODEL.onnx -o OUT.snn``, ``snncc inspect``, ``snncc eval``.

Every user error prints one line ``snncc: error: <problem> (fix: <hint>)`` on
stderr and exits with status 2; no traceback (``SNNCC_DEBUG=1`` shows one).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from snncc.argtypes import floats, positive_int, positive_int_or_auto
from snncc.errors import SnnccError, one_line
from snncc.presets import (LAYERS_PER_GROUP, MAXGATE_RULES, PARAM_DTYPES, PERCENTILE_OF, PRESETS, ZETA_IMAGES,
                           ZETA_TIMESTEPS)

SUBCOMMANDS = ("convert", "inspect", "eval")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"snncc: error: {message} (fix: see `{self.prog} --help`)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="snncc", description="Compile an ONNX ResNet/CNN into an integrate-and-fire spiking network.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    c = sub.add_parser("convert", help="ONNX -> .snn (default command)",
                       description="Convert MODEL.onnx into a spiking network file.")
    c.add_argument("model", help="ONNX model file (external-data weights beside it are found automatically)")
    c.add_argument("-o", "--output", required=True, help="output .snn file (written atomically)")
    c.add_argument("--calib", required=True, help="calibration images: .npz with x (and y) or .npy")
    c.add_argument("--calib-limit", type=positive_int, help="use a seeded random subset of N calibration images")
    c.add_argument("--input-scale", type=float, help="multiply raw input by S first (e.g. 1/255)")
    c.add_argument("--mean", type=floats, help="per-channel mean subtracted after scaling, e.g. 0.485,0.456,0.406")
    c.add_argument("--std", type=floats, help="per-channel std divided by after the mean")
    c.add_argument("--percentile", type=float, help="activation percentile for lambda (99.9, 99.99; 100 = max)")
    c.add_argument("--percentile-of", choices=PERCENTILE_OF,
                   help="take the percentile over all activations, or only the positive (nonzero) ones "
                        "as in Rueckauer et al.'s reference code (fewer clipped values in sparse layers)")
    c.add_argument("--no-shortcut-norm", dest="shortcut_norm", action="store_const", const=False,
                   help="leave shortcut weights at 1 (the paper's Table 2 baseline)")
    c.add_argument("--compensate", help="none | auto | ZETA: propagation-error compensation (Eq. 12-14)")
    c.add_argument("--zeta-timesteps", type=positive_int, metavar="T",
                   help="--compensate auto simulates each zeta for T steps: the T you will run the network for "
                        f"(default {ZETA_TIMESTEPS})")
    c.add_argument("--zeta-images", type=positive_int, metavar="N",
                   help=f"--compensate auto scores each zeta on N calibration images (default {ZETA_IMAGES})")
    c.add_argument("--calibrate-bias", type=int, metavar="T",
                   help="post-training bias calibration at T steps on calibration images (0 = off)")
    c.add_argument("--calibrate-bias-group", type=positive_int, metavar="N",
                   help="bias calibration corrects N layers per simulation, in topological order (default "
                        f"{LAYERS_PER_GROUP}; larger = fewer simulations, a faster conversion of deep nets, "
                        "a less exact correction)")
    c.add_argument("--rate-scale", type=float, metavar="K",
                   help="multiply every lambda by K: every firing rate, spike and synaptic operation / K, the rate "
                        "resolution per step K times coarser (for long runs, e.g. T=350 on a net that converges "
                        "at T=64; default 1).  The preset's --calibrate-bias steps are multiplied by K too")
    c.add_argument("--preset", default="best", choices=list(PRESETS),
                   help="paper: exactly Hu et al.; best (default): channel-wise lambda, half-threshold start")
    cw = c.add_mutually_exclusive_group()
    cw.add_argument("--channel-wise", dest="channel_wise", action="store_const", const=True,
                    help="per-channel lambda (a diagonal scale on every edge)")
    cw.add_argument("--layer-wise", dest="channel_wise", action="store_const", const=False,
                    help="one lambda per layer, as in the paper")
    c.add_argument("--init-membrane", metavar="F|auto",
                   help="initial membrane potential as a fraction of threshold, or auto: the best of 0, 0.125, 0.25, "
                        "0.375, 0.5 on calibration images (simulated like the zeta search: --zeta-timesteps steps, "
                        "--zeta-images images)")
    c.add_argument("--maxgate", choices=MAXGATE_RULES,
                   help="spiking max pooling: leader = the paper's gate (spikes of the input that fired most so far), "
                        "max = the output's spike count follows the window's highest count (best preset)")
    c.add_argument("--batch-size", type=positive_int,
                   help="images per profiling and simulation batch (default 64; at most what keeps a batch within 2 GiB)")
    c.add_argument("--param-dtype", choices=PARAM_DTYPES,
                   help="precision of the stored weights and biases: float32 (default; the runtime's own, half the "
                        "file) or float64 (the IR's exact values)")
    c.add_argument("--exit-stable", type=positive_int_or_auto, metavar="auto|M",
                   help="store the window of the stable-prediction exit that `snncc eval --exit-stable auto` uses: "
                        "auto = the shortest from which no longer window loses more than --exit-tolerance points "
                        "of calibration accuracy against the full run (simulated for --zeta-timesteps steps on "
                        "--exit-images images), or M steps")
    c.add_argument("--exit-tolerance", type=float, metavar="P",
                   help="--exit-stable auto: accuracy points, counting one standard error, a window may lose "
                        "against the full run on the calibration images (default 1)")
    c.add_argument("--exit-images", type=positive_int, metavar="N",
                   help="--exit-stable auto: calibration images the window is chosen on (default 1024; one "
                        "simulation of N images x --zeta-timesteps steps; fewer give longer windows)")
    c.add_argument("--verify", action="store_true", help="check the IR invariants after every pass")
    c.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass into DIR")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")

    i = sub.add_parser("inspect", help="print the layers of a .snn file")
    i.add_argument("file")

    e = sub.add_parser("eval", help="simulate a .snn on labelled data")
    e.add_argument("file", help=".snn file")
    e.add_argument("--data", required=True, help=".npz with x and y (test images and labels)")
    e.add_argument("-T", "--timesteps", type=positive_int, required=True, help="time steps to simulate")
    e.add_argument("--limit", type=positive_int, help="seeded random subset of N images")
    e.add_argument("--threads", type=positive_int, help="worker threads (default: all cores for batches large enough to gain from them, else one)")
    e.add_argument("--batch-size", type=positive_int, default=64,
                   help="images per runtime batch (at most what keeps a batch within 2 GiB)")
    e.add_argument("--early-exit", action="store_true", help="stop an image once its answer is certain")
    e.add_argument("--exit-stable", type=positive_int_or_auto, metavar="M|auto",
                   help="stop an image once its prediction has not changed for M steps (a heuristic: "
                        "not certified, the answer can differ from the full run's); auto = the window "
                        "chosen on calibration images at conversion (snncc --exit-stable auto)")
    e.add_argument("--ann", help="the source ONNX model, to report the ANN's accuracy on the same images")
    e.add_argument("--json", help="write the results as JSON")
    e.add_argument("--plot", help="write accuracy-vs-time and per-layer plots (PNG)")
    e.add_argument("--pj-per-flop", type=float, default=12.5, help="ANN energy per operation (multiply-accumulate) in pJ (paper: 12.5)")
    e.add_argument("--fj-per-sop", type=float, default=77.0, help="SNN energy per SOP in fJ (paper: 77)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


#: console width when stdout is not a terminal (CI logs, pipes): rich's default of 80 wraps tables
#: and truncates names
PIPE_WIDTH = 120


def _console():
    """A rich console on stdout; at least ``PIPE_WIDTH`` columns wide when not attached to a terminal."""
    from rich.console import Console
    con = Console(highlight=False)
    if not con.is_terminal:
        con = Console(highlight=False, width=max(PIPE_WIDTH, con.width))
    return con


def _progress(quiet: bool) -> bool:
    """Progress bars only for interactive runs (tqdm's carriage returns clutter logs and error output)."""
    return not quiet and sys.stderr.isatty()


def _esc(s) -> str:
    """User/model text (paths, ONNX names) must not be read as rich markup."""
    from rich.markup import escape
    return escape(str(s))


def cmd_convert(a) -> int:
    import time

    from snncc import api, snnfile
    if not os.path.exists(a.model):
        raise SnnccError(f"model file {a.model!r} not found", "check the path to the .onnx file")
    snnfile.check_writable(a.output)
    snnfile.check_outputs({"-o": a.output, "--dump-ir": a.dump_ir},
                          {"the model file": a.model, "the calibration file": a.calib})
    if a.dump_ir and os.path.exists(a.dump_ir) and not os.path.isdir(a.dump_ir):
        raise SnnccError(f"--dump-ir {a.dump_ir!r} is a file, not a directory", "give a directory for the IR dumps")
    con = _console()
    log = (lambda s: None) if a.quiet else (lambda s: con.print(f"[dim]snncc:[/dim] {_esc(s)}", soft_wrap=True))
    t0 = time.time()
    net = api.convert(a.model, a.calib, preset=a.preset, input_scale=a.input_scale, mean=a.mean, std=a.std,
                      percentile=a.percentile, percentile_of=a.percentile_of, channel_wise=a.channel_wise, shortcut_norm=a.shortcut_norm,
                      init_membrane=a.init_membrane, compensate=a.compensate,
                      calibrate_bias=a.calibrate_bias, maxgate=a.maxgate, calib_limit=a.calib_limit,
                      zeta_timesteps=a.zeta_timesteps, zeta_images=a.zeta_images, rate_scale=a.rate_scale,
                      calibrate_bias_group=a.calibrate_bias_group, batch_size=a.batch_size,
                      param_dtype=a.param_dtype, exit_stable=a.exit_stable, exit_tolerance=a.exit_tolerance,
                      exit_images=a.exit_images,
                      verify=a.verify,
                      dump_ir=a.dump_ir, progress=_progress(a.quiet),
                      log=log)
    net.save(a.output)
    if not a.quiet:
        _print_summary(con, net, a.output, time.time() - t0)
    return 0


def _lambda_range(meta) -> tuple[float, float]:
    vals = []
    for v in (meta.get("lambda") or {}).values():
        vals.extend(np.ravel(np.asarray(v, dtype=float)).tolist())
    vals = [v for v in vals if v > 0]
    return (min(vals), max(vals)) if vals else (float("nan"), float("nan"))


def _print_summary(con, net, out: str, seconds: float) -> None:
    from snncc import snnfile
    g = net.graph
    pops = [p for p in g.populations() if p.op != "input"]      # as SpikingNetwork's repr counts them
    neurons = [p for p in pops if p.op == "neuron"]
    lo, hi = _lambda_range(g.meta)
    m = g.meta
    zeta = m.get("zeta", 1.0) or 1.0
    rs = float(m.get("rate_scale", 1.0))
    rate = "" if rs == 1.0 else f"rate scale {rs:g}, "
    con.print(f"[bold green]wrote[/bold green] {_esc(out)}: {m.get('summary', {}).get('ops_before', '?')} IR ops -> "
              f"{len(pops)} populations ({len(neurons)} IF neuron layers, "
              f"{sum(int(np.prod(p.shape)) for p in neurons):,} neurons), "
              f"{g.nx.number_of_edges()} synapse edges", soft_wrap=True)
    con.print(f"  lambda {lo:.4g} .. {hi:.4g} ({'channel' if m.get('channel_wise') else 'layer'}-wise, "
              f"p{m.get('percentile')}{' of positive' if m.get('percentile_of') == 'positive' else ''}), shortcut norm {'on' if m.get('shortcut_norm', True) else 'off'}, "
              f"{rate}zeta {float(zeta):.4g}, initial membrane {m.get('init_membrane', 0)}, {seconds:.1f} s",
              soft_wrap=True)
    con.print(f"  {os.path.getsize(out) / 1e6:.3g} MB, weights and biases stored as {snnfile.param_dtype(g)}"
              f"{_exit_words(m)}", soft_wrap=True)


def _exit_words(meta) -> str:
    """The stored stable-prediction exit window, for the summaries: '' when there is none."""
    ex = meta.get("exit_stable")
    if not isinstance(ex, dict):
        return ""
    if ex.get("m") is None:
        return ", no exit window (none kept the calibration accuracy)"
    how = (f"chosen on {ex.get('images')} calibration images at T={ex.get('timesteps')}" if "images" in ex
           else "given")
    return f", exit window {ex['m']} steps ({how}; snncc eval --exit-stable auto)"


def cmd_inspect(a) -> int:
    from rich.table import Table

    from snncc import api, snnfile, synapses
    net = api.load(a.file)
    g = net.graph
    lam = g.meta.get("lambda") or {}
    t = Table(title=_esc(f"{a.file}: {net!r}"))
    for col in ("population", "op", "shape", "neurons", "incoming edges", "lambda", "fan-in"):
        # names are never truncated: too long for a terminal, they fold onto the next line
        t.add_column(col, justify="right" if col in ("neurons", "fan-in", "lambda") else "left",
                     overflow="fold" if col in ("population", "incoming edges") else "ellipsis",
                     no_wrap=col not in ("population", "incoming edges"))
    for p in g.populations():
        ins, fan = [], 0
        for src, d in g.in_edges(p.name):
            syn = d["syn"]
            ins.append(f"{d['kind'].value}:{syn.op if syn else 'gate'} <- {_esc(src)}")
            if syn is not None:
                fan += synapses.SYNAPSES[syn.op].fan_in(syn, tuple(g.node(src).shape))
        lv = lam.get(p.name)
        if lv is None:
            ls = "-"
        elif np.ndim(lv) == 0:
            ls = f"{float(lv):.4g}"
        else:
            arr = np.asarray(lv, dtype=float)
            ls = f"{arr.min():.3g}..{arr.max():.3g}"
        t.add_row(_esc(p.name), p.op, "x".join(map(str, p.shape)), f"{int(np.prod(p.shape)):,}", "\n".join(ins) or "-",
                  ls, str(fan) if fan else "-")
    con = _console()
    if not con.is_terminal:  # logs and pipes: as wide as the table needs, nothing folded
        from rich.console import Console
        need = con.measure(t, options=con.options.update_width(100_000)).maximum
        con = Console(highlight=False, width=max(con.width, need))
    con.print(t)
    m = g.meta
    prov = m.get("provenance") or {}
    con.print(_esc(f"preprocess {m.get('preprocess')}, input layout {m.get('input_layout')}, "
                   f"zeta {m.get('zeta', 1.0)}, initial membrane {m.get('init_membrane', 0)}, "
                   f"weights and biases stored as {snnfile.param_dtype(g)}{_exit_words(m)}"), soft_wrap=True)
    if prov:
        con.print(_esc(f"source {prov.get('source_name')} sha256 {str(prov.get('source_sha256'))[:16]}..., "
                       f"snncc {prov.get('snncc_version')}, created {prov.get('created')}"), soft_wrap=True)
        if prov.get("options"):
            con.print(_esc("options " + ", ".join(f"{k}={v}" for k, v in prov["options"].items())), soft_wrap=True)
    return 0


def cmd_eval(a) -> int:
    from snncc.evaluate import run_eval
    return run_eval(a)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "convert")     # the default command, options may come first: snncc -q M.onnx ...
    parser = build_parser()
    if not argv:
        sys.stderr.write("snncc: error: no model given (fix: snncc MODEL.onnx -o OUT.snn --calib CALIB.npz; "
                         "snncc --help lists the commands and options)\n")
        return 2
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 2
    try:
        return {"convert": cmd_convert, "inspect": cmd_inspect, "eval": cmd_eval}[a.command](a)
    except SnnccError as e:
        if os.environ.get("SNNCC_DEBUG"):
            raise
        sys.stderr.write(f"snncc: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("snncc: interrupted\n")
        return 130
    except MemoryError:
        sys.stderr.write("snncc: error: out of memory (fix: use --calib-limit / --limit, a smaller --batch-size "
                         "or fewer time steps -T)\n")
        return 1
    except OSError as e:  # a file the command reads or writes (dump dir, plot, ...)
        if os.environ.get("SNNCC_DEBUG"):
            raise
        where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
        sys.stderr.write(f"snncc: error: cannot access{where} ({one_line(e.strerror or e)}) "
                         f"(fix: check the path and its permissions)\n")
        return 2
    except Exception as e:  # a bug: still one line; SNNCC_DEBUG=1 shows the traceback
        if os.environ.get("SNNCC_DEBUG"):
            raise
        sys.stderr.write(f"snncc: internal error: {type(e).__name__}: {one_line(e)} "
                         f"(fix: rerun with SNNCC_DEBUG=1 for a traceback and report it)\n")
        return 1



if __name__ == "__main__":
    sys.exit(main())
