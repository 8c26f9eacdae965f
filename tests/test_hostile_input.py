"""Hostile but realistic input (issue 16, first classes): data files whose ids, encoding,
dtype or meta.json are wrong, settings that are out of range, names from data that try
to choose the output path, non-finite metrics, and the file mode of what runs write."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from dynst_fast.artifacts import write_atomic, write_json
from dynst_fast.cli import main
from dynst_fast.config import RunConfig
from dynst_fast.data import load_dataset
from dynst_fast.plan import resolve_config


def _graph_dir(tmp_path, header: str = "s0,s1,s2", encoding: str = "utf-8"):
    d = tmp_path / "g"
    d.mkdir()
    rows = [header] + [",".join(str(float(i + j)) for j in range(3)) for i in range(40)]
    (d / "values.csv").write_text("\n".join(rows) + "\n", encoding=encoding)
    (d / "adj.csv").write_text("1,1,0\n1,1,1\n0,1,1\n")
    return d


def test_bom_is_not_part_of_the_first_id(tmp_path):
    ds = load_dataset(_graph_dir(tmp_path, encoding="utf-8-sig"))
    assert ds.sensor_ids == ["s0", "s1", "s2"]


@pytest.mark.parametrize("header", ["s0,s1,s0", "s0,s0,s2"])
def test_duplicate_sensor_ids_are_refused(tmp_path, header):
    with pytest.raises(ValueError, match="sensor id 's0' appears twice"):
        load_dataset(_graph_dir(tmp_path, header=header))


def test_complex_values_are_refused(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    np.save(d / "values.npy", np.ones((40, 3), dtype=np.complex64))
    (d / "adj.csv").write_text("1,0,0\n0,1,0\n0,0,1\n")
    with pytest.raises(ValueError, match="values.npy: values must be real and numeric"):
        load_dataset(d)
    np.save(tmp_path / "grid.npy", np.ones((20, 4, 4), dtype=np.complex128))
    with pytest.raises(ValueError, match="grid.npy: values must be real and numeric"):
        load_dataset(tmp_path / "grid.npy", kind="grid")


@pytest.mark.parametrize("meta", ["[1, 2]", '"name"', "\xff\xfe"])
def test_meta_json_that_is_not_an_object(tmp_path, meta):
    d = _graph_dir(tmp_path)
    (d / "meta.json").write_bytes(meta.encode("latin-1"))
    with pytest.raises(ValueError, match="meta.json in .* (must be an object|is not valid JSON)"):
        load_dataset(d)


def test_data_names_do_not_choose_the_output_path(tmp_path):
    d = _graph_dir(tmp_path)
    (d / "meta.json").write_text(json.dumps({"name": "../../etc"}))
    ds = load_dataset(d)
    cfg = resolve_config(RunConfig.from_flags(data=str(d)), ds, ds.sensor_space())
    assert cfg.out.startswith("runs/etc_stgcn_") and ".." not in cfg.out


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--seed", "-1"], "--seed"),
        (["--distance-sigma", "0"], "--distance-sigma"),
        (["--distance-threshold", "1.5"], "--distance-threshold"),
    ],
)
def test_bad_settings_are_one_line_naming_the_flag(tmp_path, capsys, flags, flag):
    code = main(["run", *flags, "--epochs", "1", "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err, err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_metrics_json_is_strict(tmp_path):
    write_json(tmp_path / "m.json", {"mae": float("-inf"), "rmse": float("nan"), "ok": 1.5})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict {c}")) == {
        "mae": None,
        "rmse": None,
        "ok": 1.5,
    }


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.txt", "x")
        os.umask(0o077)
        write_atomic(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600


def test_reproduce_command_keeps_every_setting_and_quotes_paths():
    import argparse
    import shlex

    from dynst_fast.flags import add_arguments, apply_arguments, command_line

    cfg = RunConfig.from_flags(
        sparsity=0.0, data="my data/v.csv", out="runs/a b", also=["random"], option={"k": "2"}
    )
    argv = shlex.split(command_line(cfg))
    assert argv[:2] == ["dynst", "run"]
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert apply_arguments(RunConfig(), p.parse_args(argv[2:])) == cfg


def test_non_finite_metrics_are_said_out_loud(capsys):
    from dynst_fast.run import non_finite

    notes = non_finite({"dense": {"mae": 1.0}, "dynst": {"mae": float("inf"), "rmse": 2.0}})
    assert len(notes) == 1 and "dynst model's test mae is not finite" in notes[0]
    assert "warning: the dynst model's test mae" in capsys.readouterr().err
