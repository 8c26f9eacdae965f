"""The run directory's file formats as typed records, each written and read here only:
``metrics.json`` (:class:`RunMetrics`), ``mask.json`` (:class:`MaskRecord`) and the
training state ``progress.pt`` (:class:`ProgressRecord`).

Every record has ``to_dict`` (what the file holds) and ``from_dict`` (which checks what
it reads and names the file and the field when something is wrong). The module imports
neither torch nor numpy at load time, so that torch-free commands (``dynst rank``) read
these files too; tensors and arrays pass through as opaque values.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__

METRICS_FORMAT = 2  # 2: the sparse models under "schemes" (1: "dynst" and "others")
PROGRESS_FORMAT = 2  # shares the checkpoint format number (artifacts.FORMAT)
GAIN_METHOD = (
    "estimated whole-field MAE decrease of switching the sensor back on: mean |dL/dg| over "
    "the last mask phase x mean |theta| of the active sensors x mean(std) (first order)"
)


class RecordError(ValueError):
    """A file that is not the record it should be (the message names the file and field)."""


def _need(d: Any, key: str, kind: type | tuple[type, ...], source: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise RecordError(f"{source} has no {key!r} field")
    v = d[key]
    if (
        isinstance(v, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise RecordError(f"{source}: field {key!r} must be {_name(kind)}, got {v!r}")
    if not isinstance(v, kind):
        raise RecordError(f"{source}: field {key!r} must be {_name(kind)}, got {type(v).__name__}")
    return v


def _name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


# ---------------------------------------------------------------- metrics.json
@dataclass
class DenseResult:
    """The dense model's test scores, training time and inference time (ms per call)."""

    scores: dict[str, Any]
    train_seconds: float | None
    infer_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.scores, "train_seconds": self.train_seconds, "infer_ms": self.infer_ms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenseResult:
        scores = {k: v for k, v in d.items() if k not in ("train_seconds", "infer_ms")}
        return cls(scores, d.get("train_seconds"), d.get("infer_ms"))


@dataclass
class SchemeResult:
    """A sparse model's test scores (its compacted model), inference time against the
    dense model's, timed side by side, and what it did. A model that gives no speedup
    (``InputMasked``) has ``speedup`` None and the plain time ratio as ``measured_ratio``."""

    scores: dict[str, Any]
    infer_ms: float
    dense_infer_ms: float
    speedup: float | None
    gives_speedup: bool
    num_active: int
    train_seconds: float
    swaps: int
    measured_ratio: float | None = None
    planted_recall: float | None = None

    _FIELDS = (
        "infer_ms",
        "dense_infer_ms",
        "speedup",
        "gives_speedup",
        "num_active",
        "train_seconds",
        "swaps",
    )

    def to_dict(self) -> dict[str, Any]:
        out = {**self.scores, **{k: getattr(self, k) for k in self._FIELDS}}
        if self.measured_ratio is not None:
            out["measured_ratio"] = self.measured_ratio
        if self.planted_recall is not None:
            out["planted_recall"] = self.planted_recall
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SchemeResult:
        known = {*cls._FIELDS, "measured_ratio", "planted_recall"}
        scores = {k: v for k, v in d.items() if k not in known}
        return cls(scores, **{k: d.get(k) for k in known})


@dataclass
class TimingInfo:
    """How inference was timed: test windows per call, threads, machine, method."""

    batch: int
    threads: int
    machine: str
    method: str

    def to_dict(self) -> dict[str, Any]:
        return dict(batch=self.batch, threads=self.threads, machine=self.machine,
                    method=self.method)  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimingInfo:
        return cls(d.get("batch"), d.get("threads"), d.get("machine", ""), d.get("method", ""))


