"""The run directory on disk: where a run is staged while it trains (``.<name>.partial``
beside it, locked by its process), how it is published whole, and which paths may be
written at all. The files it holds are written by ``artifacts`` (finished runs) and
``stages`` (the training state, ``progress.pt``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

CHECKPOINT, PROGRESS = "checkpoint.pt", "progress.pt"
CONFIG, METRICS, MASK, PICTURE, REPORT = (
    "config.toml",
    "metrics.json",
    "mask.json",
    "sensors.png",
    "report.md",
)
ERROR_PICTURE = "sensors_error.png"


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and normalised (``runs/x/..`` is ``runs``), links kept."""
    return Path(os.path.abspath(path))


def staging_dir(out: str | os.PathLike) -> Path:
    """Where the run directory ``out`` is staged while it trains: ``.<name>.partial``."""
    out = _absolute(out)
    return out.parent / f".{out.name}.partial"


def final_dir(path: str | os.PathLike) -> Path:
    """The run directory of ``path``: itself, or the run a staging directory stages."""
    p = _absolute(path)
    if p.name.startswith(".") and p.name.endswith(".partial") and len(p.name) > 9:
        return p.parent / p.name[1:-8]
    return p


def is_run_dir(path: str | os.PathLike) -> bool:
    """Does ``path`` hold a ``dynst run`` directory (a finished one, or an unfinished one
    of the layout before staging, with its ``progress.pt`` inside)?"""
    p = Path(path)
    return (p / CONFIG).is_file() and any(
        (p / f).is_file() for f in (CHECKPOINT, METRICS, PROGRESS)
    )


def check_out(out: str | os.PathLike) -> None:
    """Refuse (one ``ValueError`` naming --out) a run directory that cannot be written: a
    file system root, a symbolic link, an existing file, a directory that holds something
    other than a run (replacing it would delete it), or a place this process cannot
    write to."""
    given, out = out, _absolute(out)
    if out.parent == out:
        raise ValueError(f"--out {given}: a run directory cannot be a file system root")
    if out.is_symlink():
        raise ValueError(f"--out {given} is a symbolic link: name the directory itself")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {given} is an existing file: name a directory")
    if out.is_dir() and any(out.iterdir()) and not is_run_dir(out):
        raise ValueError(
            f"--out {given} is a directory that is not a dynst run directory; a run "
            "replaces its directory as a whole, so name a new or empty one"
        )
    _check_writable(out, "--out")


def _check_writable(path: Path, flag: str) -> None:
    """Can ``path`` be created? Probed by creating and removing a directory in its
    nearest existing ancestor (permission bits alone miss read-only mounts and root)."""
    parent = _absolute(path).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".dynst-probe-"))
    except OSError as exc:
        raise ValueError(
            f"{flag} {path}: cannot write there ({parent}: {exc.strerror or exc})"
        ) from None


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse (one ``ValueError`` naming ``flag``) an output file that is a directory or
    whose directory cannot be created or written."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {p} is a directory: name a file")
    _check_writable(p, flag)


_LOCKS: dict[Path, Any] = {}  # staging directory -> the open lock file this process holds


def _lock(stage: Path, out: str | os.PathLike) -> None:
    """Hold an exclusive lock on ``stage`` for this process, so that two runs never write
    one run directory (``ValueError`` if another process holds it)."""
    import fcntl

    if stage in _LOCKS:
        return
    f = open(stage / ".lock", "w")  # noqa: SIM115 - held until publish
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise ValueError(f"--out {out}: another dynst run is writing this run directory") from None
    _LOCKS[stage] = f


def _unlock(stage: Path) -> None:
    f = _LOCKS.pop(stage, None)
    if f is not None:
        (stage / ".lock").unlink(missing_ok=True)
        f.close()


def begin_run(out: str | os.PathLike, resume: bool = False) -> Path:
    """The locked staging directory of ``out``: a fresh one (an older unfinished one is
    discarded), or with ``resume`` the existing one; ``ValueError`` naming --out if it
    cannot be written or another run holds it."""
    check_out(out)
    stage = staging_dir(out)
    try:
        if resume:
            _lock(stage, out)
            return stage
        if stage.exists():
            _lock(stage, out)  # not while another run trains there
            _unlock(stage)
            if (stage / PROGRESS).exists():
                print(
                    f"dynst run: note: starting afresh; discarding the unfinished run in "
                    f"{stage} (`--resume {out}` would have continued it)",
                    file=sys.stderr,
                )
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        _lock(stage, out)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return stage


def publish(stage: str | os.PathLike, out: str | os.PathLike) -> None:
    """Rename the finished staging directory onto ``out``, replacing an older run there
    as a whole: it is renamed aside first, renamed back if the new run cannot take its
    place, and deleted once the new run is in place."""
    stage, out = _absolute(stage), _absolute(out)
    check_out(out)  # what is there now, not what was there when the run started
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    _unlock(stage)
    try:
        os.replace(stage, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
