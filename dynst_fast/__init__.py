"""dynst_fast: Dynamic Sparse Training for spatio-temporal forecasting, made fast for real."""

from __future__ import annotations

import torch  # noqa: F401  (loads libtorch before the compiled extension dynst_fast._C)

__version__ = "0.1.0"
