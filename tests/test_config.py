"""The configuration tree: every setting has one default and one flag, the CLI is
generated from it, TOML files set it, and a run's config.toml reproduces the run."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from dynst_fast import config, flags
from dynst_fast.cli import _parser, main
from dynst_fast.config import RunConfig, ScheduleConfig
from dynst_fast.schedule import Schedule
from dynst_fast.sparsifier import Sparsifier

TIMING_KEYS = {"infer_ms", "dense_infer_ms", "speedup", "measured_ratio", "train_seconds",
               "seconds", "timing", "config"}  # fmt: skip


def _flags() -> list[str]:
    return [config.flag_name(f) for _, f in config.leaves()]


def test_every_setting_has_one_flag_and_the_cli_takes_it() -> None:
    flags = _flags()
    assert len(flags) == len(set(flags)), "two settings share a flag"
    for must in ("--rounds", "--theta-lr", "--l1", "--swap-fraction", "--warmup-frac",
                 "--prune-frac", "--mask-frac", "--grad-clip", "--weight-decay", "--data",
                 "--model", "--epochs", "--time-batch"):  # fmt: skip
        assert must in flags, must
    help_text = (
        _parser("run").format_help()
        + _parser("run")._subparsers._group_actions[0].choices["run"].format_help()
    )
    for flag in flags:
        assert flag in help_text, flag


def test_flags_set_the_tree() -> None:
    argv = ["run", "--rounds", "4", "--theta-lr", "0.05", "--option", "depth=2", "--option",
            "dim=8", "--also", "random", "fixed", "--time-batch", "7", "--data", "x",
            "--quiet"]  # fmt: skip
    ns = _parser("run").parse_args(argv)
    cfg = flags.apply_arguments(RunConfig(), ns)
    assert cfg.schedule.rounds == 4 and cfg.schedule.theta_lr == 0.05
    assert cfg.model.options == {"depth": "2", "dim": "8"}
    assert cfg.schedule.also == ["random", "fixed"] and cfg.timing.batch == 7
    assert cfg.data.path == "x" and cfg.quiet is True
    assert cfg.train == config.TrainConfig()  # untouched sections keep their defaults
    assert flags.given_settings(ns) == ["--data", "--option", "--also", "--rounds",
                                         "--theta-lr", "--time-batch", "--quiet"]  # fmt: skip


def test_from_flags_names_settings_as_the_cli_does() -> None:
    cfg = RunConfig.from_flags(epochs=3, data="d", model="vit", option={"dim": 8}, time_batch=2)
    assert (cfg.train.epochs, cfg.data.path, cfg.model.name) == (3, "d", "vit")
    assert cfg.model.options == {"dim": 8} and cfg.timing.batch == 2
    with pytest.raises(ValueError, match="unknown setting 'epoch'"):
        RunConfig.from_flags(epoch=3)


def test_each_default_is_stated_once() -> None:
    s = ScheduleConfig()
    sched = Schedule("dynst", 10, 0.5)
    assert (sched.rounds, sched.swap_fraction) == (s.rounds, s.swap_fraction)
    sp = Sparsifier(sched)
    assert (sp.theta_lr, sp.l1) == (s.theta_lr, s.l1)


def test_toml_round_trip_and_errors(tmp_path: Path) -> None:
    cfg = RunConfig.from_flags(epochs=3, data="d/x", also=["random"], option={"dim": 8}, lr=1e-3)
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert RunConfig.from_toml(path) == cfg
    path.write_text("[train]\nepochs = 2\n")  # a partial file: the rest are defaults
    assert RunConfig.from_toml(path) == dataclasses.replace(
        RunConfig(), train=config.TrainConfig(epochs=2)
    )
    path.write_text("[train]\nlr = 1\n")  # an int where a float goes is fine
    assert RunConfig.from_toml(path).train.lr == 1.0
    for text, message in [
        ("[train]\nepoch = 2\n", "unknown setting 'train.epoch'"),
        ("[train]\nepochs = 'two'\n", "train.epochs must be int"),
        ("train = 3\n", r"\[train\] must be a table"),
        ("[train\n", "is not valid TOML"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            RunConfig.from_toml(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--theta-lr", "-1"], "--theta-lr must be a positive number"),
        (["--mask-frac", "1.5"], r"--mask-frac must be in \[0, 1\]"),
        (["--swap-fraction", "1"], r"--swap-fraction must be in \[0, 1\)"),
        (["--time-repeats", "0"], "--time-repeats must be >= 1"),
        (["--option", "depth=2"], "unknown option 'depth' for model stgcn"),
        (["--option", "hidden=wide"], "model option hidden of stgcn must be int"),
        (["--config", "{missing}"], "no configuration file"),
        (["--config", "{bad}"], "unknown setting 'nope'"),
    ],
)
def test_cli_bad_settings_are_one_clear_error(argv, message, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("nope = 1\n")
    names = {"missing": tmp_path / "none.toml", "bad": bad, "tmp": tmp_path}
    argv = [a.format(**names) for a in argv]
    assert main(["run", *argv, "--quiet", "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynst run: error:") and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err


def test_resume_errors(tmp_path, capsys) -> None:
    assert main(["run", "--resume", str(tmp_path), "--epochs", "3"]) == 2
    assert "its own settings: drop --epochs" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no training state (progress.pt) to resume from" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nope")]) == 2
    assert "no run directory" in capsys.readouterr().err


def _compare(a: Path, b: Path) -> None:
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMING_KEYS}  # noqa: E731
    for m in (ma, mb):
        m["dense"] = strip(m["dense"])
        m["schemes"] = {k: strip(v) for k, v in m["schemes"].items()}
    assert strip(ma) == strip(mb)
    assert (a / "mask.json").read_text() == (b / "mask.json").read_text()
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    for key in ("model_state", "dense_model_state"):
        for (k, u), v in zip(ca[key].items(), cb[key].values(), strict=True):
            assert torch.equal(u, v), k


@pytest.mark.slow
def test_a_runs_config_toml_reproduces_it(tmp_path: Path) -> None:
    first = tmp_path / "first"
    argv = ["run", "--epochs", "2", "--horizon", "3", "--hidden", "8", "--rounds", "3",
            "--theta-lr", "0.05", "--time-repeats", "2", "--quiet"]  # fmt: skip
    assert main([*argv, "--out", str(first)]) == 0
    saved = RunConfig.from_toml(first / "config.toml")
    assert saved.model.name == "stgcn" and saved.model.options["hidden"] == 8
    assert saved.schedule.sparsity == pytest.approx(0.8) and saved.schedule.rounds == 3
    again = tmp_path / "again"
    assert main(["run", "--config", str(first / "config.toml"), "--out", str(again)]) == 0
    _compare(first, again)
    assert "dynst run --config" in (first / "report.md").read_text()


def test_the_pipeline_never_changes_a_configuration() -> None:
    """Configurations are frozen; ``resolve`` returns a new, resolved one."""
    from dynst_fast import plan

    cfg = RunConfig.from_flags(horizon=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 1
    ds = plan.load(cfg)
    resolved = plan.resolve_config(cfg, ds, ds.sensor_space(cfg.data.patch))
    assert cfg == RunConfig.from_flags(horizon=3)  # untouched
    assert resolved.model.name == "stgcn" and resolved.model.options["hidden"] == 32
    assert resolved.schedule.sparsity == pytest.approx(0.8)
    assert resolved.out == "runs/synthetic_stgcn_dynst_s0.8_seed0"
    assert plan.resolve_config(resolved, ds, ds.sensor_space(4)) == resolved  # idempotent
