"""The GPU suite: build, test and measure every GPU path of dynst_fast in one command.

    python -m bench.gpu.suite --out DIR [--device cuda|cpu] [--quick]
        [--only build|tests|ops|models] [--time-limit S] [--rebuild]

1. build: reuse the extension if it imports (with its CUDA kernels on a GPU), else
   install the package editable (which builds it) for this GPU's compute capability; say
   which kernel runs every op.
2. tests: the op tests on the CUDA backends, one ``pytest -x -q <file> -k cuda`` per file,
   each with a time cap.
3. ops: compact / expand / patchify_compact (GB/s, % of copy bandwidth, against the torch
   compositions), select_swap / prune_lowest (against topk and sort), gated_spmm
   (against torch.sparse.mm, i.e. cuSPARSE), in fp32 and bf16.
4. models: compacted against dense inference of the STGCN (Los-loop, 16,384 planted
   sensors) and the ViT (ERA5) at s = 0.3 / 0.5 and batch 1 / 64, and a training-step
   comparison (dense, gated, compacted fine-tune).

Results go to ``DIR/gpu_suite.md`` and ``DIR/gpu_suite.json``, rewritten after every
figure, so a run cut off by a timeout still leaves what it measured; the goals of the
GPU issue are checked at the top. ``--only`` runs one part (the build step always runs
first, as nothing else can run without an extension). The whole run stops starting new
cases at ``--time-limit`` seconds (default 420: under 8 minutes on an H100/H200 with room
for the case in flight).

``--device cpu --quick`` runs the same code paths at tiny sizes on CPU in under a minute
(``tests/test_gpu_suite.py`` runs it in CI). Run it from the repository root (``-m``).
Real data (Los-loop, ERA5) is read from ``$DYNST_DATA_DIR`` or ``../shared/data``.

On the lent GPU machine (nothing there has the repository installed; ``../shared`` does
not travel, so copy the two data folders into the git-ignored ``.gpu_data/`` and carry it):

    DYNST_DATA_DIR=.gpu_data PYTHONUNBUFFERED=1 python3 -m bench.gpu.suite --out $OUT/gpu
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]  # the in-place build and the bench package first

PARTS = ("tests", "ops", "models")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_suite.md and gpu_suite.json")
    ap.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda if torch sees one")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (checks the code paths)")
    ap.add_argument("--only", choices=("build", *PARTS), default=None)
    ap.add_argument("--time-limit", type=float, default=420.0, help="seconds (default 420)")
    ap.add_argument("--rebuild", action="store_true", help="build the extension even if it imports")
    args = ap.parse_args(argv)
    if args.time_limit <= 0:
        ap.error(f"--time-limit must be positive, got {args.time_limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_suite: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if device == "cpu":  # the Triton kernels run in the interpreter; set before they import
        os.environ.setdefault("TRITON_INTERPRET", "1")

    from .build import build, describe
    from .results import Suite

    meta = {
        "command": "python -m bench.gpu.suite " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device == "cuda":
        meta["device_name"] = torch.cuda.get_device_name()
    suite = Suite(args.out, device, args.quick, args.time_limit, meta)
    if not build(suite, args.rebuild):
        return 1
    describe(suite)
    parts = PARTS if args.only is None else (() if args.only == "build" else (args.only,))
    for part in parts:
        if part == "tests":
            from .tests import run_tests

            run_tests(suite)
        elif part == "ops":
            from .op_bench import run_ops

            run_ops(suite)
        else:
            from .model_bench import run_models

            run_models(suite)
    suite.write()
    print(f"wrote {suite.dir / 'gpu_suite.md'} ({len(suite.data['errors'])} errors)")
    return 1 if suite.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