@dataclass
class RunMetrics:
    """``metrics.json``: a finished run's results (DESIGN.md section 8), whole-field test
    metrics in original units. ``schemes`` holds every sparse model by its scheme's name,
    the main one (``scheme``) first; ``layout`` the sensor space's own fields."""

    dataset: str
    model: str
    scheme: str
    num_sensors: int
    sparsity: float
    target_sparsity: float | None
    num_active: int
    active_sensors: list[str]
    units: str
    t_in: int
    t_out: int
    dense: DenseResult
    schemes: dict[str, SchemeResult]
    baselines: dict[str, dict[str, Any]]
    world_size: int
    timing: TimingInfo
    config: dict[str, Any]
    seconds: float | None
    version: str = __version__
    layout: dict[str, Any] = field(default_factory=dict)
    planted_sensors: list[str] | None = None
    constraints: dict[str, Any] | None = None

    @property
    def main(self) -> SchemeResult:
        """The main sparse model's result."""
        return self.schemes[self.scheme]

    @property
    def others(self) -> dict[str, SchemeResult]:
        """The sparse models of ``--also``."""
        return {k: v for k, v in self.schemes.items() if k != self.scheme}

    @property
    def speedup(self) -> float | None:
        return self.main.speedup

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": METRICS_FORMAT,
            "dataset": self.dataset,
            "model": self.model,
            "scheme": self.scheme,
            "num_sensors": self.num_sensors,
            "sparsity": self.sparsity,
            "target_sparsity": self.target_sparsity,
            "num_active": self.num_active,
            "active_sensors": list(self.active_sensors),
            "units": self.units,
            "t_in": self.t_in,
            "t_out": self.t_out,
            "dense": self.dense.to_dict(),
            "schemes": {k: v.to_dict() for k, v in self.schemes.items()},
            "speedup": self.speedup,
            "baselines": self.baselines,
            "world_size": self.world_size,
            "timing": self.timing.to_dict(),
            "config": self.config,
            "version": self.version,
            "seconds": self.seconds,
            **self.layout,
        }
        if self.planted_sensors is not None:
            out["planted_recall"] = self.main.planted_recall
            out["planted_sensors"] = list(self.planted_sensors)
        if self.constraints is not None:
            out["constraints"] = self.constraints
        return out

    _TOP = (
        "format", "dataset", "model", "scheme", "num_sensors", "sparsity", "target_sparsity",
        "num_active", "active_sensors", "units", "t_in", "t_out", "dense", "schemes",
        "speedup", "baselines", "world_size", "timing", "config", "version", "seconds",
        "planted_recall", "planted_sensors", "constraints", "dynst", "others", "out",
    )  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "metrics.json") -> RunMetrics:
        """A ``metrics.json`` (or the dict ``dynst run`` returns). One of the layout
        before format 2 (the main model under ``"dynst"``, the others under ``"others"``)
        is read with a ``FutureWarning``."""
        if not isinstance(d, dict):
            raise RecordError(f"{source} must hold a JSON object")
        scheme = _need(d, "scheme", str, source)
        if "schemes" in d:
            schemes = _need(d, "schemes", dict, source)
        else:
            main = _need(d, "dynst", dict, source)
            warnings.warn(
                f"{source} has the layout of dynst_fast before metrics format 2: its main "
                f"sparse model ({scheme}) is under 'dynst' and the others under 'others'; "
                "since format 2 they are all under 'schemes', by scheme",
                FutureWarning,
                stacklevel=2,
            )
            schemes = {scheme: main, **d.get("others", {})}
        if scheme not in schemes:
            raise RecordError(f"{source}: 'schemes' has no entry for the main scheme {scheme!r}")
        return cls(
            dataset=d.get("dataset", ""),
            model=_need(d, "model", str, source),
            scheme=scheme,
            num_sensors=_need(d, "num_sensors", int, source),
            sparsity=d.get("sparsity"),
            target_sparsity=d.get("target_sparsity"),
            num_active=_need(d, "num_active", int, source),
            active_sensors=list(d.get("active_sensors", [])),
            units=d.get("units", ""),
            t_in=d.get("t_in"),
            t_out=d.get("t_out"),
            dense=DenseResult.from_dict(_need(d, "dense", dict, source)),
            schemes={k: SchemeResult.from_dict(v) for k, v in schemes.items()},
            baselines=dict(d.get("baselines", {})),
            world_size=d.get("world_size", 1),
            timing=TimingInfo.from_dict(d.get("timing", {})),
            config=dict(d.get("config", {})),
            seconds=d.get("seconds"),
            version=d.get("version", ""),
            layout={k: v for k, v in d.items() if k not in cls._TOP},
            planted_sensors=d.get("planted_sensors"),
            constraints=d.get("constraints"),
        )


