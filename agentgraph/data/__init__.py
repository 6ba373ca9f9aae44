"""Offline data: the sinusoid task family and image datasets (see docs/data.md)."""

from agentgraph.data.images import DATASETS, Dataset, cache_dir, load_dataset, preprocess, sample_classification_task
from agentgraph.data.sinusoid import sample_sinusoid_task

__all__ = ["DATASETS", "Dataset", "cache_dir", "load_dataset", "preprocess", "sample_classification_task",
           "sample_sinusoid_task"]
