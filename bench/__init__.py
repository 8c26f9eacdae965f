"""Benchmarks: kernels/ (the pytest-benchmark suite on cases.py), gpu/ (the GPU suite on
the same cases), studies/ (accuracy, selection, scale, failures, switch-on and latency
studies on the run plan); timer.py is their one timing helper. Run from the repository
root: ``python -m pytest bench/kernels``, ``python -m bench.gpu.suite``,
``python -m bench.studies.<study>``."""