class MetricsDict(dict):
    """``metrics.json`` as the dict ``dynst run`` returns. The keys of the layout before
    format 2 still read, for one release, with a ``FutureWarning``: ``"dynst"`` (the main
    sparse model, whatever its scheme) and ``"others"`` (the models of ``--also``)."""

    def __missing__(self, key: str) -> Any:
        if key in ("dynst", "others") and "schemes" in self:
            warnings.warn(
                f"metrics[{key!r}] is the layout before metrics format 2: read "
                "metrics['schemes'][metrics['scheme']] for the main sparse model and "
                "metrics['schemes'] for the others",
                FutureWarning,
                stacklevel=2,
            )
            main = self["scheme"]
            if key == "dynst":
                return self["schemes"][main]
            return {k: v for k, v in self["schemes"].items() if k != main}
        raise KeyError(key)


# ---------------------------------------------------------------- mask.json
def switch_on_ranking(gain: Any, active: Any) -> list[int]:
    """The switched-off sensors with a gain (NaN: forbidden, never a candidate), by
    decreasing gain, ties by index: the one place the ranking is worked out."""
    off = [i for i, (g, a) in enumerate(zip(gain, active, strict=True)) if not a and g == g]
    return sorted(off, key=lambda i: (-float(gain[i]), i))


@dataclass
class MaskRecord:
    """``mask.json``: the main sparse model's sensors in input order, theta, which are
    active, and for a scheme with mask phases each switched-off sensor's switch-on gain
    (None for the active ones and the forbidden ones) with the resulting ranking."""

    sensor_ids: list[str]
    theta: list[float]
    active: list[bool]
    scheme: str
    sparsity: float
    constraints: dict[str, Any] | None = None
    switch_on_gain: list[float | None] | None = None
    switch_on_gain_units: str = ""
    switch_on_ranking: list[int] | None = None

    @classmethod
    def build(
        cls,
        sensor_ids: list[str],
        theta: list[float],
        active: list[bool],
        scheme: str,
        constraints: dict[str, Any] | None,
        gain: Any = None,
        units: str = "",
    ) -> MaskRecord:
        """The record of a trained active set; ``gain [N]`` (NaN where a sensor may not
        be switched on) gives the per-sensor gains and the ranking."""
        n = len(sensor_ids)
        rec = cls(list(sensor_ids), list(theta), list(active), scheme,
                  1.0 - sum(active) / n, constraints)  # fmt: skip
        if gain is not None:
            rec.switch_on_gain = [
                None if a or math.isnan(g) else float(g) for a, g in zip(active, gain, strict=True)
            ]
            rec.switch_on_gain_units = units
            rec.switch_on_ranking = switch_on_ranking([float(g) for g in gain], active)
        return rec

    @property
    def active_index(self) -> list[int]:
        """The active sensors' indices, ascending (the compacted model's input order)."""
        return [i for i, a in enumerate(self.active) if a]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sensor_ids": self.sensor_ids,
            "theta": self.theta,
            "active": self.active,
            "active_index": self.active_index,
            "scheme": self.scheme,
            "sparsity": self.sparsity,
            "constraints": self.constraints,
            "switch_on_gain": self.switch_on_gain,
        }
        if self.switch_on_gain is not None:
            out.update(
                switch_on_gain_units=self.switch_on_gain_units,
                switch_on_gain_method=GAIN_METHOD,
                switch_on_ranking=self.switch_on_ranking,
            )
        return out

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> MaskRecord:
        """The ``mask.json`` of a finished run directory, checked."""
        path = Path(run_dir) / "mask.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no mask.json in {run_dir}: is it a finished `dynst run` directory?"
            )
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path} is not a dynst mask.json ({exc})") from None
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, d: Any, source: str = "mask.json") -> MaskRecord:
        """A ``mask.json``, checked: ids, theta and active flags of one length, flags
        true / false, gains numbers (or null) and a ranking of switched-off sensors."""
        ids = _need(d, "sensor_ids", list, source)
        active = _need(d, "active", list, source)
        if len(active) != len(ids):
            raise RecordError(f"{source}: 'active' and 'sensor_ids' differ in length")
        if not all(isinstance(a, bool) for a in active):
            raise RecordError(f"{source}: 'active' must hold true / false")
        theta = d.get("theta", [1.0] * len(ids))
        if not isinstance(theta, list) or len(theta) != len(ids):
            raise RecordError(f"{source}: 'theta' and 'sensor_ids' differ in length")
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in theta):
            raise RecordError(f"{source}: 'theta' must hold numbers")
        gain = d.get("switch_on_gain")
        ranking = d.get("switch_on_ranking")
        if gain is not None:
            if not isinstance(gain, list) or len(gain) != len(ids):
                raise RecordError(f"{source}: 'switch_on_gain' and 'sensor_ids' differ in length")
            if not all(
                g is None or (isinstance(g, (int, float)) and not isinstance(g, bool)) for g in gain
            ):
                raise RecordError(f"{source}: 'switch_on_gain' must hold numbers or null")
            if not isinstance(ranking, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(ids)
                and not active[i] and gain[i] is not None
                for i in ranking
            ):  # fmt: skip
                raise RecordError(
                    f"{source}: 'switch_on_ranking' must list switched-off sensors with a gain"
                )
        return cls(
            sensor_ids=[str(s) for s in ids],
            theta=[float(t) for t in theta],
            active=list(active),
            scheme=str(d.get("scheme", "")),
            sparsity=float(d.get("sparsity", 1.0 - sum(active) / max(len(ids), 1))),
            constraints=d.get("constraints") if isinstance(d.get("constraints"), dict) else None,
            switch_on_gain=gain,
            switch_on_gain_units=str(d.get("switch_on_gain_units", "")),
            switch_on_ranking=ranking,
        )


