"""Data: data sets and the registry of their file formats, the planted synthetic network
and grid, windows and splits."""

from __future__ import annotations

from .formats import FORMATS, DataFormat, Dataset, format_of, load_dataset, register_format
from .graph_formats import GraphDataset, load_graph_dataset, shared_data_dir
from .grid import GridDataset, is_grid_data, load_grid_dataset, synthetic_grid
from .options import ReadOptions
from .pyg_temporal import from_pyg_temporal
from .synthetic import synthetic_sensor_network
from .windows import WindowDataset, WindowSplits, make_windows, split_bounds

__all__ = [
    "DataFormat",
    "Dataset",
    "FORMATS",
    "GraphDataset",
    "GridDataset",
    "ReadOptions",
    "WindowDataset",
    "WindowSplits",
    "format_of",
    "from_pyg_temporal",
    "is_grid_data",
    "load_dataset",
    "load_graph_dataset",
    "load_grid_dataset",
    "make_windows",
    "register_format",
    "shared_data_dir",
    "split_bounds",
    "synthetic_grid",
    "synthetic_sensor_network",
]
