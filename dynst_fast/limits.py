"""Numeric limits shared by the readers, the configuration and the sidecar, stated once
and without imports (the torch-free and numpy-free modules use them too)."""

from __future__ import annotations

# The largest finite float32 (numpy.finfo(numpy.float32).max): the models compute in
# float32, so a reading or a missing-value sentinel beyond it cannot be represented.
F32_MAX = 3.4028234663852886e38
