"""ONNX export of compacted models, its verification, and `dynst predict` (issue 6)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dynst_fast import export as ex
from dynst_fast.artifacts import load_run
from dynst_fast.cli import main
from dynst_fast.config import RunConfig
from dynst_fast.deploy import deployable
from dynst_fast.export import forms
from dynst_fast.export import onnx as ex_onnx
from dynst_fast.run import run
from dynst_fast.sensors import frames_to_tiles
from dynst_fast.serve import PredictError, read_input
from dynst_fast.sidecar import load as load_sidecar
from dynst_fast.sidecar import sha256_of

GRAPH_MODELS = ("stgcn", "masked-stgcn")
# (model, sparsity) of every run the tests export: each backbone with few sensors left,
# the default one also with every sensor on (no compaction at all), and the image
# InputMasked model (SimVP).
RUNS = [("stgcn", 0.0), ("stgcn", 0.7), ("masked-stgcn", 0.7), ("vit", 0.7), ("simvp", 0.3)]
TINY = {
    "stgcn": (8, {}),
    "masked-stgcn": (8, {}),
    "vit": (16, {"depth": 1, "heads": 2, "decoder_dim": 16, "decoder_heads": 2}),
    "simvp": (8, {"translator": 16}),
}


def _tiny_run(root: Path, model: str, sparsity: float) -> Path:
    out = root / f"{model}_{sparsity:g}"
    hidden, options = TINY[model]
    cfg = RunConfig.from_flags(
        model=model,
        sparsity=sparsity,
        epochs=1,
        horizon=3,
        batch_size=64,
        hidden=hidden,
        option=options,
        time_batch=4,
        time_repeats=1,
        time_warmup=0,
        quiet=True,
        out=str(out),
    )
    run(cfg)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, float], Path]:
    root = tmp_path_factory.mktemp("runs")
    return {(m, s): _tiny_run(root, m, s) for m, s in RUNS}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> dict[tuple[str, float], Path]:
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for key, run_dir in runs.items():
        path = root / f"{key[0]}_{key[1]:g}.onnx"  # the compacted model of each run
        ex.export_run(run_dir, path)
        out[key] = path
    return out


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize(("model", "sparsity"), [r for r in RUNS if r[0] in GRAPH_MODELS])
def test_export_matches_the_pytorch_compacted_model(runs, exported, model, sparsity) -> None:
    path = exported[(model, sparsity)]
    meta = json.loads(Path(f"{path}.json").read_text())
    bundle = load_run(runs[(model, sparsity)])
    k, n = int(bundle.active_index.numel()), bundle.theta.numel()
    assert k == n - round(sparsity * n)
    assert meta["sensor_ids"] == [bundle.sensor_ids[i] for i in bundle.active_index.tolist()]
    mask = json.loads((runs[(model, sparsity)] / "mask.json").read_text())
    assert meta["sensor_ids"] == [
        i for i, a in zip(mask["sensor_ids"], mask["active"], strict=True) if a
    ]
    assert meta["num_sensors"] == n and meta["t_in"] == 12 and meta["t_out"] == 3
    assert meta["sha256"] == sha256_of(path)
    assert meta["input"]["shape"] == ["batch", 12, k, 1]
    assert meta["output"]["shape"] == ["batch", 3, n, 1]

    graph = onnx.load(str(path)).graph
    assert _dims(graph.input[0]) == ["batch", 12, k, 1]
    assert _dims(graph.output[0])[1:] == [3, n, 1]
    assert ex_onnx.non_default_domains(path) == []

    compact = bundle.model.compact(bundle.active_index, bundle.theta).eval()
    mean = torch.as_tensor(bundle.splits.mean)
    std = torch.as_tensor(bundle.splits.std)
    idx = bundle.active_index
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x_all, _ = bundle.splits.test.tensors()
    for batch in (1, 5):
        x = bundle.splits.denormalize(x_all[:batch])[:, :, idx].to(torch.float32)
        with torch.no_grad():
            want = compact((x - mean[idx]) / std[idx]) * std + mean
        got = sess.run(None, {"x": x.numpy()})[0]
        assert got.shape == (batch, 3, n, 1)
        err = np.abs(got - want.numpy()).max() / np.abs(want.numpy()).max()
        assert err <= 1e-4


@pytest.mark.parametrize(("model", "sparsity"), [r for r in RUNS if r[0] in ("vit", "simvp")])
def test_image_export_matches_the_pytorch_compacted_model(runs, exported, model, sparsity) -> None:
    path = exported[(model, sparsity)]
    meta = json.loads(Path(f"{path}.json").read_text())
    bundle = load_run(runs[(model, sparsity)])
    idx, grid = bundle.active_index, bundle.space.grid
    k, n, p = int(idx.numel()), grid.num_patches, grid.patch
    assert k == n - round(sparsity * n)
    assert meta["kind"] == "image" and meta["grid"]["patch"] == p
    assert meta["sensor_ids"] == [f"r{i // grid.cols}c{i % grid.cols}" for i in idx.tolist()]
    assert meta["input"]["shape"] == ["batch", k, 12, 1, p, p]
    assert meta["output"]["shape"] == ["batch", 3, 1, grid.height, grid.width]
    graph = onnx.load(str(path)).graph
    assert _dims(graph.input[0]) == ["batch", k, 12, 1, p, p]
    assert ex_onnx.non_default_domains(path) == []

    compact = bundle.model.compact(idx, bundle.theta).eval()
    mean = torch.as_tensor(bundle.splits.mean)
    std = torch.as_tensor(bundle.splits.std)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x_all, _ = bundle.splits.test.tensors()
    for batch in (1, 5):
        frames = bundle.splits.denormalize(x_all[:batch]).to(torch.float32)
        with torch.no_grad():  # what the PyTorch compacted model gives on the same frames
            want = (compact(compact.gather_input(x_all[:batch])) * std + mean).numpy()
        tiles = frames_to_tiles(frames, grid)[:, idx]
        got = sess.run(None, {"x": tiles.numpy()})[0]
        assert got.shape == (batch, 3, 1, grid.height, grid.width)
        assert np.abs(got - want).max() / np.abs(want).max() <= 1e-4


def test_image_predict_takes_tiles_or_frames(runs, exported, tmp_path) -> None:
    path = exported[("vit", 0.7)]
    bundle = load_run(runs[("vit", 0.7)])
    x, _ = bundle.splits.test.tensors()
    frames = bundle.splits.denormalize(x[:2]).numpy()
    np.save(tmp_path / "frames.npy", frames)
    np.save(tmp_path / "one.npy", frames[0])
    tiles = frames_to_tiles(torch.from_numpy(frames), bundle.space.grid)[:, bundle.active_index]
    np.save(tmp_path / "tiles.npy", tiles.numpy())
    outs = {}
    for name in ("frames", "one", "tiles"):
        argv = ["predict", str(path), "--input", str(tmp_path / f"{name}.npy"), "--out",
                str(tmp_path / f"{name}_out.npy")]  # fmt: skip
        assert main(argv) == 0
        outs[name] = np.load(tmp_path / f"{name}_out.npy")
    np.testing.assert_allclose(outs["frames"], outs["tiles"], rtol=1e-6)
    np.testing.assert_allclose(outs["one"], outs["tiles"][:1], rtol=1e-6)
    meta = load_sidecar(path)
    j, g = meta["input_index"][1], bundle.space.grid
    frames[1, 4, 0, (j // g.cols) * g.patch, (j % g.cols) * g.patch] = np.nan  # in patch j
    np.save(tmp_path / "nan.npy", frames)
    with pytest.raises(PredictError, match=f"NaN or inf .*sensor '{meta['sensor_ids'][1]}'"):
        read_input(tmp_path / "nan.npy", meta)
    np.save(tmp_path / "bad.npy", frames[:, :, :, :-1])
    with pytest.raises(PredictError, match="active tiles"):
        read_input(tmp_path / "bad.npy", meta)
    with pytest.raises(PredictError, match=".npy"):
        main_csv = tmp_path / "x.csv"
        main_csv.write_text("a\n1\n")
        read_input(main_csv, meta)


def test_dense_export_takes_every_sensor(runs, tmp_path) -> None:
    path = tmp_path / "dense.onnx"
    meta = ex.export_run(runs[("stgcn", 0.7)], path, dense=True)
    assert meta["dense"] and len(meta["sensor_ids"]) == meta["num_sensors"] == 80
    assert _dims(onnx.load(str(path)).graph.input[0]) == ["batch", 12, 80, 1]
    meta = ex.export_run(runs[("vit", 0.7)], tmp_path / "vit_dense.onnx", dense=True)
    assert meta["input"]["shape"][1] == meta["num_sensors"] == 36


def test_export_fails_loudly_and_leaves_nothing(runs, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ex_onnx, "TOLERANCE", -1.0)  # no model can agree this well
    path = tmp_path / "out" / "m.onnx"
    with pytest.raises(ex.ExportError, match="disagree"):
        ex.export_run(runs[("stgcn", 0.7)], path)
    assert list(path.parent.iterdir()) == []


def test_custom_domains_are_detected(tmp_path) -> None:
    node = onnx.helper.make_node("Spmm", ["x"], ["y"], domain="dynst")
    g = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(onnx.helper.make_model(g), str(path))
    assert ex_onnx.non_default_domains(path) == ["dynst::Spmm"]


def test_export_cli_errors(runs, tmp_path, capsys) -> None:
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["export", str(runs[("stgcn", 0.7)]), "--out", str(tmp_path / "m.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err


def _window(meta: dict, batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (batch, meta["t_in"], len(meta["sensor_ids"]), meta["channels"])
    return (40 + 20 * rng.random(shape)).astype(np.float32)


def test_predict_matches_pytorch_without_importing_torch(runs, exported, tmp_path) -> None:
    path = exported[("stgcn", 0.7)]
    meta = json.loads(Path(f"{path}.json").read_text())
    x = _window(meta, 5)
    np.save(tmp_path / "in.npy", x)
    code = (
        "import sys\n"
        "from dynst_fast.cli import main\n"
        f"rc = main(['predict', {str(path)!r}, '--input', {str(tmp_path / 'in.npy')!r},"
        f" '--out', {str(tmp_path / 'out.npy')!r}])\n"
        "assert 'torch' not in sys.modules, 'predict imported torch'\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "out.npy")

    bundle = load_run(runs[("stgcn", 0.7)])
    module = deployable(bundle).module
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert got.shape == (5, 3, 80, 1)
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-4


def test_predict_csv_picks_columns_by_sensor_id(exported, tmp_path) -> None:
    path = exported[("masked-stgcn", 0.7)]
    meta = json.loads(Path(f"{path}.json").read_text())
    x = _window(meta, 1)[0, :, :, 0]  # [T_in, K]
    ids = meta["sensor_ids"]
    order = list(reversed(range(len(ids))))
    with open(tmp_path / "in.csv", "w", newline="") as f:  # reversed columns, one extra
        w = csv.writer(f)
        w.writerow([ids[j] for j in order] + ["not_a_sensor"])
        w.writerows([[f"{row[j]:.9g}" for j in order] + ["1.0"] for row in x])
    np.save(tmp_path / "in.npy", x)
    assert main(["predict", str(path), "--input", str(tmp_path / "in.csv"), "--out",
                 str(tmp_path / "a.csv")]) == 0  # fmt: skip
    assert main(["predict", str(path), "--input", str(tmp_path / "in.npy"), "--out",
                 str(tmp_path / "b.npy")]) == 0  # fmt: skip
    with open(tmp_path / "a.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == meta["all_sensor_ids"]
    a = np.array(rows[1:], dtype=np.float32)
    np.testing.assert_allclose(a, np.load(tmp_path / "b.npy")[0, :, :, 0], rtol=1e-5)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_predict_refuses_bad_inputs(exported, tmp_path) -> None:
    path = exported[("stgcn", 0.7)]
    meta = load_sidecar(path)
    ids, t_in = meta["sensor_ids"], meta["t_in"]
    good = [["50"] * len(ids) for _ in range(t_in)]
    cases = {
        "count.npy": (np.zeros((t_in, len(ids) + 1), np.float32), r"must be \[B, 12, 24, 1\]"),
        "len.npy": (np.zeros((1, t_in - 1, len(ids), 1), np.float32), "got shape"),
        "rank.npy": (np.zeros((2, 2, 2, 2, 2), np.float32), "got shape"),
    }
    nan = np.full((t_in, len(ids)), 50, np.float32)
    nan[3, 7] = np.nan
    cases["nan.npy"] = (nan, f"NaN or inf .*step 3, sensor '{ids[7]}'")
    for name, (arr, msg) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(PredictError, match=msg):
            read_input(tmp_path / name, meta)
    _write_csv(tmp_path / "missing.csv", ids[1:], [r[1:] for r in good])
    with pytest.raises(PredictError, match=f"missing input sensor column.*'{ids[0]}'"):
        read_input(tmp_path / "missing.csv", meta)
    _write_csv(tmp_path / "rows.csv", ids, good[:-1])
    with pytest.raises(PredictError, match="expected 12 rows"):
        read_input(tmp_path / "rows.csv", meta)
    _write_csv(tmp_path / "blank.csv", ids, [["" if j == 2 else v for j, v in enumerate(r)]
                                               for r in good])  # fmt: skip
    with pytest.raises(PredictError, match="NaN"):
        read_input(tmp_path / "blank.csv", meta)
    _write_csv(tmp_path / "text.csv", ids, [["fast"] * len(ids)] * t_in)
    with pytest.raises(PredictError, match="not a number"):
        read_input(tmp_path / "text.csv", meta)
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(PredictError, match=".npy or .csv"):
        read_input(tmp_path / "x.txt", meta)


def test_predict_refuses_corrupted_or_mismatched_sidecars(exported, tmp_path, capsys) -> None:
    src = exported[("stgcn", 0.7)]
    model = tmp_path / "m.onnx"
    model.write_bytes(src.read_bytes())
    meta = json.loads(Path(f"{src}.json").read_text())
    np.save(tmp_path / "in.npy", _window(meta, 1))
    argv = ["predict", str(model), "--input", str(tmp_path / "in.npy"), "--out",
            str(tmp_path / "o.npy")]  # fmt: skip

    def fails(message: str) -> None:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "o.npy").exists()

    fails("no sidecar")
    side = Path(f"{model}.json")
    side.write_text("{not json")
    fails("not valid JSON")
    side.write_text(json.dumps({k: v for k, v in meta.items() if k != "t_in"}))
    fails("lacks t_in")
    side.write_text(json.dumps({**meta, "sensor_ids": meta["sensor_ids"][:-1]}))
    fails("inconsistent")
    other = json.loads(Path(f"{exported[('masked-stgcn', 0.7)]}.json").read_text())
    side.write_text(json.dumps(other))  # another model's sidecar
    fails("does not match its sidecar")
    side.write_text(json.dumps(meta))
    model.write_bytes(src.read_bytes()[:-10] + b"0123456789")  # corrupted model
    fails("does not match its sidecar")
    model.write_bytes(src.read_bytes())
    assert main(argv) == 0


def test_readme_onnxruntime_snippet_runs(exported, monkeypatch, tmp_path) -> None:
    import re

    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    section = text[text.index("## Export and serve") :]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    code = next(b for b in blocks if "import onnxruntime" in b)  # the serving snippet
    path = exported[("stgcn", 0.7)]
    for suffix in ("", ".json"):
        (tmp_path / f"model.onnx{suffix}").write_bytes(Path(f"{path}{suffix}").read_bytes())
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(readme), "exec"), scope)
    assert scope["y"].shape == (1, 3, 80, 1)
    assert len(scope["forecast"]) == 80


@pytest.mark.parametrize("dense_max", [0, 1 << 22])
def test_exported_message_passing_forms_match_the_reference(monkeypatch, dense_max) -> None:
    from conftest import random_graph

    from dynst_fast.graph import CSRGraph
    from dynst_fast.ops import reference

    monkeypatch.setattr(forms, "DENSE_MAX", dense_max)
    base = random_graph(17, seed=3)  # self-loops; add a duplicate edge and an empty row
    rows = base.row_index().tolist() + [4]
    cols = base.col.tolist() + [int(base.col[base.rowptr[4]])]
    weight = torch.cat([base.weight, torch.tensor([0.5])])
    keep = [i for i, r in enumerate(rows) if r != 9]
    dense = torch.zeros(17, 17)
    for i in keep:
        dense[rows[i], cols[i]] += weight[i]
    graph = CSRGraph.from_edge_index(
        torch.tensor([[cols[i] for i in keep], [rows[i] for i in keep]]),
        num_nodes=17,
        weight=torch.stack([weight[i] for i in keep]),
    )
    x = torch.randn(3, 17, 5)
    gate = torch.rand(17) * (torch.rand(17) > 0.3)
    want = reference.gated_spmm(graph, x, gate)
    torch.testing.assert_close(forms.gated_spmm_export(graph, x, gate), want)
    torch.testing.assert_close((dense * gate) @ x, want)
    torch.testing.assert_close(forms.gated_spmm_padded(graph, x, gate), want)
    assert graph.padded_rows()[0].shape == (17, int((graph.rowptr[1:] - graph.rowptr[:-1]).max()))


def test_export_through_padded_rows(runs, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(forms, "DENSE_MAX", 0)  # force the gather/sum form
    path = tmp_path / "padded.onnx"
    meta = ex.export_run(runs[("stgcn", 0.7)], path)
    assert meta["verification"]["max_rel_error"] <= 1e-4
    ops_used = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "ReduceSum" in ops_used and ex_onnx.non_default_domains(path) == []


def test_export_honours_the_umask_and_shows_only_its_own_messages(runs, tmp_path, capfd) -> None:
    """The model file gets the mode of the sidecar (0666 less the umask), and neither
    torch.onnx, onnxscript nor onnxruntime talks to the user (their warnings and logs)."""
    run_dir = runs[("stgcn", 0.7)]
    old = os.umask(0o022)
    try:
        capfd.readouterr()
        assert main(["export", str(run_dir), "--out", str(tmp_path / "m.onnx")]) == 0
    finally:
        os.umask(old)
    out, err = capfd.readouterr()
    assert err == "", err
    assert out.startswith("wrote ") and len(out.strip().splitlines()) == 1
    mode = (tmp_path / "m.onnx").stat().st_mode & 0o777
    assert mode == 0o644 == (tmp_path / "m.onnx.json").stat().st_mode & 0o777
