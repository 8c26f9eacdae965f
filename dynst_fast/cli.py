"""The ``dynst`` command line: ``run``, ``export``, ``predict``, ``rank``, ``bench``.

``dynst run``'s flags are generated from the configuration tree (``dynst_fast.config``).
Only the parser of the command given is built, so ``dynst predict`` imports no torch.
Every error is one line on stderr and exit code 2 (130 for Ctrl-C); ``--debug`` (or
``DYNST_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

COMMANDS = {
    "run": "train dense and DynST models, evaluate, time, write a run directory",
    "export": "export a run's compacted model (ONNX), verified against PyTorch",
    "predict": "run an exported model with onnxruntime (no torch needed)",
    "rank": "list a run's switched-off sensors by the gain of switching them back on",
    "bench": "time a run's dense and compacted models in PyTorch and onnxruntime",
}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``--help`` still shows the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser(command: str | None) -> argparse.ArgumentParser:
    p = _Parser(prog="dynst", description=__doc__, allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="on an error, show its traceback (DYNST_DEBUG=1)"
    )
    parsers = {  # no abbreviated flags: --nproc is taken out of the workers' command line
        name: sub.add_parser(name, help=text, parents=[common], allow_abbrev=False)
        for name, text in COMMANDS.items()
    }
    if command == "run":
        _run_parser(parsers["run"])
    elif command == "export":
        _export_parser(parsers["export"])
    elif command == "predict":
        _predict_parser(parsers["predict"])
    elif command == "rank":
        _rank_parser(parsers["rank"])
    elif command == "bench":
        _bench_parser(parsers["bench"])
    return p


def _bench_parser(b: argparse.ArgumentParser) -> None:
    b.description = (
        "Measure the latency and throughput of a run's dense and compacted models, in "
        "PyTorch (eager and through the inference fast path, compiled once per batch "
        "size for dense and compacted alike) and in onnxruntime (verified exports), at "
        "several batch sizes, side by side in one process; write <out>.md, <out>.json "
        "and <out>.png."
    )
    b.add_argument("run_dir", help="a `dynst run` directory")
    b.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    b.add_argument("--repeats", type=int, default=30, help="timed interleaved rounds")
    b.add_argument("--threads", type=int, default=None, help="threads (default: torch's)")
    b.add_argument(
        "--graph-optimization",
        choices=("disable", "basic", "extended", "all"),
        default="all",
        help="onnxruntime graph optimisation level",
    )
    b.add_argument(
        "--fast-path",
        choices=("aoti", "compile", "eager", "none"),
        default="aoti",
        help="the PyTorch fast path: AOTInductor (default), torch.compile, eager (checks "
        "once, no compiler needed), or none",
    )
    b.add_argument("--out", help="output path without suffix (default: RUN_DIR/latency)")


def _rank_parser(r: argparse.ArgumentParser) -> None:
    r.description = (
        "Print a run's switched-off sensors, best first, by the estimated whole-field MAE "
        "decrease (original units) of switching each back on: the first-order gain mean "
        "|dL/dg| over the last mask phase, from mask.json."
    )
    r.add_argument("run_dir", help="a `dynst run` directory")
    r.add_argument("--top", type=int, default=None, help="only the best N")


def _run_parser(r: argparse.ArgumentParser) -> None:
    from .flags import add_arguments

    r.description = (
        "Train the dense model and a sparse model on one data set, evaluate both on the test "
        "split, time dense vs compacted inference side by side, and write metrics.json, "
        "mask.json, checkpoint.pt, config.toml, sensors.png and report.md. Settings come "
        "from their defaults, then --config FILE.toml, then the flags."
    )
    r.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file")
    r.add_argument(
        "--nproc",
        type=int,
        metavar="P",
        help="train with DistributedDataParallel on P local processes (gloo, one thread "
        "each; --batch-size is then per process); under torchrun, leave it out",
    )
    r.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the interrupted run in RUN_DIR with its own settings",
    )
    add_arguments(r)


def _export_parser(e: argparse.ArgumentParser) -> None:
    e.description = (
        "Export the compacted model of a run directory (input: the active sensors only, "
        "original units) to a standard ONNX file, verify it with onnxruntime on real test "
        "windows, and write the sidecar <out>.json."
    )
    e.add_argument("run_dir", help="a `dynst run` directory")
    e.add_argument("--out", required=True, help="the .onnx file to write")
    e.add_argument("--dense", action="store_true", help="export the run's dense model instead")
    e.add_argument("--data", help="the run's data, if it has moved since the run")


def _predict_parser(pr: argparse.ArgumentParser) -> None:
    pr.description = (
        "Check an input window against the model's sidecar, run onnxruntime, and write the "
        "whole-field forecast in original units."
    )
    pr.add_argument("model", help="the .onnx file (its sidecar <model>.json beside it)")
    pr.add_argument("--input", required=True, help=".npy [B, T_in, K, C] or .csv (ids header)")
    pr.add_argument("--out", required=True, help=".npy [B, T_out, N, C] or .csv")
    pr.add_argument("--sidecar", help="the sidecar, if not <model>.json")
    pr.add_argument(
        "--on-missing",
        choices=("drop", "fail"),
        default="drop",
        help="an input sensor with NaN in its window: drop = treat it as failed and switch "
        "it off for that window (a warning names it; the default), fail = an error",
    )
    pr.add_argument(
        "--on-suspect",
        choices=("drop", "keep", "fail"),
        default="drop",
        help="an input sensor whose window is stuck (the same reading at every step) or "
        "out of its training range by the sidecar's margin: drop = treat it as failed for "
        "that window (a warning names it; the default), keep = use it as it is, fail = an "
        "error",
    )
    pr.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="windows run at once (default: about 512 KiB of input and output, at most 128); "
        "memory grows with it",
    )
    pr.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime intra-op threads (default: one per core)",
    )
    pr.add_argument(
        "--time",
        default=None,
        help="for a model with calendar inputs: the local time of the last input step "
        "(ISO 8601, e.g. 2012-03-07T23:55)",
    )
    pr.add_argument(
        "--graph-optimization",
        choices=("disable", "basic", "extended", "all"),
        default="all",
        help="onnxruntime graph optimisation level (default: all)",
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        args = _parser(command).parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (already printed, one line)
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = argv
    handler = {
        "run": _run,
        "export": _export,
        "predict": _predict,
        "rank": _rank,
        "bench": _bench,
    }[args.command]
    previous = _terminate_as_interrupt()
    try:
        return handler(args)
    except KeyboardInterrupt as exc:
        if args.debug or os.environ.get("DYNST_DEBUG"):
            raise
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"\ndynst {args.command}: {what}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        if args.debug or os.environ.get("DYNST_DEBUG"):
            raise
        expected = isinstance(exc, (ValueError, OSError))
        message = _one_line(exc) if expected else f"{type(exc).__name__}: {_one_line(exc)}"
        if not expected:
            message += " (unexpected: --debug shows where; please report it)"
        return _fail(args.command, message)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that every partial file is cleaned up on
    the way out as after Ctrl-C."""


