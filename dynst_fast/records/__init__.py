"""The run directory's file formats as typed records, each written and read here only:
``metrics.json`` (:class:`RunMetrics`), ``mask.json`` (:class:`MaskRecord`) and the
training state ``progress.pt`` (:class:`ProgressRecord`).

Every record has ``to_dict`` (what the file holds) and ``from_dict`` (which checks what
it reads and names the file and the field when something is wrong). The module imports
neither torch nor numpy at load time, so that torch-free commands (``dynst rank``) read
these files too; tensors and arrays pass through as opaque values.
"""

from .fields import RecordError
from .mask import GAIN_METHOD, MaskRecord, switch_on_ranking
from .metrics import (
    METRICS_FORMAT,
    DenseResult,
    MetricsDict,
    RunMetrics,
    SchemeResult,
    TimingInfo,
)
from .progress import PROGRESS_FORMAT, ProgressRecord, StageResult

__all__ = [
    "GAIN_METHOD",
    "METRICS_FORMAT",
    "PROGRESS_FORMAT",
    "DenseResult",
    "MaskRecord",
    "MetricsDict",
    "ProgressRecord",
    "RecordError",
    "RunMetrics",
    "SchemeResult",
    "StageResult",
    "TimingInfo",
    "switch_on_ranking",
]
