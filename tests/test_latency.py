"""``dynst bench RUN_DIR`` (latency and throughput, PyTorch and onnxruntime, dense and
compacted) and the onnxruntime session settings of ``dynst predict``. Nothing here
asserts on a time: only that the figures are measured, complete and written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dynst_fast.cli import main


@pytest.fixture(scope="module")
def finished(tiny_dynst_run) -> Path:
    return tiny_dynst_run


def test_dynst_bench_writes_every_figure(finished, tmp_path, capsys):
    out = tmp_path / "lat"
    code = main(["bench", str(finished), "--batches", "1", "3", "--repeats", "2",
                 "--threads", "1", "--fast-path", "eager", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = json.loads(Path(f"{out}.json").read_text())["rows"]
    assert [r["batch"] for r in rows] == [1, 3]
    for r in rows:
        for engine in ("torch", "ort"):
            for kind in ("dense", "compact"):
                ms = r[f"{engine}_{kind}_ms"]
                assert ms > 0
                assert r[f"{engine}_{kind}_us_per_forecast"] == pytest.approx(1e3 * ms / r["batch"])
                assert r[f"{engine}_{kind}_per_s"] == pytest.approx(1e3 * r["batch"] / ms)
            assert r[f"{engine}_speedup"] == pytest.approx(
                r[f"{engine}_dense_ms"] / r[f"{engine}_compact_ms"]
            )
    assert "µs per forecast" in Path(f"{out}.md").read_text()
    assert Path(f"{out}.png").stat().st_size > 0
    assert "torch speedup" in capsys.readouterr().out
    for r in rows:  # the fast path's pair joins (the compiled backends: test_fast_path.py)
        assert r["fast_backend"] == "eager"
        assert r["fast_speedup"] == pytest.approx(r["fast_dense_ms"] / r["fast_compact_ms"])
        assert r["fast_compact_us_per_forecast"] == pytest.approx(
            1e3 * r["fast_compact_ms"] / r["batch"]
        )
    assert "fast path dense / compact µs" in Path(f"{out}.md").read_text()


def test_table_without_the_fast_path():
    from dynst_fast import latency

    row = {"batch": 1, "torch_speedup": 1.2, "ort_speedup": 1.3, "ort_over_torch_speedup": 1.1}
    for engine in ("torch", "ort"):
        for kind in ("dense", "compact"):
            row[f"{engine}_{kind}_us_per_forecast"] = 10.0
            row[f"{engine}_{kind}_per_s"] = 1e5
    text = latency.table([row])
    assert "fast path" not in text and text.count("|---") == 7


@pytest.mark.parametrize(
    "flags, message",
    [(["--batches", "0"], "--batches"), (["--repeats", "0"], "--repeats"),
     (["--threads", "0"], "--threads")],
)  # fmt: skip
def test_dynst_bench_bad_flags(finished, tmp_path, capsys, flags, message):
    code = main(["bench", str(finished), *flags, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_predict_session_settings(finished, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    assert main(["export", str(finished), "--out", str(model)]) == 0
    meta = json.loads(Path(f"{model}.json").read_text())
    x = np.random.default_rng(0).random((2, meta["t_in"], len(meta["sensor_ids"]), 1))
    np.save(tmp_path / "x.npy", 40 + 20 * x.astype(np.float32))
    base = ["predict", str(model), "--input", str(tmp_path / "x.npy")]
    assert main([*base, "--out", str(tmp_path / "a.npy")]) == 0
    assert main([*base, "--out", str(tmp_path / "b.npy"), "--threads", "1",
                 "--graph-optimization", "disable"]) == 0  # fmt: skip
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    assert main([*base, "--out", str(tmp_path / "c.npy"), "--threads", "0"]) == 2
    assert "--threads must be a positive integer" in capsys.readouterr().err
