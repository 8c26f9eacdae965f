"""Bad input over the CLI and the API (issue 16): every case exits with code 2 and one
line on stderr that names the problem, shows no traceback, and leaves nothing
half-written; untrusted files (checkpoints, sidecars, models, inputs, data) are refused
without running anything they carry."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dynst_fast import artifacts, rundir, stages
from dynst_fast.cli import main

T = 200  # steps of the small graph data: parts of 160 / 20 / 20 steps
FAST = ["--epochs", "4", "--horizon", "3", "--hidden", "8", "--time-repeats", "1",
        "--time-warmup", "0", "--quiet"]  # fmt: skip


class Evil:
    """Unpickling this creates ``marker``: a file that runs it is caught."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def graph_dir(root: Path, values: np.ndarray | None = None, name: str = "g") -> Path:
    """A 3-sensor graph data directory (values.csv + adj.csv)."""
    d = root / name
    d.mkdir()
    if values is None:
        t = np.arange(T, dtype=np.float64)
        values = np.stack([np.sin(t / 5), np.cos(t / 7), np.sin(t / 3) + 1], axis=1)
    cell = lambda v: "" if np.isnan(v) else repr(float(v))  # noqa: E731
    rows = ["s0,s1,s2"] + [",".join(cell(v) for v in r) for r in values]
    (d / "values.csv").write_text("\n".join(rows) + "\n")
    (d / "adj.csv").write_text("1,1,0\n1,1,1\n0,1,1\n")
    return d


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code: int, err: str, *names: str) -> None:
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)


def nothing_under(root: Path, *keep: Path) -> list[Path]:
    """Files written under ``root`` other than ``keep`` (and their contents)."""
    kept = {p.resolve() for k in keep for p in [k, *k.rglob("*")]}
    return [p for p in root.rglob("*") if p.resolve() not in kept]


# ---------------------------------------------------------------- dynst run
def _values(kind: str) -> np.ndarray:
    t = np.arange(T, dtype=np.float64)
    v = np.stack([np.sin(t / 5), np.cos(t / 7), np.sin(t / 3) + 1], axis=1)
    if kind == "constant":
        v[:] = 3.0
    elif kind == "nan_test":
        v[180:] = np.nan
    elif kind == "nan_val":
        v[160:180] = np.nan
    elif kind == "inf":
        v[10, 1] = np.inf
    elif kind == "huge":
        v *= 1e30
    elif kind == "nan_horizon_1":
        v[192:198] = np.nan  # no test window has an observed first forecast step
    return v


