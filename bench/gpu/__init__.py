"""The parts of ``bench/gpu_suite.py``: build, tests, op and model benchmarks, their timer,
the results file and the goals they are checked against."""
