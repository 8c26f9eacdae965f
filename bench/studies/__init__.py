"""Studies on the run plan: accuracy, sensor selection, scale, failed sensors, switch-on
gains and ONNX latency, each ``python -m bench.studies.<name>`` with its results in
``bench/results/``."""