RUN_CASES = [
    # (id, data kind or None for the good data, flags, names the error must contain)
    ("short-schedule", None, ["--epochs", "1"], ["dynst schedule", "--epochs 4"]),
    ("k-zero", None, ["--sparsity", "0.9"], ["--sparsity 0.9", "K = 0"]),
    ("lr-inf", None, ["--lr", "inf"], ["--lr"]),
    ("lr-nan", None, ["--lr", "nan"], ["--lr"]),
    ("seed", None, ["--seed", "-1"], ["--seed"]),
    ("batch-zero", None, ["--batch-size", "0"], ["--batch-size"]),
    ("also-main", None, ["--also", "dynst"], ["--also", "dynst"]),
    ("also-twice", None, ["--also", "random", "random"], ["--also", "random"]),
    ("bad-int", None, ["--epochs", "abc"], ["--epochs", "abc"]),
    ("bad-model", None, ["--model", "nope"], ["nope"]),
    ("constant", "constant", [], ["every value is 3", "constant"]),
    ("nan-horizon", "nan_horizon_1", [], ["test split", "horizon step 1"]),
    ("all-nan-test", "nan_test", [], ["test split", "no observed"]),
    ("all-nan-val", "nan_val", [], ["validation split", "no observed"]),
    ("inf", "inf", [], ["inf (step 10, sensor 's1')"]),
    ("huge", "huge", [], ["rescale"]),
    ("keep-and-forbid", None, ["--keep", "s0", "--forbid", "s0"], ["--keep and --forbid", "s0"]),
    ("keep-over-k", None, ["--sparsity", "0.6", "--keep", "s0", "s1"], ["--keep names 2", "K = 1"]),
    ("keep-unknown", None, ["--keep", "zz"], ["--keep", "unknown", "zz"]),
    ("forbid-all", None, ["--forbid", "s0", "s1", "s2"], ["--forbid names every sensor"]),
    ("budget-and-sparsity", None, ["--budget", "2", "--sparsity", "0.3"], ["--budget", "one"]),
    ("budget-too-small", None, ["--budget", "0.5"], ["--budget 0.5", "no sensor fits"]),
    ("cost-without-budget", None, ["--cost", "c.csv"], ["--cost needs --budget"]),
    ("synthetic-spec", None, ["--data", "synthetic:many"], ["synthetic:N", "synthetic:many"]),
    ("synthetic-size", None, ["--data", "synthetic:1"], ["N must be in [2, 100000]"]),
    ("synthetic-grid", None, ["--data", "synthetic:50", "--model", "vit"], ["graph data"]),
    ("nproc-zero", None, ["--nproc", "0"], ["--nproc must be a positive integer"]),
    ("mask-scheme-no-file", None, ["--scheme", "mask"], ["--mask FILE"]),
    (
        "mask-and-a-learning-scheme",
        None,
        ["--mask", "m.txt", "--scheme", "iterative"],
        ["--mask", "--scheme iterative", "--also iterative"],
    ),
    ("mask-also-mask", None, ["--mask", "m.txt", "--also", "mask"], ["--also mask"]),
    ("mask-file-missing", None, ["--mask", "absent.txt"], ["--mask", "absent.txt"]),
    ("budget-and-greedy", None, ["--budget", "2", "--scheme", "greedy"], ["--budget", "greedy"]),
]


