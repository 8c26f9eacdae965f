"""``progress.pt``: an unfinished run's training state (:class:`ProgressRecord`, with a
:class:`StageResult` per finished training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from .fields import RecordError

PROGRESS_FORMAT = 2  # shares the checkpoint format number (artifacts.FORMAT)


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
