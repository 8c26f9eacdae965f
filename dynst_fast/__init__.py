"""dynst_fast: Dynamic Sparse Training for spatio-temporal forecasting, made fast for real.

Importing the package does not import torch, so that ``dynst predict`` (onnxruntime
only) runs on hosts without it; the modules that need torch import it themselves.
"""

from __future__ import annotations

__version__ = "0.1.0"
