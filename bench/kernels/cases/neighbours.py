"""The read-out ops' cases: nearest_active and neighbour_attention against their plain
PyTorch compositions (``ops.reference``), at the sizes the STGCN read-out runs them."""

from __future__ import annotations

import math

import torch

from dynst_fast import ops
from dynst_fast.ops import reference

from .base import SPARSITY, Case, Fn


def _candidates(n: int, length: int, g: torch.Generator) -> torch.Tensor:
    """``[N, L]``: each sensor's L distinct random candidates, as a sensor space lists
    them (the sensor itself first)."""
    rest = torch.randint(0, n, (n, length - 1), generator=g)
    return torch.cat([torch.arange(n)[:, None], rest], 1)


def nearest_active_case(n: int, length: int, m: int, device: str, s: float = SPARSITY) -> Case:
    """``nearest_active`` of ``[N, L]`` candidate lists against the cumulative count and
    scatter of the reference."""
    g = torch.Generator().manual_seed(n + length)
    cand = _candidates(n, length, g).to(device)
    active = (torch.rand(n, generator=g) >= s).to(device)
    want = reference.nearest_active(cand, active, m)
    got = torch.ops.dynst_fast.nearest_active(cand, active, m)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    return Case(
        "nearest_active",
        f"nearest_active N={n} L={length} m={m} s={s}",
        {
            "op": lambda: torch.ops.dynst_fast.nearest_active(cand, active, m),
            "torch": lambda: reference.nearest_active(cand, active, m),
        },
        {"N": n, "L": length, "m": m, "s": s},
    )


def neighbour_attention_cases(
    b: int, n: int, m: int, d: int, device: str, s: float = SPARSITY
) -> tuple[Case, Case]:
    """``neighbour_attention`` of B x N targets over m neighbours among the K = (1 - s) N
    active sources (width D), against gather + einsum + softmax: forward, and forward +
    backward (q, k, v, bias and gate requiring grad)."""
    g = torch.Generator().manual_seed(b * n + m)
    k_src = max(1, round((1 - s) * n))
    q, k, v = (torch.randn(b, size, d, generator=g) for size in (n, k_src, k_src))
    index = torch.randint(0, k_src, (n, m), generator=g)
    valid = torch.rand(n, m, generator=g) < 0.9
    bias = torch.randn(b, n, m, generator=g)
    gate = torch.rand(k_src, generator=g) + 0.5
    q, k, v, index, valid, bias, gate = (t.to(device) for t in (q, k, v, index, valid, bias, gate))
    scale = 1.0 / math.sqrt(d)
    args = (q, k, v, index, valid, bias, gate, scale)
    torch.testing.assert_close(
        torch.ops.dynst_fast.neighbour_attention(*args),
        reference.neighbour_attention(*args),
        rtol=1e-4,
        atol=1e-5,
    )
    leaves = [t.clone().requires_grad_() for t in (q, k, v, bias, gate)]
    dy = torch.randn(b, n, d, generator=g).to(device)

    def backward(fn) -> Fn:
        def step():
            for t in leaves:
                t.grad = None
            ql, kl, vl, bl, gl = leaves
            fn(ql, kl, vl, index, valid, bl, gl, scale).backward(dy)

        return step

    info = {"B": b, "N": n, "K": k_src, "m": m, "D": d, "s": s}
    name = f"neighbour_attention B={b} N={n} m={m} D={d} s={s}"
    return (
        Case(
            "neighbour_attention",
            name,
            {
                "op": lambda: torch.ops.dynst_fast.neighbour_attention(*args),
                "torch": lambda: reference.neighbour_attention(*args),
            },
            info,
        ),
        Case(
            "neighbour_attention_backward",
            name.replace("neighbour_attention", "neighbour_attention fwd+bwd"),
            {
                "op": backward(ops.neighbour_attention),
                "torch": backward(reference.neighbour_attention),
            },
            info,
        ),
    )
