"""The pytest-benchmark suite of the kernels, ops and compacted models (``cases.py``)."""