@pytest.mark.parametrize("case", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_refuses_bad_input_before_training(tmp_path, capsys, monkeypatch, case):
    _, kind, flags, names = case
    data = graph_dir(tmp_path, None if kind is None else _values(kind))
    out = tmp_path / "runs" / "o"

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("dynst_fast.stages.fit", no_training)
    code, err = cli(capsys, "run", "--data", str(data), *FAST, *flags, "--out", str(out))
    assert_one_line_error(code, err, *names)
    assert nothing_under(tmp_path, data) == []


@pytest.mark.parametrize(
    "text, names",
    [("s0,zz\n", ["--mask", "'zz'", "'s0'"]), ("# none\n", ["names no active sensor"]),
     ("s0\ns0\n", ["'s0' twice"]), ("s0,s1\n", ["--sparsity 0.5", "names 2"])],
)  # fmt: skip
def test_run_refuses_a_bad_mask(tmp_path, capsys, monkeypatch, text, names):
    data = graph_dir(tmp_path)
    mask = tmp_path / "mask.txt"
    mask.write_text(text)
    monkeypatch.setattr("dynst_fast.stages.fit", lambda *a, **k: pytest.fail("training started"))
    extra = ["--sparsity", "0.5"] if "--sparsity 0.5" in names else []
    out = str(tmp_path / "runs" / "o")
    code, err = cli(
        capsys, "run", "--data", str(data), *FAST, *extra, "--mask", str(mask), "--out", out
    )
    assert_one_line_error(code, err, *names)
    assert nothing_under(tmp_path, data, mask) == []


def test_out_that_is_a_file_or_a_foreign_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dynst_fast.stages.fit", lambda *a, **k: pytest.fail("training started"))
    data = graph_dir(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, err = cli(capsys, "run", "--data", str(data), *FAST, "--out", str(afile))
    assert_one_line_error(code, err, "--out", "existing file")
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    code, err = cli(capsys, "run", "--data", str(data), *FAST, "--out", str(home))
    assert_one_line_error(code, err, "--out", "not a dynst run directory")
    assert afile.read_text() == "mine" and (home / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "g", "home"]


def test_out_that_cannot_be_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dynst_fast.stages.fit", lambda *a, **k: pytest.fail("training started"))
    data = graph_dir(tmp_path)
    code, err = cli(capsys, "run", "--data", str(data), *FAST, "--out", "/proc/dynst_run")
    assert_one_line_error(code, err, "--out /proc/dynst_run")


def test_diverging_training_is_one_line_and_leaves_nothing(tmp_path, capsys):
    data = graph_dir(tmp_path)
    out = tmp_path / "o"
    code, err = cli(capsys, "run", "--data", str(data), *FAST, "--lr", "1e30", "--out", str(out))
    assert_one_line_error(code, err, "dense model's training diverged at epoch", "--lr")
    assert not out.exists() and not rundir.staging_dir(out).exists()


def test_the_real_command_shows_no_traceback_unless_debug(tmp_path):
    def dynst(*argv: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        env.pop("DYNST_DEBUG", None)
        return subprocess.run(
            [sys.executable, "-m", "dynst_fast", *argv], capture_output=True, text=True, env=env
        )

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00junk")
    r = dynst("export", str(bad), "--out", str(tmp_path / "m.onnx"))
    assert_one_line_error(r.returncode, r.stderr.strip(), str(bad))
    r = dynst("export", str(bad), "--out", str(tmp_path / "m.onnx"), "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


# ---------------------------------------------------------------- a finished run
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    out = root / "run"
    assert main(["run", "--data", str(graph_dir(root)), *FAST, "--out", str(out)]) == 0
    return out


def test_interrupted_rerun_leaves_the_old_run_whole(finished, tmp_path, capsys, monkeypatch):
    """Ctrl-C while a run over an older one trains: the old run stays complete and
    readable, and --resume then replaces it as a whole."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = stages.save_progress, []

    def save_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(stages, "save_progress", save_then_interrupt)
    data = json.loads((finished / "metrics.json").read_text())["config"]["data"]["path"]
    code, _ = cli(capsys, "run", "--data", data, *FAST, "--seed", "1", "--out", str(out))
    assert code == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert artifacts.load_checkpoint(out)["config"]["seed"] == 0
    monkeypatch.setattr(stages, "save_progress", real)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
    assert not rundir.staging_dir(out).exists()


def test_ctrl_c_in_the_first_epoch_can_be_resumed(tmp_path, capsys, monkeypatch):
    import dynst_fast.stages as run_module

    data = graph_dir(tmp_path)
    out = tmp_path / "o"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    real = run_module.fit
    monkeypatch.setattr(run_module, "fit", interrupt)
    assert cli(capsys, "run", "--data", str(data), *FAST, "--out", str(out))[0] == 130
    assert not out.exists()
    monkeypatch.setattr(run_module, "fit", real)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert rundir.is_run_dir(out)


def _checkpoint_cases(finished: Path, tmp: Path, marker: Path) -> dict[str, bytes]:
    good = (finished / rundir.CHECKPOINT).read_bytes()
    ck = torch.load(finished / rundir.CHECKPOINT, weights_only=True)

    def saved(obj) -> bytes:
        p = tmp / "tmp.pt"
        torch.save(obj, p)
        return p.read_bytes()

    return {
        "empty": b"",
        "junk": np.random.default_rng(0).bytes(2048),
        "junk-zip": b"PK\x03\x04" + np.random.default_rng(1).bytes(2048),
        "truncated": good[: len(good) // 2],
        "foreign": saved({"weights": torch.ones(3)}),
        "wrong-type": saved({**ck, "t_in": "twelve"}),
        "missing-field": saved({k: v for k, v in ck.items() if k != "model_state"}),
        "wrong-shapes": saved({**ck, "model_state": {"x": torch.ones(2)}}),
        "malicious": saved({**ck, "extra": Evil(marker)}),
    }


CHECKPOINT_CASES = ["empty", "junk", "junk-zip", "truncated", "foreign", "wrong-type",
                    "missing-field", "wrong-shapes", "malicious"]  # fmt: skip


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_export_refuses_a_bad_checkpoint(finished, tmp_path, capsys, case):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / rundir.CHECKPOINT).write_bytes(_checkpoint_cases(finished, tmp_path, marker)[case])
    out = tmp_path / "m.onnx"
    code, err = cli(capsys, "export", str(run), "--out", str(out))
    assert_one_line_error(code, err, "checkpoint")
    assert not marker.exists()
    assert not out.exists() and not Path(f"{out}.json").exists()


def test_resume_refuses_a_malicious_progress_file(tmp_path, capsys):
    marker = tmp_path / "pwned"
    out = tmp_path / "o"
    stage = rundir.staging_dir(out)
    stage.mkdir()
    torch.save({"format": artifacts.FORMAT, "config": {}, "x": Evil(marker)}, stage / "progress.pt")
    code, err = cli(capsys, "run", "--resume", str(out))
    assert_one_line_error(code, err, "progress.pt")
    assert not marker.exists()


@pytest.mark.parametrize("where", ["a-directory", "unwritable"])
def test_export_refuses_a_bad_out(finished, tmp_path, capsys, where):
    out = tmp_path / "m.onnx"
    if where == "a-directory":
        out.mkdir()
    else:
        out = Path("/proc/dynst/m.onnx")
    code, err = cli(capsys, "export", str(finished), "--out", str(out))
    assert_one_line_error(code, err, "--out")


def test_export_of_an_unfinished_run(tmp_path, capsys):
    out = tmp_path / "o"
    stage = rundir.staging_dir(out)
    stage.mkdir()
    (stage / rundir.PROGRESS).write_bytes(b"x")
    code, err = cli(capsys, "export", str(out), "--out", str(tmp_path / "m.onnx"))
    assert_one_line_error(code, err, "unfinished run", f"--resume {out}")


# ---------------------------------------------------------------- dynst predict
@pytest.fixture(scope="module")
def exported(finished, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    model = tmp_path_factory.mktemp("exported") / "m.onnx"
    assert main(["export", str(finished), "--out", str(model)]) == 0
    return model


def _copy_model(exported: Path, tmp: Path) -> tuple[Path, dict]:
    model = tmp / "m.onnx"
    shutil.copy(exported, model)
    meta = json.loads(Path(f"{exported}.json").read_text())
    return model, meta


def _good_input(meta: dict, tmp: Path) -> Path:
    p = tmp / "x.npy"
    np.save(p, np.ones((1, meta["t_in"], len(meta["sensor_ids"]), meta["channels"])))
    return p


def _edit(meta: dict, case: str) -> dict:
    m = json.loads(json.dumps(meta))
    if case == "t_in-string":
        m["t_in"] = str(m["t_in"])
    elif case == "ids-not-list":
        m["sensor_ids"] = "s0"
    elif case == "input-name":
        m["input"]["name"] = 7
    elif case == "edited-t_in":  # consistent, but not what the model takes
        m["t_in"] += 2
        m["input"]["shape"][1] += 2
    elif case == "output-name":
        m["output"]["name"] = "not_an_output"
    elif case == "index-out-of-range":
        m["input_index"] = [99] * len(m["input_index"])
    return m


SIDECAR_CASES = [
    ("t_in-string", "'t_in'"),
    ("ids-not-list", "'sensor_ids'"),
    ("input-name", "'input.name'"),
    ("edited-t_in", "sidecar"),
    ("output-name", "sidecar"),
    ("index-out-of-range", "'input_index'"),
]


@pytest.mark.parametrize("case", SIDECAR_CASES, ids=[c[0] for c in SIDECAR_CASES])
def test_predict_refuses_an_edited_sidecar(exported, tmp_path, capsys, case):
    model, meta = _copy_model(exported, tmp_path)
    m = _edit(meta, case[0])
    Path(f"{model}.json").write_text(json.dumps(m))
    x = tmp_path / "x.npy"
    t_in = m["t_in"] if isinstance(m["t_in"], int) else meta["t_in"]
    np.save(x, np.ones((1, t_in, len(meta["sensor_ids"]), meta["channels"])))
    out = tmp_path / "y.npy"
    code, err = cli(
        capsys, "predict", str(model), "--input", str(x), "--out", str(out), "--on-suspect", "keep"
    )  # a window of ones is stuck: this is about the sidecar
    assert_one_line_error(code, err, case[1])
    assert not out.exists() and not list(tmp_path.glob(".y.npy*"))


def test_predict_refuses_a_junk_model_even_with_its_digest(exported, tmp_path, capsys):
    from dynst_fast.sidecar import sha256_of

    model, meta = _copy_model(exported, tmp_path)
    model.write_bytes(b"junk" * 100)
    Path(f"{model}.json").write_text(json.dumps({**meta, "sha256": sha256_of(model)}))
    x, out = _good_input(meta, tmp_path), tmp_path / "y.npy"
    code, err = cli(capsys, "predict", str(model), "--input", str(x), "--out", str(out))
    assert_one_line_error(code, err, "onnxruntime can load")
    assert not out.exists()


@pytest.mark.parametrize("case", ["malicious", "truncated", "complex", "a-directory-out"])
def test_predict_refuses_a_bad_input_or_out(exported, tmp_path, capsys, case):
    model, meta = _copy_model(exported, tmp_path)
    Path(f"{model}.json").write_text(json.dumps(meta))
    marker = tmp_path / "pwned"
    x, out = _good_input(meta, tmp_path), tmp_path / "y.npy"
    name = str(x)
    if case == "malicious":
        np.save(x, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    elif case == "truncated":
        x.write_bytes(x.read_bytes()[:100])
    elif case == "complex":
        np.save(x, np.ones((1, meta["t_in"], len(meta["sensor_ids"]), 1), dtype=np.complex64))
    else:
        out.mkdir()
        name = "--out"
    code, err = cli(capsys, "predict", str(model), "--input", str(x), "--out", str(out))
    assert_one_line_error(code, err, name)
    assert not marker.exists()
    assert case == "a-directory-out" or not out.exists()


# ---------------------------------------------------------------- data loaders
def test_no_data_loader_unpickles(tmp_path):
    """Every .npy / .npz reader of the data formats refuses a pickled object array."""
    from dynst_fast.data import load_dataset

    marker = tmp_path / "pwned"
    evil = np.array([Evil(marker), Evil(marker)], dtype=object)
    g = tmp_path / "npy"
    g.mkdir()
    np.save(g / "values.npy", evil, allow_pickle=True)
    (g / "adj.csv").write_text("1,0\n0,1\n")
    grid = tmp_path / "grid.npy"
    np.save(grid, evil, allow_pickle=True)
    adj = graph_dir(tmp_path, name="adjnpy")
    (adj / "adj.csv").unlink()
    np.save(adj / "adj.npy", evil, allow_pickle=True)
    pems = tmp_path / "pems"
    pems.mkdir()
    np.savez(pems / "PEMS04.npz", data=evil)
    (pems / "PEMS04.csv").write_text("from,to,cost\n0,1,1.0\n")
    for path, kind in ((g, "graph"), (grid, "grid"), (adj, "graph"), (pems, "graph")):
        with pytest.raises(ValueError):
            load_dataset(path, kind=kind)
        assert not marker.exists(), path
    pickle.loads(pickle.dumps(Evil(marker)))  # a plain unpickle would run it
    assert marker.exists()


# ---------------------------------------------------------------- the Python API
def test_api_refuses_bad_arguments():
    from dynst_fast import ops
    from dynst_fast.models import InputMasked
    from dynst_fast.schedule import Schedule

    with pytest.raises(TypeError, match="num_sensors must be an int"):
        Schedule("dynst", num_sensors=2.5, sparsity=0.5)
    with pytest.raises(TypeError, match="space must be a SensorSpace"):
        InputMasked(torch.nn.Identity(), 0, 12, 3)
    x, theta = torch.randn(2, 5, 3), torch.ones(5)
    with pytest.raises(TypeError, match="bool mask: pass torch.nonzero"):
        ops.compact(x, theta, torch.tensor([True, False, True, False, True]))
    with pytest.raises(TypeError, match="int64 or int32"):
        ops.compact(x, theta, torch.tensor([0.0, 2.0]))


def test_sparsifier_state_dict_is_a_snapshot():
    from dynst_fast.schedule import Schedule
    from dynst_fast.sparsifier import Sparsifier

    sp = Sparsifier(Schedule("dynst", 6, 0.5, network_steps=1, mask_steps=3, rounds=2))
    w = torch.randn(6)

    def steps(k: int) -> None:
        for _ in range(k):
            (sp.gate() * w).sum().backward()
            sp.step()

    steps(3)  # into the first mask phase: theta's Adam state exists
    snap = sp.state_dict()
    frozen = pickle.dumps(snap)
    steps(5)  # a round end (prune, swap) and more Adam steps
    assert pickle.dumps(snap) == frozen
    again = Sparsifier(Schedule("dynst", 6, 0.5, network_steps=1, mask_steps=3, rounds=2))
    again.load_state_dict(snap)
    assert again.step_count == 3 and torch.equal(again.theta.detach(), snap["theta"])


@pytest.mark.parametrize("what", ["graph-npy", "graph-npz", "grid-npy", "pems-npz"])
def test_a_truncated_array_file_is_named(tmp_path, what):
    from dynst_fast.data import load_dataset

    d = tmp_path / "d"
    d.mkdir()
    values = np.random.default_rng(0).normal(size=(60, 3))
    if what == "graph-npy":
        path, kind = d / "values.npy", "graph"
        np.save(path, values)
        (d / "adj.csv").write_text("1,0,0\n0,1,0\n0,0,1\n")
    elif what == "graph-npz":
        path, kind = d / "values.npz", "graph"
        np.savez(path, values=values)
        (d / "adj.csv").write_text("1,0,0\n0,1,0\n0,0,1\n")
    elif what == "grid-npy":
        path, kind = d / "field.npy", "grid"
        np.save(path, values.reshape(60, 1, 3, 1).repeat(4, axis=3))
    else:
        path, kind = d / "PEMS04.npz", "graph"
        np.savez(path, data=values[:, :, None])
        (d / "PEMS04.csv").write_text("from,to,cost\n0,1,1.0\n1,2,1.0\n")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=path.name):
        load_dataset(d, kind=kind)


def test_a_constant_test_split_is_refused_only_where_metrics_need_a_range(tmp_path):
    from dynst_fast import preflight
    from dynst_fast.data import load_dataset, make_windows

    v = _values("good")
    v[180:] = 2.0
    ds = load_dataset(graph_dir(tmp_path, v))
    splits = make_windows(ds, 12, 3)
    preflight.check_data(ds, splits, need_range=False)  # MAE / RMSE are defined
    with pytest.raises(ValueError, match="test split .* is constant"):
        preflight.check_data(ds, splits, need_range=True)  # PSNR / SSIM are not


def test_out_that_is_a_symlink_or_a_root(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dynst_fast.stages.fit", lambda *a, **k: pytest.fail("training started"))
    data = graph_dir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    code, err = cli(capsys, "run", "--data", str(data), *FAST, "--out", str(tmp_path / "link"))
    assert_one_line_error(code, err, "symbolic link")
    code, err = cli(capsys, "run", "--data", str(data), *FAST, "--out", "/")
    assert_one_line_error(code, err, "file system root")


def test_two_runs_never_write_one_run_directory(tmp_path):
    out = tmp_path / "o"
    stage = rundir.staging_dir(out)
    stage.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
         str(stage / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        for resume in (False, True):
            with pytest.raises(ValueError, match="another dynst run is writing"):
                rundir.begin_run(out, resume=resume)
        assert stage.is_dir()  # a fresh run did not delete the other run's state
    finally:
        holder.kill()
        holder.wait()
    assert rundir.begin_run(out) == stage  # free again
    rundir._unlock(stage)
