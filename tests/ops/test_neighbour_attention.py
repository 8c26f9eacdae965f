"""``ops.neighbour_attention``: against a python loop over every target and neighbour
(gates, invalid entries, rows without a neighbour), the reference on every backend
(values and gradients), ``opcheck`` of the op and its backward and ``torch.compile``
from one sample generator, the gate rule (a gate of 0 removes a source exactly, and
its gradient is not zero) and argument errors."""

from __future__ import annotations

import math

import pytest
import torch
from harness import backend_fixture, check_compile, check_grads, check_opcheck, check_values

from dynst_fast import ops
from dynst_fast.ops import reference

backend = backend_fixture()


def _case(b, n, s, d, e, m, dtype, device, seed, batched_bias=True, zero_rows=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, n, d, generator=g, dtype=dtype)
    k = torch.randn(b, s, d, generator=g, dtype=dtype)
    v = torch.randn(b, s, e, generator=g, dtype=dtype)
    cand = torch.stack([torch.randperm(s, generator=g)[: min(2 * m, s)] for _ in range(n)])
    active = torch.rand(s, generator=g) < 0.6
    index, valid = reference.nearest_active(cand, active, m)
    if zero_rows:
        valid[0] = False  # a target with no neighbour
    bias = torch.randn(b if batched_bias else 1, n, m, generator=g, dtype=dtype)
    gate = torch.rand(s, generator=g, dtype=dtype) + 0.5
    gate[::3] = 0.0  # gates of 0: weight 0, gradient not 0
    args = (q, k, v, index, valid, bias, gate)
    return tuple(t.to(device) for t in args) + (1.0 / math.sqrt(d),)


def samples(device: str):
    """``(q, k, v, index, valid, bias, gate, scale)``: float64 and float32, a per-batch
    and a shared bias, m > the active sources of some rows, a row with no neighbour, gates
    of 0, and a target whose every gate is 0."""
    yield _case(2, 5, 7, 3, 4, 3, torch.float64, device, 0)
    yield _case(3, 9, 6, 5, 2, 8, torch.float64, device, 1, batched_bias=False)
    yield _case(2, 30, 25, 8, 16, 6, torch.float32, device, 2)
    q, k, v, index, valid, bias, gate, scale = _case(1, 4, 5, 2, 3, 2, torch.float64, device, 3)
    gate = gate.clone()
    gate[index[1]] = 0.0  # target 1: every gate 0
    yield q, k, v, index, valid, bias, gate, scale


def loop_attention(q, k, v, index, valid, bias, gate, scale):
    """The definition, one target and neighbour at a time (float64)."""
    b, n, _ = q.shape
    out = torch.zeros(b, n, v.shape[2], dtype=torch.float64)
    for bb in range(b):
        for i in range(n):
            js = [j for j in range(index.shape[1]) if valid[i, j]]
            if not js:
                continue
            bias_b = bias[bb if bias.shape[0] > 1 else 0]
            s = [scale * float(q[bb, i] @ k[bb, index[i, j]]) + float(bias_b[i, j]) for j in js]
            top = max(s)
            u = [float(gate[index[i, j]]) * math.exp(x - top) for j, x in zip(js, s, strict=True)]
            z = sum(u)
            if z == 0:
                continue
            for j, w in zip(js, u, strict=True):
                out[bb, i] += (w / z) * v[bb, index[i, j]].double()
    return out


def test_values(backend):
    check_values(ops.neighbour_attention, reference.neighbour_attention, samples(backend),
                 exact=False)  # fmt: skip


def test_reference_is_the_definition():
    for args in samples("cpu"):
        got = reference.neighbour_attention(*args).double()
        on_cpu = [a.cpu() if torch.is_tensor(a) else a for a in args]
        torch.testing.assert_close(got, loop_attention(*on_cpu), rtol=1e-5, atol=1e-6)


def test_gradients(backend):
    check_grads(ops.neighbour_attention, reference.neighbour_attention, samples(backend),
                diff=(0, 1, 2, 5, 6))  # fmt: skip


def test_opcheck(backend):
    op = torch.ops.dynst_fast
    cases = list(samples(backend))[:2]
    check_opcheck(op.neighbour_attention.default, cases)
    grads = [(torch.randn(a[0].shape[0], a[0].shape[1], a[2].shape[2], dtype=a[0].dtype,
                          device=a[0].device), *a) for a in cases]  # fmt: skip
    check_opcheck(op.neighbour_attention_backward.default, grads)


def test_torch_compile(backend):
    check_compile(ops.neighbour_attention, samples(backend))


def test_a_zero_gate_removes_a_source_and_still_has_a_gradient(backend):
    q, k, v, index, valid, bias, gate, scale = _case(2, 6, 8, 4, 3, 4, torch.float64,
                                                     backend, 5, zero_rows=False)  # fmt: skip
    off = int(index[2, 0])
    gate = gate.clone()
    gate[off] = 0.0
    g = gate.clone().requires_grad_()
    out = ops.neighbour_attention(q, k, v, index, valid, bias, g, scale)
    # the same as leaving the source out of the neighbour lists
    without = valid & (index != off)
    want = ops.neighbour_attention(q, k, v, index, without, bias, gate, scale)
    torch.testing.assert_close(out, want)
    out.square().sum().backward()
    assert float(g.grad[off].abs()) > 1e-6  # the first-order gain of switching it on
    row = [i for i in range(index.shape[0]) if bool((valid[i] & (index[i] == off)).any())]
    assert row  # it is a neighbour of some target


def test_bad_arguments():
    q, k, v, index, valid, bias, gate, _ = _case(2, 5, 7, 3, 4, 3, torch.float64, "cpu", 0)
    na = ops.neighbour_attention
    with pytest.raises(ValueError, match="k must be"):
        na(q, k[:1], v, index, valid)
    with pytest.raises(ValueError, match="v must be"):
        na(q, k, v[:, :-1], index, valid)
    with pytest.raises(ValueError, match="one per target"):
        na(q, k, v, index[:-1], valid[:-1])
    with pytest.raises(ValueError, match="valid must be a bool mask"):
        na(q, k, v, index, valid.int())
    with pytest.raises(ValueError, match="bias must be"):
        na(q, k, v, index, valid, bias[:, :, :-1])
    with pytest.raises(ValueError, match="gate must have shape"):
        na(q, k, v, index, valid, bias, gate[:-1])
    bad = index.clone()
    bad[valid] = 7
    with pytest.raises(ValueError, match="outside \\[0, 7\\)"):
        na(q, k, v, bad, valid)
    with pytest.raises(TypeError, match="index must be int64"):
        na(q, k, v, index.int(), valid)
    with pytest.raises(TypeError, match="floating point"):
        na(q.long(), k, v, index, valid)