def _terminate_as_interrupt():
    """Make SIGTERM raise :class:`Terminated` (main thread only); the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def raise_terminated(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, raise_terminated)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _fail(command: str, message: object) -> int:
    world = os.environ.get("WORLD_SIZE", "1")
    where = f" (rank {os.environ.get('RANK', '?')} of {world})" if world not in ("", "1") else ""
    print(f"dynst {command}: error{where}: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    import shlex

    from .config import RunConfig
    from .flags import apply_arguments, given_settings
    from .run import RunInterrupted, format_table, run

    if args.nproc is not None:
        if args.nproc < 1:
            return _fail("run", f"--nproc must be a positive integer, got {args.nproc}")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return _fail("run", "--nproc: this process was started by torchrun already")
        if args.nproc > 1:
            from .distributed import launch

            return launch(args.nproc, _without_nproc(args.argv))
    try:
        if args.resume:
            extra = [f for f in given_settings(args) if f != "--quiet"]
            if args.config or extra:
                given = ", ".join(extra + (["--config"] if args.config else []))
                return _fail("run", f"--resume continues a run with its own settings: drop {given}")
            quiet = getattr(args, "quiet", False)
            metrics = run(RunConfig(out=args.resume, quiet=quiet), resume=True)
        else:
            base = RunConfig.from_toml(args.config) if args.config else RunConfig()
            metrics = run(apply_arguments(base, args))
    except RunInterrupted as exc:
        if args.debug or os.environ.get("DYNST_DEBUG"):
            raise
        print(
            "\ndynst run: interrupted; the last finished epoch is saved: continue with "
            f"`dynst run --resume {shlex.quote(exc.out)}`",
            file=sys.stderr,
        )
        return 130
    if "rank" in metrics:  # another rank than 0: rank 0 reports and writes the run
        return 0
    print(format_table(metrics))
    print(f"\nrun directory: {metrics['out']}")
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without its ``--nproc P`` / ``--nproc=P``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _export(args: argparse.Namespace) -> int:
    from .export import export_run

    meta = export_run(args.run_dir, args.out, dense=args.dense, data=args.data)
    v = meta["verification"]
    print(
        f"wrote {args.out} ({len(meta['sensor_ids'])} of {meta['num_sensors']} sensors in, "
        f"whole field out, opset {meta['opset']}) and {args.out}.json; onnxruntime matches "
        f"PyTorch on {v['windows']} test windows (max relative error {v['max_rel_error']:.2e})"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .serve import predict

    info = predict(
        args.model,
        args.input,
        args.out,
        sidecar=args.sidecar,
        on_missing=args.on_missing,
        threads=args.threads,
        optimization=args.graph_optimization,
        time=args.time,
        on_suspect=args.on_suspect,
        chunk=args.chunk,
    )
    print(f"wrote {args.out}: {info['output_shape']} forecast in {info['units'] or 'data units'}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import latency

    out = Path(args.out) if args.out else Path(args.run_dir) / "latency"
    from .rundir import check_output_file

    check_output_file(out.with_name(out.name + ".md"))
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    fast = None if args.fast_path == "none" else args.fast_path
    rows = latency.measure(
        args.run_dir,
        tuple(args.batches),
        args.repeats,
        optimization=args.graph_optimization,
        fast=fast,
    )
    note = (
        f"Machine: {latency.machine_line()}. Median of {args.repeats} interleaved rounds "
        "after 5 warm-up calls, one process; each engine's dense/compacted pair (eager "
        "torch, the fast path, onnxruntime) is interleaved on its own; fast path "
        f"{args.fast_path}; onnxruntime graph optimisation {args.graph_optimization}. "
        f"Command: `dynst bench {args.run_dir} --batches {' '.join(map(str, args.batches))} "
        f"--repeats {args.repeats}"
        + (f" --threads {args.threads}" if args.threads is not None else "")
        + f" --fast-path {args.fast_path}`."
    )
    written = latency.write(out, rows, note)
    print(latency.table(rows))
    print(f"wrote {', '.join(map(str, written))}")
    return 0


def _rank(args: argparse.Namespace) -> int:
    from .rank import switch_on_ranking

    rows = switch_on_ranking(args.run_dir, args.top)
    if not rows:
        print("every sensor is on: nothing to switch back on")
        return 0
    width = max(len("sensor"), *(len(str(r["sensor"])) for r in rows))
    print(f"{'rank':>4}  {'sensor':<{width}}  est. MAE decrease")
    for r in rows:
        print(f"{r['rank']:>4}  {str(r['sensor']):<{width}}  {r['gain']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
