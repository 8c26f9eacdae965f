"""Data: graph data sets from files, the planted synthetic network, windows and splits."""

from __future__ import annotations

from .graph_formats import GraphDataset, load_graph_dataset, shared_data_dir
from .synthetic import synthetic_sensor_network
from .windows import WindowDataset, WindowSplits, make_windows, split_bounds

__all__ = [
    "GraphDataset",
    "WindowDataset",
    "WindowSplits",
    "load_graph_dataset",
    "make_windows",
    "shared_data_dir",
    "split_bounds",
    "synthetic_sensor_network",
]
