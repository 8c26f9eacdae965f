"""``ops.nearest_active``: against a brute-force python scan (padding, an empty row, rows
with fewer than m active candidates, m > K, m > L), the reference on every backend,
``opcheck`` and ``torch.compile`` from one sample generator, argument errors, and memory
that grows with N L, never N x N (16,384 sensors)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from harness import FAST, backend_fixture, check_compile, check_opcheck, check_values
from hypothesis import given
from hypothesis import strategies as st

from dynst_fast import ops
from dynst_fast.ops import reference

backend = backend_fixture()


def samples(device: str):
    """``(candidates, active, m)``: a hand-made list (padding -1, an empty row, a row with
    no active candidate, one with fewer than m), m = 1, m > K (K = 4 active), m > L, and a
    random list of 300 rows with several blocks of candidates."""
    cand = torch.tensor(
        [
            [2, 0, 5, 3, -1, -1],
            [-1, -1, -1, -1, -1, -1],  # no candidate at all
            [1, 4, 6, -1, -1, -1],  # none of them active
            [5, 1, 2, 4, 0, 3],
            [3, 6, -1, -1, -1, -1],  # fewer than m active
        ]
    )
    active = torch.tensor([True, False, True, True, False, True, False])
    for m in (1, 2, 3, 4, 5, 9):  # K = 4 active sensors: m > K from 5; 9 > L = 6 too
        yield cand.to(device), active.to(device), m
    g = torch.Generator().manual_seed(1)
    n, length = 300, 40
    rows = torch.stack([torch.randperm(n, generator=g)[:length] for _ in range(n)])
    rows[torch.rand(n, length, generator=g) < 0.1] = -1
    act = torch.rand(n, generator=g) < 0.3
    yield rows.to(device), act.to(device), 8


def brute(cand: list[list[int]], active: list[bool], m: int):
    index, valid = [], []
    for row in cand:
        picked = [c for c in row if c >= 0 and active[c]][:m]
        index.append(picked + [0] * (m - len(picked)))
        valid.append([True] * len(picked) + [False] * (m - len(picked)))
    return index, valid


def test_values(backend):
    check_values(ops.nearest_active, reference.nearest_active, samples(backend))


def test_against_brute_force(backend):
    for cand, active, m in samples(backend):
        index, valid = ops.nearest_active(cand, active, m)
        want_i, want_v = brute(cand.tolist(), active.tolist(), m)
        assert index.tolist() == want_i and valid.tolist() == want_v


@FAST
@given(st.data())
def test_random_lists(data):
    s = data.draw(st.integers(1, 12))
    n = data.draw(st.integers(1, 8))
    length = data.draw(st.integers(0, 10))
    cand = [data.draw(st.lists(st.integers(-1, s - 1), min_size=length, max_size=length))
            for _ in range(n)]  # fmt: skip
    active = data.draw(st.lists(st.booleans(), min_size=s, max_size=s))
    m = data.draw(st.integers(1, 12))
    index, valid = ops.nearest_active(
        torch.tensor(cand, dtype=torch.int64).reshape(n, length), torch.tensor(active), m
    )
    assert (index.tolist(), valid.tolist()) == brute(cand, active, m)


def test_opcheck(backend):
    check_opcheck(torch.ops.dynst_fast.nearest_active.default, samples(backend))


def test_torch_compile(backend):
    check_compile(ops.nearest_active, samples(backend))


def test_bad_arguments():
    cand, active = torch.tensor([[0, 1]]), torch.tensor([True, False])
    with pytest.raises(ValueError, match="outside \\[-1, 2\\)"):
        ops.nearest_active(torch.tensor([[0, 2]]), active, 1)
    with pytest.raises(ValueError, match="outside"):
        ops.nearest_active(torch.tensor([[-2, 0]]), active, 1)
    with pytest.raises(ValueError, match="m must be a positive int"):
        ops.nearest_active(cand, active, 0)
    with pytest.raises(TypeError, match="candidates must be int64"):
        ops.nearest_active(cand.int(), active, 1)
    with pytest.raises(TypeError, match="must be a bool tensor"):
        ops.nearest_active(cand, active.int(), 1)
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        ops.nearest_active(cand[0], active, 1)
    with pytest.raises(RuntimeError, match="outside"):  # the kernel checks too
        torch.ops.dynst_fast.nearest_active(torch.tensor([[5]]), active, 1)


CHILD = """
import json, resource, sys, torch
from dynst_fast import ops
from dynst_fast.ops import _dispatch
n, length, m = 16384, 32, 8
g = torch.Generator().manual_seed(0)
cand = torch.randint(-1, n, (n, length), generator=g)
active = torch.rand(n, generator=g) < 0.5
ops.nearest_active(cand[:4], active, m)  # libraries loaded and warm
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
grew = {}
for backend in sys.argv[1:]:
    with _dispatch.using(None if backend == "default" else backend):
        index, valid = ops.nearest_active(cand, active, m)
    grew[backend] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    assert index.shape == (n, m) and bool(valid.any())
print(json.dumps(grew))
"""


def test_16384_sensors_never_take_n_by_n_memory():
    """Every backend's working memory at N = 16,384 stays far below one N x N bool mask
    (256 MiB): the op reads the [N, L] lists, never a dense N x N table."""
    backends = ["default", "reference"]
    r = subprocess.run([sys.executable, "-c", CHILD, *backends], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    grew_kb = json.loads(r.stdout.strip().splitlines()[-1])
    n_by_n_kb = 16384 * 16384 // 1024
    assert all(kb < n_by_n_kb / 8 for kb in grew_kb.values()), grew_kb
