"""The GPU suite (``python -m bench.gpu.suite``) and its parts: build, tests, op and model
benchmarks on ``bench/kernels/cases/``, the results file and the goals."""
