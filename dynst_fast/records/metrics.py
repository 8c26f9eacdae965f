"""``metrics.json``: a finished run's scores, timings and settings (:class:`RunMetrics`),
and the dict ``dynst run`` returns (:class:`MetricsDict`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from .fields import RecordError, need

METRICS_FORMAT = 2  # 2: the sparse models under "schemes" (1: "dynst" and "others")


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
    missing: dict[str, Any] | None = None  # --missing-value: value, masked_readings, readings

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
            "missing": self.missing,
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
        "missing",
    )  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "metrics.json") -> RunMetrics:
        """A ``metrics.json`` (or the dict ``dynst run`` returns). One of the layout
        before format 2 (the main model under ``"dynst"``, the others under ``"others"``)
        is read with a ``FutureWarning``."""
        if not isinstance(d, dict):
            raise RecordError(f"{source} must hold a JSON object")
        scheme = need(d, "scheme", str, source)
        if "schemes" in d:
            schemes = need(d, "schemes", dict, source)
        else:
            main = need(d, "dynst", dict, source)
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
            model=need(d, "model", str, source),
            scheme=scheme,
            num_sensors=need(d, "num_sensors", int, source),
            sparsity=d.get("sparsity"),
            target_sparsity=d.get("target_sparsity"),
            num_active=need(d, "num_active", int, source),
            active_sensors=list(d.get("active_sensors", [])),
            units=d.get("units", ""),
            t_in=d.get("t_in"),
            t_out=d.get("t_out"),
            dense=DenseResult.from_dict(need(d, "dense", dict, source)),
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
            missing=d.get("missing"),
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
