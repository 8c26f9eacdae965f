"""Hostile input found by an independent set of cases (issue 30): the serving side
(``dynst predict`` / ``export`` files, the sidecar's new fields), the run settings and
the API; each case gives one clear line (exit 2) or the right answer, and leaves
nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dynst_fast.cli import main
from dynst_fast.config import RunConfig
from dynst_fast.data import ReadOptions, load_dataset
from dynst_fast.suspect import SuspectRules, suspect_sensors


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def one_line(code: int, err: str, *names: str) -> None:
    assert code == 2 and len(err.splitlines()) == 1, (code, err)
    assert "Traceback" not in err and "unexpected" not in err, err
    for name in names:
        assert name in err, (name, err)


@pytest.fixture
def model(tiny_export, tmp_path) -> Path:
    """A copy of the tiny exported model (its sidecar may be edited)."""
    for suffix in ("", ".json"):
        shutil.copy(f"{tiny_export}{suffix}", tmp_path / f"m.onnx{suffix}")
    return tmp_path / "m.onnx"


def _good(meta: dict, b: int = 2) -> np.ndarray:
    low = np.array([r[0] for r in meta["suspect"]["low"]])
    high = np.array([r[0] for r in meta["suspect"]["high"]])
    rng = np.random.default_rng(0)
    x = (low + high) / 2 + (high - low) / 4 * (2 * rng.random((b, meta["t_in"], len(low))) - 1)
    return x[..., None].astype(np.float32)


def _meta(model: Path) -> dict:
    return json.loads(Path(f"{model}.json").read_text())


def _edit(model: Path, **fields) -> None:
    m = _meta(model)
    for k, v in fields.items():
        if v is ...:
            m.pop(k)
        else:
            m[k] = v
    Path(f"{model}.json").write_text(json.dumps(m))


# ------------------------------------------------------------------ predict's files
def test_a_planted_partial_link_is_not_followed_and_the_umask_is_honoured(model, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / ".y.npy.partial")
    np.save(tmp_path / "x.npy", _good(_meta(model)))
    old = os.umask(0o027)
    try:
        assert main(["predict", str(model), "--input", str(tmp_path / "x.npy"),
                     "--out", str(out / "y.npy")]) == 0  # fmt: skip
    finally:
        os.umask(old)
    assert victim.read_text() == "precious" and not (out / "y.npy").is_symlink()
    assert (out / "y.npy").stat().st_mode & 0o777 == 0o640
    assert not (out / ".y.npy.partial").exists()


@pytest.mark.slow
def test_sigterm_leaves_no_partial_output(model, tmp_path):
    np.save(tmp_path / "x.npy", np.repeat(_good(_meta(model), 10), 3000, axis=0))
    out, partial = tmp_path / "y.npy", tmp_path / ".y.npy.partial"
    cmd = [sys.executable, "-m", "dynst_fast.cli", "predict", str(model), "--input",
           str(tmp_path / "x.npy"), "--out", str(out), "--chunk", "16"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None and not partial.exists():
        time.sleep(0.01)
    assert p.poll() is None, "predict ended before it could be terminated"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "terminated" in err
    assert not out.exists() and not partial.exists()


def test_an_out_under_a_file_is_named(model, tmp_path, capsys):
    np.save(tmp_path / "x.npy", _good(_meta(model)))
    code, err = cli(capsys, "predict", str(model), "--input", str(tmp_path / "x.npy"),
                    "--out", str(tmp_path / "x.npy" / "y.npy"))  # fmt: skip
    one_line(code, err, "is a file, not a directory")


@pytest.mark.parametrize(
    ("name", "text", "names"),
    [
        ("big.csv", "x" * 140_000, ["not a CSV table"]),
        ("blank.csv", None, ["expected 12 rows", "got 13"]),
        ("huge.csv", "1e400", ["beyond float32", "step 0"]),
        ("underscore.csv", "1_0", ["not a number", "'1_0'"]),
    ],
)
def test_csv_inputs_with_a_huge_field_a_blank_step_or_an_infinite_number(
    model, tmp_path, capsys, name, text, names
):
    meta = _meta(model)
    ids, rows = meta["sensor_ids"], _good(meta, 1)[0, :, :, 0]
    lines = [",".join(ids)] + [",".join(f"{v:.3f}" for v in r) for r in rows]
    if name == "blank.csv":
        lines.insert(5, "," * (len(ids) - 1))  # a step with no reading: a row, not nothing
    else:
        lines[1] = lines[1].replace(lines[1].split(",")[0], text, 1)
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    code, err = cli(capsys, "predict", str(model), "--input", str(tmp_path / name),
                    "--out", str(tmp_path / "y.csv"))  # fmt: skip
    one_line(code, err, *names)


def test_a_timedelta_npy_is_refused(model, tmp_path, capsys):
    x = _good(_meta(model)).astype("timedelta64[s]")
    np.save(tmp_path / "x.npy", x)
    code, err = cli(capsys, "predict", str(model), "--input", str(tmp_path / "x.npy"),
                    "--out", str(tmp_path / "y.npy"))  # fmt: skip
    one_line(code, err, "real and numeric")


# ------------------------------------------------------------------ the sidecar
@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"suspect": {"margin": [1]}}, ["suspect"]),
        ("margin", ["suspect.margin"]),
        ({"missing_value": 1e300}, ["missing_value"]),
        ({"format": 99}, ["'format'", "newer"]),
        ({"kind": "foo"}, ["'kind'"]),
        ("same-ids", ["'sensor_ids'", "distinct"]),
        ("deep", ["not valid JSON"]),
    ],
)
def test_an_edited_sidecar_is_named(model, tmp_path, capsys, fields, names):
    meta = _meta(model)
    if fields == "margin":
        _edit(model, suspect={**meta["suspect"], "margin": "abc"})
    elif fields == "same-ids":
        _edit(model, sensor_ids=[meta["sensor_ids"][0]] * len(meta["sensor_ids"]))
    elif fields == "deep":
        Path(f"{model}.json").write_text("[" * 200_000 + "]" * 200_000)
    else:
        _edit(model, **fields)
    np.save(tmp_path / "x.npy", _good(meta))
    code, err = cli(capsys, "predict", str(model), "--input", str(tmp_path / "x.npy"),
                    "--out", str(tmp_path / "y.npy"))  # fmt: skip
    one_line(code, err, *names)


def test_a_sidecar_without_suspect_rules_warns_or_refuses(model, tmp_path, capsys):
    meta = _meta(model)
    _edit(model, suspect=...)
    x = _good(meta)
    x[0, :, 1] = x[0, 0, 1]  # stuck: it cannot be found without the rules
    np.save(tmp_path / "x.npy", x)
    args = ["predict", str(model), "--input", str(tmp_path / "x.npy")]
    assert main([*args, "--out", str(tmp_path / "a.npy")]) == 0
    assert "no suspect rules" in capsys.readouterr().err
    code, err = cli(capsys, *args, "--out", str(tmp_path / "b.npy"), "--on-suspect", "fail")
    one_line(code, err, "--on-suspect fail", "no suspect rules")
    assert main([*args, "--out", str(tmp_path / "c.npy"), "--on-suspect", "keep"]) == 0
    assert "suspect" not in capsys.readouterr().err


def test_export_refuses_a_sidecar_place_that_is_a_directory(tiny_dynst_run, tmp_path, capsys):
    (tmp_path / "m.onnx.json").mkdir()
    code, err = cli(capsys, "export", str(tiny_dynst_run), "--out", str(tmp_path / "m.onnx"))
    one_line(code, err, "m.onnx.json")
    assert not (tmp_path / "m.onnx").exists() and len(list(tmp_path.iterdir())) == 1


# ------------------------------------------------------------------ runs and data
FAST = ["--epochs", "2", "--horizon", "3", "--hidden", "8", "--quiet"]


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--option", "dropout=2"], ["--model stgcn cannot be built", "dropout"]),
        (["--option", "heads=0"], ["--model stgcn cannot be built", "heads=0"]),
        (["--batch-size", "10000000000"], ["--batch-size"]),
        (["--missing-value", "1e300"], ["--missing-value", "float32"]),
        (["--stuck-share", "0.5"], ["--failure-rate"]),
    ],
)
def test_run_settings_that_cannot_work(tmp_path, capsys, flags, names):
    out = tmp_path / "r"
    code, err = cli(capsys, "run", *FAST, "--out", str(out), *flags)
    one_line(code, err, *names)
    assert not out.exists() and not any(p.name.startswith(".r") for p in tmp_path.iterdir())


def _values_dir(tmp_path: Path, text: str | bytes, meta: dict | None = None) -> Path:
    d = tmp_path / "g"
    d.mkdir()
    (d / "values.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    (d / "adj.csv").write_text("1,1\n1,1\n")
    if meta is not None:
        (d / "meta.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize(
    ("values", "meta", "match"),
    [
        ("a,b\n1,2\n1e39,3\n" * 1, None, "beyond float32's range"),
        (b"a,b\n1,2\n\xe9,3\n", None, "values.csv is not UTF-8"),
        ("a,b\n1,2\n1_0,3\n", None, "non-numeric value '1_0' at line 3"),
        ("a,b\n" + "x" * 140_000 + ",1\n", None, "values.csv is not a CSV table"),
        ("a,b\n1,2\n3,4\n", {"missing_value": 1e300}, "missing_value must be a finite number"),
        ("a,b\n1,2\n3,4\n", [[[]]], "must be an object"),
    ],
)
def test_data_files_that_cannot_be_read(tmp_path, values, meta, match):
    d = _values_dir(tmp_path, values, meta)
    if meta == [[[]]]:
        (d / "meta.json").write_text("[" * 200_000 + "]" * 200_000)
        match = "meta.json in .* is not valid JSON"
    with pytest.raises(ValueError, match=match):
        load_dataset(d)


def test_a_grid_step_that_does_not_divide_a_day(tmp_path):
    np.save(tmp_path / "t.npy", np.random.default_rng(0).random((30, 4, 4)).astype(np.float32))
    (tmp_path / "meta.json").write_text(json.dumps({"step_hours": 7, "time_start": "2020-01-01"}))
    with pytest.raises(ValueError, match="step_hours 7 must divide a day"):
        load_dataset(tmp_path / "t.npy", kind="grid")


# ------------------------------------------------------------------ the API
@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"lr": "0.01"}, "lr must be float"),
        ({"quiet": "no"}, "quiet must be bool"),
        ({"keep": "s001"}, "keep must be list"),
        ({"option": "blocks=2"}, "option must be dict"),
        ({"data": 5}, "data must be str"),
        ({"prune_by": "foo"}, "--prune-by must be one of"),
    ],
)
def test_from_flags_checks_types_like_toml(settings, match):
    with pytest.raises(ValueError, match=match):
        RunConfig.from_flags(**settings).validate()
    assert RunConfig.from_flags(data=Path("x"), out=Path("y")).data.path == "x"  # paths


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (True, "finite number"),
        (float("nan"), "finite number"),
        ("zero", "finite number"),
        ([0], "finite number"),
        (1e300, "beyond float32"),
    ],  # fmt: skip
)
def test_read_options_check_the_missing_value(value, match):
    with pytest.raises(ValueError, match=match):
        ReadOptions(missing_value=value)
    with pytest.raises(ValueError, match="kind must be one of"):
        load_dataset(None, kind="foo")


def test_compact_refuses_a_2d_index_and_takes_theta_as_an_array():
    from conftest import random_graph

    from dynst_fast.models import GatedSTGCN

    model = GatedSTGCN(random_graph(10, seed=0), t_in=4, t_out=2, hidden=8)
    with pytest.raises(ValueError, match="shape \\[K\\]"):
        model.compact(torch.tensor([[0, 1], [2, 3]]))
    for bad in (None, "0,1"):
        with pytest.raises(TypeError, match="must be a tensor of numbers"):
            model.compact(bad)
    want = model.compact([0, 2], torch.linspace(0, 1, 10))
    for theta in (np.linspace(0, 1, 10), np.linspace(0, 1, 10).tolist()):
        assert torch.allclose(model.compact([0, 2], theta).gate, want.gate)


def test_suspect_sensors_on_edge_inputs():
    rules = SuspectRules(np.zeros((3, 1)), np.ones((3, 1)), np.ones(3, bool))
    assert suspect_sensors(np.zeros((0, 4, 3, 1)), rules).shape == (0, 3)
    with pytest.raises(ValueError, match="real numbers"):
        suspect_sensors(np.zeros((1, 4, 3, 1), complex), rules)
    with pytest.raises(TypeError, match="rules must be SuspectRules"):
        suspect_sensors(np.zeros((1, 4, 3, 1)), {"low": 0})


def test_alive_and_inputs_of_the_wrong_kind():
    from conftest import random_graph

    from dynst_fast.models import GatedSTGCN

    model = GatedSTGCN(random_graph(10, seed=0), t_in=4, t_out=2, hidden=8)
    x = torch.randn(2, 4, 10, 1)
    compact = model.compact(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="alive holds flags in \\[0, 1\\]"):
        compact(x[:, :, [1, 2, 3]], torch.tensor([1.0, float("nan"), 1.0]))
    flags = torch.tensor([True, False, True])
    assert torch.equal(
        compact(x[:, :, [1, 2, 3]], flags), compact(x[:, :, [1, 2, 3]], flags.float())
    )
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        model(x.numpy())
    assert RunConfig.from_flags(missing_value=None).data.missing_value == "none"
