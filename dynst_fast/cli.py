"""The ``dynst`` command line."""

from __future__ import annotations

import argparse
import sys

from .schedule import SCHEMES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynst", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run",
        help="train dense and DynST models, evaluate, time, write a run directory",
        description="Train the dense model and a sparse model on one dataset, evaluate both "
        "on the test split, time dense vs compacted inference side by side, and write "
        "metrics.json, mask.json, checkpoint.pt, sensors.png and report.md.",
    )
    r.add_argument(
        "--data",
        help="graph data directory or values file, or grid data (.npy [T, H, W] or "
        "[T, C, H, W], or a directory holding one) (default: the synthetic planted sensor "
        "network, or the synthetic planted grid for image models)",
    )
    r.add_argument(
        "--model",
        help="backbone: stgcn | masked-stgcn (graphs), vit | simvp (grids; simvp is gated "
        "through InputMasked: accuracy only, no speedup) (default: stgcn for graph data, "
        "vit for grid data)",
    )
    r.add_argument(
        "--patch",
        type=int,
        default=4,
        help="image models: patch size p, one sensor per p x p patch (H, W padded up)",
    )
    r.add_argument(
        "--sparsity",
        type=float,
        help="target sparsity in [0, 1) (default: the "
        "planted sparsity on synthetic data, else 0.5)",
    )
    sparse = [s for s in SCHEMES if s != "dense"]
    r.add_argument("--scheme", default="dynst", choices=sparse)
    r.add_argument(
        "--also",
        nargs="*",
        default=[],
        choices=sparse,
        metavar="SCHEME",
        help="more sparse schemes to train and report beside the main one",
    )
    r.add_argument("--epochs", type=int, default=30, help="epochs per training (dense, sparse)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", help="run directory (default: runs/<dataset>_<model>_...)")
    r.add_argument("--t-in", type=int, default=12, help="input window length in steps")
    r.add_argument("--horizon", type=int, default=12, help="output window length in steps")
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument(
        "--hidden",
        type=int,
        help="model width (stgcn hidden 32, vit dim 64, simvp hidden 16 by default)",
    )
    r.add_argument("--lr", type=float, default=2e-3)
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    e = sub.add_parser(
        "export",
        help="export a run's compacted model to ONNX, verified against PyTorch",
        description="Export the compacted model of a run directory (input: the active sensors "
        "only, original units) to a standard ONNX file, verify it with onnxruntime on real test "
        "windows, and write the sidecar <out>.json.",
    )
    e.add_argument("run_dir", help="a `dynst run` directory")
    e.add_argument("--out", required=True, help="the .onnx file to write")
    e.add_argument("--dense", action="store_true", help="export the run's dense model instead")
    e.add_argument("--data", help="the run's data, if it has moved since the run")
    pr = sub.add_parser(
        "predict",
        help="run an exported model with onnxruntime (no torch needed)",
        description="Check an input window against the model's sidecar, run onnxruntime, and "
        "write the whole-field forecast in original units.",
    )
    pr.add_argument("model", help="the .onnx file (its sidecar <model>.json beside it)")
    pr.add_argument("--input", required=True, help=".npy [B, T_in, K, C] or .csv (ids header)")
    pr.add_argument("--out", required=True, help=".npy [B, T_out, N, C] or .csv")
    pr.add_argument("--sidecar", help="the sidecar, if not <model>.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from .run import RunConfig, format_table, run

        cfg = RunConfig(
            data=args.data,
            model=args.model,
            patch=args.patch,
            sparsity=args.sparsity,
            scheme=args.scheme,
            also=list(args.also),
            epochs=args.epochs,
            seed=args.seed,
            out=args.out,
            t_in=args.t_in,
            horizon=args.horizon,
            batch_size=args.batch_size,
            hidden=args.hidden,
            lr=args.lr,
            quiet=args.quiet,
        )
        try:
            metrics = run(cfg)
        except (ValueError, FileNotFoundError) as exc:
            print(f"dynst run: error: {exc}", file=sys.stderr)
            return 2
        print(format_table(metrics))
        print(f"\nrun directory: {metrics['out']}")
        return 0
    if args.command == "export":
        return _export(args)
    if args.command == "predict":
        return _predict(args)
    return 1


def _export(args: argparse.Namespace) -> int:
    from .export import ExportError, export_run

    try:
        meta = export_run(args.run_dir, args.out, dense=args.dense, data=args.data)
    except (ValueError, FileNotFoundError, ExportError) as exc:
        print(f"dynst export: error: {exc}", file=sys.stderr)
        return 2
    v = meta["verification"]
    print(
        f"wrote {args.out} ({len(meta['sensor_ids'])} of {meta['num_sensors']} sensors in, "
        f"whole field out, opset {meta['opset']}) and {args.out}.json; onnxruntime matches "
        f"PyTorch on {v['windows']} test windows (max relative error {v['max_rel_error']:.2e})"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .serve import PredictError, predict

    try:
        info = predict(args.model, args.input, args.out, sidecar=args.sidecar)
    except PredictError as exc:
        print(f"dynst predict: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {info['output_shape']} forecast in {info['units'] or 'data units'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
