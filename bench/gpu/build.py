"""Build step: use the installed extension, or install the package (editable, which
builds the extension in place) for this GPU, and say what was built (CUDA ops, versions).

An editable install, not ``setup.py build_ext --inplace`` alone, because the Triton
kernels live in the top-level ``kernels/`` and are installed as ``dynst_fast.kernels``.
"""

from __future__ import annotations

import importlib
import os
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from .results import Suite

ROOT = Path(__file__).resolve().parents[2]
BUILD_CAP_S = 420


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def probe() -> tuple[bool, bool, str]:
    """(extension imports, it has the CUDA kernels, the error if it does not import), asked
    of a fresh interpreter so that this process has not loaded a stale build."""
    code = (
        "import dynst_fast.kernels; from dynst_fast import _extension as e; "
        "print(int(e.cuda_kernels_built()))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    if p.returncode != 0:
        return False, False, (p.stderr.strip().splitlines() or ["no output"])[-1]
    return True, p.stdout.strip().endswith("1"), ""


def build(suite: Suite, rebuild: bool) -> bool:
    """Make sure an importable extension is there (with CUDA kernels on a GPU); returns
    whether the suite can go on."""
    import torch

    suite.section(
        "build",
        "The C++/CUDA extension `dynst_fast._C`: reused if it imports (with its CUDA "
        "kernels on a GPU), else built by `pip install --no-build-isolation --no-deps -e .` "
        "with `TORCH_CUDA_ARCH_LIST` set to this GPU's compute capability and "
        "`DYNST_WITH_CUDA=1`.",
    )
    ok, with_cuda, err = probe()
    need_cuda = suite.device == "cuda"
    if ok and (with_cuda or not need_cuda) and not rebuild:
        suite.fact("build", "extension", "existing build reused")
    else:
        if not ok:
            suite.fact("build", "existing build", f"not importable ({err})")
        env = _env()
        env.setdefault("MAX_JOBS", str(os.cpu_count() or 2))
        if need_cuda:
            major, minor = torch.cuda.get_device_capability()
            env["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
            env["DYNST_WITH_CUDA"] = "1"
            suite.fact("build", "TORCH_CUDA_ARCH_LIST", env["TORCH_CUDA_ARCH_LIST"])
        stale = ROOT / "dynst_fast" / f"_C{sysconfig.get_config_var('EXT_SUFFIX')}"
        if rebuild and stale.exists():
            stale.unlink()  # this interpreter's build only; setuptools would keep it
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps"]
        try:
            p = subprocess.run(
                [*cmd, "-e", str(ROOT)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=min(BUILD_CAP_S, max(suite.left(), 1)),
            )
        except subprocess.TimeoutExpired:
            suite.error("build", "pip install -e", "timed out")
            return False
        suite.fact("build", "build seconds", round(time.monotonic() - t0, 1))
        if p.returncode != 0:
            tail = (p.stdout + p.stderr).strip().splitlines()[-5:]
            suite.error("build", "pip install -e", " / ".join(tail))
            return False
        ok, with_cuda, err = probe()
        if not ok:
            suite.error("build", "import after the build", err)
            return False
        for d in site.getsitepackages():  # this process: read the install's new .pth files
            site.addsitedir(d)
        importlib.invalidate_caches()
    suite.fact("build", "CUDA kernels compiled in", with_cuda)
    return True


def describe(suite: Suite) -> None:
    """Versions, the device and which kernel runs every op on CUDA tensors."""
    import torch
    from dynst_fast.kernels import triton_available

    from dynst_fast.ops import _dispatch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    facts = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "CUDA (torch)": torch.version.cuda,
        "triton": triton_version,
        "triton kernels usable": triton_available(),
    }
    if suite.device == "cuda":
        p = torch.cuda.get_device_properties(0)
        facts["GPU"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, cc {p.major}.{p.minor}"
    for k, v in facts.items():
        suite.fact("build", k, v)
    for name in sorted(_dispatch.KERNELS):
        suite.add(
            "build", "CUDA kernel of each op", {"op": name, "kernel": _dispatch.cuda_kernel(name)}
        )
