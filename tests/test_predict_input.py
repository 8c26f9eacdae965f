"""``dynst predict``'s input and output files (``predict_input.py``, ``predict_output.py``):
hostile files as a user would write them, streaming in chunks with the same forecasts as
one call per window, memory bounded by the chunk, and an output that is whole or absent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dynst_fast.cli import main
from dynst_fast.serve import PredictError, make_session, predict, read_input, run_model


@pytest.fixture(scope="module")
def meta(tiny_export) -> dict:
    return json.loads(Path(f"{tiny_export}.json").read_text())


def _windows(meta: dict, b: int, seed: int = 0) -> np.ndarray:
    """``b`` plausible windows (inside every sensor's training range, never constant)."""
    rng = np.random.default_rng(seed)
    low = np.array([r[0] for r in meta["suspect"]["low"]])
    high = np.array([r[0] for r in meta["suspect"]["high"]])
    mid, half = (low + high) / 2, (high - low) / 4
    x = mid + half * (2 * rng.random((b, meta["t_in"], len(low))) - 1)
    return x[..., None].astype(np.float32)


def _csv(path: Path, ids: list[str], rows: np.ndarray, bom: bool = False) -> Path:
    text = ",".join(ids) + "\n" + "\n".join(",".join(f"{v:.4f}" for v in r) for r in rows)
    path.write_text(("\ufeff" if bom else "") + text + "\n", encoding="utf-8")
    return path


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


# ------------------------------------------------------------------ hostile files
def test_a_csv_with_a_byte_order_mark_reads_like_one_without(tiny_export, meta, tmp_path):
    rows = _windows(meta, 1)[0, :, :, 0]
    plain = read_input(_csv(tmp_path / "a.csv", meta["sensor_ids"], rows), meta)
    marked = read_input(_csv(tmp_path / "b.csv", meta["sensor_ids"], rows, bom=True), meta)
    np.testing.assert_array_equal(plain, marked)


def test_a_csv_with_an_input_sensor_twice_is_refused(tiny_export, meta, tmp_path, capsys):
    ids = meta["sensor_ids"]
    rows = _windows(meta, 1)[0, :, :, 0]
    twice = np.concatenate([rows, rows[:, :1] + 5], axis=1)
    f = _csv(tmp_path / "dup.csv", [*ids, ids[0]], twice)
    code, err = cli(capsys, "predict", str(tiny_export), "--input", str(f),
                    "--out", str(tmp_path / "y.csv"))  # fmt: skip
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{ids[0]!r} is a column twice" in err and not (tmp_path / "y.csv").exists()


def test_an_npy_of_zero_windows_is_refused(tiny_export, meta, tmp_path, capsys):
    f = tmp_path / "none.npy"
    np.save(f, np.zeros((0, meta["t_in"], len(meta["sensor_ids"]), 1), np.float32))
    code, err = cli(capsys, "predict", str(tiny_export), "--input", str(f),
                    "--out", str(tmp_path / "y.npy"))  # fmt: skip
    assert code == 2 and "0 windows" in err and "unexpected" not in err


def test_a_value_beyond_float32_is_named_as_out_of_range(tiny_export, meta, tmp_path, capsys):
    x = _windows(meta, 2).astype(np.float64)
    x[1, 3, 4, 0] = 1e39
    f = tmp_path / "big.npy"
    np.save(f, x)
    code, err = cli(capsys, "predict", str(tiny_export), "--input", str(f),
                    "--out", str(tmp_path / "y.npy"))  # fmt: skip
    assert code == 2 and "beyond float32" in err and "NaN" not in err
    assert f"window 1, sensor {meta['sensor_ids'][4]!r}" in err


def test_a_non_utf8_csv_is_named(tiny_export, meta, tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes(b"\xff\xfe" + "é".encode("latin-1") * 20)
    with pytest.raises(PredictError, match="not UTF-8 text"):
        read_input(f, meta)


# ------------------------------------------------------------------ streaming
def test_chunks_give_the_forecasts_of_one_call_per_window(tiny_export, meta, tmp_path):
    x = _windows(meta, 23, seed=3)
    x[5, 2, 1, 0] = np.nan  # a missing reading: that window runs with the sensor off
    np.save(tmp_path / "x.npy", x)
    for chunk in (1, 4, 100):
        predict(tiny_export, tmp_path / "x.npy", tmp_path / f"y{chunk}.npy", chunk=chunk)
    sess = make_session(tiny_export)
    alive = np.ones(len(meta["sensor_ids"]), np.float32)
    for w in range(x.shape[0]):
        a = alive.copy()
        a[~np.isfinite(x[w]).all(axis=(0, 2))] = 0.0
        one = run_model(tiny_export, np.nan_to_num(x[w : w + 1]), meta, alive=a, session=sess)
        for chunk in (1, 4, 100):
            got = np.load(tmp_path / f"y{chunk}.npy")[w : w + 1]
            np.testing.assert_allclose(got, one, rtol=1e-5, atol=1e-4 * np.abs(one).max())


BIG = 100_000  # windows
RSS_SCRIPT = """
import resource, sys
from dynst_fast.serve import predict
predict(sys.argv[1], sys.argv[2], sys.argv[3])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.fixture(scope="module")
def big_input(meta, tmp_path_factory) -> Path:
    """100,000 windows (about 77 MB of input, 96 MB of forecasts)."""
    f = tmp_path_factory.mktemp("big") / "big.npy"
    base = _windows(meta, 1000, seed=7)
    out = np.lib.format.open_memmap(f, mode="w+", dtype=np.float32, shape=(BIG, *base.shape[1:]))
    for s in range(0, BIG, 1000):
        out[s : s + 1000] = base
    out.flush()
    del out
    return f


def _peak_rss_mb(model: Path, x: Path, y: Path) -> float:
    p = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(model), str(x), str(y)],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    return int(p.stdout.split()[-1]) / 1024


@pytest.mark.slow
def test_a_long_file_streams_in_bounded_memory(tiny_export, meta, big_input, tmp_path):
    small = tmp_path / "small.npy"
    np.save(small, np.load(big_input, mmap_mode="r")[:1000])
    base = _peak_rss_mb(tiny_export, small, tmp_path / "ys.npy")
    big = _peak_rss_mb(tiny_export, big_input, tmp_path / "yb.npy")
    file_mb = (big_input.stat().st_size + (tmp_path / "yb.npy").stat().st_size) / 2**20
    assert file_mb > 150
    assert big - base < 60, (base, big, file_mb)  # the chunk, not the 170 MB of files
    y = np.load(tmp_path / "yb.npy", mmap_mode="r")
    assert y.shape[0] == BIG
    np.testing.assert_array_equal(y[99_000:99_010], np.load(tmp_path / "ys.npy")[:10])


@pytest.mark.slow
def test_a_killed_predict_leaves_no_output_and_a_rerun_completes(tiny_export, big_input, tmp_path):
    out = tmp_path / "y.npy"
    partial = tmp_path / ".y.npy.partial"
    cmd = [sys.executable, "-m", "dynst_fast.cli", "predict", str(tiny_export),
           "--input", str(big_input), "--out", str(out), "--chunk", "500"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        if partial.exists() and partial.stat().st_size > 1 << 20:  # it is writing
            break
        time.sleep(0.02)
    assert p.poll() is None, "predict ended before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not out.exists()
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0
    assert np.load(out, mmap_mode="r").shape[0] == BIG and not partial.exists()