# ---------------------------------------------------------------- progress.pt
@dataclass
class StageResult:
    """A finished training of an unfinished run: its best weights, its sparsifier's state
    and what ``train.fit`` reported."""

    model_state: dict[str, Any]
    sparsifier: dict[str, Any]
    best_val_mae: float
    best_epoch: int
    losses: list[float]
    val_maes: list[float]
    seconds: float
    optimizer_state: dict[str, Any]

    _FIELDS = ("model_state", "sparsifier", "best_val_mae", "best_epoch", "losses",
               "val_maes", "seconds", "optimizer_state")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._FIELDS}

    @classmethod
    def from_dict(cls, d: Any, source: str) -> StageResult:
        missing = [k for k in cls._FIELDS if not isinstance(d, dict) or k not in d]
        if missing:
            raise RecordError(f"{source} is damaged (field {missing[0]!r}): start the run afresh")
        return cls(**{k: d[k] for k in cls._FIELDS})


@dataclass
class ProgressRecord:
    """``progress.pt``: an unfinished run's training state after its last finished epoch:
    the resolved configuration, the finished stages, the running stage's state
    (``current``: ``{"stage": name, "state": train.fit's resume state}``) and the number
    of processes it trained on."""

    config: dict[str, Any]
    done: dict[str, StageResult] = field(default_factory=dict)
    current: dict[str, Any] | None = None
    world_size: int = 1

    def resume_state(self, stage: str) -> dict[str, Any] | None:
        """The running stage's state if it is ``stage``, else None."""
        if self.current is not None and self.current.get("stage") == stage:
            return self.current["state"]
        return None

    def check_world(self, world: int) -> None:
        """``ValueError`` unless the run resumes on as many processes as it trained on."""
        if self.world_size != world:
            raise ValueError(
                f"the run was trained on {self.world_size} process(es) and resumes on {world}: "
                f"resume it with --nproc {self.world_size} (the batches depend on it)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROGRESS_FORMAT,
            "version": __version__,
            "config": self.config,
            "done": {k: v.to_dict() for k, v in self.done.items()},
            "current": self.current,
            "world_size": self.world_size,
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "progress.pt") -> ProgressRecord:
        def damaged(name: str) -> RecordError:
            return RecordError(f"{source} is damaged (field {name!r}): start the run afresh")

        if not isinstance(d, dict):
            raise damaged("config")
        for name, kind in (("config", dict), ("done", dict)):
            if not isinstance(d.get(name), kind):
                raise damaged(name)
        current = d.get("current")
        if current is not None and (
            not isinstance(current, dict)
            or not isinstance(current.get("stage"), str)
            or not isinstance(current.get("state"), dict)
        ):
            raise damaged("current")
        world = d.get("world_size", 1)
        if isinstance(world, bool) or not isinstance(world, int) or world < 1:
            raise damaged("world_size")
        done = {k: StageResult.from_dict(v, source) for k, v in d["done"].items()}
        return cls(d["config"], done, current, world)
