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
    return 1


if __name__ == "__main__":
    sys.exit(main())
