"""``torch.library.custom_op`` registrations of the compaction and selection ops.

Each op is ``torch.ops.dynst_fast.<name>`` with a fake (meta) kernel, so it passes
``torch.library.opcheck`` and traces under ``torch.compile(fullgraph=True)``, and the
differentiable ones have ``register_autograd`` backwards that are ops themselves.
Inside, each op runs the backend :func:`._backend.backend_for` picks:

* ``triton``: the kernels of ``dynst_fast.kernels`` (CUDA; the interpreter on CPU);
* ``cpu``: the C++ kernels of ``csrc/cpu`` (``compact.cpp``: compact / expand and the
  backward; ``patchify.cpp``; ``select.cpp``: the selection ops), measured against the
  PyTorch compositions by ``bench/bench_{compact,patchify,select}.py`` (results in
  ``bench/results/``); the composition if the extension is not built;
* ``reference``: the plain PyTorch composition of ``dynst_fast.ops.reference``.

These ops do no value checks (index range, duplicates, k): ``dynst_fast.ops`` does them.
Tensors are expected in one dtype (theta is cast to the data's dtype by the caller).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._extension import cpp_ops
from . import reference
from ._backend import backend_for, triton_kernels

_LIB = "dynst_fast"


def _cpu_kernels():
    """``torch.ops.dynst_fast`` if the extension with the compaction kernels is built."""
    lib = cpp_ops()
    return lib if lib is not None and hasattr(lib, "compact_cpu") else None


# ------------------------------------------------------------------ compositions
def _gather_composed(x: Tensor, theta: Tensor | None, index: Tensor) -> Tensor:
    out = x[:, index]
    return out if theta is None else out * theta[index][None, :, None]


def _compact_backward_composed(
    grad: Tensor, x: Tensor, theta: Tensor, index: Tensor, need_theta_grad: bool
) -> tuple[Tensor, Tensor]:
    dx = reference.expand(grad * theta[index][None, :, None], index, x.shape[1])
    if not need_theta_grad:
        return dx, x.new_empty(0)
    per_sensor = (x[:, index] * grad).sum(dim=(0, 2))
    dtheta = x.new_zeros(x.shape[1]).index_copy(0, index, per_sensor)
    return dx, dtheta


# ------------------------------------------------------------------ compact
@torch.library.custom_op(f"{_LIB}::compact", mutates_args=())
def compact(x: Tensor, theta: Tensor | None, index: Tensor) -> Tensor:
    """``x[:, index] * theta[index, None]`` ([B, K, F]); theta None means no scaling."""
    backend = backend_for(x.device)
    if backend == "triton":
        return triton_kernels().compact.gather_rows(x, index, theta)
    lib = _cpu_kernels() if backend == "cpu" else None
    if lib is not None:
        return lib.compact_cpu(x, theta, index)
    return _gather_composed(x, theta, index)


@compact.register_fake
def _(x, theta, index):
    return x.new_empty((x.shape[0], index.shape[0], x.shape[2]))


@torch.library.custom_op(f"{_LIB}::compact_backward", mutates_args=())
def compact_backward(
    grad: Tensor, x: Tensor, theta: Tensor, index: Tensor, need_theta_grad: bool
) -> tuple[Tensor, Tensor]:
    """``(dx [B, N, F], dtheta [N] or [0])``: scatter ``grad * theta`` and reduce
    ``dtheta[j] = sum_{b, f} x[b, j, f] * grad[b, k, f]`` in one pass."""
    backend = backend_for(x.device)
    if backend == "triton":
        dx, dtheta = triton_kernels().compact.scatter_rows(
            grad, index, x.shape[1], theta=theta, x=x if need_theta_grad else None
        )
        return dx, dtheta if dtheta is not None else x.new_empty(0)
    lib = _cpu_kernels() if backend == "cpu" else None
    if lib is not None:
        return lib.compact_backward_cpu(grad, x, theta, index, need_theta_grad)
    return _compact_backward_composed(grad, x, theta, index, need_theta_grad)


@compact_backward.register_fake
def _(grad, x, theta, index, need_theta_grad):
    return x.new_empty(x.shape), x.new_empty((x.shape[1] if need_theta_grad else 0,))


def _compact_setup(ctx, inputs, output):
    x, theta, index = inputs
    ctx.has_theta = theta is not None
    ctx.n = x.shape[1]
    ctx.save_for_backward(x if ctx.has_theta else None, theta, index)


def _compact_grad(ctx, grad):
    x, theta, index = ctx.saved_tensors
    if not ctx.has_theta:
        return expand(grad, index, ctx.n, 0.0), None, None
    need_theta = ctx.needs_input_grad[1]
    dx, dtheta = compact_backward(grad.contiguous(), x, theta, index, need_theta)
    return dx, (dtheta if need_theta else None), None


compact.register_autograd(_compact_grad, setup_context=_compact_setup)


# ------------------------------------------------------------------ expand
@torch.library.custom_op(f"{_LIB}::expand", mutates_args=())
def expand(y: Tensor, index: Tensor, n: int, fill: float) -> Tensor:
    """``[B, n, F]`` with row ``index[k]`` = ``y[:, k]`` and every other row ``fill``."""
    backend = backend_for(y.device)
    if backend == "triton":
        return triton_kernels().compact.scatter_rows(y, index, n, fill=fill)[0]
    lib = _cpu_kernels() if backend == "cpu" else None
    if lib is not None:
        return lib.expand_cpu(y, index, n, fill)
    return reference.expand(y, index, n, fill)


@expand.register_fake
def _(y, index, n, fill):
    return y.new_empty((y.shape[0], n, y.shape[2]))


def _expand_setup(ctx, inputs, output):
    _, index, _, _ = inputs
    ctx.save_for_backward(index)


def _expand_grad(ctx, grad):
    (index,) = ctx.saved_tensors
    return compact(grad, None, index), None, None, None


expand.register_autograd(_expand_grad, setup_context=_expand_setup)


# ------------------------------------------------------------------ patchify_compact
@torch.library.custom_op(f"{_LIB}::patchify_compact", mutates_args=())
def patchify_compact(frames: Tensor, theta: Tensor, index: Tensor, p: int) -> Tensor:
    """Active p x p patches of ``frames[B, T, C, H, W]`` times theta: ``[B, K, T*C*p*p]``.

    The ``cpu`` backend runs ``csrc/cpu/patchify.cpp``, which reads only the active
    patches (ratios against the pad/permute/gather composition in
    ``bench/results/patchify_cpu.md``).
    """
    backend = backend_for(frames.device)
    if backend == "triton":
        return triton_kernels().patchify.patchify_gather(frames, theta, index, p)
    lib = _cpu_kernels() if backend == "cpu" else None
    if lib is not None:
        return lib.patchify_compact_cpu(frames, theta, index, p)
    return reference.patchify_compact(frames, theta, index, p)


@patchify_compact.register_fake
def _(frames, theta, index, p):
    b, t, c = frames.shape[:3]
    return frames.new_empty((b, index.shape[0], t * c * p * p))


@torch.library.custom_op(f"{_LIB}::patchify_compact_backward", mutates_args=())
def patchify_compact_backward(
    grad: Tensor, frames: Tensor, theta: Tensor, index: Tensor, p: int, need_theta_grad: bool
) -> tuple[Tensor, Tensor]:
    """``(dframes [B, T, C, H, W], dtheta [N] or [0])`` of :func:`patchify_compact`."""
    backend = backend_for(frames.device)
    if backend == "triton":
        dframes, dtheta = triton_kernels().patchify.patchify_scatter(
            grad, frames, theta, index, p, need_theta_grad
        )
        return dframes, dtheta if dtheta is not None else theta.new_empty(0)
    lib = _cpu_kernels() if backend == "cpu" else None
    if lib is not None:
        return lib.patchify_compact_backward_cpu(grad, frames, theta, index, p, need_theta_grad)
    return _patchify_backward_composed(grad, frames, theta, index, p, need_theta_grad)


def _patchify_backward_composed(
    grad: Tensor, frames: Tensor, theta: Tensor, index: Tensor, p: int, need_theta_grad: bool
) -> tuple[Tensor, Tensor]:
    b, t, c, h, w = frames.shape
    gh, gw = -(-h // p), -(-w // p)
    dpatches = reference.expand(grad * theta[index][None, :, None], index, gh * gw)
    dframes = dpatches.reshape(b, gh, gw, t, c, p, p).permute(0, 3, 4, 1, 5, 2, 6)
    dframes = dframes.reshape(b, t, c, gh * p, gw * p)[..., :h, :w].contiguous()
    if not need_theta_grad:
        return dframes, theta.new_empty(0)
    per_patch = (reference.patchify(frames, p)[:, index] * grad).sum(dim=(0, 2))
    return dframes, theta.new_zeros(gh * gw).index_copy(0, index, per_patch)


@patchify_compact_backward.register_fake
def _(grad, frames, theta, index, p, need_theta_grad):
    return frames.new_empty(frames.shape), theta.new_empty(
        (theta.shape[0] if need_theta_grad else 0,)
    )


def _patchify_setup(ctx, inputs, output):
    frames, theta, index, p = inputs
    ctx.p = p
    ctx.save_for_backward(frames, theta, index)


def _patchify_grad(ctx, grad):
    frames, theta, index = ctx.saved_tensors
    need_theta = ctx.needs_input_grad[1]
    dframes, dtheta = patchify_compact_backward(
        grad.contiguous(), frames, theta, index, ctx.p, need_theta
    )
    return dframes, (dtheta if need_theta else None), None, None


patchify_compact.register_autograd(_patchify_grad, setup_context=_patchify_setup)


# ------------------------------------------------------------------ selection
_MODES = {"smallest": 0, "largest": 1, "smallest_abs": 2}


def _pick(score: Tensor, eligible: Tensor, k: int, mode: str) -> Tensor:
    """Indices of the k eligible entries of smallest key, ordered by (key, index)."""
    backend = backend_for(score.device)
    if backend == "triton":
        return triton_kernels().select.masked_smallest(score, eligible, k, mode)
    lib = _cpu_kernels() if backend == "cpu" else None
    if lib is not None:
        return lib.masked_smallest_cpu(score, eligible, k, _MODES[mode])
    s = score.to(torch.float64)
    key = {"smallest": s, "largest": -s, "smallest_abs": s.abs()}[mode]
    return reference._ordered_pick(key, eligible, k)


@torch.library.custom_op(f"{_LIB}::select_swap", mutates_args=())
def select_swap(score: Tensor, active: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(drop[k], grow[k])``: the k lowest-score active and the k highest-score inactive.

    The ``cpu`` backend runs ``csrc/cpu/select.cpp`` (nth_element, then a sort of the k
    picked); ``bench/results/select_cpu.md`` has its ratios against ``torch.topk`` and a
    full sort.
    """
    return _pick(score, active, k, "smallest"), _pick(score, ~active, k, "largest")


@select_swap.register_fake
def _(score, active, k):
    return score.new_empty((k,), dtype=torch.int64), score.new_empty((k,), dtype=torch.int64)


@torch.library.custom_op(f"{_LIB}::prune_lowest", mutates_args=())
def prune_lowest(score: Tensor, active: Tensor, k: int) -> Tensor:
    """``active`` without the k active entries of lowest ``|score|`` (a new [N] bool mask)."""
    out = active.clone()
    out[_pick(score, active, k, "smallest_abs")] = False
    return out


@prune_lowest.register_fake
def _(score, active, k):
    return torch.empty_like(active)
